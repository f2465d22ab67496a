import sys

import click
from flask import Blueprint

from marketplace.auth import service
from marketplace.auth.models import ROLES
from marketplace.db import transaction, utcnow
from marketplace.errors import DomainError

cli = Blueprint("auth_cli", __name__, cli_group=None)


@cli.cli.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password", help="The password (visible in the process list: prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--region-code", help="For admins: the region code prefix they are limited to.")
@click.option("--provider-id", type=int, help="For provider logins: the provider.")
@click.option("--recipient-id", type=int, help="For recipient logins: the recipient.")
def create_user_command(username, role, password, password_stdin, region_code, provider_id, recipient_id):
    """Create a login (the first admin is made this way)."""
    if password_stdin == (password is not None):
        raise click.UsageError("Give exactly one of --password and --password-stdin.")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        with transaction():
            user = service.create_user(username=username, password=password, role=role, region_code=region_code,
                                       provider_id=provider_id, recipient_id=recipient_id, actor=None,
                                       now=utcnow())
    except DomainError as error:
        raise click.ClickException(f"{error.message} {error.details or ''}".strip()) from error
    click.echo(f"created {user.role} {user.username} (id {user.id})")

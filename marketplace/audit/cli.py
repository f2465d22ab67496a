import click
from flask import Blueprint

from marketplace.audit.service import verify_chain
from marketplace.db import read_only
from marketplace.metrics import record_audit_verification
from marketplace.scheduled import one_line_failures

cli = Blueprint("audit_cli", __name__, cli_group=None)


@cli.cli.command("audit-verify")
@one_line_failures
def audit_verify_command():
    """Verify the audit chain; exit 1 and name the first broken event when it is broken."""
    with read_only():  # a long walk must not hold SQLite's write lock
        result = verify_chain()
    record_audit_verification(result.ok)
    if result.ok:
        click.echo(f"audit chain ok: {result.events} events, head {result.head_hash}")
        return
    click.echo(f"audit chain BROKEN at event {result.first_broken_id}: {result.reason} "
               f"({result.events} events verified before it)", err=True)
    raise SystemExit(1)

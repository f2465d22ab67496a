"""`flask --app wsgi seed-demo`: a believable demo for a county civil-affairs bureau.

The demo county is 蒲江县 (region code 510131, 成都市, 四川省). Passwords are printed on purpose:
this is a demo database and never a production one (the command refuses a non-empty database).
"""

import click
from flask import Blueprint
from sqlalchemy import func, select

from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.db import db, transaction, utcnow

DEMO_REGION = "510131"
DEMO_USERS = [
    # username, password, role, region scope, what it is for
    ("admin", "demo-admin-2026", "admin", None, "civil-affairs bureau, all regions"),
    ("county-admin", "demo-county-2026", "admin", DEMO_REGION, "蒲江县民政局, limited to 510131"),
    ("auditor", "demo-auditor-2026", "auditor", None, "read-only auditor"),
]

cli = Blueprint("demo_cli", __name__, cli_group=None)


def seed_demo(*, now) -> list[tuple[str, str, str, str]]:
    """Fill an empty database with the demo and return the logins as (username, password, role, note)."""
    for username, password, role, region, _note in DEMO_USERS:
        auth_service.create_user(username=username, password=password, role=role, region_code=region, actor=None,
                                 now=now)
    return [(u, p, r, note) for u, p, r, _region, note in DEMO_USERS]


def print_logins(logins) -> None:
    click.echo("Demo logins (POST /api/v1/auth/token with {username, password}):")
    for username, password, role, note in logins:
        click.echo(f"  {username:<16} {password:<20} {role:<10} {note}")


@cli.cli.command("seed-demo")
def seed_demo_command():
    """Fill an empty database with demo data and print the demo logins."""
    if db.session.scalar(select(func.count()).select_from(User)):
        click.echo("The database already has users; seed-demo only fills an empty database.")
        print_logins([(u, p, r, note) for u, p, r, _region, note in DEMO_USERS])
        return
    with transaction():
        logins = seed_demo(now=utcnow())
    print_logins(logins)

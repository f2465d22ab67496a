"""What the commands that cron and systemd timers run (deploy/) have in common.

Each is safe to run twice: a second run finds nothing new to do, says so and exits 0. Each fails with
exit status 1 and one line on stderr saying why — a refusal's message and fields, or the database's
complaint without the SQL or its parameters — never a traceback, which a cron mail or the journal would
carry into many lines and which may quote personal data.
"""

import functools

import click
from sqlalchemy.exc import SQLAlchemyError

from marketplace.errors import DomainError


def reason(error: DomainError) -> str:
    """A refusal as one line: its message, each field's messages, then its other details (`shortfall_fen=7`)."""
    details = dict(error.details or {})
    fields = details.pop("fields", None) or {}
    parts = [error.message, *(f"{name}: {' '.join(messages)}" for name, messages in fields.items())]
    if details:
        parts.append("(" + ", ".join(f"{key}={value}" for key, value in details.items()) + ")")
    return " ".join(" ".join(parts).split())


def database_reason(error: SQLAlchemyError) -> str:
    """The driver's complaint in one line, without the statement or its parameters."""
    original = getattr(error, "orig", None) or error
    text = " ".join(str(original).split())
    return text or type(original).__name__


def one_line_failures(command):
    """Make *command* fail in one line (click's `Error: …`, exit 1) on a refusal or a database error."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DomainError as error:
            raise click.ClickException(reason(error)) from error
        except SQLAlchemyError as error:
            raise click.ClickException(f"database error: {database_reason(error)}") from error

    return run

import io
from pathlib import Path

import click
from flask import Blueprint

from marketplace.db import transaction, utcnow
from marketplace.errors import DomainError
from marketplace.recipients import service

cli = Blueprint("recipients_cli", __name__, cli_group=None)


@cli.cli.command("import-recipients")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_recipients_command(path: Path):
    """Import recipients from a CSV file (the same rules as POST /api/v1/recipients/import)."""
    with path.open("rb") as raw, click.progressbar(length=path.stat().st_size, label="importing") as bar:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")

        def show_progress(_rows: int) -> None:
            bar.update(raw.tell() - bar.pos)

        try:
            with transaction():
                result = service.import_recipients(text=text, actor=None, now=utcnow(), on_batch=show_progress)
        except DomainError as error:
            raise click.ClickException(f"{error.message} {error.details}") from error
    click.echo(f"rows {result.rows}, created {result.created}, duplicates {result.duplicates}, "
               f"refused {result.error_rows}")
    for problem in result.errors:
        click.echo(f"  row {problem['row']} {problem['field']}: {problem['message']}")

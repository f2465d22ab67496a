import io
from pathlib import Path

import click
from flask import Blueprint, current_app

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


@cli.cli.command("reindex-id-numbers")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--old-key-env", default="OLD_ID_HASH_KEY", show_default=True,
              help="The environment variable holding the ID_HASH_KEY being retired.")
@click.option("--allow-partial", is_flag=True, help="Commit even when some recipients stay under the old key.")
def reindex_id_numbers_command(path: Path, old_key_env: str, allow_partial: bool):
    """After changing ID_HASH_KEY: move the recipients' ID-number index to the new key, from a CSV of their ID
    numbers (an `id_number` column, as in the import). One transaction; nothing is written unless every
    recipient is re-indexed (or --allow-partial). Safe to run again."""
    import csv
    import os

    from marketplace.recipients.reindex import reindex_id_numbers

    old_key = os.environ.get(old_key_env)
    if not old_key:
        raise click.ClickException(f"{old_key_env} is not set: put the ID_HASH_KEY being retired there.")
    if old_key == current_app.config["ID_HASH_KEY"]:
        raise click.ClickException(f"{old_key_env} equals ID_HASH_KEY: set ID_HASH_KEY to the new key first.")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if "id_number" not in (reader.fieldnames or []):
            raise click.ClickException(f"{path} has no id_number column.")
        rows = ((line, row.get("id_number") or "") for line, row in enumerate(reader, start=2))
        try:
            with transaction():
                result = reindex_id_numbers(numbers=rows, old_key=old_key, now=utcnow())
                click.echo(f"numbers {result.numbers}, moved {result.moved}, already re-indexed {result.already}, "
                           f"not enrolled {result.unknown}, invalid {len(result.invalid)}; "
                           f"recipients {result.recipients}, still under the old key {result.not_in_file}")
                for line, why in result.invalid[:20]:
                    click.echo(f"  line {line}: {why}")
                if not result.complete and not allow_partial:
                    raise click.ClickException(
                        f"{result.not_in_file} recipients are not in the file and {len(result.invalid)} numbers are "
                        "invalid: nothing was written. Complete the file, or run with --allow-partial.")
        except DomainError as error:
            raise click.ClickException(error.message) from error

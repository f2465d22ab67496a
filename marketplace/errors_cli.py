"""`flask --app wsgi errors-doc`: docs/errors.md, the page of every error code, generated from the registry.

The page is never edited by hand: tests/test_error_registry.py fails when it differs from what
`error_catalogue()` gives, and names the command that brings it up to date.
"""

from pathlib import Path

import click
from flask import Blueprint

from marketplace.errors import ErrorEntry, error_catalogue, error_codes

PAGE_PATH = "docs/errors.md"
REGENERATE = f"APP_ENV=development flask --app wsgi errors-doc --write {PAGE_PATH}"

cli = Blueprint("errors_cli", __name__, cli_group=None)

INTRO = """\
# Error codes

<!-- Generated from the error classes by `{regenerate}`; do not edit by hand. -->

Every error the API returns has one shape (docs/domain.md#api-conventions):

```json
{{"error": {{"code": "<snake_case>", "message": "<human text>", "details": {{}}}}}}
```

Clients act on the HTTP status and `code`; `message` is for people and may be reworded. `details` is
an object, often empty: `fields` (per-field lists of messages) for `validation_error`, `allowed` (the
methods) for `method_not_allowed`, `request_id` for `internal_error` and `database_unavailable`, and
whatever a rule adds (e.g. `shortfall_fen` for `budget_exceeded`).

This page is generated from the code, by `marketplace.errors.error_catalogue()`: every `DomainError`
subclass of every domain, plus the codes the error handlers produce themselves for Flask, werkzeug and
webargs errors. Regenerate it with `{regenerate}`;
`tests/test_error_registry.py` fails while it is out of date. The same codes are the `enum` of
`error.code` (schema `ErrorBody`, inside `Error`) in the OpenAPI document at `GET /api/v1/openapi.json`.

Each (status, code) pair is listed once, with every meaning it has in the code base.
{summary}

| status | code | meaning |
|---|---|---|
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _summary(catalogue: list[ErrorEntry]) -> str:
    codes = error_codes(catalogue)
    statuses: dict[str, list[str]] = {}
    for entry in catalogue:
        statuses.setdefault(entry.code, []).append(entry.status_label)
    shared = [f"`{code}` ({', '.join(labels)})" for code, labels in sorted(statuses.items()) if len(labels) > 1]
    text = f"{len(codes)} codes in {len(catalogue)} rows."
    if shared:
        text += f" Codes that come with more than one status: {', '.join(shared)}."
    return text


def render_page(catalogue: list[ErrorEntry] | None = None) -> str:
    """The Markdown of docs/errors.md."""
    catalogue = error_catalogue() if catalogue is None else catalogue
    rows = [f"| {entry.status_label} | `{entry.code}` | {_cell(entry.meaning)} |" for entry in catalogue]
    return INTRO.format(regenerate=REGENERATE, summary=_summary(catalogue)) + "\n".join(rows) + "\n"


@cli.cli.command("errors-doc")
@click.option("--write", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Write the page to this file (e.g. {PAGE_PATH}) instead of printing it.")
def errors_doc_command(path: Path | None):
    """Print the page of every error code (docs/errors.md), generated from the error classes."""
    page = render_page()
    if path is None:
        click.echo(page, nl=False)
        return
    path.write_text(page, encoding="utf-8")
    click.echo(f"wrote {path}: {len(error_codes())} error codes")

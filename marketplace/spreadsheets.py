"""Every CSV and XLSX the product hands out is written here, each cell through the formula neutraliser.

A spreadsheet program reads a text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return
as a formula, so a provider's note or name like `=HYPERLINK("http://…","点此")` would run in the
bureau's Excel (OWASP, "CSV injection"). `neutralise` puts an apostrophe before such a text; numbers
stay numbers, and so does text that is just a decimal number (`-12.50`), which no program runs.

- CSV: UTF-8 with a BOM (so Excel opens Chinese headers), streamed in chunks of `batch` rows.
- XLSX: openpyxl's write-only mode into a temporary file, row by row, then streamed from it; neither
  holds the rows in memory.
"""

import csv
import io
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence

from openpyxl import Workbook

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
BATCH = 2000
CSV_MIMETYPE = "text/csv"
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def neutralise(value):
    """A cell as written: a text a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def neutralise_row(row: Iterable) -> list:
    return [neutralise(cell) for cell in row]


def csv_chunks(headers: Sequence[str], rows: Iterable[Sequence], *, footer: Iterable[Sequence] = (),
               batch: int = BATCH) -> Iterator[str]:
    """A CSV (BOM, headers, *rows*, then *footer*) as text chunks of *batch* rows, for a streamed response."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(neutralise_row(headers))
    for count, row in enumerate(rows, start=1):
        writer.writerow(neutralise_row(row))
        if count % batch == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    for row in footer:
        writer.writerow(neutralise_row(row))
    yield buffer.getvalue()


def xlsx_file(title: str, headers: Sequence[str], rows: Iterable[Sequence], *, footer: Iterable[Sequence] = ()):
    """An .xlsx of one sheet *title* (headers, *rows*, *footer*) in a temporary file, rewound; the response
    that streams it closes it."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:31])  # Excel's limit on a sheet's name
    sheet.append(neutralise_row(headers))
    for row in rows:
        sheet.append(neutralise_row(row))
    for row in footer:
        sheet.append(neutralise_row(row))
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the response that streams it
    workbook.save(handle)
    handle.seek(0)
    return handle


def xlsx_chunks(title: str, headers: Sequence[str], rows: Iterable[Sequence], *, footer: Iterable[Sequence] = (),
                chunk_bytes: int = 64 * 1024) -> Iterator[bytes]:
    """The same .xlsx as bytes for a streamed response: written when the response starts (so a response
    never sent opens no file) and the temporary file closed when it ends or is abandoned."""
    handle = xlsx_file(title, headers, rows, footer=footer)
    try:
        while chunk := handle.read(chunk_bytes):
            yield chunk
    finally:
        handle.close()


def download(kind: str, title: str, headers: Sequence[str], rows: Iterable[Sequence], filename: str):
    """A streamed download of *rows* as `kind` ("csv" or "xlsx", the sheet named *title*), saved as *filename*
    (ASCII; `.kind` is added). The one way the console's lists hand out what they show."""
    from flask import Response, stream_with_context

    if kind == "csv":
        chunks, mimetype = csv_chunks(headers, rows), CSV_MIMETYPE
    else:
        chunks, mimetype = xlsx_chunks(title, headers, rows), XLSX_MIMETYPE
    return Response(stream_with_context(chunks), mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{filename}.{kind}"'})

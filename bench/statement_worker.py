"""Run one statement export in a process of its own and report its time and memory as JSON.

    python -m bench.statement_worker --url URL --secrets FILE --instance DIR --settlement ID \
        --format csv|xlsx|reference[,…] [--trace]

Used by benchmark 5 (imports.py): a fresh process per measurement, so one export's garbage never
counts against another. The app is created and the settlement loaded first; then the peak RSS is
reset (Linux: writing 5 to /proc/self/clear_refs resets VmHWM) and the export runs:

- csv: `vouchers.statements.csv_chunks`, every chunk consumed as the HTTP response would be;
- xlsx: `vouchers.statements.xlsx_file`, the temporary workbook file read to its end;
- reference: raw SQL through a server-side cursor (PostgreSQL) or a plain cursor (SQLite) into
  csv.writer, chunk by chunk — the least memory a streamed statement can take.

Reported, one JSON line per format: seconds, bytes, rows, RSS before, peak RSS during, growth =
peak − before (MB), and with --trace the tracemalloc peak of Python allocations (the full benchmark
traces in a second process, since tracing slows the export down; the smoke run does everything in one).
"""

import argparse
import csv
import io
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path

from tests.support.databases import psycopg_dsn


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _reference(url: str, settlement_id: int) -> tuple[int, int]:
    query = ("SELECT id, voucher_id, item_code, delivered_at, face_value_fen, copay_fen, duration_minutes "
             "FROM redemption WHERE settlement_id = {} ORDER BY delivered_at, id")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    size = rows = 0

    def emit():
        nonlocal size
        size += len(buffer.getvalue().encode("utf-8"))
        buffer.seek(0)
        buffer.truncate()

    if url.startswith("sqlite"):
        import sqlite3
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        cursor = conn.execute(query.format("?"), (settlement_id,))
    else:
        import psycopg
        conn = psycopg.connect(psycopg_dsn(url))
        cursor = conn.cursor(name="statement")  # server-side: rows arrive in batches
        cursor.itersize = 2000
        cursor.execute(query.format("%s"), (settlement_id,))
    for row in cursor:
        writer.writerow([row[0], row[1], row[2], str(row[3])[:16], f"{row[4] / 100:.2f}", f"{row[5] / 100:.2f}",
                         row[6] or ""])
        rows += 1
        if rows % 2000 == 0:
            emit()
    emit()
    conn.close()
    return size, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--secrets", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--settlement", type=int, required=True)
    parser.add_argument("--format", required=True, help="csv, xlsx, reference, or several comma-separated")
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args(argv)

    from marketplace.db import db
    from tests.support.apps import make_app
    from vouchers import statements
    from vouchers.models import Settlement

    app = make_app(args.url, secrets=json.loads(Path(args.secrets).read_text()), instance_path=args.instance)
    for export in args.format.split(","):
        if export not in ("csv", "xlsx", "reference"):
            parser.error(f"unknown format {export!r}")
        with app.app_context():
            settlement = db.session.get(Settlement, args.settlement)
            rss_before = _status_kb("VmRSS")
            peak_reset = _reset_peak()
            if args.trace:
                tracemalloc.start()
            began = time.perf_counter()
            if export == "csv":
                size = sum(len(chunk.encode("utf-8")) for chunk in statements.csv_chunks(settlement))
                rows = settlement.redemptions_count
            elif export == "xlsx":
                handle = statements.xlsx_file(settlement)
                size = len(handle.read())
                handle.close()
                rows = settlement.redemptions_count
            else:
                size, rows = _reference(args.url, args.settlement)
            seconds = time.perf_counter() - began
            traced_peak = tracemalloc.get_traced_memory()[1] if args.trace else None
            tracemalloc.stop()
            peak_kb = _status_kb("VmHWM") if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            db.session.remove()
        sys.stdout.write(json.dumps({
            "format": export, "seconds": seconds, "bytes": size, "rows": rows,
            "rss_before_mb": rss_before / 1024, "peak_rss_mb": peak_kb / 1024,
            "growth_mb": max(0, peak_kb - rss_before) / 1024, "peak_reset": peak_reset,
            "tracemalloc_peak_mb": None if traced_peak is None else traced_peak / 1024 / 1024}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

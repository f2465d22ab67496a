"""Benchmark 5: recipient CSV import, and the memory of a settlement statement export.

Import (`run_import`): `import_rows` valid, distinct recipients (datagen.recipient_csv: GB 11643 ID
numbers, phones, addresses, tags) imported by `marketplace.recipients.service.import_recipients` in
one `transaction()`, timed to the commit: every field checked, the HMAC blind index, duplicate
detection, batches of 1,000 with their tags, the audit event. Reference, measured first on the same
database: csv.reader, the same HMAC and masked form, and raw batch INSERTs (executemany) of the
recipients and their tags with no validation, to the commit; its rows are then deleted (and the
tables vacuumed) before the app runs. Target: app ≤ 30 s for 100,000 rows (the ratio is reported).

Statements (`run_statements`): one settlement of `statement_lines` redemptions (bulk). Each export
runs in a fresh subprocess (statement_worker.py) that measures the peak RSS growth during the export
and, in a second run, the tracemalloc peak: the streamed CSV, the XLSX (openpyxl write-only into a
temporary file) and the raw-SQL reference. Target: growth < 50 MB for CSV and XLSX.
"""

import csv
import hashlib
import hmac
import json
import subprocess
import sys
import time
from datetime import date

from bench import datagen
from bench.common import PROJECT_ROOT, TARGETS, Options, fmt, note, out, stage, table, verdict, write_result
from tests.support.apps import dispose


def reference_import(bulk: datagen.Bulk, lines: list[str], key: str, now) -> tuple[float, int]:
    """csv.reader + HMAC + raw batch INSERTs of recipients and tags, one transaction."""
    columns = ["id", "name", "id_number_hash", "id_number_masked", "birth_date", "sex", "phone", "region_code",
               "address", "status", "created_at", "updated_at"]
    sql = (lambda s: s) if bulk.sqlite else (lambda s: s.replace("?", "%s"))
    insert_recipient = sql(f"INSERT INTO recipient ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})")
    insert_tag = sql("INSERT INTO recipient_tag (recipient_id, tag) VALUES (?, ?)")
    v = bulk._value
    key_bytes = key.encode()
    began = time.perf_counter()
    next_id = bulk.next_id("recipient")
    created = 0
    batch, tags = [], []
    with bulk.transaction() as cursor:
        def flush():
            cursor.executemany(insert_recipient, batch)
            if tags:
                cursor.executemany(insert_tag, tags)
            batch.clear()
            tags.clear()

        reader = csv.reader(lines)
        next(reader)
        for name, number, phone, region, address, tag_field in reader:
            number = number.strip().upper()
            birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
            digest = hmac.new(key_bytes, number.encode("ascii"), hashlib.sha256).hexdigest()
            batch.append((next_id, name.strip(), digest, number[:6] + "********" + number[14:], v(birth),
                          "male" if int(number[16]) % 2 else "female", phone or None, region, address or None, "active",
                          v(now), v(now)))
            tags.extend((next_id, tag) for tag in tag_field.split(";") if tag)
            next_id += 1
            created += 1
            if len(batch) >= 1000:
                flush()
        if batch:
            flush()
    return time.perf_counter() - began, created


def run_import(options: Options, backend: str) -> dict:
    from marketplace.db import db, transaction
    from marketplace.recipients import service as recipient_service

    rows = int(options.size("import_rows"))
    out(f"\n== 5a. recipient CSV import ({backend}): {rows:,} rows")
    with stage(options, backend, "import") as staged:
        app, admin, url, now = staged.app, staged.admin, staged.url, staged.now
        lines = datagen.recipient_csv(rows)
        note(f"{len(lines) - 1:,} rows, {sum(len(line.encode()) for line in lines) / 1e6:.1f} MB of CSV")
        with datagen.Bulk(url, checkpoints=not options.smoke) as bulk:
            bulk.checkpoint()
            ref_seconds, ref_created = reference_import(bulk, lines, staged.secrets["ID_HASH_KEY"], now)
            bulk.execute("DELETE FROM recipient_tag")
            bulk.execute("DELETE FROM recipient")
            bulk.vacuum("recipient", "recipient_tag")
            bulk.checkpoint()
            with app.app_context():
                began = time.perf_counter()
                with transaction():
                    result = recipient_service.import_recipients(text=iter(lines), actor=admin, now=now)
                app_seconds = time.perf_counter() - began
                began = time.perf_counter()
                with transaction():
                    again = recipient_service.import_recipients(text=iter(lines), actor=admin, now=now)
                again_seconds = time.perf_counter() - began
                db.session.remove()
            in_database = bulk.scalar("SELECT COUNT(*) FROM recipient")
    target = TARGETS["import_seconds_max"]
    met = app_seconds <= target * rows / 100_000
    ratio = app_seconds / ref_seconds if ref_seconds else None
    ok = result.created == rows == in_database and again.created == 0 and again.duplicates == rows
    out(table(["backend", "run", "rows", "created", "seconds", "rows/s"],
              [[backend, "reference (csv + HMAC + INSERT)", fmt(rows), fmt(ref_created), fmt(ref_seconds, 2),
                fmt(rows / ref_seconds, 0)],
               [backend, "import_recipients", fmt(rows), fmt(result.created), fmt(app_seconds, 2),
                fmt(rows / app_seconds, 0)],
               [backend, "import again (all duplicates)", fmt(rows), fmt(again.created), fmt(again_seconds, 2),
                fmt(rows / again_seconds, 0)]]))
    out(f"app {fmt(app_seconds, 2)} s (target ≤ {target:g} s per 100,000 rows: {verdict(met)}); "
        f"app/reference = {fmt(ratio, 2)}; counts {verdict(ok)}")
    write_result(options, "import", backend, {
        "rows": rows, "reference_seconds": ref_seconds, "app_seconds": app_seconds, "again_seconds": again_seconds,
        "created": result.created, "again_created": again.created, "again_duplicates": again.duplicates,
        "errors": result.error_rows, "ratio": ratio, "target_seconds_per_100k": target, "met": met,
        "counts_ok": ok})
    return {"benchmark": "5a. import", "backend": backend,
            "figure": f"{fmt(app_seconds, 2)} s for {fmt(rows)} rows ({fmt(ratio, 2)}× reference)", "ok": met and ok}


def _worker(url: str, secrets_file, instance, settlement_id: int, formats: str, trace: bool) -> dict:
    command = [sys.executable, "-m", "bench.statement_worker", "--url", url, "--secrets", str(secrets_file),
               "--instance", str(instance), "--settlement", str(settlement_id), "--format", formats]
    if trace:
        command.append("--trace")
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"statement worker ({formats}) failed:\n{done.stderr[-3000:]}")
    return {entry["format"]: entry for entry in map(json.loads, done.stdout.strip().splitlines())}


def run_statements(options: Options, backend: str) -> dict:
    lines = int(options.size("statement_lines"))
    out(f"\n== 5b. statement export ({backend}): one settlement of {lines:,} lines")
    with stage(options, backend, "statement") as staged:
        admin, url, instance, now = staged.admin, staged.url, staged.instance, staged.now
        period = datagen.previous_period(now)
        items = [("BX-MEAL", 1200, 30)]
        programme_id = datagen.setup_programme(staged.app, items=items, choice_required=False, budget_fen=10**11,
                                               now=now)
        dispose(staged.app)  # the data is loaded in bulk and exported by other processes
        with datagen.Bulk(url, checkpoints=not options.smoke) as bulk:
            (provider_id,) = datagen.load_providers(bulk, 1, ["BX-MEAL"], programme_id, now, items_each=1,
                                                    enrol_all=True)
            recipients = datagen.load_recipients(bulk, max(100, min(10_000, lines // 10)), now)
            bulk.load("settlement", ["id", "programme_id", "provider_id", "period", "status", "redemptions_count",
                                     "gross_fen", "satisfaction_score", "complaint_score", "upheld_complaints",
                                     "performance_score", "pay_percent", "net_fen", "flagged_for_termination",
                                     "created_at", "created_by"],
                      [(1, programme_id, provider_id, period, "draft", lines, lines * 960, 80, 100, 0, 86, 100,
                        lines * 960, False, now, admin.id)])
            bulk.fix_sequences("settlement")
            datagen.load_redeemed_month(bulk, programme_id=programme_id, period=period, count=lines,
                                        provider_ids=[provider_id], offered=datagen.provider_items(bulk, [provider_id]),
                                        prices={"BX-MEAL": 1200}, recipients=recipients, scanned_by=admin.id, now=now,
                                        settlement_id=1)
            bulk.analyze()
        secrets_file = staged.folder / "secrets.json"
        secrets_file.write_text(json.dumps(staged.secrets))
        if options.smoke:  # one process, traced: every path runs, in a few seconds
            results = _worker(url, secrets_file, instance, 1, "reference,csv,xlsx", trace=True)
        else:  # a fresh process per export; tracemalloc in a second one (tracing slows the export down)
            results = {}
            for fmt_ in ("reference", "csv", "xlsx"):
                results[fmt_] = _worker(url, secrets_file, instance, 1, fmt_, trace=False)[fmt_]
                results[fmt_]["tracemalloc_peak_mb"] = _worker(url, secrets_file, instance, 1, fmt_,
                                                               trace=True)[fmt_]["tracemalloc_peak_mb"]
    target = TARGETS["statement_memory_mb_max"]
    met = all(results[f]["growth_mb"] < target and results[f]["tracemalloc_peak_mb"] < target for f in ("csv", "xlsx"))
    out(table(["backend", "export", "lines", "MB written", "seconds", "RSS growth MB", "tracemalloc peak MB"],
              [[backend, name, fmt(r["rows"]), fmt(r["bytes"] / 1e6, 1), fmt(r["seconds"], 2), fmt(r["growth_mb"], 1),
                fmt(r["tracemalloc_peak_mb"], 1)] for name, r in results.items()]))
    worst = max(max(results[f]["growth_mb"], results[f]["tracemalloc_peak_mb"]) for f in ("csv", "xlsx"))
    out(f"worst memory growth {fmt(worst, 1)} MB (target < {target:g} MB: {verdict(met)}); "
        f"csv/reference time = {fmt(results['csv']['seconds'] / results['reference']['seconds'], 2)}")
    write_result(options, "statements", backend, {"lines": lines, "exports": results, "target_memory_mb_max": target,
                                                  "worst_growth_mb": worst, "met": met})
    return {"benchmark": "5b. statements", "backend": backend,
            "figure": f"growth ≤ {fmt(worst, 1)} MB; csv {fmt(results['csv']['seconds'], 2)} s, "
                      f"xlsx {fmt(results['xlsx']['seconds'], 2)} s", "ok": met}

"""Benchmark 2: monthly issuance (`issue_monthly`) against a bulk load of the same rows.

Data: an active programme buying `issue_items` items (quota 1 each, so 5 vouchers a recipient by
default) with tag-dependent co-payments, and `issue_recipients` eligible recipients (all active, in
the region, over 60, tagged) loaded in bulk.

Reference: the same voucher rows — computed in Python with the service's own rules
(`copay_percent_for`, `copay_fen`, the month's validity) — written by psycopg's `COPY voucher … FROM
STDIN` on PostgreSQL (executemany INSERT on SQLite, which has no COPY), in one transaction with its
issuance row, timed from the start of the transaction to the commit. Rows are prepared before the
clock starts, so the reference is the database's raw write speed.

App: `issue_monthly` inside `transaction()`, timed to the commit (the INSERT … SELECT, the totals, the
guarded budget commitment, the journal entry, the audit event).

Between the two runs the reference rows are deleted and the table vacuumed (PostgreSQL), and a
CHECKPOINT precedes each run. Both runs must produce the same number of vouchers and the same total
face value. Target: app ≤ 2 × reference.
"""

import time

from bench.common import TARGETS, Options, fmt, note, out, stage, table, verdict, write_result
from bench.datagen import Bulk, current_period, load_recipients, setup_programme
from vouchers.service import issuance

PRICES = [1200, 5000, 3500, 5000, 6000, 2500, 1800]
VOUCHER_COLUMNS = ["programme_id", "recipient_id", "item_code", "issuance_id", "face_value_fen", "copay_fen",
                   "valid_from", "valid_until", "status", "issued_at", "status_changed_at"]


def reference_rows(app, bulk: Bulk, programme_id: int, period: str, now) -> list[tuple]:
    """The rows issue_monthly would write, computed with the service's own co-payment rules."""
    from marketplace.db import db
    from marketplace.programmes.models import Programme
    from vouchers.service.issuance import copay_fen, copay_percent_for, voucher_validity

    with app.app_context():
        programme = db.session.get(Programme, programme_id)
        valid_from, valid_until = voucher_validity(programme, period)
        items = sorted((item.item_code, item.unit_price_fen, item.monthly_quota) for item in programme.items)
        db.session.remove()
        tags: dict[int, list[str]] = {}
        for rid, tag in bulk.execute("SELECT recipient_id, tag FROM recipient_tag"):
            tags.setdefault(rid, []).append(tag)
        rows = []
        for (rid,) in bulk.execute("SELECT id FROM recipient WHERE status = 'active' ORDER BY id"):
            percent = copay_percent_for(programme, tags.get(rid, []))
            for code, price, quota in items:
                copay = copay_fen(price, percent)
                if price - copay <= 0:
                    continue
                rows.extend([(programme_id, rid, code, None, price - copay, copay, valid_from, valid_until, "issued",
                              now, now)] * quota)
    return rows


def time_reference(bulk: Bulk, rows: list[tuple], programme_id: int, period: str, now) -> float:
    """One transaction: the issuance row and the vouchers by COPY (executemany on SQLite), to the commit."""
    issuance_columns = "(programme_id, kind, period, monthly_period, recipients, vouchers, committed_fen, created_at)"
    began = time.perf_counter()
    if bulk.sqlite:
        conn = bulk.conn
        conn.execute("BEGIN IMMEDIATE")
        issuance_id = conn.execute(f"INSERT INTO issuance {issuance_columns} VALUES (?, 'supplementary', ?, NULL, "
                                   "0, 0, 0, ?) RETURNING id", (programme_id, period, bulk._value(now))).fetchone()[0]
        conn.executemany(f"INSERT INTO voucher ({', '.join(VOUCHER_COLUMNS)}) VALUES ({', '.join('?' * 11)})",
                         [tuple(bulk._value(v) for v in row[:3]) + (issuance_id,)
                          + tuple(bulk._value(v) for v in row[4:]) for row in rows])
        conn.execute("COMMIT")
    else:
        with bulk.conn.transaction(), bulk.conn.cursor() as cursor:
            issuance_id = cursor.execute(f"INSERT INTO issuance {issuance_columns} VALUES (%s, 'supplementary', %s, "
                                         "NULL, 0, 0, 0, %s) RETURNING id", (programme_id, period, now)).fetchone()[0]
            with cursor.copy(f"COPY voucher ({', '.join(VOUCHER_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row[:3] + (issuance_id,) + row[4:])
    elapsed = time.perf_counter() - began
    totals = bulk.execute("SELECT COUNT(*), COALESCE(SUM(face_value_fen), 0) FROM voucher WHERE issuance_id = ?",
                          (issuance_id,))[0]
    bulk.execute("DELETE FROM voucher WHERE issuance_id = ?", (issuance_id,))
    bulk.execute("DELETE FROM issuance WHERE id = ?", (issuance_id,))
    bulk.vacuum("voucher", "issuance")
    return elapsed, int(totals[0]), int(totals[1])


def time_app(app, admin, programme_id: int, period: str, now):
    from marketplace.db import db, transaction
    from marketplace.programmes.models import Programme

    with app.app_context():
        programme = db.session.get(Programme, programme_id)
        began = time.perf_counter()
        with transaction():
            result = issuance.issue_monthly(programme=programme, period=period, actor=admin, now=now)
        elapsed = time.perf_counter() - began
        db.session.remove()
    return elapsed, result


def run(options: Options, backend: str) -> dict:
    recipients, item_count = int(options.size("issue_recipients")), int(options.size("issue_items"))
    out(f"\n== 2. monthly issuance ({backend}): {recipients:,} eligible recipients × {item_count} vouchers")
    with stage(options, backend, "issue") as staged:
        app, admin, url, now = staged.app, staged.admin, staged.url, staged.now
        items = [(f"BI-{index + 1}", PRICES[index % len(PRICES)], 1) for index in range(item_count)]
        budget = recipients * sum(price for _code, price, _quota in items) * 3
        programme_id = setup_programme(app, items=items, choice_required=False, budget_fen=budget,
                                       eligibility={"min_age": 60, "tags_any": ["disabled", "low_income",
                                                                                "extreme_poverty", "advanced_age",
                                                                                "living_alone"]}, now=now)
        period = current_period(now)
        with Bulk(url, checkpoints=not options.smoke) as bulk:
            load_recipients(bulk, recipients, now)
            bulk.analyze()
            rows = reference_rows(app, bulk, programme_id, period, now)
            note(f"{recipients:,} recipients loaded; {len(rows):,} voucher rows to write")
            bulk.checkpoint()
            ref_seconds, ref_count, ref_total = time_reference(bulk, rows, programme_id, period, now)
            bulk.checkpoint()
            app_seconds, result = time_app(app, admin, programme_id, period, now)
            bulk.checkpoint()
    same = ref_count == result.vouchers and ref_total == result.committed_fen
    ratio = app_seconds / ref_seconds if ref_seconds else None
    target = TARGETS["issuance_ratio_max"]
    met = ratio is not None and ratio <= target
    out(table(["backend", "run", "vouchers", "seconds", "vouchers/s"],
              [[backend, "reference (COPY)" if backend == "postgresql" else "reference (executemany)", fmt(ref_count),
                fmt(ref_seconds, 2), fmt(ref_count / ref_seconds, 0)],
               [backend, "issue_monthly", fmt(result.vouchers), fmt(app_seconds, 2),
                fmt(result.vouchers / app_seconds, 0)]]))
    out(f"ratio app/reference = {fmt(ratio, 2)} (target ≤ {target:g}: {verdict(met)}); same rows: {verdict(same)}")
    write_result(options, "issuance", backend, {
        "recipients": recipients, "items": item_count, "reference_seconds": ref_seconds,
        "reference_vouchers": ref_count,
        "reference_total_fen": ref_total, "app_seconds": app_seconds, "app_vouchers": result.vouchers,
        "app_total_fen": result.committed_fen, "ratio": ratio, "target_ratio_max": target, "met": met,
        "same_rows": same})
    return {"benchmark": "2. issuance", "backend": backend,
            "figure": f"{fmt(app_seconds, 2)} s vs {fmt(ref_seconds, 2)} s = {fmt(ratio, 2)}× "
                      f"({fmt(result.vouchers)} vouchers)",
            "ok": met and same}

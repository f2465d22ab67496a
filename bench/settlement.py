"""Benchmark 3: drafting a month's settlements against the raw SQL aggregation and update.

Data (bulk, set-based; see datagen.py): `settle_providers` approved, enrolled providers, one month
(the previous one) of `settle_redemptions` completed redemptions of redeemed vouchers spread over
them and over the month, a rating for every third redemption (provider means from 3.0 to 5.0, and
`rating_aggregate` summed from those rows), and per provider two upheld and one rejected complaint
about its redemptions, one upheld complaint about no redemption, and for every tenth provider an
open complaint that holds one redemption out of settlement.

Reference, one transaction of raw SQL:
1. INSERT INTO settlement … SELECT provider_id, COUNT(*), SUM(face_value_fen) FROM the settleable
   redemptions (completed, unsettled, delivered before the month's end, not held) GROUP BY provider_id;
2. UPDATE redemption SET settlement_id = settlement.id FROM settlement WHERE … (the same condition);
3. the ratings per settlement and the upheld complaints per provider in two aggregate queries;
4. the scores, pay percent and net computed in Python with the README's formula, written back with one
   executemany UPDATE; COMMIT.

App: `vouchers.settlement.create_settlements` inside `transaction()`, timed to the commit, without the
market-integrity detection that runs before a draft (`detect=False`; bench/anomalies.py measures it).

Each run starts from the same table shape: settlement_id reset to NULL, settlements deleted, the
tables vacuumed (PostgreSQL) and a CHECKPOINT. Both runs must produce the same settlements (provider,
count, gross, score, pay percent, net). Target: app ≤ 2 × reference.
"""

import math
import time
from fractions import Fraction

from bench.common import TARGETS, Options, fmt, note, out, stage, table, verdict, write_result
from bench.datagen import (
    Bulk,
    load_complaints,
    load_providers,
    load_recipients,
    load_redeemed_month,
    month_instants,
    previous_period,
    provider_items,
    setup_programme,
)
from vouchers.service import settlement

ITEMS = [("BS-MEAL", 1200, 30), ("BS-BATH", 5000, 2), ("BS-CLEAN", 3500, 4)]
SETTLEABLE = ("r.programme_id = ? AND r.status = 'completed' AND r.settlement_id IS NULL AND r.delivered_at < ? "
              "AND NOT EXISTS (SELECT 1 FROM complaint c WHERE c.redemption_id = r.id AND c.status = 'open')")


def _half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def score(rules: list[dict], count: int, gross: int, rated: int, total: int, upheld: int) -> tuple:
    """(satisfaction, complaint score, performance score, pay percent, net, flagged) as the README defines."""
    satisfaction = Fraction(75) if not rated else (Fraction(total, rated) - 1) / 4 * 100
    complaint = max(Fraction(0), 100 - Fraction(10 * upheld * 100, count))
    performance = min(100, _half_up(Fraction(7, 10) * satisfaction + Fraction(3, 10) * complaint))
    ordered = sorted(rules, key=lambda rule: rule["min_score"])
    rule = [r for r in ordered if r["min_score"] <= performance][-1]
    return (_half_up(satisfaction), _half_up(complaint), performance, rule["pay_percent"],
            gross * rule["pay_percent"] // 100, len(ordered) > 1 and rule is ordered[0])


def reference(bulk: Bulk, *, programme_id: int, period: str, rules: list[dict], admin_id: int, now) -> float:
    start, end = month_instants(period)
    sql = (lambda s: s) if bulk.sqlite else (lambda s: s.replace("?", "%s"))
    v = bulk._value
    began = time.perf_counter()
    with bulk.transaction() as cursor:
        cursor.execute(sql(
            "INSERT INTO settlement (programme_id, provider_id, period, status, redemptions_count, gross_fen, "
            "satisfaction_score, complaint_score, upheld_complaints, performance_score, pay_percent, net_fen, "
            "flagged_for_termination, created_at, created_by) "
            "SELECT r.programme_id, r.provider_id, ?, 'draft', COUNT(*), SUM(r.face_value_fen), 0, 0, 0, 0, 0, 0, ?, "
            f"?, ? FROM redemption r WHERE {SETTLEABLE} GROUP BY r.programme_id, r.provider_id"),
            (period, v(False), v(now), admin_id, programme_id, v(end)))
        cursor.execute(sql(
            "UPDATE redemption SET settlement_id = s.id FROM settlement s WHERE s.programme_id = ? AND s.period = ? "
            "AND s.status = 'draft' AND s.provider_id = redemption.provider_id AND "
            + SETTLEABLE.replace("r.", "redemption.")),
            (programme_id, period, programme_id, v(end)))
        cursor.execute(sql("SELECT id, provider_id, redemptions_count, gross_fen FROM settlement "
                           "WHERE programme_id = ? AND period = ?"), (programme_id, period))
        drafts = cursor.fetchall()
        cursor.execute(sql("SELECT r.settlement_id, COUNT(*), SUM(t.score) FROM rating t "
                           "JOIN redemption r ON r.id = t.redemption_id JOIN settlement s ON s.id = r.settlement_id "
                           "WHERE s.programme_id = ? AND s.period = ? GROUP BY r.settlement_id"),
                       (programme_id, period))
        ratings = {sid: (int(count), int(total)) for sid, count, total in cursor.fetchall()}
        cursor.execute(sql(
            "SELECT c.provider_id, COUNT(*) FROM complaint c LEFT JOIN redemption r ON r.id = c.redemption_id "
            "LEFT JOIN settlement s ON s.id = r.settlement_id "
            "WHERE c.status = 'resolved' AND c.upheld = ? AND ((s.programme_id = ? AND s.period = ?) OR "
            "(c.redemption_id IS NULL AND c.created_at >= ? AND c.created_at < ?)) GROUP BY c.provider_id"),
            (v(True), programme_id, period, v(start), v(end)))
        upheld = dict(cursor.fetchall())
        updates = []
        for sid, provider_id, count, gross in drafts:
            rated, total = ratings.get(sid, (0, 0))
            sat, comp, perf, pay, net, flagged = score(rules, count, gross, rated, total, upheld.get(provider_id, 0))
            updates.append((sat, comp, upheld.get(provider_id, 0), perf, pay, net, v(flagged), sid))
        cursor.executemany(sql("UPDATE settlement SET satisfaction_score = ?, complaint_score = ?, "
                               "upheld_complaints = ?, performance_score = ?, pay_percent = ?, net_fen = ?, "
                               "flagged_for_termination = ? WHERE id = ?"), updates)
    return time.perf_counter() - began


def outcome(bulk: Bulk, programme_id: int, period: str) -> dict:
    return {row[0]: tuple(row[1:]) for row in bulk.execute(
        "SELECT provider_id, redemptions_count, gross_fen, performance_score, pay_percent, net_fen FROM settlement "
        "WHERE programme_id = ? AND period = ? ORDER BY provider_id", (programme_id, period))}


def reset(bulk: Bulk) -> None:
    bulk.execute("UPDATE redemption SET settlement_id = NULL WHERE settlement_id IS NOT NULL")
    bulk.execute("DELETE FROM settlement")
    bulk.vacuum("redemption", "settlement")
    bulk.checkpoint()


def run(options: Options, backend: str) -> dict:
    from marketplace.db import db, transaction
    from marketplace.programmes.models import Programme

    count, providers = int(options.size("settle_redemptions")), int(options.size("settle_providers"))
    out(f"\n== 3. settlement ({backend}): {count:,} redemptions across {providers:,} providers")
    with stage(options, backend, "settle") as staged:
        app, admin, url, now = staged.app, staged.admin, staged.url, staged.now
        period = previous_period(now)
        programme_id = setup_programme(app, items=ITEMS, choice_required=True, budget_fen=10**11, now=now)
        with app.app_context():
            rules = db.session.get(Programme, programme_id).settlement_rules
            db.session.remove()
        built = time.perf_counter()
        with Bulk(url, checkpoints=not options.smoke) as bulk:
            provider_ids = load_providers(bulk, providers, [code for code, _p, _q in ITEMS], programme_id, now,
                                          items_each=2, enrol_all=True)
            recipients = load_recipients(bulk, max(100, min(50_000, count // 20)), now)
            month = load_redeemed_month(bulk, programme_id=programme_id, period=period, count=count,
                                        provider_ids=provider_ids, offered=provider_items(bulk, provider_ids),
                                        prices={code: price for code, price, _q in ITEMS}, recipients=recipients,
                                        scanned_by=admin.id, now=now, rated_every=3)
            complaints = load_complaints(bulk, provider_ids=provider_ids, first_redemption=month["first_redemption"],
                                         redemptions=count, period=period, created_by=admin.id, now=now)
            bulk.analyze()
            note(f"built in {time.perf_counter() - built:.0f}s: {len(provider_ids):,} providers, {count:,} "
                 f"redemptions, {month['ratings']:,} ratings, {complaints['complaints']:,} complaints "
                 f"({complaints['held']} holding a redemption)")
            reset(bulk)  # the same table shape before each run
            ref_seconds = reference(bulk, programme_id=programme_id, period=period, rules=rules, admin_id=admin.id,
                                    now=now)
            expected = outcome(bulk, programme_id, period)
            reset(bulk)
            with app.app_context():
                programme = db.session.get(Programme, programme_id)
                began = time.perf_counter()
                with transaction():
                    drafts = settlement.create_settlements(programme=programme, period=period,
                                                                   evaluations={}, actor=admin, now=now,
                                                                   detect=False)
                app_seconds = time.perf_counter() - began
                db.session.remove()
            actual = outcome(bulk, programme_id, period)
            settled = sum(row[0] for row in actual.values())
    same = expected == actual
    mismatches = [pid for pid in set(expected) | set(actual) if expected.get(pid) != actual.get(pid)]
    ratio = app_seconds / ref_seconds if ref_seconds else None
    target = TARGETS["settlement_ratio_max"]
    met = ratio is not None and ratio <= target
    out(table(["backend", "run", "settlements", "redemptions", "seconds"],
              [[backend, "reference (raw SQL)", fmt(len(expected)), fmt(sum(r[0] for r in expected.values())),
                fmt(ref_seconds, 2)],
               [backend, "create_settlements", fmt(len(drafts)), fmt(settled), fmt(app_seconds, 2)]]))
    out(f"ratio app/reference = {fmt(ratio, 2)} (target ≤ {target:g}: {verdict(met)}); same settlements: "
        f"{verdict(same)}" + (f" (differ for providers {sorted(mismatches)[:5]})" if mismatches else ""))
    write_result(options, "settlement", backend, {
        "redemptions": count, "providers": len(provider_ids), "ratings": month["ratings"], **complaints,
        "period": period, "reference_seconds": ref_seconds, "app_seconds": app_seconds, "settlements": len(drafts),
        "settled_redemptions": settled, "ratio": ratio, "target_ratio_max": target, "met": met, "same": same,
        "mismatched_providers": sorted(mismatches)[:20]})
    return {"benchmark": "3. settlement", "backend": backend,
            "figure": f"{fmt(app_seconds, 2)} s vs {fmt(ref_seconds, 2)} s = {fmt(ratio, 2)}× ({fmt(settled)} lines)",
            "ok": met and same}

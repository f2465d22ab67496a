"""Benchmark 7: market-integrity detection over a month against the raw SQL of the same rules (issue 18).

Data (bulk, see datagen.py and below): `anomaly_providers` approved, enrolled providers offering three items
(meals 30 minutes by default, baths 60 with a 20-minute minimum, cleaning with no default: the 30-minute
fallback), each with staff logins working realistic days — up to ten services a day, 75 minutes apart,
every login its own 30 recipients — for `anomaly_redemptions` completed redemptions of the previous month;
a rating (by one of 20 admins' phone follow-ups) for every third. Planted, in proportion to the size: services
at a second provider overlapping a recipient's (and so their login's day), three quick services late in a
login's evening, recipients recorded as dead mid-month, providers over their capacity, providers whose month
ends in a burst, providers proving presence by typed codes 45 % of the time, baths recorded too short,
providers rated by one admin alone, runs of identical scores a minute apart with a burst of complaints.

Reference, one transaction of raw SQL written by hand for each backend: each rule's query (the same
algorithms: a self-join bounded in time for overlaps, sliding window frames for the hour, window functions
for runs; local dates by the fixed +08:00 of Asia/Shanghai), the month-end z-scores and the grouping in
Python, then the flags inserted (evidence `{}`) and their redemptions linked with executemany; COMMIT.

App: `vouchers.service.anomaly_detection.detect_anomalies` inside `transaction()`, timed to the commit.

Each run starts from the same tables (flags deleted, vacuumed on PostgreSQL, a CHECKPOINT); the reference
runs once untimed to warm the caches, then reference and app alternate for `anomaly_rounds` rounds and the
best time of each counts. Both must keep the same flags: the same (rule, subject) with the same redemptions.
Target: app ≤ 2 × reference.
"""

import json
import random
import statistics
import time
from datetime import UTC, date, datetime, timedelta

from bench.common import Options, fmt, note, out, stage, table, verdict, write_result
from bench.datagen import (
    LOCAL,
    Bulk,
    load_providers,
    load_recipients,
    month_days,
    month_instants,
    previous_period,
    provider_items,
    setup_programme,
)

ITEMS = [("BA-MEAL", 1200, 60), ("BA-BATH", 5000, 8), ("BA-CLEAN", 3500, 16)]
DEFAULT_MINUTES = {"BA-MEAL": 30, "BA-BATH": 60, "BA-CLEAN": None}
RECORDED_MINUTES = {"BA-MEAL": 35, "BA-BATH": 55, "BA-CLEAN": None}
MINIMUM = ("BA-BATH", 20)
FALLBACK = 30
PER_LOGIN = 250  # services a login does in a month, before the trim to the size asked for
RECIPIENTS_PER_LOGIN = 30
SLOT_MINUTES = 75
ADMINS = 20
TARGET_RATIO = 2.0
RULE_ORDER = ("overlapping_service", "served_after_exit", "staff_velocity", "over_capacity", "month_end_burst",
              "typed_code_share", "short_duration", "rating_pattern")


# --- data ---------------------------------------------------------------------------------------------------

def _local(day: date, minutes: int) -> datetime:
    return (datetime(day.year, day.month, day.day, tzinfo=LOCAL) + timedelta(minutes=minutes)).astimezone(UTC)


def build(bulk: Bulk, *, app, programme_id: int, period: str, count: int, providers: int, now: datetime) -> dict:
    """Load the month; returns what was planted."""
    rng = random.Random(18)
    for code, minutes in DEFAULT_MINUTES.items():
        bulk.execute("UPDATE service_item SET default_duration_minutes = ? WHERE code = ?", (minutes, code))
    bulk.execute("UPDATE programme_item SET min_duration_minutes = ? WHERE programme_id = ? AND item_code = ?",
                 (MINIMUM[1], programme_id, MINIMUM[0]))
    provider_ids = load_providers(bulk, providers, [code for code, _p, _q in ITEMS], programme_id, now, items_each=3,
                                  enrol_all=True)
    offered = provider_items(bulk, provider_ids)
    logins_each = max(1, -(-count // (providers * PER_LOGIN)))
    first_user = bulk.next_id("user_account")
    logins = []  # (login id, provider id)
    users = []
    for index in range(providers * logins_each + ADMINS):
        uid = first_user + index
        if index < providers * logins_each:
            pid = provider_ids[index // logins_each]
            logins.append((uid, pid))
            users.append((uid, f"bench-staff-{uid}", "!", "provider", None, pid, True, False, now))
        else:
            users.append((uid, f"bench-caller-{uid}", "!", "admin", None, None, True, False, now))
    bulk.load("user_account", ["id", "username", "password_hash", "role", "region_code", "provider_id", "active",
                               "provider_manager", "created_at"], users)
    bulk.fix_sequences("user_account")
    admins = [row[0] for row in users[len(logins):]]
    first_recipient, recipient_count = load_recipients(bulk, len(logins) * RECIPIENTS_PER_LOGIN, now)

    first_day, last_day = month_days(period)
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    burst_providers = set(provider_ids[3::40])
    typed_providers = set(provider_ids[5::25])
    phone_providers = set(provider_ids[7::60])
    run_providers = set(provider_ids[11::80])
    per_day = min(10, -(-count // (len(logins) * len(days))) + 1)
    plan = []  # (login, provider, recipient, item, delivered_at, minutes, presence)
    for position, (login, pid) in enumerate(logins):
        pool = first_recipient + position * RECIPIENTS_PER_LOGIN
        seq = 0
        for day_index, day in enumerate(days):
            if pid in burst_providers:
                slots = 10 if day_index >= len(days) - 3 else (per_day if day_index % 4 == 0 else 0)
            else:
                slots = max(0, min(10, per_day + (position * 7 + day_index * 3) % 5 - 2))
            for slot in range(slots):
                codes = offered[pid]
                code = codes[seq % len(codes)]
                minutes = RECORDED_MINUTES[code]
                if code == MINIMUM[0] and seq % 97 == 0:
                    minutes = 10
                typed = seq % 20 < 9 if pid in typed_providers else seq % 12 == 0
                presence = ("voucher_card" if seq % 3 == 0 else "typed_code") if typed else "presence_code"
                plan.append((login, pid, pool + seq % RECIPIENTS_PER_LOGIN, code,
                             _local(day, 8 * 60 + slot * SLOT_MINUTES + (seq * 13) % 10), minutes, presence))
                seq += 1
    rng.shuffle(plan)
    del plan[count:]
    extra = max(2, count // 20_000)
    planted = {"overlapping": 0, "velocity": 0, "deceased": 0}
    by_login = {}
    for row in plan:
        by_login.setdefault(row[0], row)
    login_rows = list(by_login.values())
    for k in range(extra):
        # A second provider's login serves a recipient ten minutes after the first one did.
        login, pid, rid, _code, at, _minutes, _presence = plan[(k * 7919) % len(plan)]
        other_login, other_pid = logins[(logins.index((login, pid)) + len(logins) // 2 + 1) % len(logins)]
        if other_pid != pid:
            plan.append((other_login, other_pid, rid, offered[other_pid][0], at + timedelta(minutes=10), 30,
                         "presence_code"))
            planted["overlapping"] += 1
        # Three quick services late in one login's evening, for one of its recipients.
        login, pid, rid, code, at, _minutes, _presence = login_rows[(k * 31) % len(login_rows)]
        evening = _local(at.astimezone(LOCAL).date(), 21 * 60)
        for n in range(3):
            plan.append((login, pid, rid, code, evening + timedelta(minutes=10 * n), 30, "presence_code"))
        planted["velocity"] += 1

    start, _end = month_instants(period)
    issuance_id = bulk.next_id("issuance")
    bulk.load("issuance", ["id", "programme_id", "kind", "period", "monthly_period", "recipients", "vouchers",
                           "committed_fen", "created_at", "created_by"],
              [(issuance_id, programme_id, "supplementary", period, None, recipient_count, len(plan), 0, start,
                admins[0])])
    bulk.fix_sequences("issuance")
    prices = {code: price for code, price, _q in ITEMS}
    first_voucher, first_redemption = bulk.next_id("voucher"), bulk.next_id("redemption")
    bulk.load("voucher", ["id", "programme_id", "recipient_id", "item_code", "issuance_id", "face_value_fen",
                          "copay_fen", "valid_from", "valid_until", "status", "issued_at", "status_changed_at"],
              ((first_voucher + index, programme_id, rid, code, issuance_id, prices[code] - prices[code] // 5,
                prices[code] // 5, first_day, last_day, "redeemed", start, at)
               for index, (_l, _p, rid, code, at, _m, _pr) in enumerate(plan)))
    bulk.load("redemption", ["id", "voucher_id", "programme_id", "provider_id", "recipient_id", "item_code",
                             "scanned_by", "presence", "face_value_fen", "copay_fen", "delivered_at",
                             "duration_minutes", "status", "created_at"],
              ((first_redemption + index, first_voucher + index, programme_id, pid, rid, code, login, presence,
                prices[code] - prices[code] // 5, prices[code] // 5, at, minutes, "completed", at)
               for index, (login, pid, rid, code, at, minutes, presence) in enumerate(plan)))
    bulk.fix_sequences("voucher", "redemption")

    # Ratings: every third service, a day later, by one of the admins' phone follow-ups; the phone providers'
    # by one admin alone; six of each run provider's at night mid-month, a minute apart, all fives.
    first_rating = bulk.next_id("rating")
    rows, rated_of = [], {}
    for index, (_login, pid, rid, code, at, _m, _pr) in enumerate(plan):
        if index % 3:
            continue
        caller = admins[0] if pid in phone_providers else admins[1 + index % (ADMINS - 1)]
        rated_of.setdefault(pid, []).append(len(rows))
        rows.append([first_rating + len(rows), first_redemption + index, pid, programme_id, code, rid,
                     rng.choice((3, 4, 4, 5, 5, 5, 2, 1)), None, "phone_followup", caller,
                     at + timedelta(days=1, minutes=index % 60)])
    night = _local(days[len(days) // 2], 3 * 60)
    for pid in sorted(run_providers):
        for n, position in enumerate(rated_of.get(pid, [])[:6]):
            rows[position][6], rows[position][10] = 5, night + timedelta(minutes=n)
    bulk.load("rating", ["id", "redemption_id", "provider_id", "programme_id", "item_code", "recipient_id", "score",
                         "comment", "source", "rated_by", "created_at"], (tuple(row) for row in rows))
    bulk.fix_sequences("rating")
    complaints = [(pid, None, None, "服务不到位", "open", None, None, _local(days[2], 600 + 60 * n), admins[0])
                  for pid in sorted(run_providers | phone_providers) for n in range(3)]
    bulk.load("complaint", ["provider_id", "recipient_id", "redemption_id", "text", "status", "upheld", "resolution",
                            "created_at", "created_by"], complaints)

    # Capacity: half as much again as each provider's month, but 10 % short for every fiftieth provider.
    services = dict(bulk.execute("SELECT provider_id, COUNT(*) FROM redemption WHERE programme_id = ? "
                                 "GROUP BY provider_id", (programme_id,)))
    short = set(provider_ids[9::50])
    for pid, n in services.items():
        bulk.execute("UPDATE provider SET capacity = ? WHERE id = ?", (max(1, n * 9 // 10 if pid in short
                                                                          else n * 3 // 2), pid))
    # Deaths recorded mid-month.
    middle = days[len(days) // 2]
    dead = [first_recipient + k * 97 for k in range(extra)]
    for rid in dead:
        bulk.execute("UPDATE recipient SET status = 'deceased', status_effective_on = ? WHERE id = ?", (middle, rid))
    planted["deceased"] = len(dead)
    bulk.analyze()
    return {"redemptions": len(plan), "providers": len(provider_ids), "logins": len(logins),
            "recipients": recipient_count, "ratings": len(rows), "planted": planted}


# --- the reference: raw SQL ---------------------------------------------------------------------------------

class Raw:
    """One backend's spelling of the few things the two disagree on."""

    def __init__(self, sqlite: bool):
        self.sqlite = sqlite

    def sql(self, statement: str) -> str:
        return statement if self.sqlite else statement.replace("?", "%s")

    def epoch(self, column: str) -> str:
        if self.sqlite:
            return f"CAST(strftime('%s', {column}) AS INTEGER)"
        return f"CAST(FLOOR(EXTRACT(EPOCH FROM {column})) AS BIGINT)"

    def shift(self, column: str, minutes: int) -> str:
        if self.sqlite:
            return f"strftime('%Y-%m-%d %H:%M:%f', {column}, '{minutes:+d} minutes')"
        return f"({column} + INTERVAL '{minutes} minutes')"

    def local_date(self, column: str) -> str:
        if self.sqlite:
            return f"date({column}, '+8 hours')"
        return f"CAST(({column} AT TIME ZONE 'Asia/Shanghai') AS DATE)"


IN_MONTH = "{a}.programme_id = ? AND {a}.status = 'completed' AND {a}.delivered_at >= ? AND {a}.delivered_at < ?"


def reference(bulk: Bulk, *, programme_id: int, period: str, parameters: dict, now: datetime) -> float:
    """Every rule in raw SQL, the flags inserted and linked, in one transaction; the seconds it took."""
    raw = Raw(bulk.sqlite)
    start, end = month_instants(period)
    v = bulk._value
    month = (programme_id, v(start), v(end))

    def in_month(alias: str) -> str:
        return IN_MONTH.format(a=alias)

    began = time.perf_counter()
    found: list[tuple[str, str, list[int], int | None, int | None, int | None]] = []
    with bulk.transaction() as cursor:
        def rows(statement: str, params: tuple) -> list:
            cursor.execute(raw.sql(statement), params)
            return cursor.fetchall()

        minutes_a = f"COALESCE(a.duration_minutes, ia.default_duration_minutes, {FALLBACK})"
        minutes_b = f"COALESCE(b.duration_minutes, ib.default_duration_minutes, {FALLBACK})"
        # 1. overlapping_service
        longest = rows(f"SELECT MAX({minutes_a}) FROM redemption a JOIN service_item ia ON ia.code = a.item_code "
                       f"WHERE {in_month('a')}", month)[0][0]
        grace = parameters["overlapping_service"]["grace_minutes"] * 60
        if longest is not None:
            bound = int(longest) + 1
            for kind, same, different in (("recipient", "b.recipient_id = a.recipient_id",
                                           "b.provider_id <> a.provider_id"),
                                          ("login", "b.scanned_by = a.scanned_by", "b.recipient_id <> a.recipient_id")):
                key = "a.recipient_id" if kind == "recipient" else "a.scanned_by"
                pairs = rows(
                    f"SELECT {key}, a.id, b.id, a.provider_id, b.provider_id FROM redemption a "
                    f"JOIN service_item ia ON ia.code = a.item_code "
                    f"JOIN redemption b ON {same} AND b.delivered_at >= {raw.shift('a.delivered_at', -bound)} "
                    f"AND b.delivered_at <= {raw.shift('a.delivered_at', bound)} AND b.id > a.id AND {different} "
                    f"AND {in_month('b')} JOIN service_item ib ON ib.code = b.item_code "
                    f"WHERE {in_month('a')} AND {raw.epoch('a.delivered_at')} - {minutes_a} * 60 + ? "
                    f"< {raw.epoch('b.delivered_at')} AND {raw.epoch('b.delivered_at')} - {minutes_b} * 60 + ? "
                    f"< {raw.epoch('a.delivered_at')} AND {minutes_a} * 60 > ? AND {minutes_b} * 60 > ?",
                    month + month + (grace,) * 4)
                grouped: dict[int, tuple[set, set]] = {}
                for subject, id_a, id_b, provider_a, provider_b in pairs:
                    ids, providers = grouped.setdefault(subject, (set(), set()))
                    ids.update((id_a, id_b))
                    providers.update((provider_a, provider_b))
                for subject, (ids, providers) in grouped.items():
                    found.append(("overlapping_service", f"{kind}:{subject}", sorted(ids),
                                  next(iter(providers)) if len(providers) == 1 else None,
                                  subject if kind == "recipient" else None, subject if kind == "login" else None))
        # 2. served_after_exit
        grouped = {}
        for rid, pid, redemption_id in rows(
                f"SELECT a.recipient_id, a.provider_id, a.id FROM redemption a "
                f"JOIN recipient p ON p.id = a.recipient_id WHERE a.recipient_id IN (SELECT id FROM recipient "
                f"WHERE status IN ('moved', 'deceased') AND status_effective_on IS NOT NULL) AND {in_month('a')} "
                f"AND p.status IN ('moved', 'deceased') AND p.status_effective_on IS NOT NULL "
                f"AND {raw.local_date('a.delivered_at')} > p.status_effective_on", month):
            grouped.setdefault((rid, pid), []).append(redemption_id)
        for (rid, pid), ids in grouped.items():
            found.append(("served_after_exit", f"recipient:{rid}:provider:{pid}", sorted(ids), pid, rid, None))
        # 3. staff_velocity: sliding frames over seconds from the month's start
        velocity = parameters["staff_velocity"]
        seconds = f"CAST({raw.epoch('a.delivered_at')} - {int(start.timestamp())} AS INTEGER)"
        frame = "PARTITION BY a.scanned_by ORDER BY {s} RANGE BETWEEN CURRENT ROW AND 3599 FOLLOWING"
        grouped = {}
        for login, pid, redemption_id in rows(
                "SELECT scanned_by, provider_id, id FROM (SELECT h.*, MAX(h.starts) OVER (PARTITION BY h.scanned_by "
                "ORDER BY h.at RANGE BETWEEN 3599 PRECEDING AND CURRENT ROW) AS held FROM (SELECT q.*, CASE WHEN "
                "q.hour_minutes > ? AND q.hour_count >= ? THEN 1 ELSE 0 END AS starts FROM (SELECT a.id, "
                f"a.scanned_by, a.provider_id, {seconds} AS at, SUM(COALESCE(a.duration_minutes, "
                f"ia.default_duration_minutes, {FALLBACK})) OVER ({frame.format(s=seconds)}) AS hour_minutes, "
                f"COUNT(*) OVER ({frame.format(s=seconds)}) AS hour_count FROM redemption a JOIN service_item ia "
                f"ON ia.code = a.item_code WHERE {in_month('a')}) q) h) m WHERE held = 1",
                (velocity["minutes_per_hour"], velocity["min_services"]) + month):
            grouped.setdefault((login, pid), []).append(redemption_id)
        for (login, pid), ids in grouped.items():
            found.append(("staff_velocity", f"login:{login}", sorted(ids), pid, None, login))
        # 4. over_capacity
        tolerance = parameters["over_capacity"]["tolerance_percent"]
        over = rows(f"SELECT c.provider_id FROM (SELECT a.provider_id, COUNT(*) AS n FROM redemption a WHERE "
                    f"{in_month('a')} GROUP BY a.provider_id) c JOIN provider p ON p.id = c.provider_id "
                    f"WHERE c.n * 100 > p.capacity * (100 + ?)", month + (tolerance,))
        if over:
            marks = ", ".join("?" for _ in over)
            grouped = {}
            for pid, redemption_id in rows(
                    f"SELECT r.provider_id, r.id FROM (SELECT a.id, a.provider_id, ROW_NUMBER() OVER (PARTITION BY "
                    f"a.provider_id ORDER BY a.delivered_at, a.id) AS nth FROM redemption a WHERE {in_month('a')} "
                    f"AND a.provider_id IN ({marks})) r JOIN provider p ON p.id = r.provider_id "
                    f"WHERE r.nth * 100 > p.capacity * (100 + ?)", month + tuple(p for (p,) in over) + (tolerance,)):
                grouped.setdefault(pid, []).append(redemption_id)
            for pid, ids in grouped.items():
                found.append(("over_capacity", f"provider:{pid}", sorted(ids), pid, None, None))
        # 5. month_end_burst
        burst = parameters["month_end_burst"]
        last_days = max(1, int(burst["last_days"]))
        first_day, last_day = month_days(period)
        burst_start = _local(max(first_day, last_day - timedelta(days=last_days - 1)), 0)
        shares = {pid: (int(b or 0), n) for pid, n, b in rows(
            f"SELECT a.provider_id, COUNT(*), SUM(CASE WHEN a.delivered_at >= ? THEN 1 ELSE 0 END) FROM redemption a "
            f"WHERE {in_month('a')} GROUP BY a.provider_id HAVING COUNT(*) >= ?",
            (v(burst_start),) + month + (burst["min_services"],))}
        flagged = []
        for pid, (b, n) in shares.items():
            others = [ob / on for other, (ob, on) in shares.items() if other != pid]
            if not others:
                continue
            middle = statistics.median(others)
            deviations = [abs(o - middle) for o in others]
            scale = 1.4826 * statistics.median(deviations) or 1.2533 * sum(deviations) / len(deviations)
            if scale and (b / n - middle) / scale > burst["z_threshold"]:
                flagged.append(pid)
        if flagged:
            marks = ", ".join("?" for _ in flagged)
            grouped = {}
            for pid, redemption_id in rows(f"SELECT a.provider_id, a.id FROM redemption a WHERE {in_month('a')} AND "
                                           f"a.delivered_at >= ? AND a.provider_id IN ({marks})",
                                           month + (v(burst_start),) + tuple(flagged)):
                grouped.setdefault(pid, []).append(redemption_id)
            for pid, ids in grouped.items():
                found.append(("month_end_burst", f"provider:{pid}", sorted(ids), pid, None, None))
        # 6. typed_code_share
        typed = parameters["typed_code_share"]
        over = rows(f"SELECT a.provider_id FROM redemption a WHERE {in_month('a')} GROUP BY a.provider_id "
                    f"HAVING COUNT(*) >= ? AND SUM(CASE WHEN a.presence IN ('typed_code', 'voucher_card') THEN 1 "
                    f"ELSE 0 END) * 100 > COUNT(*) * ?", month + (typed["min_services"], typed["max_share_percent"]))
        if over:
            marks = ", ".join("?" for _ in over)
            grouped = {}
            for pid, redemption_id in rows(f"SELECT a.provider_id, a.id FROM redemption a WHERE {in_month('a')} AND "
                                           f"a.presence IN ('typed_code', 'voucher_card') AND a.provider_id IN "
                                           f"({marks})", month + tuple(p for (p,) in over)):
                grouped.setdefault(pid, []).append(redemption_id)
            for pid, ids in grouped.items():
                found.append(("typed_code_share", f"provider:{pid}", sorted(ids), pid, None, None))
        # 7. short_duration
        grouped = {}
        for pid, code, redemption_id in rows(
                f"SELECT a.provider_id, a.item_code, a.id FROM redemption a JOIN programme_item pi ON "
                f"pi.programme_id = a.programme_id AND pi.item_code = a.item_code WHERE {in_month('a')} AND "
                f"pi.min_duration_minutes IS NOT NULL AND a.duration_minutes < pi.min_duration_minutes", month):
            grouped.setdefault((pid, code), []).append(redemption_id)
        for (pid, code), ids in grouped.items():
            found.append(("short_duration", f"provider:{pid}:{code}", sorted(ids), pid, None, None))
        # 8. rating_pattern
        rating = parameters["rating_pattern"]
        rated = (programme_id, v(start), v(end))
        in_ratings = "t.programme_id = ? AND t.created_at >= ? AND t.created_at < ?"
        over = rows(f"SELECT b.provider_id, b.rated_by FROM (SELECT t.provider_id, t.rated_by, COUNT(*) AS phone "
                    f"FROM rating t WHERE {in_ratings} AND t.source = 'phone_followup' GROUP BY t.provider_id, "
                    f"t.rated_by) b JOIN (SELECT t.provider_id, COUNT(*) AS n FROM rating t WHERE {in_ratings} "
                    f"GROUP BY t.provider_id HAVING COUNT(*) >= ?) c ON c.provider_id = b.provider_id "
                    f"WHERE b.phone * 100 > c.n * ?",
                    rated + rated + (rating["min_ratings"], rating["max_phone_share_percent"]))
        providers_found = set()
        if over:
            pairs = set(over)
            marks = ", ".join("?" for _ in pairs)
            grouped = {}
            for pid, caller, redemption_id in rows(
                    f"SELECT t.provider_id, t.rated_by, t.redemption_id FROM rating t WHERE {in_ratings} AND "
                    f"t.source = 'phone_followup' AND t.provider_id IN ({marks})", rated + tuple(p for p, _c in pairs)):
                if (pid, caller) in pairs:
                    grouped.setdefault(pid, []).append(redemption_id)
            for pid, ids in grouped.items():
                found.append(("rating_pattern", f"provider:{pid}:phone", sorted(ids), pid, None,
                              min(c for p, c in pairs if p == pid)))
                providers_found.add(pid)
        run_length = max(2, int(rating["run_length"]))
        order = "ORDER BY t.created_at, t.id"
        members = rows(
            f"WITH rated AS (SELECT t.provider_id, t.redemption_id, t.score, {raw.epoch('t.created_at')} AS at, "
            f"ROW_NUMBER() OVER (PARTITION BY t.provider_id {order}) AS position, ROW_NUMBER() OVER (PARTITION BY "
            f"t.provider_id {order}) - ROW_NUMBER() OVER (PARTITION BY t.provider_id, t.score {order}) AS island "
            f"FROM rating t WHERE {in_ratings}), starts AS (SELECT provider_id, position FROM (SELECT provider_id, "
            f"position, at, LEAD(at, {run_length - 1}) OVER (PARTITION BY provider_id, score, island ORDER BY "
            f"position) AS last_at FROM rated) w WHERE last_at IS NOT NULL AND last_at - at <= ?) "
            f"SELECT DISTINCT r.provider_id, r.redemption_id FROM rated r JOIN starts s ON s.provider_id = "
            f"r.provider_id AND r.position >= s.position AND r.position < s.position + {run_length}",
            rated + (rating["run_minutes"] * 60,))
        grouped = {}
        for pid, redemption_id in members:
            grouped.setdefault(pid, []).append(redemption_id)
        for pid, ids in grouped.items():
            found.append(("rating_pattern", f"provider:{pid}:run", sorted(ids), pid, None, None))
            providers_found.add(pid)
        if providers_found:
            marks = ", ".join("?" for _ in providers_found)
            rows(f"SELECT provider_id, created_by, MIN(created_at) FROM (SELECT c.provider_id, c.created_by, "
                 f"c.created_at, {raw.epoch('c.created_at')} AS at, LEAD({raw.epoch('c.created_at')}, 2) OVER "
                 f"(PARTITION BY c.provider_id, c.created_by ORDER BY c.created_at, c.id) AS later_at FROM complaint c "
                 f"WHERE c.provider_id IN ({marks}) AND c.created_at >= ? AND c.created_at < ?) b WHERE later_at "
                 f"IS NOT NULL AND later_at - at <= 86400 GROUP BY provider_id, created_by",
                 tuple(sorted(providers_found)) + (v(start), v(end)))
        # The flags, then their redemptions.
        severity = {"overlapping_service": "high", "served_after_exit": "high", "typed_code_share": "low",
                    "short_duration": "low"}
        cursor.executemany(raw.sql(
            "INSERT INTO anomaly_flag (programme_id, period, rule, severity, subject, provider_id, recipient_id, "
            "staff_user_id, evidence, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?) "
            "ON CONFLICT DO NOTHING"),
            [(programme_id, period, rule, severity.get(rule, "medium"), subject, pid, rid, login, "{}", v(now))
             for rule, subject, _ids, pid, rid, login in found])
        cursor.execute(raw.sql("SELECT id, rule, subject FROM anomaly_flag WHERE programme_id = ? AND period = ?"),
                       (programme_id, period))
        flag_of = {(rule, subject): flag_id for flag_id, rule, subject in cursor.fetchall()}
        cursor.executemany(raw.sql("INSERT INTO anomaly_flag_redemption (flag_id, redemption_id) VALUES (?, ?)"),
                           [(flag_of[rule, subject], redemption_id) for rule, subject, ids, *_rest in found
                            for redemption_id in ids])
    return time.perf_counter() - began


def flags_kept(bulk: Bulk) -> dict[tuple[str, str], frozenset]:
    kept: dict[tuple[str, str], set] = {}
    for rule, subject, redemption_id in bulk.execute(
            "SELECT f.rule, f.subject, l.redemption_id FROM anomaly_flag f "
            "LEFT JOIN anomaly_flag_redemption l ON l.flag_id = f.id"):
        kept.setdefault((rule, subject), set()).add(redemption_id)
    return {key: frozenset(ids) for key, ids in kept.items()}


def reset(bulk: Bulk) -> None:
    bulk.execute("DELETE FROM anomaly_flag_redemption")
    bulk.execute("DELETE FROM anomaly_flag")
    bulk.vacuum("anomaly_flag", "anomaly_flag_redemption")
    bulk.checkpoint()


def run(options: Options, backend: str) -> dict:
    from marketplace.db import db, transaction
    from marketplace.programmes.integrity import RULES, parameters_for
    from marketplace.programmes.models import Programme
    from vouchers.service.anomaly_detection import detect_anomalies

    count, providers = int(options.size("anomaly_redemptions")), int(options.size("anomaly_providers"))
    rounds = int(options.size("anomaly_rounds"))
    out(f"\n== 7. anomaly detection ({backend}): a month of {count:,} redemptions across {providers:,} providers")
    with stage(options, backend, "anomalies") as staged:
        app, admin, url, now = staged.app, staged.admin, staged.url, staged.now
        period = previous_period(now)
        programme_id = setup_programme(app, items=ITEMS, choice_required=True, budget_fen=10**11, now=now)
        parameters = {rule: parameters_for(None, rule) for rule in RULES}
        began = time.perf_counter()
        with Bulk(url, checkpoints=not options.smoke) as bulk:
            world = build(bulk, app=app, programme_id=programme_id, period=period, count=count, providers=providers,
                          now=now)
            note(f"built in {time.perf_counter() - began:.0f}s: {world['redemptions']:,} redemptions, "
                 f"{world['logins']:,} staff logins, {world['ratings']:,} ratings; planted {world['planted']}")
            reset(bulk)
            reference(bulk, programme_id=programme_id, period=period, parameters=parameters, now=now)  # warm-up
            expected = flags_kept(bulk)
            ref_times, app_times, same = [], [], True
            for _round in range(rounds):
                reset(bulk)
                ref_times.append(reference(bulk, programme_id=programme_id, period=period, parameters=parameters,
                                           now=now))
                same = same and flags_kept(bulk) == expected
                reset(bulk)
                with app.app_context():
                    programme = db.session.get(Programme, programme_id)
                    started = time.perf_counter()
                    with transaction():
                        result = detect_anomalies(programme=programme, period=period, actor=admin, now=now)
                    app_times.append(time.perf_counter() - started)
                    db.session.remove()
                actual = flags_kept(bulk)
                same = same and actual == expected
            by_rule = {rule: sum(1 for (r, _s) in actual if r == rule) for rule in RULE_ORDER}
            linked = sum(len(ids - {None}) for ids in actual.values())
            missing = sorted(set(expected) - set(actual))[:10]
            extra = sorted(set(actual) - set(expected))[:10]
            differing = sorted(key for key in set(expected) & set(actual) if expected[key] != actual[key])[:10]
    ref_seconds, app_seconds = min(ref_times), min(app_times)
    ratio = app_seconds / ref_seconds if ref_seconds else None
    met = ratio is not None and ratio <= TARGET_RATIO
    expected_links = sum(len(ids - {None}) for ids in expected.values())
    out(table(["backend", "run", "flags", "linked redemptions", "best seconds", "all"],
              [[backend, "reference (raw SQL)", fmt(len(expected)), fmt(expected_links),
                fmt(ref_seconds, 2), " ".join(fmt(t, 2) for t in ref_times)],
               [backend, "detect_anomalies", fmt(result.flags_created), fmt(linked), fmt(app_seconds, 2),
                " ".join(fmt(t, 2) for t in app_times)]]))
    out(f"flags by rule: {json.dumps(by_rule)}")
    out(f"ratio app/reference = {fmt(ratio, 2)} (target ≤ {TARGET_RATIO:g}: {verdict(met)}); same flags: "
        f"{verdict(same)}" + (f" (missing {missing}, extra {extra}, differing {differing})" if not same else ""))
    write_result(options, "anomalies", backend, {
        **world, "period": period, "rounds": rounds, "reference_seconds": ref_seconds, "app_seconds": app_seconds,
        "reference_runs": ref_times, "app_runs": app_times, "ratio": ratio, "target_ratio_max": TARGET_RATIO,
        "met": met, "same": same, "flags": len(actual), "flags_by_rule": by_rule, "linked_redemptions": linked,
        "missing": [list(k) for k in missing], "extra": [list(k) for k in extra],
        "differing": [list(k) for k in differing]})
    return {"benchmark": "7. anomalies", "backend": backend,
            "figure": f"{fmt(app_seconds, 2)} s vs {fmt(ref_seconds, 2)} s = {fmt(ratio, 2)}× ({len(actual)} flags)",
            "ok": met and same}

"""Data for the benchmarks: small parts through the service layer, the bulk set-based.

What a benchmark measures is always built the way the product builds it where that is cheap (the
catalogue, the programme, its budget, an admin, the provider that redeems, the recipients of the
redemption benchmark through the CSV import, the vouchers through `issue_monthly`). Millions of rows
(vouchers, redemptions, ratings) would take hours through the service layer, so `Bulk` loads them with
COPY on PostgreSQL and executemany on SQLite, consistently with the service's rules: redeemed
vouchers for completed redemptions, ratings within their redemptions, `rating_aggregate` summed from
the rating rows (never invented), provider prefixes from `region_prefix`.

    bulk = Bulk(url)
    bulk.load("recipient", RECIPIENT_COLUMNS, recipient_rows(1, 100_000, now))
    bulk.fix_sequences("recipient")
"""

import contextlib
import hashlib
import random
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tests.support.databases import psycopg_dsn

REGION = "510131"
LOCAL = ZoneInfo("Asia/Shanghai")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ["秀英", "桂英", "玉兰", "淑珍", "建国", "国华", "德明", "志强", "秀兰", "文华", "春花", "长福", "树林", "凤英"]
TAG_CYCLE = [("advanced_age",), ("living_alone",), ("disabled",), ("low_income",), ("advanced_age", "low_income"),
             ("extreme_poverty",), ("living_alone", "disabled"), ("advanced_age",)]


class Bulk:
    """A raw connection for bulk loads and maintenance (COPY on PostgreSQL, executemany on SQLite)."""

    def __init__(self, url: str, *, checkpoints: bool = True):
        self.sqlite = url.startswith("sqlite")
        self.checkpoints = checkpoints  # off in smoke runs: a CHECKPOINT flushes the whole cluster
        if self.sqlite:
            self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000", "synchronous=NORMAL"):
                self.conn.execute(f"PRAGMA {pragma}")
        else:
            import psycopg
            self.conn = psycopg.connect(psycopg_dsn(url), autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    # --- values as the app stores them ---------------------------------------------------------------

    def _value(self, value):
        if not self.sqlite:
            return value
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", timespec="microseconds")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, bool):
            return int(value)
        return value

    def load(self, table: str, columns: list[str], rows: Iterable[tuple]) -> int:
        """Append *rows* to *table* in one transaction; return how many."""
        count = 0
        if self.sqlite:
            marks = ", ".join("?" for _ in columns)
            self.conn.execute("BEGIN")
            try:
                def converted():
                    nonlocal count
                    for row in rows:
                        count += 1
                        yield tuple(self._value(value) for value in row)
                self.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", converted())
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            return count
        with self.conn.transaction(), self.conn.cursor() as cursor, \
                cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        return count

    @contextlib.contextmanager
    def transaction(self) -> Iterator:
        """A cursor in a transaction of its own, committed at the end of the block (rolled back on an error):
        BEGIN IMMEDIATE … COMMIT on SQLite, psycopg's transaction on PostgreSQL. Its statements take the
        driver's placeholders (`?` on SQLite, `%s` on PostgreSQL) and values as the app stores them."""
        if not self.sqlite:
            with self.conn.transaction(), self.conn.cursor() as cursor:
                yield cursor
            return
        self.conn.execute("BEGIN IMMEDIATE")
        cursor = self.conn.cursor()
        try:
            yield cursor
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            cursor.close()

    def execute(self, statement: str, params: tuple = ()) -> list[tuple]:
        """Run one statement (`?` placeholders) in its own transaction; return its rows."""
        if self.sqlite:
            cursor = self.conn.execute(statement, tuple(self._value(p) for p in params))
        else:
            cursor = self.conn.execute(statement.replace("?", "%s"), params)
        try:
            return cursor.fetchall() if cursor.description else []
        finally:
            cursor.close()

    def scalar(self, statement: str, params: tuple = ()):
        rows = self.execute(statement, params)
        return rows[0][0] if rows else None

    def next_id(self, table: str) -> int:
        return int(self.scalar(f"SELECT COALESCE(MAX(id), 0) FROM {table}")) + 1

    def fix_sequences(self, *tables: str) -> None:
        """After loading explicit ids: move PostgreSQL's sequences past them."""
        if self.sqlite:
            return
        for table in tables:
            self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)")

    def analyze(self) -> None:
        self.execute("ANALYZE")

    def vacuum(self, *tables: str) -> None:
        """Reclaim dead rows between runs so each run starts from the same table shape."""
        if self.sqlite:
            return
        for table in tables:
            self.execute(f"VACUUM (ANALYZE) {table}")

    def checkpoint(self) -> None:
        """Flush dirty pages now, so a checkpoint does not land in the middle of the next measurement."""
        if not self.checkpoints:
            return
        if self.sqlite:
            self.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            self.execute("CHECKPOINT")


# --- months -----------------------------------------------------------------------------------------------

def current_period(now: datetime) -> str:
    return f"{now.astimezone(LOCAL):%Y-%m}"


def previous_period(now: datetime) -> str:
    local = now.astimezone(LOCAL).date()
    return f"{date(local.year, local.month, 1) - timedelta(days=1):%Y-%m}"


def month_instants(period: str) -> tuple[datetime, datetime]:
    """UTC instants at which the local month starts and ends."""
    year, month = (int(part) for part in period.split("-"))
    first = date(year, month, 1)
    following = date(year + (month == 12), month % 12 + 1, 1)
    return (datetime.combine(first, time(0), tzinfo=LOCAL).astimezone(UTC),
            datetime.combine(following, time(0), tzinfo=LOCAL).astimezone(UTC))


def month_days(period: str) -> tuple[date, date]:
    year, month = (int(part) for part in period.split("-"))
    following = date(year + (month == 12), month % 12 + 1, 1)
    return date(year, month, 1), following - timedelta(days=1)


# --- the service-layer part -------------------------------------------------------------------------------

def setup_programme(app, *, items: list[tuple[str, int, int]], choice_required: bool, budget_fen: int,
                    eligibility: dict | None = None, copay: dict | None = None, now: datetime):
    """Catalogue items, an active programme of this year buying them, its budget. Returns the programme id.

    *items*: (code, unit price in fen, monthly quota).
    """
    from marketplace.catalogue import service as catalogue_service
    from marketplace.db import transaction
    from marketplace.programmes import service as programme_service

    with app.app_context(), transaction():
        for code, price, _quota in items:
            catalogue_service.create_item(code=code, name="助餐", category_code="basic_public", unit="次",
                                          standard_price_fen=price + 300, nature="service", actor=None, now=now)
        year = now.astimezone(LOCAL).year
        programme = programme_service.create_programme(
            name=f"基准测试{year}年居家养老服务券", authority="蒲江县民政局", region_code=REGION,
            starts_on=date(year, 1, 1), ends_on=date(year, 12, 31),
            items=[{"item_code": code, "unit_price_fen": price, "monthly_quota": quota}
                   for code, price, quota in items],
            eligibility=eligibility or {"min_age": 60, "tags_any": []},
            copay_percent=copay or {"default": 20, "disabled": 10, "low_income": 5, "extreme_poverty": 0},
            reserved_share_percent=30,
            settlement_rules=[{"min_score": 0, "pay_percent": 60}, {"min_score": 60, "pay_percent": 85},
                              {"min_score": 80, "pay_percent": 100}],
            rating_window_days=30, reversal_window_hours=48, choice_required=choice_required, actor=None, now=now)
        programme_service.amend_budget(programme=programme, amount_fen=budget_fen, reason="基准测试预算", actor=None,
                                       now=now)
        programme_service.activate(programme=programme, actor=None, now=now)
        return programme.id


def recipient_csv(rows: int, *, start: int = 0, rng: random.Random | None = None) -> list[str]:
    """CSV lines (header first) of *rows* valid, distinct elderly residents of the demo county."""
    from marketplace.recipients.idnumber import check_character
    from marketplace.recipients.service import CSV_HEADER

    rng = rng or random.Random(9)
    lines = [",".join(CSV_HEADER) + "\n"]
    base = date(1930, 1, 1)
    for index in range(start, start + rows):
        birth = base + timedelta(days=index // 1000)
        first17 = f"{REGION}{birth:%Y%m%d}{index % 1000:03d}"
        tags = ";".join(TAG_CYCLE[index % len(TAG_CYCLE)])
        phone = f"13{rng.randint(0, 999_999_999):09d}"
        lines.append(f"{rng.choice(SURNAMES)}{rng.choice(GIVEN)},{first17}{check_character(first17)},{phone},"
                     f"{REGION},蒲江县鹤山街道{index % 20 + 1}村{index % 12 + 1}组,{tags}\n")
    return lines


# --- bulk rows --------------------------------------------------------------------------------------------

RECIPIENT_COLUMNS = ["id", "name", "id_number_hash", "id_number_masked", "birth_date", "sex", "phone",
                     "region_code", "address", "status", "created_at", "updated_at"]


def recipient_rows(first_id: int, count: int, now: datetime) -> Iterator[tuple]:
    base = date(1935, 1, 1)
    for offset in range(count):
        rid = first_id + offset
        digest = hashlib.sha256(f"bench-recipient-{rid}".encode()).hexdigest()
        yield (rid, f"{SURNAMES[rid % len(SURNAMES)]}{GIVEN[rid % len(GIVEN)]}", digest,
               f"{REGION}********{rid % 1000:03d}X", base + timedelta(days=rid % 9000),
               "male" if rid % 2 else "female", None, REGION, None, "active", now, now)


def recipient_tag_rows(first_id: int, count: int) -> Iterator[tuple]:
    for offset in range(count):
        rid = first_id + offset
        for tag in TAG_CYCLE[rid % len(TAG_CYCLE)]:
            yield (rid, tag)


PROVIDER_COLUMNS = ["id", "name", "kind", "credit_code", "legal_representative", "phone", "address", "capacity",
                    "status", "created_at", "status_changed_at"]
KINDS = ("social_organisation", "enterprise", "public_institution", "community_organisation", "rural_collective")
PROVIDER_REGIONS = ("510131", "510100", "510132", "510129", "510181")


def provider_rows(first_id: int, count: int, now: datetime, *, unapproved_every: int = 0) -> Iterator[tuple]:
    for offset in range(count):
        pid = first_id + offset
        status = "suspended" if unapproved_every and pid % unapproved_every == 0 else "approved"
        yield (pid, f"基准服务机构{pid:05d}", KINDS[pid % len(KINDS)], f"BENCH{pid:013d}", "张建华",
               f"028-{pid:08d}", "四川省成都市蒲江县", 2000, status, now, now)


def provider_links(first_id: int, count: int, item_codes: list[str], programme_id: int, now: datetime, *,
                   items_each: int, enrol_all: bool = False) -> tuple[list, list, list]:
    """(provider_item rows, provider_region rows, enrolment rows) for providers first_id…"""
    from marketplace.regions import region_prefix

    items, regions, enrolments = [], [], []
    for offset in range(count):
        pid = first_id + offset
        for k in range(min(items_each, len(item_codes))):
            items.append((pid, item_codes[(pid + k) % len(item_codes)]))
        region = PROVIDER_REGIONS[pid % len(PROVIDER_REGIONS)]
        regions.append((pid, region, region_prefix(region)))
        if enrol_all or region in ("510131", "510100") or pid % 3 == 0:  # some serve the programme's region
            enrolments.append((programme_id, pid, now, None))
    return items, regions, enrolments


def load_providers(bulk: Bulk, count: int, item_codes: list[str], programme_id: int, now: datetime, *,
                   items_each: int, unapproved_every: int = 0, enrol_all: bool = False) -> list[int]:
    """Load *count* providers with items, regions and enrolments; return the approved ids."""
    first = bulk.next_id("provider")
    bulk.load("provider", PROVIDER_COLUMNS, provider_rows(first, count, now, unapproved_every=unapproved_every))
    items, regions, enrolments = provider_links(first, count, item_codes, programme_id, now, items_each=items_each,
                                                enrol_all=enrol_all)
    bulk.load("provider_item", ["provider_id", "item_code"], items)
    bulk.load("provider_region", ["provider_id", "region_code", "prefix"], regions)
    bulk.load("enrolment", ["programme_id", "provider_id", "enrolled_at", "enrolled_by"], enrolments)
    bulk.fix_sequences("provider", "enrolment")
    return [pid for pid in range(first, first + count) if not (unapproved_every and pid % unapproved_every == 0)]


def load_recipients(bulk: Bulk, count: int, now: datetime) -> tuple[int, int]:
    first = bulk.next_id("recipient")
    bulk.load("recipient", RECIPIENT_COLUMNS, recipient_rows(first, count, now))
    bulk.load("recipient_tag", ["recipient_id", "tag"], recipient_tag_rows(first, count))
    bulk.fix_sequences("recipient")
    return first, count


def provider_items(bulk: Bulk, provider_ids: list[int]) -> dict[int, list[str]]:
    offered: dict[int, list[str]] = {}
    for pid, code in bulk.execute("SELECT provider_id, item_code FROM provider_item ORDER BY provider_id, item_code"):
        offered.setdefault(pid, []).append(code)
    return {pid: offered[pid] for pid in provider_ids if pid in offered}


def load_redeemed_month(bulk: Bulk, *, programme_id: int, period: str, count: int, provider_ids: list[int],
                        offered: dict[int, list[str]], prices: dict[str, int], recipients: tuple[int, int],
                        scanned_by: int, now: datetime, rated_every: int = 0, settlement_id: int | None = None,
                        seed: int = 7) -> dict:
    """*count* vouchers of *period*, all redeemed by *provider_ids* during the month, and their redemptions.

    Every `rated_every`-th redemption (all when 1, none when 0) gets a rating 1–5 whose mean differs per
    provider. Returns {first_voucher, first_redemption, ratings}.
    """
    rng = random.Random(seed)
    valid_from, valid_until = month_days(period)
    start, end = month_instants(period)
    span = (min(end, now) - start).total_seconds()
    issuance_id = bulk.next_id("issuance")
    bulk.load("issuance", ["id", "programme_id", "kind", "period", "monthly_period", "recipients", "vouchers",
                           "committed_fen", "created_at", "created_by"],
              [(issuance_id, programme_id, "supplementary", period, None, recipients[1], count, 0, start, scanned_by)])
    bulk.fix_sequences("issuance")
    first_voucher, first_redemption = bulk.next_id("voucher"), bulk.next_id("redemption")
    first_recipient, recipient_count = recipients
    plan = []  # (provider, item, recipient, delivered_at) per redemption, in order
    providers = len(provider_ids)
    for index in range(count):
        pid = provider_ids[(index * 7919) % providers]
        codes = offered[pid]
        plan.append((pid, codes[index % len(codes)], first_recipient + (index * 104729) % recipient_count,
                     start + timedelta(seconds=span * index / count)))

    def vouchers():
        for index, (_pid, code, rid, delivered) in enumerate(plan):
            price = prices[code]
            yield (first_voucher + index, programme_id, rid, code, issuance_id, price - price // 5, price // 5,
                   valid_from, valid_until, "redeemed", start, delivered)

    def redemptions():
        for index, (pid, code, rid, delivered) in enumerate(plan):
            price = prices[code]
            yield (first_redemption + index, first_voucher + index, programme_id, pid, rid, code, scanned_by,
                   "voucher_card", price - price // 5, price // 5, delivered, 45, "completed", delivered, settlement_id)

    bulk.load("voucher", ["id", "programme_id", "recipient_id", "item_code", "issuance_id", "face_value_fen",
                          "copay_fen", "valid_from", "valid_until", "status", "issued_at", "status_changed_at"],
              vouchers())
    bulk.load("redemption", ["id", "voucher_id", "programme_id", "provider_id", "recipient_id", "item_code",
                             "scanned_by", "presence", "face_value_fen", "copay_fen", "delivered_at",
                             "duration_minutes", "status", "created_at", "settlement_id"], redemptions())
    ratings = 0
    if rated_every:
        mean = {pid: 3.0 + (pid % 9) / 4 for pid in provider_ids}  # 3.0 … 5.0 by provider
        first_rating = bulk.next_id("rating")

        def rating_rows():
            nonlocal ratings
            for index, (pid, code, rid, delivered) in enumerate(plan):
                if index % rated_every:
                    continue
                score = max(1, min(5, round(rng.gauss(mean[pid], 0.8))))
                yield (first_rating + ratings, first_redemption + index, pid, programme_id, code, rid, score, None,
                       "phone_followup", scanned_by, delivered + timedelta(days=1))
                ratings += 1

        bulk.load("rating", ["id", "redemption_id", "provider_id", "programme_id", "item_code", "recipient_id",
                             "score", "comment", "source", "rated_by", "created_at"], rating_rows())
        rebuild_rating_aggregate(bulk)
    bulk.fix_sequences("voucher", "redemption", "rating")
    return {"first_voucher": first_voucher, "first_redemption": first_redemption, "ratings": ratings,
            "issuance_id": issuance_id}


def rebuild_rating_aggregate(bulk: Bulk) -> None:
    """The running totals, summed from the rating rows (as record_rating keeps them)."""
    bulk.execute("DELETE FROM rating_aggregate")
    bulk.execute("INSERT INTO rating_aggregate (provider_id, programme_id, item_code, ratings_count, score_sum, "
                 "satisfied_count) SELECT provider_id, programme_id, item_code, COUNT(*), SUM(score), "
                 "SUM(CASE WHEN score >= 4 THEN 1 ELSE 0 END) FROM rating "
                 "GROUP BY provider_id, programme_id, item_code")


def load_complaints(bulk: Bulk, *, provider_ids: list[int], first_redemption: int, redemptions: int,
                    period: str, created_by: int, now: datetime) -> dict:
    """Per provider: two upheld complaints about its redemptions, one rejected, one upheld about no
    redemption in the month, and (every tenth provider) one open complaint holding a redemption."""
    start, _end = month_instants(period)
    rows, held = [], 0
    by_provider: dict[int, list[int]] = {}
    providers = len(provider_ids)
    for index in range(min(redemptions, providers * 8)):
        by_provider.setdefault(provider_ids[(index * 7919) % providers], []).append(first_redemption + index)
    for pid, redemption_ids in by_provider.items():
        at = start + timedelta(days=3)
        for k, rid in enumerate(redemption_ids[:3]):
            upheld = k < 2
            rows.append((pid, None, rid, "服务不到位", "resolved", upheld, "已核实", at, created_by, at, created_by))
        rows.append((pid, None, None, "电话投诉：迟到", "resolved", True, "已核实", at, created_by, at, created_by))
        if pid % 10 == 0 and len(redemption_ids) > 3:
            rows.append((pid, None, redemption_ids[3], "待核实", "open", None, None, at, created_by, None, None))
            held += 1
    bulk.load("complaint", ["provider_id", "recipient_id", "redemption_id", "text", "status", "upheld", "resolution",
                            "created_at", "created_by", "resolved_at", "resolved_by"], rows)
    return {"complaints": len(rows), "held": held}


def load_choices(bulk: Bulk, *, programme_id: int, recipients: tuple[int, int], offered: dict[int, list[str]],
                 item_codes: list[str], chosen_by: int, now: datetime) -> int:
    """Every recipient's choice of provider for every item, among the providers offering it (spread evenly),
    with its choice event; returns how many choices."""
    first, count = recipients
    by_item = {code: [pid for pid, codes in offered.items() if code in codes] for code in item_codes}
    rows = [(rid, programme_id, code, by_item[code][(rid * 31 + k) % len(by_item[code])], now, chosen_by)
            for rid in range(first, first + count) for k, code in enumerate(item_codes) if by_item[code]]
    bulk.load("choice", ["recipient_id", "programme_id", "item_code", "provider_id", "chosen_at", "chosen_by"], rows)
    bulk.load("choice_event", ["recipient_id", "programme_id", "item_code", "from_provider_id", "to_provider_id",
                               "chosen_at", "chosen_by", "acted_as"],
              ((rid, pid_, code, None, provider, at, by, "admin") for rid, pid_, code, provider, at, by in rows))
    bulk.fix_sequences("choice_event")
    return len(rows)


def load_redemption_audit(bulk: Bulk, *, first_redemption: int, last_redemption: int, actor_id: int, actor: str,
                          batch: int = 50_000) -> int:
    """The `voucher.redeemed` audit events of redemptions first…last (as redeem records them), chained onto
    the audit trail's head with the app's own hash, so the trail still verifies; returns how many."""
    from marketplace.audit.service import canonical_json, event_hash
    from marketplace.regions import region_prefix

    last_id, prev_hash = bulk.execute("SELECT last_id, last_hash FROM audit_head WHERE id = 1")[0]
    first_id, prefix = int(last_id) + 1, region_prefix(REGION)
    columns = ["id", "at", "actor_id", "actor", "action", "entity", "entity_id", "data", "region_code",
               "region_prefix", "prev_hash", "hash"]
    event_id = first_id
    for low in range(first_redemption, last_redemption + 1, batch):
        rows = []
        for rid, voucher_id, provider_id, presence, face_value, delivered in bulk.execute(
                "SELECT id, voucher_id, provider_id, presence, face_value_fen, delivered_at FROM redemption "
                "WHERE id BETWEEN ? AND ? ORDER BY id", (low, min(low + batch - 1, last_redemption))):
            at = delivered if isinstance(delivered, datetime) else datetime.fromisoformat(delivered)
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
            data = canonical_json({"redemption_id": rid, "provider_id": provider_id, "presence": presence,
                                   "face_value_fen": face_value})
            digest = event_hash(prev_hash, id=event_id, at=at, actor_id=actor_id, actor=actor,
                                action="voucher.redeemed", entity="voucher", entity_id=str(voucher_id), data=data,
                                region_code=REGION)
            rows.append((event_id, at, actor_id, actor, "voucher.redeemed", "voucher", str(voucher_id), data, REGION,
                         prefix, prev_hash, digest))
            event_id, prev_hash = event_id + 1, digest
        bulk.load("audit_event", columns, rows)
    bulk.execute("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1", (event_id - 1, prev_hash))
    return event_id - first_id

"""Support for the stateful test (tests/test_stateful.py): the simulated clock, the cast every example
starts from, a fingerprint of everything a refused call must leave alone, and the invariant checks.

The cast is made by the scenario builder (tests/support/scenario.py) with `now` taken from the simulated
clock; the only exception is the bearer tokens for the HTTP replays, which the auth layer checks against
the real clock and so are issued at the real time.
"""

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select

from marketplace.audit import service as audit_service
from marketplace.audit.models import AuditHead
from marketplace.db import db
from marketplace.idempotency import IdempotencyRecord
from marketplace.programmes import ledger
from marketplace.programmes.models import BudgetAmendment, JournalEntry, JournalLine, Programme, ProgrammeBudget
from marketplace.recipients.models import Recipient
from providers.models import Complaint, Rating, RatingAggregate
from tests.support import scenario
from tests.support.scenario import Builder, ProviderRef, RecipientRef
from vouchers.models import (
    AnomalyFlag,
    AnomalyFlagRedemption,
    ChoiceEvent,
    Issuance,
    Redemption,
    Settlement,
    UsedPresenceCode,
    Voucher,
)

# Bounds: small by default (`make test`), large for `make soak`.
EXAMPLES = int(os.environ.get("STATEFUL_EXAMPLES", "15"))
STEPS = int(os.environ.get("STATEFUL_STEPS", "25"))

LOCAL = ZoneInfo("Asia/Shanghai")  # LOCAL_TIMEZONE's default; the app under test is checked to use it
STARTS_ON, ENDS_ON = date(2026, 1, 1), date(2026, 4, 30)
PROGRAMME_PERIODS = ("2026-01", "2026-02", "2026-03", "2026-04")
PERIODS = ("2025-12", *PROGRAMME_PERIODS, "2026-05")  # the first and last are outside the programme
CLOCK_START = datetime(2026, 1, 5, 10, 0, tzinfo=LOCAL).astimezone(UTC)
CLOCK_END = datetime(2026, 6, 15, 0, 0, tzinfo=LOCAL).astimezone(UTC)
CLOSABLE_FROM = datetime(2026, 3, 15, 0, 0, tzinfo=LOCAL).astimezone(UTC)  # closing early is allowed too

# item: (unit price, monthly quota); odd prices so that co-payments round up to the fen.
MEAL, BATH = "SM-MEAL", "SM-BATH"
ITEMS = {MEAL: (1250, 2), BATH: (4999, 1)}
COPAY = {"default": 20, "low_income": 5}
REVERSAL_WINDOW_HOURS = 48
RATING_WINDOW_DAYS = 10
INITIAL_BUDGET_FEN = 45_000  # two months of the three recipients (19 121 fen a month), not three
# Three bands, so that unrated services (score 83: S 75, K 100) are paid 80 % and a deduction is released,
# good ratings earn 100 %, and poor ratings or upheld complaints fall into the lowest band (flagged).
SETTLEMENT_RULES = [{"min_score": 0, "pay_percent": 50}, {"min_score": 70, "pay_percent": 80},
                    {"min_score": 90, "pay_percent": 100}]


def local_day(instant: datetime) -> date:
    return instant.astimezone(LOCAL).date()


def month_end(period: str) -> datetime:
    """The UTC instant at which the local month *period* ends."""
    year, month = (int(part) for part in period.split("-"))
    first_next = date(year + month // 12, month % 12 + 1, 1)
    return datetime.combine(first_next, time(0), LOCAL).astimezone(UTC)


def face_value(item_code: str, tags: tuple[str, ...]) -> int:
    """The item's price minus the co-payment of the lowest priced tag (else the default), rounded up."""
    price, _quota = ITEMS[item_code]
    percents = [COPAY[tag] for tag in tags if tag in COPAY and tag != "default"]
    return scenario.face_value(price, min(percents) if percents else COPAY["default"])


def monthly_cost(tags: tuple[str, ...]) -> int:
    return sum(face_value(code, tags) * quota for code, (_price, quota) in ITEMS.items())


@dataclass(frozen=True)
class World:
    programme_id: int
    admin_id: int  # creates settlements
    second_admin_id: int  # approves them (four eyes)
    providers: tuple[ProviderRef, ...]  # enrolled, approved, with logins
    outsider: ProviderRef  # approved, offers both items, never enrolled: nobody may choose it
    recipients: tuple[RecipientRef, ...]  # with logins
    headers: dict[int, dict]  # provider id → bearer headers of its staff login, for the HTTP replays


def build_world(app, now: datetime) -> World:
    """Items, an active programme with INITIAL_BUDGET_FEN, two enrolled providers and one outsider, three
    recipients (one `low_income`), two admins, logins for providers and recipients — all at *now*."""
    assert app.config["LOCAL_TIMEZONE"] == str(LOCAL)
    build = Builder(app, clock=lambda: now)
    admin, second_admin = build.system_admin, build.admin()
    for code, (price, _quota) in ITEMS.items():
        build.item(code=code, name="助餐" if code == MEAL else "助浴", price=price)
    programme = build.programme(
        items=[(code, price, quota) for code, (price, quota) in ITEMS.items()], budget_fen=INITIAL_BUDGET_FEN,
        starts_on=STARTS_ON, ends_on=ENDS_ON, copay=COPAY, rules=SETTLEMENT_RULES,
        rating_window_days=RATING_WINDOW_DAYS, reversal_window_hours=REVERSAL_WINDOW_HOURS)
    providers = tuple(build.provider(items=list(ITEMS), enrol_in=[programme]) for _ in range(2))
    outsider = build.provider(items=list(ITEMS), login=False)
    cast = (("李桂英", ("low_income",)), ("张建国", ()), ("王秀兰", ("living_alone",)))
    recipients = tuple(build.recipient(name=name, birth=date(1940 + number, 5, 5), tags=tags, login=True)
                       for number, (name, tags) in enumerate(cast, start=1))
    return World(programme_id=programme.id, admin_id=admin.id, second_admin_id=second_admin.id, providers=providers,
                 outsider=outsider, recipients=recipients,
                 headers={provider.id: build.headers(provider.user) for provider in providers})


# --- what a refusal must leave alone ---------------------------------------------------------------

def fingerprint(programme_id: int) -> dict:
    """Counts and sums that any write of the rules would change (read inside an app context)."""

    def by_status(column) -> dict:
        return dict(db.session.execute(select(column, func.count()).group_by(column)).all())

    def count(model) -> int:
        return db.session.scalar(select(func.count()).select_from(model))

    return {
        "audit_head": db.session.scalar(select(AuditHead.last_id)),
        "vouchers": by_status(Voucher.status),
        "redemptions": by_status(Redemption.status),
        "redemptions_settled": db.session.scalar(select(func.count()).select_from(Redemption)
                                                 .where(Redemption.settlement_id.is_not(None))),
        "settlements": by_status(Settlement.status),
        "complaints": by_status(Complaint.status),
        "recipients": by_status(Recipient.status),
        "journal_entries": count(JournalEntry),
        "journal_lines": count(JournalLine),
        "issuances": count(Issuance),
        "amendments": count(BudgetAmendment),
        "ratings": count(Rating),
        "rating_aggregates": tuple(db.session.execute(select(func.count(), func.coalesce(func.sum(
            RatingAggregate.ratings_count), 0))).one()),
        "choice_events": count(ChoiceEvent),
        "used_presence_codes": count(UsedPresenceCode),
        "idempotency_records": count(IdempotencyRecord),
        "anomaly_flags": by_status(AnomalyFlag.status),
        "available": db.session.scalar(select(ProgrammeBudget.available_fen)
                                       .where(ProgrammeBudget.programme_id == programme_id)),
    }


# What a flag's decision must never change: holds move money only by leaving redemptions out of a later draft.
MONEY_KEYS = ("vouchers", "redemptions", "redemptions_settled", "settlements", "journal_entries", "journal_lines",
              "available")


# --- market-integrity flags (detection is not under test: the machine plants them) ------------------------

def plant_flag(*, redemption_id: int, more: int, with_settled: bool, serial: int, now: datetime) -> int:
    """Insert an open flag about a redemption, up to *more* other completed unsettled services of its provider
    (the newest) and, *with_settled*, one of its provider's settled ones; its id."""
    found = db.session.get(Redemption, redemption_id)
    mine = (Redemption.programme_id == found.programme_id, Redemption.provider_id == found.provider_id,
            Redemption.status == "completed", Redemption.id != redemption_id)
    ids = [redemption_id, *db.session.scalars(select(Redemption.id).where(*mine, Redemption.settlement_id.is_(None))
                                              .order_by(Redemption.id.desc()).limit(more))]
    if with_settled:
        ids += db.session.scalars(select(Redemption.id).where(*mine, Redemption.settlement_id.is_not(None))
                                  .order_by(Redemption.id.desc()).limit(1)).all()
    flag = AnomalyFlag(programme_id=found.programme_id, period=f"{local_day(now):%Y-%m}", rule="short_duration",
                       severity="low", subject=f"provider:{found.provider_id}:{serial}", provider_id=found.provider_id,
                       recipient_id=found.recipient_id, evidence={"count": len(ids), "min_minutes": 30, "shortest": 3},
                       status="open", created_at=now)
    db.session.add(flag)
    db.session.flush()
    db.session.add_all([AnomalyFlagRedemption(flag_id=flag.id, redemption_id=rid) for rid in ids])
    return flag.id


def held_by_confirmed_flags() -> set[int]:
    """The ids of redemptions in a confirmed flag."""
    return set(db.session.scalars(
        select(AnomalyFlagRedemption.redemption_id).join(AnomalyFlag, AnomalyFlag.id == AnomalyFlagRedemption.flag_id)
        .where(AnomalyFlag.status == "confirmed")))


# --- invariants ------------------------------------------------------------------------------------

def unbalanced_entries() -> list[tuple[int, int, int]]:
    """(entry id, number of lines, sum of lines) of every entry whose lines do not sum to zero or that has
    fewer than two lines, over the whole journal."""
    lines = (select(JournalLine.entry_id, func.count().label("n"), func.sum(JournalLine.amount_fen).label("total"))
             .group_by(JournalLine.entry_id).subquery())
    return [tuple(row) for row in db.session.execute(
        select(JournalEntry.id, func.coalesce(lines.c.n, 0), func.coalesce(lines.c.total, 0))
        .outerjoin(lines, lines.c.entry_id == JournalEntry.id)
        .where((func.coalesce(lines.c.n, 0) < 2) | (func.coalesce(lines.c.total, 0) != 0))).all()]


def failing_checks(programme_id: int) -> tuple[bool, list[dict]]:
    report = ledger.reconcile(programme_id)
    return report["ok"], [check for check in report["checks"] if not check["ok"]]


def vouchers_redeemed_more_than_once() -> list[tuple[int, int]]:
    return [tuple(row) for row in db.session.execute(
        select(Redemption.voucher_id, func.count()).where(Redemption.status == "completed")
        .group_by(Redemption.voucher_id).having(func.count() > 1)).all()]


def voucher_status_disagreements() -> list[tuple[int, str, int]]:
    """Vouchers that are `redeemed` without exactly one completed redemption, or have one and are not."""
    completed = (select(Redemption.voucher_id, func.count().label("n")).where(Redemption.status == "completed")
                 .group_by(Redemption.voucher_id).subquery())
    n = func.coalesce(completed.c.n, 0)
    return [tuple(row) for row in db.session.execute(
        select(Voucher.id, Voucher.status, n).outerjoin(completed, completed.c.voucher_id == Voucher.id)
        .where(((Voucher.status == "redeemed") & (n != 1)) | ((Voucher.status != "redeemed") & (n != 0)))).all()]


def settlement_memberships() -> dict[int, int | None]:
    return dict(db.session.execute(select(Redemption.id, Redemption.settlement_id)).all())


def misplaced_settlement_lines() -> list[tuple]:
    """Redemptions in a settlement that they cannot belong to: reversed, of another programme or provider,
    or delivered after the end of the settlement's month."""
    rows = db.session.execute(
        select(Redemption.id, Redemption.status, Redemption.programme_id, Redemption.provider_id,
               Redemption.delivered_at, Settlement.id, Settlement.programme_id, Settlement.provider_id,
               Settlement.period)
        .join(Settlement, Settlement.id == Redemption.settlement_id)).all()
    return [tuple(row) for row in rows
            if row[1] != "completed" or row[2] != row[6] or row[3] != row[7] or row[4] >= month_end(row[8])]


def settlement_snapshot(settlement_id: int) -> dict:
    settlement = db.session.get(Settlement, settlement_id)
    return {
        "programme_id": settlement.programme_id, "provider_id": settlement.provider_id,
        "period": settlement.period, "redemptions_count": settlement.redemptions_count,
        "gross_fen": settlement.gross_fen, "net_fen": settlement.net_fen, "pay_percent": settlement.pay_percent,
        "performance_score": settlement.performance_score, "satisfaction_score": settlement.satisfaction_score,
        "complaint_score": settlement.complaint_score, "upheld_complaints": settlement.upheld_complaints,
        "approved_at": settlement.approved_at, "approved_by": settlement.approved_by,
        "redemptions": frozenset(db.session.scalars(select(Redemption.id)
                                                    .where(Redemption.settlement_id == settlement_id))),
    }


def audit_chain_problem() -> str | None:
    verification = audit_service.verify_chain()
    return None if verification.ok else f"event {verification.first_broken_id}: {verification.reason}"


# --- what the redemption rules may pick ------------------------------------------------------------

def valid_vouchers(recipient_id: int, item_code: str, day: date) -> list[tuple[int, date, int]]:
    """(voucher id, valid until, programme id) of the recipient's issued vouchers of the item valid on *day*
    in an active programme, earliest-expiring first."""
    return [tuple(row) for row in db.session.execute(
        select(Voucher.id, Voucher.valid_until, Voucher.programme_id)
        .join(Programme, Programme.id == Voucher.programme_id)
        .where(Voucher.recipient_id == recipient_id, Voucher.item_code == item_code, Voucher.status == "issued",
               Programme.status == "active", and_(Voucher.valid_from <= day, Voucher.valid_until >= day))
        .order_by(Voucher.valid_until, Voucher.id)).all()]

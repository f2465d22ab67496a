"""Support for the stateful test (tests/test_stateful.py): the simulated clock, the cast every example
starts from, a fingerprint of everything a refused call must leave alone, and the invariant checks.

Everything is made through the service layer with `now` taken from the simulated clock; the only
exception is the bearer tokens for the HTTP replays, which the auth layer checks against the real
clock and so are issued at the real time.
"""

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select

from marketplace.audit import service as audit_service
from marketplace.audit.models import AuditHead
from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.catalogue import service as catalogue_service
from marketplace.db import db, transaction, utcnow
from marketplace.demo import demo_credit_code
from marketplace.idempotency import IdempotencyRecord
from marketplace.programmes import ledger
from marketplace.programmes import service as programme_service
from marketplace.programmes.models import BudgetAmendment, JournalEntry, JournalLine, Programme, ProgrammeBudget
from marketplace.recipients import service as recipient_service
from marketplace.recipients.idnumber import check_character
from marketplace.recipients.models import Recipient
from providers.models import Complaint, Rating, RatingAggregate
from providers.service import enrolment, qualification, ratings, registry
from tests.conftest import PASSWORD
from vouchers.models import ChoiceEvent, Issuance, Redemption, Settlement, UsedPresenceCode, Voucher

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
    """Price minus the co-payment (lowest priced tag, else default), the co-payment rounded up."""
    price, _quota = ITEMS[item_code]
    percents = [COPAY[tag] for tag in tags if tag in COPAY and tag != "default"]
    percent = min(percents) if percents else COPAY["default"]
    return price - (-(-price * percent // 100))


def monthly_cost(tags: tuple[str, ...]) -> int:
    return sum(face_value(code, tags) * quota for code, (_price, quota) in ITEMS.items())


@dataclass(frozen=True)
class ProviderInfo:
    id: int
    user_id: int | None
    bearer: str | None


@dataclass(frozen=True)
class RecipientInfo:
    id: int
    user_id: int
    tags: tuple[str, ...]


@dataclass(frozen=True)
class World:
    programme_id: int
    admin_id: int  # creates settlements
    second_admin_id: int  # approves them (four eyes)
    providers: tuple[ProviderInfo, ...]  # enrolled, approved, with logins
    outsider: ProviderInfo  # approved, offers both items, never enrolled: nobody may choose it
    recipients: tuple[RecipientInfo, ...]


def build_world(app, now: datetime) -> World:
    """Items, an active programme with INITIAL_BUDGET_FEN, two enrolled providers and one outsider, three
    recipients (one `low_income`), two admins, logins for providers and recipients."""

    def user(**fields) -> int:
        return auth_service.create_user(password=PASSWORD, actor=None, now=now, **fields).id

    with app.app_context(), transaction():
        assert app.config["LOCAL_TIMEZONE"] == str(LOCAL)
        admin_id, second_admin_id = user(username="sm-admin-1", role="admin"), user(username="sm-admin-2", role="admin")
        admin = db.session.get(User, admin_id)
        for code, (price, _quota) in ITEMS.items():
            catalogue_service.create_item(code=code, name="助餐" if code == MEAL else "助浴",
                                          category_code="basic_public", unit="次", standard_price_fen=price,
                                          nature="service", actor=admin, now=now)
        programme = programme_service.create_programme(
            name="蒲江县居家养老服务券", authority="蒲江县民政局", region_code="510131", starts_on=STARTS_ON,
            ends_on=ENDS_ON, items=[{"item_code": code, "unit_price_fen": price, "monthly_quota": quota}
                                    for code, (price, quota) in ITEMS.items()],
            eligibility={"min_age": 60, "tags_any": []}, copay_percent=dict(COPAY), reserved_share_percent=30,
            settlement_rules=SETTLEMENT_RULES, rating_window_days=RATING_WINDOW_DAYS,
            reversal_window_hours=REVERSAL_WINDOW_HOURS, choice_required=True, actor=admin, now=now)
        programme_service.amend_budget(programme=programme, amount_fen=INITIAL_BUDGET_FEN, reason="年度预算",
                                       actor=admin, now=now)
        programme_service.activate(programme=programme, actor=admin, now=now)

        providers = []
        for number in (1, 2, 3):
            provider = registry.register_provider(
                name=f"蒲江县第{number}社区养老服务中心", kind="social_organisation",
                credit_code=demo_credit_code("52", f"MA{number:06d}"), legal_representative="张建华",
                phone="028-88550001", address="四川省成都市蒲江县鹤山街道", region_codes=["510131"],
                item_codes=list(ITEMS), capacity=2000, account=None, actor=admin, now=now).provider
            qualification.change_status(provider_id=provider.id, action="approve", reason="资质审核通过", actor=admin,
                                           now=now)
            if number < 3:
                enrolment.enrol(programme=programme, provider_id=provider.id, actor=admin, now=now)
            providers.append(provider.id)

        recipients = []
        cast = (("李桂英", ("low_income",)), ("张建国", ()), ("王秀兰", ("living_alone",)))
        for number, (name, tags) in enumerate(cast, start=1):
            first17 = f"510131{1940 + number}0505{number:03d}"
            recipient = recipient_service.create_recipient(
                name=name, id_number=first17 + check_character(first17), phone=None, region_code="510131",
                address="蒲江县鹤山街道1村2组", tags=list(tags), actor=admin, now=now)
            recipients.append(RecipientInfo(id=recipient.id, tags=tuple(tags),
                                            user_id=user(username=f"sm-recipient-{number}", role="recipient",
                                                         recipient_id=recipient.id)))
        provider_users = [user(username=f"sm-provider-{number}", role="provider", provider_id=provider_id)
                          for number, provider_id in enumerate(providers[:2], start=1)]
        programme_id = programme.id

    with app.app_context(), transaction():
        # The HTTP layer checks bearer tokens against the real clock, so they are issued at the real time.
        bearers = [auth_service.issue_token(user=db.session.get(User, user_id), kind="bearer", now=utcnow())[0]
                   for user_id in provider_users]
    return World(programme_id=programme_id, admin_id=admin_id, second_admin_id=second_admin_id,
                 providers=tuple(ProviderInfo(id=pid, user_id=uid, bearer=bearer)
                                 for pid, uid, bearer in zip(providers[:2], provider_users, bearers, strict=True)),
                 outsider=ProviderInfo(id=providers[2], user_id=None, bearer=None), recipients=tuple(recipients))


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
        "available": db.session.scalar(select(ProgrammeBudget.available_fen)
                                       .where(ProgrammeBudget.programme_id == programme_id)),
    }


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


def rating_aggregates() -> dict[tuple, tuple[int, int, int]]:
    return {(row.provider_id, row.programme_id, row.item_code): (row.ratings_count, row.score_sum,
                                                                 row.satisfied_count)
            for row in db.session.scalars(select(RatingAggregate).where(RatingAggregate.ratings_count > 0))}


def recomputed_rating_aggregates() -> dict[tuple, tuple[int, int, int]]:
    """The totals recomputed from the ratings of services that stand (a reversed one's rating left)."""
    rows = db.session.execute(
        select(Rating.provider_id, Rating.programme_id, Rating.item_code, func.count(), func.sum(Rating.score),
               func.count().filter(Rating.score >= ratings.SATISFIED_SCORE))
        .join(Redemption, Redemption.id == Rating.redemption_id).where(Redemption.status == "completed")
        .group_by(Rating.provider_id, Rating.programme_id, Rating.item_code)).all()
    return {(provider_id, programme_id, item_code): (int(count), int(total), int(satisfied))
            for provider_id, programme_id, item_code, count, total, satisfied in rows}


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

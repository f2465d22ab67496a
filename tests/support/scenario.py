"""The scenario builder of the tests: one vocabulary for every test, the `build` fixture (tests/conftest.py).

Every object is made through the service layer, each step in its own app context and transaction, so a
test starts from a state the product itself can reach; nothing is inserted behind the services' back
and no app context stays pushed between steps (tests use the HTTP client or real threads in between).
Steps hand back plain values: small frozen refs (ProgrammeRef, ProviderRef, RecipientRef,
RedemptionRef), ids or codes, never live rows; every verb takes a ref or its id alike.

Dates follow the real clock, because the HTTP routes use it: a programme runs by default from twelve
months before this month to twelve months after it, so `period(-2)` … `period(1)` are always inside.
A service may be delivered at any past instant (`delivered_at`): the provider scans five minutes later
(or now, if that is sooner); a rating or a complaint about it comes an hour after delivery and a
reversal an hour after the scan (or now, if sooner), so every window holds whatever the month.
`Builder(app, clock=...)` runs every step at a simulated instant instead (the state machine does);
bearer tokens are always issued at the real time, which is what the auth layer checks them against.

    def test_a_meal_rated_by_phone(build, client):
        meal = build.item(name="助餐")
        programme = build.programme(items=[(meal, 1237, 10)], budget_fen=1_000_000)
        p1 = build.provider(items=[meal], enrol_in=[programme])
        alice = build.recipient(tags=("low_income",), login=True)
        build.issue(programme, build.period(-1))
        build.choose(alice, programme, meal, p1)
        served = build.redeem(p1, alice, meal, delivered_at=build.in_month(-1, 3, hour=10))
        build.rate(served, 5)                                 # the bureau's phone follow-up (回访)
        client.get("/api/v1/vouchers", headers=build.headers(alice.user))

The vocabulary (keyword arguments have defaults unless marked …):

- plumbing: run(work) (own app context and transaction), read(work) (own app context, nothing written)
- calendar: now(), zone(), today(), period(offset), first_day(offset), last_day(offset),
  at(day, hour, minute), in_month(offset, day, hour, minute); plain date arithmetic: tests/support/dates.py
- people: user(role=…), admin(region_code), auditor(), system_admin, headers(user)
- catalogue and programmes: item(), programme(items=…), add_budget(programme, amount_fen), close(programme)
- providers and recipients: provider(items=…, enrol_in=[…]), set_provider_status(provider, action),
  recipient(), set_recipient_status(recipient, status, effective_on=…)
- vouchers: issue(programme, period), supplementary(programme, recipient, item, count),
  choose(recipient, programme, item, provider, reason=…, note=…), choose_all(world, provider, *recipients),
  voucher_token(voucher), presence_token(recipient), presence_code(recipient) (token and short code, kept),
  redeem(provider, recipient, item) by presence code (typed=True: its short code typed in) or
  redeem(provider, voucher=…) by card, serve(provider, recipients, programme, item, times=… or
  delivered_at=[…]), reverse(redemption), revoke(voucher), expire(programme)
- feedback: rate(redemption, score), rated_services(provider, recipients, programme, item, scores),
  complain(provider, redemption=… or recipient=…), resolve(complaint, upheld=…)
- settlement: settle(programme, period), approve(settlement, by=…), pay(settlement, by=…)
- reading back: vouchers(*where), voucher(id), redemptions(*where), redemption(id), settlements(*where),
  settlement(id), provider_row(id), count(model, *where), ledger(programme), guarded_available(programme),
  reconciliation(programme), failing_checks(programme), issued_face_value(programme),
  footprint(programme), ratings(), aggregates(), recomputed_aggregates()
- whole scenes: world() → World, full_scenario() → FullScenario
"""

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from marketplace.audit.models import AuditEvent
from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.catalogue import service as catalogue_service
from marketplace.db import db, local_date, transaction, utcnow
from marketplace.demo import demo_credit_code
from marketplace.programmes import ledger as ledger_service
from marketplace.programmes import service as programme_service
from marketplace.programmes.models import JournalEntry, Programme
from marketplace.recipients import service as recipient_service
from marketplace.recipients.idnumber import check_character
from marketplace.recipients.models import Recipient
from providers.models import Provider, Rating, RatingAggregate
from providers.service import complaints as complaint_service
from providers.service import enrolment, qualification, registry
from providers.service.ratings import SATISFIED_SCORE
from tests.conftest import PASSWORD
from tests.support.dates import first_of_month, last_of_month, month_of
from vouchers import tokens
from vouchers.models import Issuance, Redemption, Settlement, Voucher
from vouchers.service import choice, feedback, issuance, reversal, revocation
from vouchers.service import redemption as redemption_service
from vouchers.service import settlement as settlement_service

_serial = itertools.count(1)

# The standard world (world()): meals and baths at these prices and monthly quotas.
MEAL_PRICE, MEAL_QUOTA = 1200, 4
BATH_PRICE, BATH_QUOTA = 5000, 2
# An item given as a bare code to programme(): a service a day, enough for long rating sequences.
DEFAULT_PRICE, DEFAULT_QUOTA = 1200, 31
COPAY = {"default": 20, "low_income": 5, "disabled": 10}
DEFAULT_RULES = ({"min_score": 0, "pay_percent": 60}, {"min_score": 80, "pay_percent": 100})
SCAN_DELAY = timedelta(minutes=5)  # from delivery to the provider's scan
FEEDBACK_DELAY = timedelta(hours=1)  # from delivery to a rating or complaint; from the scan to a reversal
CREDIT_CODE_PREFIX = {"enterprise": "91", "public_institution": "12", "community_organisation": "51"}


def face_value(unit_price_fen: int, copay_percent: int) -> int:
    """What the bureau pays for one voucher: the price less the co-payment rounded up to the fen."""
    return unit_price_fen - (unit_price_fen * copay_percent + 99) // 100


def _id(ref) -> int:
    """The id of a ref, a row or an id."""
    return ref if isinstance(ref, int) else ref.id


# --- references handed to tests (plain values: safe outside any app context) ----------------------

@dataclass(frozen=True)
class ProgrammeRef:
    id: int
    name: str
    region_code: str
    starts_on: date
    ends_on: date


@dataclass(frozen=True)
class ProviderRef:
    id: int
    user: User | None  # the provider's staff login (scans presence codes and cards)
    name: str
    legal_representative: str
    phone: str


@dataclass(frozen=True)
class RecipientRef:
    id: int
    user: User | None  # the recipient's own login
    name: str
    tags: tuple[str, ...]
    id_number: str  # valid (invented), known to the test: the database keeps only a hash and a mask
    id_number_masked: str
    phone: str | None


@dataclass(frozen=True)
class RedemptionRef:
    id: int
    voucher_id: int
    programme_id: int
    provider_id: int
    recipient_id: int
    item_code: str
    face_value_fen: int
    delivered_at: datetime
    scanned_at: datetime


@dataclass(frozen=True)
class World:
    """The usual cast: an active programme buying meals and baths, two enrolled providers, two recipients.

    alice is `low_income` (5 % co-payment), bob has no tags (the default 20 %); both have logins. The
    programme requires a choice; nobody has chosen yet, and nothing is issued.
    """

    programme: ProgrammeRef
    meal: str
    bath: str
    admin: User
    p1: ProviderRef
    p2: ProviderRef
    alice: RecipientRef
    bob: RecipientRef


@dataclass(frozen=True)
class FullScenario:
    """Everything money can go through in one programme (see Builder.full_scenario); ids of what it made."""

    programme: int
    meal: str
    bath: str
    providers: tuple[ProviderRef, ...]
    recipients: tuple[RecipientRef, ...]
    drafter: User
    approver: User
    paid: int  # p1's settlement of last month: approved and paid
    approved: int  # p2's: approved, paid 60 % or 85 % (a deduction)
    draft: int  # p3's: still a draft
    unsettled: RedemptionRef  # this month's, completed and in no settlement
    settled: RedemptionRef  # in p2's approved settlement
    reversed: RedemptionRef  # this month's, reversed
    expired_voucher: int
    issued_voucher: int
    revoked_voucher: int


# --- queries run inside an app context (the builder's reading verbs and the state machine share them) --

def rating_aggregates() -> dict[tuple[int, int, str], tuple[int, int, int]]:
    """The rating_aggregate table: (provider, programme, item) → (count, sum, satisfied); rows that
    reversals emptied are left out."""
    return {(row.provider_id, row.programme_id, row.item_code): (row.ratings_count, row.score_sum,
                                                                 row.satisfied_count)
            for row in db.session.scalars(select(RatingAggregate).where(RatingAggregate.ratings_count > 0))}


def recomputed_rating_aggregates() -> dict[tuple[int, int, str], tuple[int, int, int]]:
    """The same totals recomputed from the ratings of services that stand (a reversed one's rating left)."""
    rows = db.session.execute(
        select(Rating.provider_id, Rating.programme_id, Rating.item_code, func.count(), func.sum(Rating.score),
               func.count().filter(Rating.score >= SATISFIED_SCORE))
        .join(Redemption, Redemption.id == Rating.redemption_id).where(Redemption.status == "completed")
        .group_by(Rating.provider_id, Rating.programme_id, Rating.item_code)).all()
    return {(provider_id, programme_id, item_code): (int(count), int(total), int(satisfied))
            for provider_id, programme_id, item_code, count, total, satisfied in rows}


class Builder:
    def __init__(self, app, *, clock: Callable[[], datetime] = utcnow):
        self.app = app
        self.clock = clock
        self._system_admin: User | None = None

    # --- plumbing ---------------------------------------------------------------------------------

    def run(self, work):
        """Run *work()* in its own app context and transaction (committed); return its result."""
        with self.app.app_context(), transaction():
            return work()

    def read(self, work):
        """Run *work()* in its own app context without writing; return its result (detached)."""
        with self.app.app_context():
            return work()

    # --- calendar ---------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The instant every step happens at: the real time, unless the builder has a clock of its own."""
        return self.clock()

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.app.config["LOCAL_TIMEZONE"])

    def today(self) -> date:
        return self.read(lambda: local_date(self.now()))

    def first_day(self, offset: int = 0) -> date:
        """The first local day of the month *offset* months from this one."""
        return first_of_month(self.today(), offset)

    def last_day(self, offset: int = 0) -> date:
        return last_of_month(self.first_day(offset))

    def period(self, offset: int = 0) -> str:
        """This month (offset 0), last month (-1), next month (1) as `YYYY-MM`."""
        return month_of(self.first_day(offset))

    def at(self, day: date, hour: int = 12, minute: int = 0) -> datetime:
        """The UTC instant of *hour*:*minute* local time on the local calendar *day*."""
        return datetime.combine(day, time(hour, minute), self.zone()).astimezone(UTC)

    def in_month(self, offset: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
        """*hour*:*minute* local time on day *day* (1-based) of the month *offset* months from this one."""
        return self.at(self.first_day(offset) + timedelta(days=day - 1), hour, minute)

    # --- people -----------------------------------------------------------------------------------

    def user(self, *, role: str, region_code: str | None = None, provider_id: int | None = None,
             recipient_id: int | None = None, username: str | None = None) -> User:
        """A login with PASSWORD, made by the auth service."""
        username = username or f"{role}-b{next(_serial)}"
        return self.run(lambda: auth_service.create_user(
            username=username, password=PASSWORD, role=role, region_code=region_code, provider_id=provider_id,
            recipient_id=recipient_id, actor=None, now=self.now()))

    def admin(self, region_code: str | None = None) -> User:
        return self.user(role="admin", region_code=region_code)

    def auditor(self) -> User:
        return self.user(role="auditor")

    @property
    def system_admin(self) -> User:
        """The admin that performs setup steps (qualification, enrolment, choices, follow-up calls, drafting)."""
        if self._system_admin is None:
            self._system_admin = self.admin()
        return self._system_admin

    def headers(self, user: User) -> dict:
        """Bearer headers for *user*: a new token from the auth service (no argon2 round), at the real time."""
        def issue():
            raw, _row = auth_service.issue_token(user=db.session.get(User, user.id), kind="bearer", now=utcnow())
            return raw

        return {"Authorization": f"Bearer {self.run(issue)}"}

    def _actor_id(self, user: User | None) -> int:
        """The id of *user*, default the system admin (made, if need be, before the caller's transaction)."""
        return (user or self.system_admin).id

    # --- catalogue and programmes -----------------------------------------------------------------

    def item(self, *, code: str | None = None, name: str = "助餐", unit: str = "次", price: int = 1500,
             default_duration_minutes: int | None = None) -> str:
        """A catalogue service item (standard price *price*, usual duration *default_duration_minutes*); its
        code."""
        code = code or f"HC-{next(_serial)}"
        self.run(lambda: catalogue_service.create_item(
            code=code, name=name, category_code="basic_public", unit=unit, standard_price_fen=price,
            nature="service", default_duration_minutes=default_duration_minutes, actor=None, now=self.now()))
        return code

    def programme(self, *, items: Sequence[str | tuple[str, int, int] | tuple[str, int, int, int]],
                  price: int = DEFAULT_PRICE,
                  quota: int = DEFAULT_QUOTA, budget_fen: int = 10_000_000, status: str = "active",
                  region_code: str = "510131", starts_on: date | None = None, ends_on: date | None = None,
                  min_age: int | None = 60, tags_any: tuple[str, ...] = (), copay: dict | None = None,
                  rules: Sequence[dict] = DEFAULT_RULES, reserved_share_percent: int = 30,
                  rating_window_days: int = 30, reversal_window_hours: int = 48, choice_required: bool = True,
                  name: str = "蒲江县居家养老服务券", anomaly_parameters: dict | None = None) -> ProgrammeRef:
        """A programme buying *items* — (item_code, unit_price_fen, monthly_quota[, min_duration_minutes]) each,
        or a bare code at *price* and *quota* — funded with *budget_fen* and taken to *status* (draft, active or
        closed), with its own *anomaly_parameters* if given."""
        starts_on = starts_on or self.first_day(-12)
        ends_on = ends_on or self.last_day(12)
        lines = [(item, price, quota, None) if isinstance(item, str) else (*item, None)[:4] for item in items]

        def create():
            now = self.now()
            programme = programme_service.create_programme(
                name=name, authority="蒲江县民政局", region_code=region_code, starts_on=starts_on, ends_on=ends_on,
                items=[{"item_code": code, "unit_price_fen": unit_price, "monthly_quota": monthly_quota,
                        "min_duration_minutes": min_minutes} for code, unit_price, monthly_quota, min_minutes in lines],
                eligibility={"min_age": min_age, "tags_any": list(tags_any)}, copay_percent=dict(copay or COPAY),
                reserved_share_percent=reserved_share_percent, settlement_rules=[dict(rule) for rule in rules],
                rating_window_days=rating_window_days, reversal_window_hours=reversal_window_hours,
                choice_required=choice_required, anomaly_parameters=anomaly_parameters, actor=None, now=now)
            if budget_fen:
                programme_service.amend_budget(programme=programme, amount_fen=budget_fen, reason="年度预算",
                                               actor=None, now=now)
            if status in ("active", "closed"):
                programme_service.activate(programme=programme, actor=None, now=now)
            if status == "closed":
                programme_service.close(programme=programme, actor=None, now=now)
            return ProgrammeRef(id=programme.id, name=name, region_code=region_code, starts_on=starts_on,
                                ends_on=ends_on)

        return self.run(create)

    def add_budget(self, programme, amount_fen: int, *, reason: str = "追加预算") -> None:
        self.run(lambda: programme_service.amend_budget(
            programme=db.session.get(Programme, _id(programme)), amount_fen=amount_fen, reason=reason, actor=None,
            now=self.now()))

    def close(self, programme) -> None:
        self.run(lambda: programme_service.close(programme=db.session.get(Programme, _id(programme)), actor=None,
                                                 now=self.now()))

    # --- providers and recipients -----------------------------------------------------------------

    def provider(self, *, items: Sequence[str], enrol_in: Sequence = (), regions: Sequence[str] = ("510131",),
                 status: str = "approved", kind: str = "social_organisation", name: str | None = None,
                 legal_representative: str | None = None, phone: str | None = None,
                 login: bool = True) -> ProviderRef:
        """A provider offering *items* in *regions*, registered by the system admin; unless `pending`, approved
        and enrolled in each programme of *enrol_in*, then taken to *status* (approved, suspended or
        revoked). With a staff login unless *login* is False."""
        number = next(_serial)
        name = name or f"蒲江县第{number}社区养老服务中心"
        legal_representative = legal_representative or f"诸葛长青{number}"
        phone = phone or f"028-8{number:07d}"
        credit_code = demo_credit_code(CREDIT_CODE_PREFIX.get(kind, "52"), f"MT{number:06d}")

        admin_id = self._actor_id(None)

        def create():
            now, actor = self.now(), db.session.get(User, admin_id)
            provider = registry.register_provider(
                name=name, kind=kind, credit_code=credit_code, legal_representative=legal_representative,
                phone=phone, address="四川省成都市蒲江县鹤山街道", region_codes=list(regions), item_codes=list(items),
                capacity=2000, account=None, actor=actor, now=now).provider
            if status != "pending":
                qualification.change_status(provider_id=provider.id, action="approve", reason="资质审核通过",
                                            actor=actor, now=now)
                for programme in enrol_in:
                    enrolment.enrol(programme=db.session.get(Programme, _id(programme)), provider_id=provider.id,
                                    actor=actor, now=now)
            action = {"suspended": "suspend", "revoked": "revoke"}.get(status)
            if action:
                qualification.change_status(provider_id=provider.id, action=action, reason="资质核查", actor=actor,
                                            now=now)
            return provider.id

        provider_id = self.run(create)
        user = self.user(role="provider", provider_id=provider_id) if login else None
        return ProviderRef(id=provider_id, user=user, name=name, legal_representative=legal_representative,
                           phone=phone)

    def set_provider_status(self, provider, action: str) -> None:
        """A qualification decision by the system admin: approve, suspend, reinstate or revoke."""
        admin_id = self._actor_id(None)
        self.run(lambda: qualification.change_status(provider_id=_id(provider), action=action,
                                                     reason=f"{action}（测试）", actor=db.session.get(User, admin_id),
                                                     now=self.now()))

    def recipient(self, *, name: str | None = None, birth: date | None = None, region_code: str = "510131",
                  tags: Sequence[str] = (), phone: str | None = None, status: str = "active",
                  login: bool = False) -> RecipientRef:
        """A recipient living in *region_code* (born 1930–1954 unless *birth* says otherwise) with a valid
        (invented) ID number the test knows, taken to *status*; with a login of their own if *login*."""
        number = next(_serial)
        birth = birth or date(1930, 1, 1) + timedelta(days=7 * number % 9000)
        first17 = f"510131{birth:%Y%m%d}{number % 1000:03d}"
        id_number = first17 + check_character(first17)
        name = name or f"欧阳秀兰{number}"
        phone = phone or f"139{number:08d}"

        def create():
            now = self.now()
            recipient = recipient_service.create_recipient(
                name=name, id_number=id_number, phone=phone, region_code=region_code, address="蒲江县鹤山街道1村2组",
                tags=list(tags), actor=None, now=now)
            if status != "active":
                recipient_service.update_recipient(recipient=recipient, status=status, actor=None, now=now)
            return recipient.id, recipient.id_number_masked

        recipient_id, masked = self.run(create)
        user = self.user(role="recipient", recipient_id=recipient_id) if login else None
        return RecipientRef(id=recipient_id, user=user, name=name, tags=tuple(sorted(tags)), id_number=id_number,
                            id_number_masked=masked, phone=phone)

    def set_recipient_status(self, recipient, status: str, *, effective_on: date | None = None) -> None:
        """active, moved or deceased (moving or dying revokes open vouchers), taking effect on *effective_on*
        (default today)."""
        self.run(lambda: recipient_service.update_recipient(
            recipient=db.session.get(Recipient, _id(recipient)), status=status, effective_on=effective_on,
            actor=None, now=self.now()))

    def world(self, *, budget_fen: int = 10_000_000, choice_required: bool = True,
              reversal_window_hours: int = 48) -> World:
        """The standard World (see there)."""
        meal = self.item(name="助餐", unit="餐", price=1500)
        bath = self.item(name="助浴", unit="次", price=6000)
        programme = self.programme(items=[(meal, MEAL_PRICE, MEAL_QUOTA), (bath, BATH_PRICE, BATH_QUOTA)],
                                   budget_fen=budget_fen, choice_required=choice_required,
                                   reversal_window_hours=reversal_window_hours)
        p1 = self.provider(items=[meal, bath], enrol_in=[programme])
        p2 = self.provider(items=[meal, bath], enrol_in=[programme])
        alice = self.recipient(tags=("low_income",), login=True, name="李桂英")
        bob = self.recipient(login=True, name="张建国")
        return World(programme=programme, meal=meal, bath=bath, admin=self.system_admin, p1=p1, p2=p2, alice=alice,
                     bob=bob)

    # --- vouchers ---------------------------------------------------------------------------------

    def issue(self, programme, period: str | None = None, *, now: datetime | None = None) -> issuance.IssuanceResult:
        """The monthly run for *period* (this month by default)."""
        period = period or self.period()
        return self.run(lambda: issuance.issue_monthly(programme=db.session.get(Programme, _id(programme)),
                                                       period=period, actor=None, now=now or self.now()))

    def supplementary(self, programme, recipient, item: str, count: int = 1) -> list[int]:
        """A supplementary issue of *count* vouchers of *item*; their ids."""
        def issue():
            vouchers = issuance.issue_supplementary(
                programme=db.session.get(Programme, _id(programme)),
                recipient=db.session.get(Recipient, _id(recipient)), item_code=item, count=count, actor=None,
                now=self.now())
            return [voucher.id for voucher in vouchers]

        return self.run(issue)

    def choose(self, recipient, programme, item: str, provider, *, reason: str | None = None,
               note: str | None = None, by: User | None = None) -> None:
        """*by* (default: the system admin, 代办) records *recipient*'s choice of *provider* for *item*, a switch
        with its *reason* and *note* when given."""
        actor_id = self._actor_id(by)
        self.run(lambda: choice.set_choice(
            recipient=db.session.get(Recipient, _id(recipient)), programme=db.session.get(Programme, _id(programme)),
            item_code=item, provider_id=_id(provider), switch_reason=reason, switch_note=note,
            actor=db.session.get(User, actor_id), now=self.now()))

    def choose_all(self, world: World, provider, *recipients) -> None:
        """*recipients* (default: alice and bob) choose *provider* for both of the world's items."""
        for recipient in recipients or (world.alice, world.bob):
            for item in (world.meal, world.bath):
                self.choose(recipient, world.programme, item, provider)

    def voucher_token(self, voucher) -> str:
        """The signed token printed on the voucher's card."""
        return self.read(lambda: tokens.voucher_token(_id(voucher)))

    def presence_token(self, recipient, *, now: datetime | None = None) -> str:
        """A presence code as the recipient's phone shows it (issued at *now*, default the clock)."""
        return self.read(lambda: redemption_service.create_presence_code(recipient_id=_id(recipient),
                                                                         now=now or self.now())["token"])

    def presence_code(self, recipient, *, now: datetime | None = None) -> dict:
        """A presence code as POST /me/presence-code gives it (token, short_code, expires_at), its short code kept."""
        return self.run(lambda: redemption_service.create_presence_code(recipient_id=_id(recipient),
                                                                        now=now or self.now()))

    def redeem(self, provider: ProviderRef, recipient=None, item: str | None = None, *, voucher=None,
               delivered_at: datetime | None = None, now: datetime | None = None, typed: bool = False) -> RedemptionRef:
        """*provider*'s staff scan *recipient*'s presence code for *item*, or the card of *voucher*, after
        delivering the service at *delivered_at* (default: at the scan). The scan happens at *now*, by
        default five minutes after delivery or now, whichever is sooner."""
        def scan():
            at = now or (min(delivered_at + SCAN_DELAY, self.now()) if delivered_at else self.now())
            if voucher is not None:
                shown = {"voucher_token": tokens.voucher_token(_id(voucher))}
            else:
                code = redemption_service.create_presence_code(recipient_id=_id(recipient), now=at)
                shown = {"short_code": code["short_code"]} if typed else {"presence_token": code["token"]}
                shown["item_code"] = item
            redeemed = redemption_service.redeem(actor=db.session.get(User, provider.user.id), now=at,
                                                 delivered_at=delivered_at, duration_minutes=45, **shown)
            return RedemptionRef(
                id=redeemed.id, voucher_id=redeemed.voucher_id, programme_id=redeemed.programme_id,
                provider_id=redeemed.provider_id, recipient_id=redeemed.recipient_id, item_code=redeemed.item_code,
                face_value_fen=redeemed.face_value_fen, delivered_at=redeemed.delivered_at,
                scanned_at=redeemed.created_at)

        return self.run(scan)

    def serve(self, provider: ProviderRef, recipients: Sequence[RecipientRef], programme, item: str, *,
              times: int | None = None, delivered_at: Sequence[datetime] = ()) -> list[RedemptionRef]:
        """*recipients* choose *provider* for *item*, who then serves them in turn: once per instant of
        *delivered_at*, or *times* times now."""
        for recipient in recipients:
            self.choose(recipient, programme, item, provider)
        deliveries = list(delivered_at) or [None] * (times or 0)
        return [self.redeem(provider, recipients[index % len(recipients)], item, delivered_at=at)
                for index, at in enumerate(deliveries)]

    def reverse(self, redemption: RedemptionRef, *, by: User | None = None, now: datetime | None = None,
                reason: str = "扫错了") -> None:
        """*by* (default: the system admin) undoes the redemption, an hour after the scan unless told *now*."""
        actor_id = self._actor_id(by)
        self.run(lambda: reversal.reverse_redemption(
            redemption=db.session.get(Redemption, redemption.id), reason=reason, actor=db.session.get(User, actor_id),
            now=now or min(redemption.scanned_at + FEEDBACK_DELAY, self.now())))

    def revoke(self, voucher) -> None:
        self.run(lambda: revocation.revoke_voucher(voucher=db.session.get(Voucher, _id(voucher)), reason="核查作废",
                                                   actor=None, now=self.now()))

    def expire(self, programme) -> dict:
        return self.run(lambda: revocation.expire_vouchers(programme=db.session.get(Programme, _id(programme)),
                                                           actor=None, now=self.now()))

    # --- ratings and complaints -------------------------------------------------------------------

    def rate(self, redemption: RedemptionRef, score: int, *, by: User | None = None, source: str | None = None,
             comment: str | None = None, now: datetime | None = None) -> int:
        """A rating through the vouchers service by *by* — default: the system admin's phone follow-up (回访) —
        an hour after delivery unless told *now*; its id."""
        actor = by or self.system_admin
        source = source or ("phone_followup" if actor.role == "admin" else "recipient")
        return self.run(lambda: feedback.rate_redemption(
            redemption_id=redemption.id, score=score, comment=comment, source=source,
            actor=db.session.get(User, actor.id),
            now=now or min(redemption.delivered_at + FEEDBACK_DELAY, self.now())).id)

    def rated_services(self, provider: ProviderRef, recipients: Sequence[RecipientRef], programme, item: str,
                       scores: Sequence[int]) -> list[RedemptionRef]:
        """One service served now and rated (by phone follow-up) per score."""
        served = self.serve(provider, recipients, programme, item, times=len(scores))
        for redemption, score in zip(served, scores, strict=True):
            self.rate(redemption, score)
        return served

    def complain(self, provider, *, redemption: RedemptionRef | None = None, recipient=None,
                 at: datetime | None = None, by: User | None = None, text: str = "服务不到位") -> int:
        """*by* (default: the system admin) files a complaint against *provider* — about *redemption* or for
        *recipient*, when given — at *at* (default: an hour after the delivery, else now); its id."""
        when = at or (min(redemption.delivered_at + FEEDBACK_DELAY, self.now()) if redemption else self.now())
        actor_id = self._actor_id(by)
        return self.run(lambda: feedback.complain(
            provider_id=_id(provider), text=text, redemption_id=redemption.id if redemption else None,
            recipient_id=_id(recipient) if recipient is not None else None, actor=db.session.get(User, actor_id),
            now=when).id)

    def resolve(self, complaint: int, *, upheld: bool, by: User | None = None) -> None:
        actor_id = self._actor_id(by)
        self.run(lambda: complaint_service.resolve_complaint(
            complaint_id=complaint, upheld=upheld, resolution="属实" if upheld else "不属实",
            actor=db.session.get(User, actor_id), now=self.now()))

    # --- settlement -------------------------------------------------------------------------------

    def settle(self, programme, period: str, *, evaluations: dict[int, int] | None = None,
               by: User | None = None) -> list[int]:
        """Draft *period*'s settlements (as *by*, default the system admin); their ids."""
        actor_id = self._actor_id(by)
        return self.run(lambda: [drafted.id for drafted in settlement_service.create_settlements(
            programme=db.session.get(Programme, _id(programme)), period=period, evaluations=evaluations or {},
            actor=db.session.get(User, actor_id), now=self.now())])

    def approve(self, settlement: int, *, by: User) -> None:
        self.run(lambda: settlement_service.approve(settlement=db.session.get(Settlement, settlement),
                                                    actor=db.session.get(User, by.id), now=self.now()))

    def pay(self, settlement: int, *, by: User, reference: str = "国库集中支付-0001") -> None:
        self.run(lambda: settlement_service.pay(settlement=db.session.get(Settlement, settlement),
                                                payment_reference=reference, actor=db.session.get(User, by.id),
                                                now=self.now()))

    # --- reading back -----------------------------------------------------------------------------

    def _rows(self, model, order, conditions) -> list:
        return self.read(lambda: db.session.scalars(select(model).where(*conditions).order_by(order)).all())

    def vouchers(self, *conditions) -> list[Voucher]:
        return self._rows(Voucher, Voucher.id, conditions)

    def voucher(self, voucher_id: int) -> Voucher:
        return self.read(lambda: db.session.get(Voucher, voucher_id))

    def redemptions(self, *conditions) -> list[Redemption]:
        return self._rows(Redemption, Redemption.id, conditions)

    def redemption(self, redemption_id: int) -> Redemption:
        return self.read(lambda: db.session.get(Redemption, redemption_id))

    def settlements(self, *conditions) -> list[Settlement]:
        return self._rows(Settlement, Settlement.id, conditions)

    def settlement(self, settlement_id: int) -> Settlement | None:
        return self.read(lambda: db.session.get(Settlement, settlement_id))

    def provider_row(self, provider_id: int) -> Provider:
        return self.read(lambda: db.session.get(Provider, provider_id))

    def count(self, model, *conditions) -> int:
        return self.read(lambda: db.session.scalar(select(func.count()).select_from(model).where(*conditions)))

    def ledger(self, programme) -> ledger_service.Ledger:
        return self.read(lambda: ledger_service.balances(_id(programme)))

    def guarded_available(self, programme) -> int:
        return self.read(lambda: ledger_service.guarded_available(_id(programme)))

    def reconciliation(self, programme) -> dict:
        return self.read(lambda: ledger_service.reconcile(_id(programme)))

    def failing_checks(self, programme) -> list[str]:
        """The names of the reconciliation checks that fail, in the report's order."""
        return [check["name"] for check in self.reconciliation(programme)["checks"] if not check["ok"]]

    def issued_face_value(self, programme) -> int:
        """The face value of the programme's vouchers still `issued`."""
        return self.read(lambda: int(db.session.scalar(
            select(func.coalesce(func.sum(Voucher.face_value_fen), 0))
            .where(Voucher.programme_id == _id(programme), Voucher.status == "issued"))))

    def footprint(self, programme) -> SimpleNamespace:
        """Row counts that any money movement of the programme would change."""
        programme_id = _id(programme)
        return SimpleNamespace(
            vouchers=self.count(Voucher, Voucher.programme_id == programme_id),
            issuances=self.count(Issuance, Issuance.programme_id == programme_id),
            journal_entries=self.count(JournalEntry, JournalEntry.programme_id == programme_id),
            audit_events=self.count(AuditEvent),
        )

    def ratings(self) -> list[dict]:
        def load():
            return [{"id": r.id, "redemption_id": r.redemption_id, "provider_id": r.provider_id,
                     "programme_id": r.programme_id, "item_code": r.item_code, "recipient_id": r.recipient_id,
                     "score": r.score, "comment": r.comment, "source": r.source, "rated_by": r.rated_by}
                    for r in db.session.scalars(select(Rating).order_by(Rating.id))]

        return self.read(load)

    def aggregates(self) -> dict[tuple[int, int, str], tuple[int, int, int]]:
        """The rating_aggregate table: (provider, programme, item) → (count, sum, satisfied)."""
        return self.read(rating_aggregates)

    def recomputed_aggregates(self) -> dict[tuple[int, int, str], tuple[int, int, int]]:
        """The same totals recomputed from every rating row."""
        return self.read(recomputed_rating_aggregates)

    # --- a whole month of the scheme --------------------------------------------------------------

    def full_scenario(self) -> FullScenario:
        """Everything money can go through, in one programme, through the services:

        last month issued, redeemed (one redemption reversed), rated by phone follow-up, expired and
        settled — p1's settlement approved and paid, p2's approved with a deduction (evaluation 40),
        p3's left a draft; this month issued, one service redeemed and unsettled, one redeemed and
        reversed, one voucher revoked. The recipients and providers carry personal data the tests know.
        """
        meal = self.item(name="助餐", unit="餐", price=1500)
        bath = self.item(name="助浴", unit="次", price=6000)
        programme = self.programme(items=[(meal, 1237, 6), (bath, 4999, 2)], budget_fen=50_000_000, rules=(
            {"min_score": 0, "pay_percent": 60}, {"min_score": 60, "pay_percent": 85},
            {"min_score": 80, "pay_percent": 100}), name="蒲江县居家养老服务券（全流程）")
        p1 = self.provider(items=[meal, bath], enrol_in=[programme], kind="social_organisation",
                           legal_representative="慕容德明", phone="028-86661001")
        p2 = self.provider(items=[meal, bath], enrol_in=[programme], kind="enterprise",
                           legal_representative="诸葛长青", phone="028-86661002")
        p3 = self.provider(items=[meal], enrol_in=[programme], kind="community_organisation",
                           legal_representative="东方玉琴", phone="13566661003")
        r0 = self.recipient(name="欧阳秀兰", phone="13912345671", tags=("low_income",), login=True)
        r1 = self.recipient(name="司马建国", phone="13887654322", login=True)
        r2 = self.recipient(name="上官桂芳", phone="13698765433")
        for recipient, meal_by, bath_by in ((r0, p1, p2), (r1, p2, p1), (r2, p3, p1)):
            self.choose(recipient, programme, meal, meal_by)
            self.choose(recipient, programme, bath, bath_by)
        self.issue(programme, self.period(-1))
        self.issue(programme, self.period())

        def day(n: int, hour: int = 10) -> datetime:
            return self.in_month(-1, n, hour)

        served = {
            "r0_meal": [self.redeem(p1, r0, meal, delivered_at=day(n)) for n in (2, 5, 9)],
            "r0_bath": [self.redeem(p2, r0, bath, delivered_at=day(3))],
            "r1_meal": [self.redeem(p2, r1, meal, delivered_at=day(n)) for n in (4, 8)],
            "r1_bath": [self.redeem(p1, r1, bath, delivered_at=day(6, 15))],
            "r2_meal": [self.redeem(p3, r2, meal, delivered_at=day(n, 18)) for n in (7, 12)],
        }
        for rated, score in ((served["r0_meal"][0], 5), (served["r0_meal"][1], 4), (served["r0_bath"][0], 2),
                             (served["r1_bath"][0], 5), (served["r2_meal"][0], 3)):
            self.rate(rated, score)
        self.reverse(served["r1_meal"][1])  # last month's voucher is issued again, then expires
        unsettled = self.redeem(p1, r0, meal)  # this month: completed, in no settlement
        undone = self.redeem(p3, r2, meal)
        self.reverse(undone)
        revoked = self.vouchers(Voucher.recipient_id == r2.id, Voucher.item_code == bath,
                                Voucher.status == "issued", Voucher.valid_from == self.first_day())[0].id
        self.revoke(revoked)
        self.expire(programme)

        drafter, approver = self.admin(), self.admin()
        drafts = self.settle(programme, self.period(-1), evaluations={p2.id: 40}, by=drafter)
        by_provider = {self.settlement(s).provider_id: s for s in drafts}
        assert set(by_provider) == {p1.id, p2.id, p3.id}
        self.approve(by_provider[p1.id], by=approver)
        self.pay(by_provider[p1.id], by=approver, reference="国库集中支付-全流程-001")
        self.approve(by_provider[p2.id], by=approver)
        expired = self.vouchers(Voucher.programme_id == programme.id, Voucher.status == "expired")[0].id
        issued = self.vouchers(Voucher.programme_id == programme.id, Voucher.status == "issued")[0].id
        return FullScenario(
            programme=programme.id, meal=meal, bath=bath, providers=(p1, p2, p3), recipients=(r0, r1, r2),
            drafter=drafter, approver=approver, paid=by_provider[p1.id], approved=by_provider[p2.id],
            draft=by_provider[p3.id], unsettled=unsettled, settled=served["r0_bath"][0], reversed=undone,
            expired_voucher=expired, issued_voucher=issued, revoked_voucher=revoked)

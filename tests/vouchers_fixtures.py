"""A scenario builder for the vouchers tests (issuance, choice, redemption, races).

Every object is made through the service layer, each step in its own app context and transaction,
so a test starts from a state the product itself can reach. Nothing here keeps an app context
pushed: tests stay free to use the HTTP client or real threads in between.

Dates are relative to the real local date (LOCAL_TIMEZONE), because the HTTP routes use the clock:
the default programme runs from twelve months before this month to twelve months after it, so
"this month", "last month" and "next month" are always periods inside it.

    build = Builder(app)
    world = build.world()                 # an active programme, two enrolled providers, two recipients
    build.issue(world.programme, build.period())
"""

import itertools
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from marketplace.audit.models import AuditEvent
from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.catalogue import service as catalogue_service
from marketplace.db import db, local_date, transaction, utcnow
from marketplace.demo import demo_credit_code
from marketplace.programmes import ledger
from marketplace.programmes import service as programme_service
from marketplace.programmes.models import JournalEntry, Programme
from marketplace.recipients import service as recipient_service
from marketplace.recipients.idnumber import check_character
from marketplace.recipients.models import Recipient
from providers.service import enrolment, qualification, registry
from tests.conftest import PASSWORD
from vouchers import tokens
from vouchers.models import Issuance, Redemption, Voucher
from vouchers.service import choice, issuance, redemption

_serial = itertools.count(1)


# --- calendar -------------------------------------------------------------------------------------

def first_of_month(day: date, offset: int = 0) -> date:
    """The first day of the month *offset* months after *day*'s month."""
    index = day.year * 12 + day.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def last_of_month(day: date) -> date:
    return day.replace(day=monthrange(day.year, day.month)[1])


def month_of(day: date) -> str:
    return f"{day:%Y-%m}"


def period_days(period: str) -> tuple[date, date]:
    first = date.fromisoformat(f"{period}-01")
    return first, last_of_month(first)


def years_before(day: date, years: int) -> date:
    """The same calendar day *years* earlier (29 February becomes 28 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


# --- references handed to tests -------------------------------------------------------------------

@dataclass(frozen=True)
class ProviderRef:
    id: int
    user: User | None
    name: str


@dataclass(frozen=True)
class RecipientRef:
    id: int
    user: User | None
    name: str
    tags: tuple[str, ...]


@dataclass
class World:
    """The usual cast: an active programme buying meals and baths, two enrolled providers, two recipients.

    alice is `low_income` (5 % co-payment), bob has no tags (the default 20 %); both have logins.
    The programme requires a choice; nobody has chosen yet.
    """

    programme: Programme
    meal: str
    bath: str
    admin: User
    p1: ProviderRef
    p2: ProviderRef
    alice: RecipientRef
    bob: RecipientRef
    extra: dict = field(default_factory=dict)


MEAL_PRICE, MEAL_QUOTA = 1200, 4
BATH_PRICE, BATH_QUOTA = 5000, 2
COPAY = {"default": 20, "low_income": 5, "disabled": 10}


class Builder:
    def __init__(self, app):
        self.app = app
        self._system_admin: User | None = None

    # --- plumbing ---------------------------------------------------------------------------------

    def run(self, work):
        """Run *work()* in its own app context and transaction; return its result."""
        with self.app.app_context(), transaction():
            return work()

    def read(self, work):
        """Run *work()* in its own app context, without committing; return its result (detached)."""
        with self.app.app_context():
            return work()

    def today(self) -> date:
        return self.read(lambda: local_date(utcnow()))

    def period(self, offset: int = 0) -> str:
        """This month (offset 0), last month (-1), next month (1) as `YYYY-MM`."""
        return month_of(first_of_month(self.today(), offset))

    def local_midnight(self) -> datetime:
        """Today's local midnight as a UTC instant: a delivery time that is always today and never future."""
        zone = ZoneInfo(self.app.config["LOCAL_TIMEZONE"])
        return datetime.combine(self.today(), time(0, 0), zone).astimezone(UTC)

    def instant_on(self, day: date, hour: int = 12) -> datetime:
        """A UTC instant on local *day* (noon by default)."""
        zone = ZoneInfo(self.app.config["LOCAL_TIMEZONE"])
        return datetime.combine(day, time(hour, 0), zone).astimezone(UTC)

    # --- people and things ------------------------------------------------------------------------

    def user(self, *, role: str, region_code: str | None = None, provider_id: int | None = None,
             recipient_id: int | None = None, username: str | None = None) -> User:
        username = username or f"{role}-v{next(_serial)}"
        return self.run(lambda: auth_service.create_user(
            username=username, password=PASSWORD, role=role, region_code=region_code, provider_id=provider_id,
            recipient_id=recipient_id, actor=None, now=utcnow()))

    def admin(self, region_code: str | None = None) -> User:
        return self.user(role="admin", region_code=region_code)

    def auditor(self) -> User:
        return self.user(role="auditor")

    @property
    def system_admin(self) -> User:
        """An admin for setup steps that need one (qualification decisions, choices made for someone)."""
        if self._system_admin is None:
            self._system_admin = self.admin()
        return self._system_admin

    def headers(self, user: User) -> dict:
        """Bearer headers for *user*, issued by the auth service (no password round: argon2 is slow)."""
        def issue():
            raw, _row = auth_service.issue_token(user=db.session.get(User, user.id), kind="bearer", now=utcnow())
            return raw

        return {"Authorization": f"Bearer {self.run(issue)}"}

    def item(self, *, name: str = "助餐", unit: str = "餐", price: int = 1500, code: str | None = None) -> str:
        code = code or f"HC-{next(_serial)}"
        self.run(lambda: catalogue_service.create_item(code=code, name=name, category_code="basic_public", unit=unit,
                                                       standard_price_fen=price, nature="service", actor=None,
                                                       now=utcnow()))
        return code

    def programme(self, *, items: list[tuple[str, int, int]], budget_fen: int = 10_000_000, status: str = "active",
                  region_code: str = "510131", starts_on: date | None = None, ends_on: date | None = None,
                  min_age: int | None = 60, tags_any: tuple[str, ...] = (), copay: dict | None = None,
                  reversal_window_hours: int = 48, choice_required: bool = True,
                  name: str = "蒲江县居家养老服务券") -> Programme:
        """A programme buying *items* = [(item_code, unit_price_fen, monthly_quota)], taken to *status*."""
        today = self.today()
        starts_on = starts_on or first_of_month(today, -12)
        ends_on = ends_on or last_of_month(first_of_month(today, 12))

        def create():
            now = utcnow()
            programme = programme_service.create_programme(
                name=name, authority="蒲江县民政局", region_code=region_code, starts_on=starts_on, ends_on=ends_on,
                items=[{"item_code": code, "unit_price_fen": price, "monthly_quota": quota}
                       for code, price, quota in items],
                eligibility={"min_age": min_age, "tags_any": list(tags_any)}, copay_percent=dict(copay or COPAY),
                reserved_share_percent=30,
                settlement_rules=[{"min_score": 0, "pay_percent": 60}, {"min_score": 80, "pay_percent": 100}],
                rating_window_days=30, reversal_window_hours=reversal_window_hours, choice_required=choice_required,
                actor=None, now=now)
            if budget_fen:
                programme_service.amend_budget(programme=programme, amount_fen=budget_fen, reason="年度预算",
                                               actor=None, now=now)
            if status in ("active", "closed"):
                programme_service.activate(programme=programme, actor=None, now=now)
            if status == "closed":
                programme_service.close(programme=programme, actor=None, now=now)
            return programme

        return self.run(create)

    def add_budget(self, programme_id: int, amount_fen: int) -> None:
        self.run(lambda: programme_service.amend_budget(programme=db.session.get(Programme, programme_id),
                                                        amount_fen=amount_fen, reason="追加预算", actor=None,
                                                        now=utcnow()))

    def provider(self, *, items: list[str], regions: tuple[str, ...] = ("510131",), status: str = "approved",
                 enrol: tuple[Programme, ...] = (), login: bool = True,
                 kind: str = "social_organisation") -> ProviderRef:
        """A registered provider taken to *status*; enrolled (while approved) in *enrol*."""
        number = next(_serial)
        name = f"蒲江县第{number}社区养老服务中心"
        admin = self.system_admin

        def create():
            now = utcnow()
            provider = registry.register_provider(
                name=name, kind=kind, credit_code=demo_credit_code("52", f"MA{number:06d}"),
                legal_representative="张建华", phone="028-88550001", address="四川省成都市蒲江县鹤山街道",
                region_codes=list(regions), item_codes=items, capacity=2000, account=None, actor=admin,
                now=now).provider
            if status != "pending":
                qualification.change_status(provider_id=provider.id, action="approve", reason="资质审核通过",
                                               actor=admin, now=now)
            for programme in enrol:
                enrolment.enrol(programme=db.session.get(Programme, programme.id), provider_id=provider.id,
                                       actor=admin, now=now)
            if status == "suspended":
                qualification.change_status(provider_id=provider.id, action="suspend", reason="投诉核查", actor=admin,
                                               now=now)
            if status == "revoked":
                qualification.change_status(provider_id=provider.id, action="revoke", reason="资质撤销", actor=admin,
                                               now=now)
            return provider.id

        provider_id = self.run(create)
        user = self.user(role="provider", provider_id=provider_id) if login else None
        return ProviderRef(id=provider_id, user=user, name=name)

    def set_provider_status(self, provider_id: int, action: str) -> None:
        admin = self.system_admin
        self.run(lambda: qualification.change_status(provider_id=provider_id, action=action,
                                                        reason="状态变更", actor=admin, now=utcnow()))

    def recipient(self, *, birth: date = date(1950, 5, 5), region_code: str = "510131", tags: tuple[str, ...] = (),
                  status: str = "active", login: bool = False, name: str | None = None) -> RecipientRef:
        """An enrolled recipient born on *birth*, living in *region_code*, taken to *status*."""
        number = next(_serial)
        name = name or f"王秀英{number}"
        first17 = f"510131{birth:%Y%m%d}{number % 1000:03d}"

        def create():
            now = utcnow()
            recipient = recipient_service.create_recipient(
                name=name, id_number=first17 + check_character(first17), phone=None, region_code=region_code,
                address="蒲江县鹤山街道1村2组", tags=list(tags), actor=None, now=now)
            if status != "active":
                recipient_service.update_recipient(recipient=recipient, status=status, actor=None, now=now)
            return recipient.id

        recipient_id = self.run(create)
        user = self.user(role="recipient", recipient_id=recipient_id) if login else None
        return RecipientRef(id=recipient_id, user=user, name=name, tags=tuple(sorted(tags)))

    def set_recipient_status(self, recipient_id: int, status: str) -> None:
        self.run(lambda: recipient_service.update_recipient(recipient=db.session.get(Recipient, recipient_id),
                                                            status=status, actor=None, now=utcnow()))

    def world(self, *, budget_fen: int = 10_000_000, choice_required: bool = True,
              reversal_window_hours: int = 48) -> World:
        meal = self.item(name="助餐", unit="餐", price=1500)
        bath = self.item(name="助浴", unit="次", price=6000)
        programme = self.programme(items=[(meal, MEAL_PRICE, MEAL_QUOTA), (bath, BATH_PRICE, BATH_QUOTA)],
                                   budget_fen=budget_fen, choice_required=choice_required,
                                   reversal_window_hours=reversal_window_hours)
        admin = self.system_admin
        p1 = self.provider(items=[meal, bath], enrol=(programme,))
        p2 = self.provider(items=[meal, bath], enrol=(programme,))
        alice = self.recipient(tags=("low_income",), login=True, name="李桂英")
        bob = self.recipient(login=True, name="张建国")
        return World(programme=programme, meal=meal, bath=bath, admin=admin, p1=p1, p2=p2, alice=alice, bob=bob)

    # --- vouchers ---------------------------------------------------------------------------------

    def issue(self, programme: Programme | int, period: str, *, now: datetime | None = None):
        programme_id = getattr(programme, "id", programme)
        return self.run(lambda: issuance.issue_monthly(programme=db.session.get(Programme, programme_id),
                                                              period=period, actor=None, now=now or utcnow()))

    def supplementary(self, programme: Programme | int, recipient_id: int, item_code: str, count: int = 1) -> list[int]:
        programme_id = getattr(programme, "id", programme)

        def issue():
            vouchers = issuance.issue_supplementary(
                programme=db.session.get(Programme, programme_id), recipient=db.session.get(Recipient, recipient_id),
                item_code=item_code, count=count, actor=None, now=utcnow())
            return [voucher.id for voucher in vouchers]

        return self.run(issue)

    def choose(self, recipient_id: int, programme: Programme | int, item_code: str, provider_id: int) -> None:
        programme_id = getattr(programme, "id", programme)
        admin = self.system_admin
        self.run(lambda: choice.set_choice(
            recipient=db.session.get(Recipient, recipient_id), programme=db.session.get(Programme, programme_id),
            item_code=item_code, provider_id=provider_id, actor=admin, now=utcnow()))

    def choose_all(self, world: World, provider: ProviderRef, *recipients: RecipientRef) -> None:
        for recipient in recipients or (world.alice, world.bob):
            for item_code in (world.meal, world.bath):
                self.choose(recipient.id, world.programme, item_code, provider.id)

    def voucher_token(self, voucher_id: int) -> str:
        return self.read(lambda: tokens.voucher_token(voucher_id))

    def presence_token(self, recipient_id: int, *, now: datetime | None = None) -> str:
        return self.read(lambda: tokens.presence_token(recipient_id=recipient_id, now=now or utcnow())[0])

    def redeem(self, provider: ProviderRef, *, now: datetime | None = None, **kwargs) -> Redemption:
        """Redeem through the service as *provider*'s login (kwargs as for vouchers.redemption.redeem)."""
        def work():
            actor = db.session.get(User, provider.user.id)
            return redemption.redeem(actor=actor, now=now or utcnow(), **kwargs)

        return self.run(work)

    # --- reading ----------------------------------------------------------------------------------

    def vouchers(self, *conditions) -> list[Voucher]:
        return self.read(lambda: db.session.scalars(select(Voucher).where(*conditions).order_by(Voucher.id)).all())

    def voucher(self, voucher_id: int) -> Voucher:
        return self.read(lambda: db.session.get(Voucher, voucher_id))

    def redemptions(self, *conditions) -> list[Redemption]:
        return self.read(lambda: db.session.scalars(select(Redemption).where(*conditions)
                                                    .order_by(Redemption.id)).all())

    def count(self, model, *conditions) -> int:
        return self.read(lambda: db.session.scalar(select(func.count()).select_from(model).where(*conditions)))

    def ledger(self, programme: Programme | int) -> ledger.Ledger:
        programme_id = getattr(programme, "id", programme)
        return self.read(lambda: ledger.balances(programme_id))

    def reconciliation(self, programme: Programme | int) -> dict:
        programme_id = getattr(programme, "id", programme)
        return self.read(lambda: ledger.reconcile(programme_id))

    def failing_checks(self, programme: Programme | int) -> list[str]:
        return [check["name"] for check in self.reconciliation(programme)["checks"] if not check["ok"]]

    def issued_face_value(self, programme: Programme | int) -> int:
        programme_id = getattr(programme, "id", programme)
        return self.read(lambda: int(db.session.scalar(
            select(func.coalesce(func.sum(Voucher.face_value_fen), 0))
            .where(Voucher.programme_id == programme_id, Voucher.status == "issued"))))

    def footprint(self, programme: Programme | int) -> SimpleNamespace:
        """Row counts that any money movement of the programme would change."""
        programme_id = getattr(programme, "id", programme)
        return SimpleNamespace(
            vouchers=self.count(Voucher, Voucher.programme_id == programme_id),
            issuances=self.count(Issuance, Issuance.programme_id == programme_id),
            journal_entries=self.count(JournalEntry, JournalEntry.programme_id == programme_id),
            audit_events=self.count(AuditEvent),
        )

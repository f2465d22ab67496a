"""A scenario builder for the ratings, complaints and ranking tests.

Everything is made through the service layer, each step in its own app context and transaction, so
a test starts from a state the product itself can reach: an active programme with a budget, approved
and enrolled providers with logins, recipients with logins, vouchers issued by the monthly run, the
recipients' choices, and real redemptions (a provider scanning the recipient's presence code). Ratings
are always about such redemptions; nothing here inserts rating rows.

No app context stays pushed: tests are free to use the HTTP client in between.

Dates follow the real clock (the HTTP routes use it): the default programme runs from twelve months
before this month to twelve months after it, and services are delivered "now" unless told otherwise.

    build = RatingsBuilder(app)
    meal = build.item()
    programme = build.programme([meal])
    p1 = build.provider([meal], enrol_in=[programme])
    alice = build.recipient()
    build.issue(programme)
    build.choose(alice, programme, meal, p1)
    redemption = build.redeem(p1, alice, meal)
    build.rate(redemption, 5, by=alice.user)       # alice herself (default: the bureau's 回访 call)
"""

import itertools
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select

from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.catalogue import service as catalogue_service
from marketplace.db import db, local_date, transaction, utcnow
from marketplace.demo import demo_credit_code
from marketplace.programmes import service as programme_service
from marketplace.programmes.models import Programme
from marketplace.recipients import service as recipient_service
from marketplace.recipients.idnumber import check_character
from marketplace.recipients.models import Recipient
from providers.models import Rating, RatingAggregate
from providers.service import enrolment, qualification, registry
from tests.conftest import PASSWORD
from vouchers.models import Redemption
from vouchers.service import choice, feedback, issuance, redemption, reversal

_serial = itertools.count(1)

DEFAULT_PRICE = 1200
DEFAULT_QUOTA = 31  # a service a day: enough vouchers for the long rating sequences


# --- calendar -------------------------------------------------------------------------------------

def first_of_month(day: date, offset: int = 0) -> date:
    index = day.year * 12 + day.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def last_of_month(day: date) -> date:
    return day.replace(day=monthrange(day.year, day.month)[1])


# --- references handed to tests (plain values: safe outside any app context) ----------------------

@dataclass(frozen=True)
class ProviderRef:
    id: int
    user: User | None  # the provider's staff login (scans presence codes)


@dataclass(frozen=True)
class RecipientRef:
    id: int
    user: User | None  # the recipient's own login


@dataclass(frozen=True)
class RedemptionRef:
    id: int
    voucher_id: int
    programme_id: int
    provider_id: int
    recipient_id: int
    item_code: str
    delivered_at: datetime


def _redemption_ref(redemption: Redemption) -> RedemptionRef:
    return RedemptionRef(id=redemption.id, voucher_id=redemption.voucher_id, programme_id=redemption.programme_id,
                         provider_id=redemption.provider_id, recipient_id=redemption.recipient_id,
                         item_code=redemption.item_code, delivered_at=redemption.delivered_at)


class RatingsBuilder:
    def __init__(self, app):
        self.app = app
        self._system_admin: User | None = None
        self._headers: dict[int, dict] = {}

    # --- plumbing ---------------------------------------------------------------------------------

    def run(self, work):
        """Run *work()* in its own app context and transaction (committed); return its result."""
        with self.app.app_context(), transaction():
            return work()

    def read(self, work):
        """Run *work()* in its own app context without writing; return its result."""
        with self.app.app_context():
            return work()

    def today(self) -> date:
        return self.read(lambda: local_date(utcnow()))

    def period(self, day: date | None = None) -> str:
        return f"{day or self.today():%Y-%m}"

    def instant_on(self, day: date, hour: int = 12) -> datetime:
        """A UTC instant at *hour* o'clock on the local calendar *day*."""
        zone = ZoneInfo(self.app.config["LOCAL_TIMEZONE"])
        return datetime.combine(day, time(hour, 0), zone).astimezone(UTC)

    # --- people -----------------------------------------------------------------------------------

    def user(self, *, role: str, region_code: str | None = None, provider_id: int | None = None,
             recipient_id: int | None = None) -> User:
        username = f"{role}-r{next(_serial)}"
        return self.run(lambda: auth_service.create_user(
            username=username, password=PASSWORD, role=role, region_code=region_code, provider_id=provider_id,
            recipient_id=recipient_id, actor=None, now=utcnow()))

    def admin(self, region_code: str | None = None) -> User:
        return self.user(role="admin", region_code=region_code)

    def auditor(self) -> User:
        return self.user(role="auditor")

    @property
    def system_admin(self) -> User:
        """The admin that performs setup steps (qualification decisions, enrolment, choices)."""
        if self._system_admin is None:
            self._system_admin = self.admin()
        return self._system_admin

    def headers(self, user: User) -> dict:
        """Bearer headers for *user*, one token per user and builder (issued by the auth service: no argon2)."""
        if user.id not in self._headers:
            def issue():
                raw, _row = auth_service.issue_token(user=db.session.get(User, user.id), kind="bearer", now=utcnow())
                return raw

            self._headers[user.id] = {"Authorization": f"Bearer {self.run(issue)}"}
        return self._headers[user.id]

    # --- catalogue and programmes -----------------------------------------------------------------

    def item(self, code: str | None = None, name: str = "助餐") -> str:
        code = code or f"HC-R{next(_serial)}"
        self.run(lambda: catalogue_service.create_item(code=code, name=name, category_code="basic_public", unit="次",
                                                       standard_price_fen=1500, nature="service", actor=None,
                                                       now=utcnow()))
        return code

    def programme(self, item_codes: list[str], *, region_code: str = "510131", rating_window_days: int = 30,
                  quota: int = DEFAULT_QUOTA, price: int = DEFAULT_PRICE, budget_fen: int = 100_000_000,
                  choice_required: bool = True) -> int:
        """An active programme buying *item_codes* (each at *price*, *quota* a month per recipient); its id."""
        today = self.today()

        def create():
            now = utcnow()
            programme = programme_service.create_programme(
                name=f"居家养老服务券 {next(_serial)}", authority="蒲江县民政局", region_code=region_code,
                starts_on=first_of_month(today, -12), ends_on=last_of_month(first_of_month(today, 12)),
                items=[{"item_code": code, "unit_price_fen": price, "monthly_quota": quota} for code in item_codes],
                eligibility={"min_age": 60, "tags_any": []}, copay_percent={"default": 20},
                reserved_share_percent=30, settlement_rules=[{"min_score": 0, "pay_percent": 100}],
                rating_window_days=rating_window_days, reversal_window_hours=48, choice_required=choice_required,
                actor=None, now=now)
            programme_service.amend_budget(programme=programme, amount_fen=budget_fen, reason="年度预算", actor=None,
                                           now=now)
            programme_service.activate(programme=programme, actor=None, now=now)
            return programme.id

        return self.run(create)

    # --- providers --------------------------------------------------------------------------------

    def provider(self, item_codes: list[str], *, regions: tuple[str, ...] = ("510131",), enrol_in=(),
                 status: str = "approved", name: str | None = None, kind: str = "social_organisation",
                 login: bool = True) -> ProviderRef:
        """A provider offering *item_codes* in *regions*, approved, enrolled in each programme of *enrol_in*,
        then taken to *status* (approved, suspended or revoked); with a staff login unless *login* is False.
        A `pending` provider is only registered (never approved nor enrolled)."""
        serial = next(_serial)
        username = f"staff-r{serial}"
        admin = self.system_admin

        def create():
            now = utcnow()
            actor = db.session.get(User, admin.id)
            provider = registry.register_provider(
                name=name or f"养老服务中心 {serial}", kind=kind, credit_code=demo_credit_code("52", f"MR{serial:06d}"),
                legal_representative="张建华", phone="028-88550001", address="四川省成都市蒲江县鹤山街道",
                region_codes=list(regions), item_codes=list(item_codes), capacity=2000,
                account={"username": username, "password": PASSWORD} if login else None, actor=actor, now=now).provider
            if status == "pending":
                return ProviderRef(id=provider.id, user=None)
            qualification.change_status(provider_id=provider.id, action="approve", reason="资质审核通过", actor=actor,
                                           now=now)
            for programme_id in enrol_in:
                enrolment.enrol(programme=db.session.get(Programme, programme_id), provider_id=provider.id,
                                       actor=actor, now=now)
            user = db.session.scalar(select(User).where(User.provider_id == provider.id)) if login else None
            return ProviderRef(id=provider.id, user=user)

        ref = self.run(create)
        if status == "suspended":
            self.change_status(ref, "suspend")
        elif status == "revoked":
            self.change_status(ref, "revoke")
        return ref

    def change_status(self, provider: ProviderRef, action: str) -> None:
        admin = self.system_admin
        self.run(lambda: qualification.change_status(
            provider_id=provider.id, action=action, reason=f"{action} for the test",
            actor=db.session.get(User, admin.id), now=utcnow()))

    # --- recipients, vouchers and choices ---------------------------------------------------------

    def recipient(self, *, region_code: str = "510131", login: bool = True, tags: tuple[str, ...] = ()) -> RecipientRef:
        """A recipient over 60 living in *region_code*, with a login of their own unless *login* is False."""
        serial = next(_serial)
        birth = date(1940, 1, 1) + timedelta(days=serial)
        first17 = f"510131{birth:%Y%m%d}{serial % 1000:03d}"

        def create():
            now = utcnow()
            recipient = recipient_service.create_recipient(
                name="王秀英", id_number=first17 + check_character(first17), phone="13812345678",
                region_code=region_code, address="蒲江县鹤山街道1村2组", tags=list(tags), actor=None, now=now)
            user = None
            if login:
                user = recipient_service.create_account(recipient=recipient, username=f"resident-r{serial}",
                                                        password=PASSWORD, actor=None, now=now)
            return RecipientRef(id=recipient.id, user=user)

        return self.run(create)

    def issue(self, programme_id: int, period: str | None = None) -> int:
        """The monthly run for *period* (this month by default); the number of vouchers issued."""
        period = period or self.period()
        admin = self.system_admin
        return self.run(lambda: issuance.issue_monthly(
            programme=db.session.get(Programme, programme_id), period=period,
            actor=db.session.get(User, admin.id), now=utcnow())).vouchers

    def choose(self, recipient: RecipientRef, programme_id: int, item_code: str, provider: ProviderRef) -> None:
        admin = self.system_admin
        self.run(lambda: choice.set_choice(
            recipient=db.session.get(Recipient, recipient.id), programme=db.session.get(Programme, programme_id),
            item_code=item_code, provider_id=provider.id, actor=db.session.get(User, admin.id), now=utcnow()))

    # --- service delivered and redeemed -----------------------------------------------------------

    def redeem(self, provider: ProviderRef, recipient: RecipientRef, item_code: str, *,
               delivered_at: datetime | None = None, now: datetime | None = None) -> RedemptionRef:
        """The provider's staff scan the recipient's presence code after delivering *item_code*."""

        def scan():
            at = now or utcnow()
            token = redemption.create_presence_code(recipient_id=recipient.id, now=at)["token"]
            redeemed = redemption.redeem(actor=db.session.get(User, provider.user.id), now=at,
                                                presence_token=token, item_code=item_code, delivered_at=delivered_at,
                                                duration_minutes=45)
            return _redemption_ref(redeemed)

        return self.run(scan)

    def serve(self, provider: ProviderRef, recipients: list[RecipientRef], programme_id: int, item_code: str,
              times: int) -> list[RedemptionRef]:
        """*times* services of *item_code* by *provider*, spread over *recipients* (who choose it first)."""
        for recipient in recipients:
            self.choose(recipient, programme_id, item_code, provider)
        return [self.redeem(provider, recipients[index % len(recipients)], item_code) for index in range(times)]

    def reverse(self, redemption: RedemptionRef) -> None:
        admin = self.system_admin
        self.run(lambda: reversal.reverse_redemption(
            redemption=db.session.get(Redemption, redemption.id), reason="scanned by mistake",
            actor=db.session.get(User, admin.id), now=utcnow()))

    # --- ratings ----------------------------------------------------------------------------------

    def rate(self, redemption: RedemptionRef, score: int, *, by: User | None = None, source: str | None = None,
             comment: str | None = None, now: datetime | None = None) -> int:
        """Rate through the vouchers service: by *by* (default: a phone follow-up by the system admin)."""
        actor = by or self.system_admin
        source = source or ("phone_followup" if actor.role == "admin" else "recipient")

        def rate():
            rating = feedback.rate_redemption(redemption_id=redemption.id, score=score, comment=comment, source=source,
                actor=db.session.get(User, actor.id), now=now or utcnow())
            return rating.id

        return self.run(rate)

    def rated_services(self, provider: ProviderRef, recipients: list[RecipientRef], programme_id: int,
                       item_code: str, scores: list[int]) -> list[RedemptionRef]:
        """One delivered, redeemed and (by phone follow-up) rated service per score."""
        redemptions = self.serve(provider, recipients, programme_id, item_code, len(scores))
        for served, score in zip(redemptions, scores, strict=True):
            self.rate(served, score)
        return redemptions

    # --- reading back -----------------------------------------------------------------------------

    def ratings(self) -> list[dict]:
        def load():
            return [{"id": r.id, "redemption_id": r.redemption_id, "provider_id": r.provider_id,
                     "programme_id": r.programme_id, "item_code": r.item_code, "recipient_id": r.recipient_id,
                     "score": r.score, "comment": r.comment, "source": r.source, "rated_by": r.rated_by}
                    for r in db.session.scalars(select(Rating).order_by(Rating.id))]

        return self.read(load)

    def aggregates(self) -> dict[tuple[int, int, str], tuple[int, int, int]]:
        """The rating_aggregate table: (provider, programme, item) → (count, sum, satisfied)."""
        def load():
            return {(a.provider_id, a.programme_id, a.item_code): (a.ratings_count, a.score_sum, a.satisfied_count)
                    for a in db.session.scalars(select(RatingAggregate).where(RatingAggregate.ratings_count > 0))}

        return self.read(load)

    def recomputed_aggregates(self) -> dict[tuple[int, int, str], tuple[int, int, int]]:
        """The same totals recomputed from the ratings of services that stand (not reversed)."""
        def load():
            satisfied = func.sum(case((Rating.score >= 4, 1), else_=0))
            rows = db.session.execute(
                select(Rating.provider_id, Rating.programme_id, Rating.item_code, func.count(), func.sum(Rating.score),
                       satisfied).join(Redemption, Redemption.id == Rating.redemption_id)
                .where(Redemption.status == "completed")
                .group_by(Rating.provider_id, Rating.programme_id, Rating.item_code))
            return {(provider, programme, item): (int(count), int(total), int(sat))
                    for provider, programme, item, count, total, sat in rows}

        return self.read(load)

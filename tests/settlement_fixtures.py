"""A scenario builder for the settlement, reconciliation and reporting tests.

Every object is made through the service layer, each step in its own app context and transaction, so
a test starts from a state the product itself can reach: programmes with their own settlement rules,
approved and enrolled providers with staff logins, recipients whose personal data the test knows,
vouchers from the monthly run, choices, redemptions by scanning a presence code, phone follow-up
ratings, complaints, reversals, revocations, expiry and settlements. Nothing here inserts rows behind
the services' back, and no app context stays pushed between steps (tests use the HTTP client freely).

Dates follow the real clock, because the HTTP routes use it: programmes run from twelve months before
this month to twelve months after it, so `period(-2)`, `period(-1)` and `period()` are always inside.
A service may be delivered at any past instant (`delivered_at`): the provider scans five minutes later
(the redemption's `now`), ratings and complaints about it come an hour after delivery unless told
otherwise, and a reversal an hour after the scan, so every window is respected whatever the month.

    build = SettlementBuilder(app)
    meal = build.item()
    programme = build.programme([(meal, 1237, 10)])
    p1 = build.provider([meal], enrol_in=[programme])
    alice = build.recipient()
    build.issue(programme, build.period(-1))
    build.choose(alice, programme, meal, p1)
    r = build.redeem(p1, alice, meal, delivered_at=build.at(build.first_day(-1), 10))
    build.rate(r, 5)
"""

import itertools
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.catalogue import service as catalogue_service
from marketplace.db import db, local_date, transaction, utcnow
from marketplace.demo import demo_credit_code
from marketplace.programmes import ledger
from marketplace.programmes import service as programme_service
from marketplace.programmes.models import Programme
from marketplace.recipients import service as recipient_service
from marketplace.recipients.idnumber import check_character
from marketplace.recipients.models import Recipient
from providers.models import Provider
from providers.service import complaints, enrolment, qualification, registry
from tests.conftest import PASSWORD
from vouchers.models import Redemption, Settlement, Voucher
from vouchers.service import choice, feedback, issuance, redemption, reversal, revocation, settlement

_serial = itertools.count(1)

DEFAULT_RULES = ({"min_score": 0, "pay_percent": 60}, {"min_score": 80, "pay_percent": 100})
# Copay percent per tag: the default 20 % makes face values of odd prices odd (see face_value()).
COPAY = {"default": 20, "low_income": 5}
SCAN_DELAY = timedelta(minutes=5)


def first_of_month(day: date, offset: int = 0) -> date:
    index = day.year * 12 + day.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def last_of_month(day: date) -> date:
    return day.replace(day=monthrange(day.year, day.month)[1])


def face_value(unit_price_fen: int, copay_percent: int) -> int:
    """What the bureau pays for one voucher: the price less the co-payment rounded up to the fen."""
    return unit_price_fen - (unit_price_fen * copay_percent + 99) // 100


# --- references handed to tests (plain values: safe outside any app context) ----------------------

@dataclass(frozen=True)
class ProviderRef:
    id: int
    user: User | None
    name: str
    legal_representative: str
    phone: str


@dataclass(frozen=True)
class RecipientRef:
    id: int
    user: User | None
    name: str
    id_number: str
    id_number_masked: str
    phone: str | None


@dataclass(frozen=True)
class RedemptionRef:
    id: int
    voucher_id: int
    provider_id: int
    item_code: str
    face_value_fen: int
    delivered_at: datetime
    scanned_at: datetime


class SettlementBuilder:
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

    def now(self) -> datetime:
        return utcnow()

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.app.config["LOCAL_TIMEZONE"])

    def today(self) -> date:
        return self.read(lambda: local_date(utcnow()))

    def first_day(self, offset: int = 0) -> date:
        """The first local day of the month *offset* months from this one."""
        return first_of_month(self.today(), offset)

    def last_day(self, offset: int = 0) -> date:
        return last_of_month(self.first_day(offset))

    def period(self, offset: int = 0) -> str:
        return f"{self.first_day(offset):%Y-%m}"

    def at(self, day: date, hour: int = 12, minute: int = 0) -> datetime:
        """The UTC instant of *hour*:*minute* local time on the local calendar *day*."""
        return datetime.combine(day, time(hour, minute), self.zone()).astimezone(UTC)

    # --- people -----------------------------------------------------------------------------------

    def user(self, *, role: str, region_code: str | None = None, provider_id: int | None = None,
             recipient_id: int | None = None) -> User:
        username = f"{role}-s{next(_serial)}"
        return self.run(lambda: auth_service.create_user(
            username=username, password=PASSWORD, role=role, region_code=region_code, provider_id=provider_id,
            recipient_id=recipient_id, actor=None, now=utcnow()))

    def admin(self, region_code: str | None = None) -> User:
        return self.user(role="admin", region_code=region_code)

    def auditor(self) -> User:
        return self.user(role="auditor")

    @property
    def system_admin(self) -> User:
        """The admin that performs setup steps (qualification, enrolment, choices, follow-up calls)."""
        if self._system_admin is None:
            self._system_admin = self.admin()
        return self._system_admin

    def headers(self, user: User) -> dict:
        """Bearer headers for *user* (a token issued by the auth service: no argon2 round per request)."""
        if user.id not in self._headers:
            def issue():
                raw, _row = auth_service.issue_token(user=db.session.get(User, user.id), kind="bearer", now=utcnow())
                return raw

            self._headers[user.id] = {"Authorization": f"Bearer {self.run(issue)}"}
        return self._headers[user.id]

    # --- catalogue and programmes -----------------------------------------------------------------

    def item(self, name: str = "助餐", unit: str = "次", price: int = 1500) -> str:
        code = f"HC-S{next(_serial)}"
        self.run(lambda: catalogue_service.create_item(code=code, name=name, category_code="basic_public", unit=unit,
                                                       standard_price_fen=price, nature="service", actor=None,
                                                       now=utcnow()))
        return code

    def programme(self, items: list[tuple[str, int, int]], *, rules=DEFAULT_RULES, budget_fen: int = 50_000_000,
                  status: str = "active", region_code: str = "510131", reserved_share_percent: int = 30,
                  name: str | None = None, reversal_window_hours: int = 48) -> int:
        """A programme buying *items* = [(item_code, unit_price_fen, monthly_quota)] taken to *status*; its id."""
        today = self.today()
        name = name or f"蒲江县居家养老服务券（{next(_serial)}）"

        def create():
            now = utcnow()
            programme = programme_service.create_programme(
                name=name, authority="蒲江县民政局", region_code=region_code,
                starts_on=first_of_month(today, -12), ends_on=last_of_month(first_of_month(today, 12)),
                items=[{"item_code": code, "unit_price_fen": price, "monthly_quota": quota}
                       for code, price, quota in items],
                eligibility={"min_age": 60, "tags_any": []}, copay_percent=dict(COPAY),
                reserved_share_percent=reserved_share_percent, settlement_rules=[dict(rule) for rule in rules],
                rating_window_days=30, reversal_window_hours=reversal_window_hours, choice_required=True,
                actor=None, now=now)
            if budget_fen:
                programme_service.amend_budget(programme=programme, amount_fen=budget_fen, reason="年度预算",
                                               actor=None, now=now)
            if status in ("active", "closed"):
                programme_service.activate(programme=programme, actor=None, now=now)
            return programme.id

        programme_id = self.run(create)
        if status == "closed":
            self.close(programme_id)
        return programme_id

    def close(self, programme_id: int) -> None:
        self.run(lambda: programme_service.close(programme=db.session.get(Programme, programme_id), actor=None,
                                                 now=utcnow()))

    # --- providers and recipients -----------------------------------------------------------------

    def provider(self, item_codes: list[str], *, enrol_in=(), kind: str = "social_organisation",
                 status: str = "approved", name: str | None = None, legal_representative: str | None = None,
                 phone: str | None = None, regions: tuple[str, ...] = ("510131",), login: bool = True) -> ProviderRef:
        """A provider offering *item_codes*, approved and enrolled in each programme of *enrol_in*
        (`pending` ones are only registered), with a staff login unless *login* is False."""
        number = next(_serial)
        name = name or f"蒲江县第{number}养老服务中心"
        legal_representative = legal_representative or f"诸葛长青{number}"
        phone = phone or f"028-8{number:07d}"
        admin = self.system_admin
        prefix = {"enterprise": "91", "public_institution": "12", "community_organisation": "51"}.get(kind, "52")

        def create():
            now = utcnow()
            actor = db.session.get(User, admin.id)
            provider = registry.register_provider(
                name=name, kind=kind, credit_code=demo_credit_code(prefix, f"MT{number:06d}"),
                legal_representative=legal_representative, phone=phone, address="四川省成都市蒲江县鹤山街道",
                region_codes=list(regions), item_codes=list(item_codes), capacity=2000, account=None, actor=actor,
                now=now).provider
            if status != "pending":
                qualification.change_status(provider_id=provider.id, action="approve", reason="资质审核通过",
                                               actor=actor, now=now)
                for programme_id in enrol_in:
                    enrolment.enrol(programme=db.session.get(Programme, programme_id), provider_id=provider.id,
                                           actor=actor, now=now)
            return provider.id

        provider_id = self.run(create)
        user = self.user(role="provider", provider_id=provider_id) if login else None
        return ProviderRef(id=provider_id, user=user, name=name, legal_representative=legal_representative,
                           phone=phone)

    def recipient(self, *, name: str | None = None, phone: str | None = None, birth: date | None = None,
                  tags: tuple[str, ...] = (), login: bool = False) -> RecipientRef:
        """A recipient over 60 in 510131 with a valid (invented) ID number that the test knows."""
        number = next(_serial)
        birth = birth or date(1930, 1, 1) + timedelta(days=7 * number % 9000)  # born 1930–1954
        first17 = f"510131{birth:%Y%m%d}{number % 1000:03d}"
        id_number = first17 + check_character(first17)
        name = name or f"欧阳秀兰{number}"
        phone = phone or f"139{number:08d}"

        def create():
            now = utcnow()
            recipient = recipient_service.create_recipient(
                name=name, id_number=id_number, phone=phone, region_code="510131", address="蒲江县鹤山街道1村2组",
                tags=list(tags), actor=None, now=now)
            return recipient.id, recipient.id_number_masked

        recipient_id, masked = self.run(create)
        user = self.user(role="recipient", recipient_id=recipient_id) if login else None
        return RecipientRef(id=recipient_id, user=user, name=name, id_number=id_number, id_number_masked=masked,
                            phone=phone)

    # --- vouchers, choices, redemptions -----------------------------------------------------------

    def issue(self, programme_id: int, period: str) -> int:
        """The monthly run for *period*; the number of vouchers issued."""
        return self.run(lambda: issuance.issue_monthly(
            programme=db.session.get(Programme, programme_id), period=period, actor=None, now=utcnow())).vouchers

    def choose(self, recipient: RecipientRef, programme_id: int, item_code: str, provider: ProviderRef) -> None:
        admin = self.system_admin
        self.run(lambda: choice.set_choice(
            recipient=db.session.get(Recipient, recipient.id), programme=db.session.get(Programme, programme_id),
            item_code=item_code, provider_id=provider.id, actor=db.session.get(User, admin.id), now=utcnow()))

    def redeem(self, provider: ProviderRef, recipient: RecipientRef, item_code: str, *,
               delivered_at: datetime | None = None) -> RedemptionRef:
        """The provider's staff scan the recipient's presence code right after delivering *item_code* at
        *delivered_at* (default now): the scan happens five minutes later, or now if that is sooner."""

        def scan():
            at = delivered_at or utcnow()
            now = min(at + SCAN_DELAY, utcnow())
            token = redemption.create_presence_code(recipient_id=recipient.id, now=now)["token"]
            redeemed = redemption.redeem(actor=db.session.get(User, provider.user.id), now=now,
                                                presence_token=token, item_code=item_code, delivered_at=at,
                                                duration_minutes=45)
            return RedemptionRef(id=redeemed.id, voucher_id=redeemed.voucher_id,
                                 provider_id=redeemed.provider_id, item_code=redeemed.item_code,
                                 face_value_fen=redeemed.face_value_fen, delivered_at=redeemed.delivered_at,
                                 scanned_at=now)

        return self.run(scan)

    def serve(self, provider: ProviderRef, recipient: RecipientRef, programme_id: int, item_code: str,
              deliveries: list[datetime]) -> list[RedemptionRef]:
        """The recipient chooses *provider* for *item_code*, who then delivers at each instant of *deliveries*."""
        self.choose(recipient, programme_id, item_code, provider)
        return [self.redeem(provider, recipient, item_code, delivered_at=at) for at in deliveries]

    def reverse(self, redemption: RedemptionRef) -> None:
        """An admin undoes the redemption an hour after the scan (inside the reversal window)."""
        admin = self.system_admin
        self.run(lambda: reversal.reverse_redemption(
            redemption=db.session.get(Redemption, redemption.id), reason="扫错了", actor=db.session.get(User, admin.id),
            now=min(redemption.scanned_at + timedelta(hours=1), utcnow())))

    def revoke(self, voucher_id: int) -> None:
        self.run(lambda: revocation.revoke_voucher(voucher=db.session.get(Voucher, voucher_id), reason="核查作废",
                                                        actor=None, now=utcnow()))

    def expire(self, programme_id: int) -> dict:
        return self.run(lambda: revocation.expire_vouchers(programme=db.session.get(Programme, programme_id),
                                                                actor=None, now=utcnow()))

    # --- ratings and complaints -------------------------------------------------------------------

    def rate(self, redemption: RedemptionRef, score: int) -> None:
        """A phone follow-up (回访) by the bureau an hour after delivery."""
        admin = self.system_admin
        self.run(lambda: feedback.rate_redemption(
            redemption_id=redemption.id, score=score, comment=None, source="phone_followup",
            actor=db.session.get(User, admin.id), now=redemption.delivered_at + timedelta(hours=1)))

    def complain(self, provider: ProviderRef, *, redemption: RedemptionRef | None = None,
                 at: datetime | None = None) -> int:
        """An admin files a complaint against *provider* (about *redemption*, when given) at *at*; its id."""
        admin = self.system_admin
        when = at or (redemption.delivered_at + timedelta(hours=1) if redemption else utcnow())
        return self.run(lambda: feedback.complain(
            provider_id=provider.id, text="服务不到位", redemption_id=redemption.id if redemption else None,
            recipient_id=None, actor=db.session.get(User, admin.id), now=when).id)

    def resolve(self, complaint_id: int, *, upheld: bool) -> None:
        admin = self.system_admin
        self.run(lambda: complaints.resolve_complaint(
            complaint_id=complaint_id, upheld=upheld,
            resolution="属实" if upheld else "不属实", actor=db.session.get(User, admin.id), now=utcnow()))

    # --- settlement -------------------------------------------------------------------------------

    def settle(self, programme_id: int, period: str, *, evaluations: dict[int, int] | None = None,
               by: User | None = None) -> list[int]:
        """Draft *period*'s settlements through the service (as *by*, default the system admin); their ids."""
        actor = by or self.system_admin
        return self.run(lambda: [s.id for s in settlement.create_settlements(
            programme=db.session.get(Programme, programme_id), period=period, evaluations=evaluations or {},
            actor=db.session.get(User, actor.id), now=utcnow())])

    def approve(self, settlement_id: int, *, by: User) -> None:
        self.run(lambda: settlement.approve(settlement=db.session.get(Settlement, settlement_id),
                                                    actor=db.session.get(User, by.id), now=utcnow()))

    def pay(self, settlement_id: int, *, by: User, reference: str = "国库集中支付-0001") -> None:
        self.run(lambda: settlement.pay(settlement=db.session.get(Settlement, settlement_id),
                                                payment_reference=reference, actor=db.session.get(User, by.id),
                                                now=utcnow()))

    # --- reading back -----------------------------------------------------------------------------

    def settlement(self, settlement_id: int) -> Settlement | None:
        return self.read(lambda: db.session.get(Settlement, settlement_id))

    def settlements(self, *conditions) -> list[Settlement]:
        return self.read(lambda: db.session.scalars(select(Settlement).where(*conditions)
                                                    .order_by(Settlement.id)).all())

    def redemption(self, redemption_id: int) -> Redemption:
        return self.read(lambda: db.session.get(Redemption, redemption_id))

    def vouchers(self, *conditions) -> list[Voucher]:
        return self.read(lambda: db.session.scalars(select(Voucher).where(*conditions).order_by(Voucher.id)).all())

    def count(self, model, *conditions) -> int:
        return self.read(lambda: db.session.scalar(select(func.count()).select_from(model).where(*conditions)))

    def provider_row(self, provider_id: int) -> Provider:
        return self.read(lambda: db.session.get(Provider, provider_id))

    def ledger(self, programme_id: int) -> ledger.Ledger:
        return self.read(lambda: ledger.balances(programme_id))

    def guarded_available(self, programme_id: int) -> int:
        return self.read(lambda: ledger.guarded_available(programme_id))

    def failing_checks(self, programme_id: int) -> set[str]:
        report = self.read(lambda: ledger.reconcile(programme_id))
        return {check["name"] for check in report["checks"] if not check["ok"]}

    def redemptions(self, *conditions) -> list[Redemption]:
        return self.read(lambda: db.session.scalars(select(Redemption).where(*conditions)
                                                    .order_by(Redemption.id)).all())

    # --- a whole month of the scheme --------------------------------------------------------------

    def full_scenario(self) -> "FullScenario":
        """Everything money can go through, in one programme, through the services:

        last month issued, redeemed (one redemption reversed), rated by phone follow-up, expired and
        settled — p1's settlement approved and paid, p2's approved with a deduction (evaluation 40),
        p3's left a draft; this month issued, one service redeemed and unsettled, one redeemed and
        reversed, one voucher revoked. The recipients and providers carry personal data the tests know.
        """
        meal = self.item(name="助餐", unit="餐", price=1500)
        bath = self.item(name="助浴", unit="次", price=6000)
        programme = self.programme([(meal, 1237, 6), (bath, 4999, 2)], rules=(
            {"min_score": 0, "pay_percent": 60}, {"min_score": 60, "pay_percent": 85},
            {"min_score": 80, "pay_percent": 100}), name="蒲江县居家养老服务券（全流程）")
        p1 = self.provider([meal, bath], enrol_in=[programme], kind="social_organisation",
                           legal_representative="慕容德明", phone="028-86661001")
        p2 = self.provider([meal, bath], enrol_in=[programme], kind="enterprise",
                           legal_representative="诸葛长青", phone="028-86661002")
        p3 = self.provider([meal], enrol_in=[programme], kind="community_organisation",
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
            return self.at(self.first_day(-1) + timedelta(days=n - 1), hour)

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
        expired = self.vouchers(Voucher.programme_id == programme, Voucher.status == "expired")[0].id
        issued = self.vouchers(Voucher.programme_id == programme, Voucher.status == "issued")[0].id
        return FullScenario(
            programme=programme, meal=meal, bath=bath, providers=(p1, p2, p3), recipients=(r0, r1, r2),
            drafter=drafter, approver=approver, paid=by_provider[p1.id], approved=by_provider[p2.id],
            draft=by_provider[p3.id], unsettled=unsettled, settled=served["r0_bath"][0], reversed=undone,
            expired_voucher=expired, issued_voucher=issued, revoked_voucher=revoked)


@dataclass(frozen=True)
class FullScenario:
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

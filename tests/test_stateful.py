"""A Hypothesis state machine over the service layer, on SQLite and on PostgreSQL (issue 8, part 1).

Each example starts from an empty database and a small cast (one active programme, two enrolled
providers and one that is not, three recipients, two admins) and then runs a random sequence of the
operations of the scheme, each in its own transaction, with `now` taken from a simulated clock that a
rule advances: monthly issuance of several periods (one the budget cannot cover), supplementary
issuance, choice and switching, redemption by presence code (scanned, or its short code typed) and by
voucher card, the replay of a redemption through the HTTP API with the same Idempotency-Key, reuse of a
used or stale presence code, reversal, expiry, revocation, a recipient dying or moving, rating, complaints and their
resolution, market-integrity flags about a provider's services (planted directly: detection is not under test)
confirmed and dismissed, settlement drafting, approval by a second admin, payment and deletion, budget amendments
up and down, and closing the programme.

Every rule first predicts, from the state before it, whether the operation must succeed or which domain
error must refuse it; a refusal must leave every table as it was. After every step the invariants of
docs/domain.md#invariants are checked: available ≥ 0, every journal entry balanced, reconciliation ok (the failing
checks are shown), each voucher redeemed at most once, each redemption in at most one settlement (and an
approved or paid settlement never changes), the rating aggregates equal a recomputation from the
ratings, and the audit chain verifies. A draft leaves out exactly the services an open complaint or a confirmed
flag holds, and deciding a flag moves no money.

Bounded for `make test`; STATEFUL_EXAMPLES and STATEFUL_STEPS make it run much longer (`make soak`).
"""

from datetime import UTC, datetime, timedelta
from unittest import mock
from uuid import uuid4

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from marketplace.auth.models import User
from marketplace.db import db, transaction
from marketplace.errors import DomainError, InvalidTransition, ValidationFailed
from marketplace.programmes import ledger
from marketplace.programmes import service as programme_service
from marketplace.programmes.models import Programme
from marketplace.programmes.service import ProgrammeNotActive
from marketplace.recipients import service as recipient_service
from marketplace.recipients.models import Recipient
from providers.models import Complaint, Rating
from providers.service import complaints as complaint_service
from providers.service.complaints import MAX_OPEN_COMPLAINTS, TooManyOpenComplaints
from providers.service.ratings import AlreadyRated, RatingWindowClosed
from tests.stateful_support import (
    CLOCK_END,
    CLOCK_START,
    CLOSABLE_FROM,
    EXAMPLES,
    INITIAL_BUDGET_FEN,
    ITEMS,
    LOCAL,
    MONEY_KEYS,
    PERIODS,
    PROGRAMME_PERIODS,
    REVERSAL_WINDOW_HOURS,
    SETTLEMENT_RULES,
    STEPS,
    audit_chain_problem,
    build_world,
    face_value,
    failing_checks,
    fingerprint,
    held_by_confirmed_flags,
    local_day,
    misplaced_settlement_lines,
    month_end,
    monthly_cost,
    plant_flag,
    settlement_memberships,
    settlement_snapshot,
    unbalanced_entries,
    valid_vouchers,
    voucher_status_disagreements,
    vouchers_redeemed_more_than_once,
)
from tests.support.databases import empty_database
from tests.support.scenario import rating_aggregates, recomputed_rating_aggregates
from vouchers import tokens
from vouchers.models import AnomalyFlag, Choice, ChoiceEvent, Issuance, Redemption, Settlement, Voucher
from vouchers.service import (
    anomalies,
    anomaly_detection,
    choice,
    feedback,
    issuance,
    redemption,
    reversal,
    revocation,
)
from vouchers.service import settlement as settlement_service
from vouchers.service.choice import ProviderNotEligible
from vouchers.service.issuance import BudgetExceeded
from vouchers.service.redemption import (
    NoValidVoucher,
    ProviderNotChosen,
    TokenAlreadyUsed,
    VoucherAlreadyRedeemed,
    VoucherExpired,
)
from vouchers.service.reversal import ReversalWindowClosed
from vouchers.service.settlement import FourEyesRequired, NotApproved

SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])

# When a service was delivered, relative to the clock: now (most often), earlier today, three days ago
# (possibly last month), and two that must be refused (more than 7 days late; in the future).
DELIVERIES = (timedelta(0), timedelta(0), timedelta(0), timedelta(hours=-2), timedelta(days=-3),
              timedelta(days=-8), timedelta(minutes=10))
PROVIDERS = st.sampled_from((0, 1))
# Who scans: most often the provider the recipient chose for the item (when there is one), else either.
SCANNERS = st.sampled_from(("chosen", "chosen", 0, 1))
RECIPIENTS = st.sampled_from((0, 1, 2))
ITEM_CODES = st.sampled_from(tuple(ITEMS))
MOSTLY_NOT = st.sampled_from((False, False, False, True))
# A rating the recipient gives right after a service (None: not now).
RATINGS = st.sampled_from((None, 5, 4, 3, 2, 1))
# What follows a complaint in the same rule: nothing (it stays open and holds its redemption), or its
# resolution as upheld or not.
RESOLUTIONS = st.sampled_from((None, True, False))
# What follows planting a flag in the same rule: nothing (it stays open), an admin's decision, or a confirmation
# and at once this month's drafts (which must leave the held services out).
FLAG_DECISIONS = st.sampled_from((None, "confirm", "confirm and settle", "dismiss"))
# What follows drafting settlements in the same rule.
FOLLOW_UPS = st.sampled_from(("approve and pay", "approve", "leave as draft"))


class Refused:
    """What `act` returns when the operation was refused as predicted."""

    def __init__(self, error: DomainError):
        self.error = error


def _name(expected) -> str:
    return "success" if expected is None else expected.__name__


def _changes(before: dict, after: dict) -> dict:
    return {key: (before[key], after[key]) for key in before if before[key] != after[key]}


class MarketplaceMachine(RuleBasedStateMachine):
    application = None  # the `app` fixture, set by the test

    vouchers = Bundle("vouchers")
    redemptions = Bundle("redemptions")
    complaints = Bundle("complaints")
    settlements = Bundle("settlements")
    flags = Bundle("flags")

    def __init__(self):
        super().__init__()
        empty_database(self.application)
        self.now = CLOCK_START
        self.world = build_world(self.application, self.now)
        self.programme_id = self.world.programme_id
        self.recipient_status = {recipient.id: "active" for recipient in self.world.recipients}
        self.choices: dict[tuple[int, str], int] = {}
        self.issued_periods: set[str] = set()
        self.closed = False
        self.allocated = INITIAL_BUDGET_FEN
        self.approved: dict[int, dict] = {}  # settlement id → its state when approved
        self.discarded: set[int] = set()
        self.membership: dict[int, int | None] = {}  # redemption id → the settlement it was last seen in
        self.used_code = None  # (token, provider index, expires_at) of the last presence code that worked
        self.flags_planted = 0
        self.client = self.application.test_client()

    # --- plumbing ---------------------------------------------------------------------------------

    def read(self, work):
        with self.application.app_context():
            return work()

    def snapshot(self) -> dict:
        return self.read(lambda: fingerprint(self.programme_id))

    def user(self, user_id: int) -> User:
        return db.session.get(User, user_id)

    def programme(self) -> Programme:
        return db.session.get(Programme, self.programme_id)

    def available(self) -> int:
        return self.read(lambda: ledger.balances(self.programme_id).available_fen)

    def act(self, label: str, expected, work, *, writes: bool = True):
        """Run *work()* in its own transaction. *expected* is None (it must succeed) or the DomainError class
        that must refuse it; a refusal (and a success that writes nothing) must leave every table alone."""
        before = self.snapshot()
        refusal = None
        try:
            with self.application.app_context(), transaction():
                result = work()
        except DomainError as error:
            refusal = error
        if refusal is not None:
            event(f"{label}: {refusal.code}")
            assert type(refusal) is expected, (
                f"{label}: expected {_name(expected)}, refused with {type(refusal).__name__}: {refusal.message} "
                f"{refusal.details}")
            after = self.snapshot()
            assert after == before, f"{label}: refused with {refusal.code} but changed {_changes(before, after)}"
            return Refused(refusal)
        event(f"{label}: ok")
        assert expected is None, f"{label}: expected {_name(expected)}, but it succeeded"
        if not writes:
            after = self.snapshot()
            assert after == before, f"{label}: should have written nothing but changed {_changes(before, after)}"
        return result

    def provider(self, index: int):
        return self.world.providers[index]

    def recipient(self, index: int):
        return self.world.recipients[index]

    def scanner(self, scan, recipient_id: int, item: str) -> int:
        """The index of the provider who scans: *scan* itself, or the recipient's choice for the item."""
        if scan != "chosen":
            return scan
        chosen = self.choices.get((recipient_id, item))
        return next((index for index, p in enumerate(self.world.providers) if p.id == chosen), 0)

    def card_scanner(self, scan, voucher_id: int) -> int:
        voucher = self.read(lambda: db.session.get(Voucher, voucher_id))
        return self.scanner(scan, voucher.recipient_id, voucher.item_code)

    def recipient_by_id(self, recipient_id: int):
        return next(recipient for recipient in self.world.recipients if recipient.id == recipient_id)

    # --- setup ------------------------------------------------------------------------------------

    @initialize(target=vouchers, choices=st.lists(st.sampled_from((0, 1, None)), min_size=6, max_size=6))
    def start(self, choices):
        """Recipients choose providers for most items; January is issued."""
        pairs = [(recipient, item) for recipient in range(3) for item in ITEMS]
        for (recipient, item), provider in zip(pairs, choices, strict=True):
            if provider is not None:
                self.choose(recipient=recipient, item=item, provider=provider, by_admin=False)
        return self.issue_monthly(period="2026-01")

    # --- the clock --------------------------------------------------------------------------------

    @precondition(lambda self: self.now < CLOCK_END)
    @rule(minutes=st.integers(1, 12 * 60))
    def wait_minutes(self, minutes):
        self.now += timedelta(minutes=minutes)

    @precondition(lambda self: self.now < CLOCK_END)
    @rule(days=st.integers(1, 20))
    def wait_days(self, days):
        self.now += timedelta(days=days)

    @precondition(lambda self: self.now < CLOCK_END)
    @rule(day=st.integers(1, 28), hour=st.integers(0, 23))
    def wait_for_next_month(self, day, hour):
        local = self.now.astimezone(LOCAL)
        index = local.year * 12 + local.month  # the next month, counted from year 0
        self.now = datetime(index // 12, index % 12 + 1, day, hour, tzinfo=LOCAL).astimezone(UTC)

    # --- issuance ---------------------------------------------------------------------------------

    @rule(target=vouchers, period=st.sampled_from(PERIODS))
    def issue_monthly(self, period):
        active = [r for r in self.world.recipients if self.recipient_status[r.id] == "active"]
        cost = sum(monthly_cost(r.tags) for r in active)
        available = self.available()
        already = False
        if self.closed:
            expected = ProgrammeNotActive
        elif period not in PROGRAMME_PERIODS:
            expected = ValidationFailed
        elif period in self.issued_periods:
            expected, already = None, True
        elif cost > available:
            expected = BudgetExceeded
        else:
            expected = None

        def work():
            result = issuance.issue_monthly(programme=self.programme(), period=period,
                                                   actor=self.user(self.world.admin_id), now=self.now)
            issuance_id = db.session.scalar(select(Issuance.id).where(Issuance.programme_id == self.programme_id,
                                                                      Issuance.monthly_period == period))
            ids = db.session.scalars(select(Voucher.id).where(Voucher.issuance_id == issuance_id)).all()
            return result, ids

        outcome = self.act("issue_monthly", expected, work, writes=not already)
        if isinstance(outcome, Refused):
            if expected is BudgetExceeded:
                assert outcome.error.details["shortfall_fen"] == cost - available
            return multiple()
        result, ids = outcome
        if already:
            assert result.already_issued
            assert result.vouchers == 0
            return multiple()
        self.issued_periods.add(period)
        assert (result.recipients, result.vouchers, result.committed_fen) == (
            len(active), len(active) * sum(quota for _price, quota in ITEMS.values()), cost)
        assert self.available() == available - cost
        return multiple(*ids)

    @rule(target=vouchers)
    def issue_this_month(self):
        """The monthly run as an operator would do it: the clock's own month."""
        return self.issue_monthly(period=f"{local_day(self.now):%Y-%m}")

    @rule(target=vouchers, recipient=RECIPIENTS, item=ITEM_CODES, count=st.integers(1, 2))
    def issue_supplementary(self, recipient, item, count):
        info = self.recipient(recipient)
        cost = face_value(item, info.tags) * count
        available = self.available()
        if self.closed:
            expected = ProgrammeNotActive
        elif self.recipient_status[info.id] != "active" or f"{local_day(self.now):%Y-%m}" not in PROGRAMME_PERIODS:
            expected = ValidationFailed
        elif cost > available:
            expected = BudgetExceeded
        else:
            expected = None

        def work():
            vouchers = issuance.issue_supplementary(
                programme=self.programme(), recipient=db.session.get(Recipient, info.id), item_code=item, count=count,
                actor=self.user(self.world.admin_id), now=self.now)
            return [voucher.id for voucher in vouchers]

        outcome = self.act("issue_supplementary", expected, work)
        if isinstance(outcome, Refused):
            return multiple()
        assert len(outcome) == count
        assert self.available() == available - cost
        return multiple(*outcome)

    # --- choice -----------------------------------------------------------------------------------

    @rule(recipient=RECIPIENTS, item=ITEM_CODES, provider=st.sampled_from((0, 1, 2)), by_admin=st.booleans())
    def choose(self, recipient, item, provider, by_admin):
        """Choose or switch; provider 2 is approved but not enrolled, so nobody may choose it."""
        info = self.recipient(recipient)
        provider_id = self.world.outsider.id if provider == 2 else self.provider(provider).id
        previous = self.choices.get((info.id, item))
        expected = ProviderNotEligible if provider == 2 else None

        def work():
            actor = self.user(self.world.admin_id if by_admin else info.user.id)
            choice.set_choice(recipient=db.session.get(Recipient, info.id), programme=self.programme(),
                                       item_code=item, provider_id=provider_id, actor=actor, now=self.now)

        if isinstance(self.act("choose", expected, work), Refused):
            return
        self.choices[(info.id, item)] = provider_id

        def check():
            assert db.session.get(Choice, (info.id, self.programme_id, item)).provider_id == provider_id
            last = db.session.scalars(select(ChoiceEvent).where(ChoiceEvent.recipient_id == info.id,
                                                                ChoiceEvent.item_code == item)
                                      .order_by(ChoiceEvent.id.desc()).limit(1)).one()
            assert (last.from_provider_id, last.to_provider_id) == (previous, provider_id)
            assert last.acted_as == ("admin" if by_admin else "recipient")

        self.read(check)

    # --- redemption -------------------------------------------------------------------------------

    def predict_presence(self, provider_id: int, recipient_id: int, item: str, delivered_at, stale: bool):
        """(error class or None, the voucher that must be redeemed) for a presence-code scan."""
        if delivered_at > self.now + redemption.CLOCK_SKEW or (
                delivered_at < self.now - redemption.MAX_BACKDATING):
            return ValidationFailed, None
        if stale:
            return tokens.TokenExpired, None
        day = local_day(delivered_at)
        valid = self.read(lambda: valid_vouchers(recipient_id, item, day))
        if valid and self.choices.get((recipient_id, item)) == provider_id:
            return None, valid[0][0]
        if valid:
            return ProviderNotChosen, None

        def past_validity():
            return db.session.scalar(select(func.count()).select_from(Voucher)
                                     .join(Programme, Programme.id == Voucher.programme_id)
                                     .where(Voucher.recipient_id == recipient_id, Voucher.item_code == item,
                                            Voucher.status == "issued", Programme.status == "active",
                                            Voucher.valid_until < day))

        return (VoucherExpired if self.read(past_validity) else NoValidVoucher), None

    def predict_card(self, provider_id: int, voucher_id: int, delivered_at):
        if delivered_at > self.now + redemption.CLOCK_SKEW or (
                delivered_at < self.now - redemption.MAX_BACKDATING):
            return ValidationFailed
        day = local_day(delivered_at)
        voucher = self.read(lambda: db.session.get(Voucher, voucher_id))
        if voucher.status == "redeemed":
            return VoucherAlreadyRedeemed
        if voucher.status == "expired" or (voucher.status == "issued" and voucher.valid_until < day):
            return VoucherExpired
        if voucher.status != "issued" or voucher.valid_from > day:
            return NoValidVoucher
        if self.closed or self.choices.get((voucher.recipient_id, voucher.item_code)) != provider_id:
            return ProviderNotChosen
        return None

    def check_redemption(self, redemption_id: int, *, voucher_id: int, provider_id: int, delivered_at,
                         presence: str) -> None:
        def check():
            redemption = db.session.get(Redemption, redemption_id)
            voucher = db.session.get(Voucher, voucher_id)
            assert (redemption.voucher_id, redemption.provider_id, redemption.status, redemption.presence) == (
                voucher_id, provider_id, "completed", presence)
            assert redemption.delivered_at == delivered_at
            assert (redemption.face_value_fen, redemption.recipient_id, redemption.item_code) == (
                voucher.face_value_fen, voucher.recipient_id, voucher.item_code)
            assert voucher.status == "redeemed"

        self.read(check)

    @rule(target=redemptions, scan=SCANNERS, recipient=RECIPIENTS, item=ITEM_CODES,
          delivered=st.sampled_from(DELIVERIES), stale=MOSTLY_NOT, rating=RATINGS, typed=MOSTLY_NOT)
    def redeem_by_presence_code(self, scan, recipient, item, delivered, stale, rating, typed):
        """The recipient's phone shows a presence code; the provider scans it, or types its 8 digits (*typed*)."""
        recipient_id = self.recipient(recipient).id
        provider = self.scanner(scan, recipient_id, item)
        info = self.provider(provider)
        delivered_at = self.now + delivered
        expected, voucher_id = self.predict_presence(info.id, recipient_id, item, delivered_at, stale)
        issued_at = self.now - timedelta(minutes=3) if stale else self.now
        shown = {}

        def work():
            code = redemption.create_presence_code(recipient_id=recipient_id, now=issued_at)
            shown.update(code)
            typed_or_scanned = {"short_code": code["short_code"]} if typed else {"presence_token": code["token"]}
            return redemption.redeem(actor=self.user(info.user.id), now=self.now, item_code=item,
                                     delivered_at=delivered_at, **typed_or_scanned).id

        outcome = self.act("redeem_by_typed_code" if typed else "redeem_by_presence_code", expected, work)
        if isinstance(outcome, Refused):
            return multiple()
        # Rescanning the token of a code whose digits were typed is refused alike: using either uses both.
        self.used_code = (shown["token"], provider, shown["expires_at"])
        self.check_redemption(outcome, voucher_id=voucher_id, provider_id=info.id, delivered_at=delivered_at,
                              presence="typed_code" if typed else "presence_code")
        if rating is not None:
            self.rate(redemption=outcome, score=rating, by_recipient=True)
        return outcome

    @precondition(lambda self: self.used_code is not None)
    @rule()
    def rescan_a_used_presence_code(self):
        token, provider, expires_at = self.used_code
        info = self.provider(provider)
        expected = tokens.TokenExpired if self.now >= expires_at else TokenAlreadyUsed
        self.act("rescan_a_used_presence_code", expected, lambda: redemption.redeem(
            actor=self.user(info.user.id), now=self.now, presence_token=token, item_code=next(iter(ITEMS))))

    @rule(target=redemptions, scan=SCANNERS, voucher=vouchers, delivered=st.sampled_from(DELIVERIES),
          rating=RATINGS)
    def redeem_by_card(self, scan, voucher, delivered, rating):
        provider = self.card_scanner(scan, voucher)
        info = self.provider(provider)
        delivered_at = self.now + delivered
        expected = self.predict_card(info.id, voucher, delivered_at)

        def work():
            return redemption.redeem(actor=self.user(info.user.id), now=self.now,
                                          voucher_token=tokens.voucher_token(voucher), delivered_at=delivered_at).id

        outcome = self.act("redeem_by_card", expected, work)
        if isinstance(outcome, Refused):
            return multiple()
        self.check_redemption(outcome, voucher_id=voucher, provider_id=info.id, delivered_at=delivered_at,
                              presence="voucher_card")
        if rating is not None:
            self.rate(redemption=outcome, score=rating, by_recipient=True)
        return outcome

    def post_redemption_twice(self, label: str, provider: int, body: dict, expected, voucher_id):
        """POST /redemptions, then the same request with the same Idempotency-Key: the second must replay
        the first answer and change nothing."""
        info = self.provider(provider)
        headers = {**self.world.headers[info.id], "Idempotency-Key": f"scan-{uuid4()}"}
        before = self.snapshot()
        # The route reads the clock itself: give it the simulated one.
        with mock.patch("vouchers.routes.utcnow", return_value=self.now):
            first = self.client.post("/api/v1/redemptions", json=body, headers=headers)
            middle = self.snapshot()
            again = self.client.post("/api/v1/redemptions", json=body, headers=headers)
        after = self.snapshot()
        answer = first.get_json()
        event(f"{label}: {first.status_code}")
        assert again.status_code == first.status_code, (first.get_json(), again.get_json())
        assert again.get_json() == answer
        assert after == middle, f"{label}: the replay changed {_changes(middle, after)}"
        if expected is not None:
            assert (first.status_code, answer["error"]["code"]) == (expected.status, expected.code), answer
            assert after == before, f"{label}: refused but changed {_changes(before, after)}"
            return None
        assert first.status_code == 201, answer
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert "Idempotent-Replayed" not in first.headers
        assert answer["voucher_id"] == voucher_id
        # The same key with another body is refused, and changes nothing either.
        with mock.patch("vouchers.routes.utcnow", return_value=self.now):
            other = self.client.post("/api/v1/redemptions", json={**body, "notes": "another body"}, headers=headers)
        assert (other.status_code, other.get_json()["error"]["code"]) == (422, "idempotency_key_reused")
        assert self.snapshot() == after
        return answer["id"]

    @rule(target=redemptions, scan=SCANNERS, recipient=RECIPIENTS, item=ITEM_CODES)
    def replay_a_presence_scan_over_http(self, scan, recipient, item):
        recipient_id = self.recipient(recipient).id
        provider = self.scanner(scan, recipient_id, item)
        info = self.provider(provider)
        expected, voucher_id = self.predict_presence(info.id, recipient_id, item, self.now, stale=False)
        token, expires_at = self.read(lambda: tokens.presence_token(recipient_id=recipient_id, now=self.now))
        redemption_id = self.post_redemption_twice("replay_a_presence_scan_over_http", provider,
                                                   {"presence_token": token, "item_code": item}, expected, voucher_id)
        if redemption_id is None:
            return multiple()
        self.used_code = (token, provider, expires_at)
        self.check_redemption(redemption_id, voucher_id=voucher_id, provider_id=info.id, delivered_at=self.now,
                              presence="presence_code")
        return redemption_id

    @rule(target=redemptions, scan=SCANNERS, voucher=vouchers)
    def replay_a_card_scan_over_http(self, scan, voucher):
        provider = self.card_scanner(scan, voucher)
        info = self.provider(provider)
        expected = self.predict_card(info.id, voucher, self.now)
        redemption_id = self.post_redemption_twice("replay_a_card_scan_over_http", provider,
                                                   {"voucher_token": self.read(lambda: tokens.voucher_token(voucher))},
                                                   expected, voucher)
        if redemption_id is None:
            return multiple()
        self.check_redemption(redemption_id, voucher_id=voucher, provider_id=info.id, delivered_at=self.now,
                              presence="voucher_card")
        return redemption_id

    @rule(redemption=redemptions, by_admin=st.booleans())
    def reverse(self, redemption, by_admin):
        before = self.read(lambda: db.session.get(Redemption, redemption))
        if before.status != "completed":
            expected = InvalidTransition
        elif before.settlement_id is not None:
            expected = reversal.AlreadySettled
        elif self.now > before.created_at + timedelta(hours=REVERSAL_WINDOW_HOURS):
            expected = ReversalWindowClosed
        else:
            expected = None
        provider = next(p for p in self.world.providers if p.id == before.provider_id)
        available = self.available()

        def work():
            reversal.reverse_redemption(
                redemption=db.session.get(Redemption, redemption), reason="扫错了",
                actor=self.user(self.world.admin_id if by_admin else provider.user.id), now=self.now)

        if isinstance(self.act("reverse", expected, work), Refused):
            return
        gives_back = not self.closed and self.recipient_status[before.recipient_id] == "active"
        voucher = self.read(lambda: db.session.get(Voucher, before.voucher_id))
        assert voucher.status == ("issued" if gives_back else "revoked")
        # Given back, the value is committed again; otherwise it is released to available.
        assert self.available() == available + (0 if gives_back else before.face_value_fen)

    # --- expiry, revocation, departure ------------------------------------------------------------

    @rule()
    def expire(self):
        today = local_day(self.now)

        def due():
            return db.session.execute(select(func.count(), func.coalesce(func.sum(Voucher.face_value_fen), 0))
                                      .where(Voucher.status == "issued", Voucher.valid_until < today)).one()

        count, value = self.read(due)
        result = self.act("expire", None, lambda: revocation.expire_vouchers(
            programme=self.programme(), actor=self.user(self.world.admin_id), now=self.now), writes=bool(count))
        assert (result["expired"], result["released_fen"]) == (count, value)

    @rule(voucher=vouchers)
    def revoke(self, voucher):
        status = self.read(lambda: db.session.get(Voucher, voucher).status)
        self.act("revoke", None if status == "issued" else InvalidTransition, lambda: revocation.revoke_voucher(
            voucher=db.session.get(Voucher, voucher), reason="重复发放", actor=self.user(self.world.admin_id),
            now=self.now))

    @rule(recipient=RECIPIENTS, status=st.sampled_from(("deceased", "moved", "active")))
    def recipient_status_changes(self, recipient, status):
        """A recipient dies, moves away or comes back (the service call behind PATCH /recipients/{id})."""
        info = self.recipient(recipient)
        current = self.recipient_status[info.id]
        # Death is final: a deceased recipient's record accepts no status, not even "deceased" again.
        allowed = current != "deceased" and (status == current or current in recipient_service.ALLOWED_FROM[status])
        expected = None if allowed else InvalidTransition
        self.act("recipient_status_changes", expected, lambda: recipient_service.update_recipient(
            recipient=db.session.get(Recipient, info.id), status=status, actor=self.user(self.world.admin_id),
            now=self.now), writes=status != current)
        if expected is None:
            self.recipient_status[info.id] = status
        if status in ("deceased", "moved") and expected is None:
            assert self.read(lambda: db.session.scalar(select(func.count()).select_from(Voucher).where(
                Voucher.recipient_id == info.id, Voucher.status == "issued"))) == 0

    # --- ratings and complaints -------------------------------------------------------------------

    @rule(redemption=redemptions, score=st.integers(1, 5), by_recipient=st.booleans())
    def rate(self, redemption, score, by_recipient):
        before = self.read(lambda: db.session.get(Redemption, redemption))
        rated = self.read(lambda: db.session.scalar(select(func.count()).select_from(Rating)
                                                    .where(Rating.redemption_id == redemption)))
        window = self.read(lambda: self.programme().rating_window_days)
        if before.status != "completed":
            expected = InvalidTransition
        elif self.now > before.delivered_at + timedelta(days=window):
            expected = RatingWindowClosed
        elif rated:
            expected = AlreadyRated
        else:
            expected = None
        recipient = self.recipient_by_id(before.recipient_id)

        def work():
            actor = self.user(recipient.user.id if by_recipient else self.world.admin_id)
            feedback.rate_redemption(redemption_id=redemption, score=score,
                                            comment=None, source="recipient" if by_recipient else "phone_followup",
                                            actor=actor, now=self.now)

        self.act("rate", expected, work)

    @rule(target=complaints, redemption=redemptions, by_recipient=st.booleans(), then=RESOLUTIONS)
    def complain_about_a_service(self, redemption, by_recipient, then):
        before = self.read(lambda: db.session.get(Redemption, redemption))
        recipient = self.recipient_by_id(before.recipient_id)
        still_open = self.read(lambda: db.session.scalar(select(func.count()).select_from(Complaint).where(
            Complaint.recipient_id == before.recipient_id, Complaint.provider_id == before.provider_id,
            Complaint.status == "open")))
        expected = TooManyOpenComplaints if still_open >= MAX_OPEN_COMPLAINTS else None

        def work():
            actor = self.user(recipient.user.id if by_recipient else self.world.admin_id)
            return feedback.complain(provider_id=before.provider_id, text="服务人员迟到",
                                            redemption_id=redemption, recipient_id=None, actor=actor,
                                            now=self.now).id

        complaint = self.act("complain_about_a_service", expected, work)
        if isinstance(complaint, Refused):
            return multiple()
        if then is not None:
            self.resolve_complaint(complaint=complaint, upheld=then)
        return complaint

    @rule(target=complaints, provider=PROVIDERS, then=RESOLUTIONS)
    def complain_about_a_provider(self, provider, then):
        complaint = self.act("complain_about_a_provider", None, lambda: feedback.complain(
            provider_id=self.provider(provider).id, text="电话无人接听", redemption_id=None, recipient_id=None,
            actor=self.user(self.world.admin_id), now=self.now).id)
        if then is not None:
            self.resolve_complaint(complaint=complaint, upheld=then)
        return complaint

    @rule(complaint=complaints, upheld=st.booleans())
    def resolve_complaint(self, complaint, upheld):
        status = self.read(lambda: db.session.get(Complaint, complaint).status)
        self.act("resolve_complaint", None if status == "open" else InvalidTransition,
                 lambda: complaint_service.resolve_complaint(
                     complaint_id=complaint, upheld=upheld, resolution="已核实",
                     actor=self.user(self.world.second_admin_id), now=self.now))

    # --- market-integrity flags -------------------------------------------------------------------

    @rule(target=flags, redemption=redemptions, more=st.integers(0, 2), with_settled=MOSTLY_NOT,
          then=FLAG_DECISIONS)
    def plant_a_flag(self, redemption, more, with_settled, then):
        """Detection finds something about a service and maybe more of its provider's (planted: another module
        detects); some of them may be settled or reversed already."""
        self.flags_planted += 1
        with self.application.app_context(), transaction():
            flag = plant_flag(redemption_id=redemption, more=more, with_settled=with_settled,
                              serial=self.flags_planted, now=self.now)
        event("plant_a_flag")
        if then is not None:
            self.decide_flag(flag=flag, verb=then.removesuffix(" and settle"))
        if then == "confirm and settle":
            # This month's run drafts whatever is settleable up to its end: it must leave the held services out.
            self.create_settlements_for_a_recent_month(months_ago=0, then="leave as draft")
        return flag

    @rule(target=flags, period=st.sampled_from(PROGRAMME_PERIODS))
    def detect_anomalies(self, period):
        """The rules run over a month: new findings become open flags (decided later by decide_flag), which
        hold nothing; a second run finds nothing new; no money moves."""
        before = self.snapshot()

        def detect():
            result = anomaly_detection.detect_anomalies(programme=self.programme(), period=period,
                                                        actor=self.user(self.world.admin_id), now=self.now)
            created = db.session.scalars(select(AnomalyFlag.id).where(
                AnomalyFlag.programme_id == self.programme_id, AnomalyFlag.period == period,
                AnomalyFlag.created_at == self.now, AnomalyFlag.status == "open")).all()
            return result, list(created)

        with self.application.app_context(), transaction():
            result, created = detect()
        with self.application.app_context(), transaction():
            again, _ = detect()
        event("detect_anomalies")
        assert again.flags_created == 0
        assert again.flags_total == result.flags_total
        after = self.snapshot()
        assert {key: after[key] for key in MONEY_KEYS} == {key: before[key] for key in MONEY_KEYS}, (
            f"detection changed {_changes(before, after)}")
        return multiple(*created)

    @rule(flag=flags, verb=st.sampled_from(("confirm", "dismiss")))
    def decide_flag(self, flag, verb):
        """An admin confirms (holds its services out of settlement) or dismisses (releases them) a flag."""
        status = self.read(lambda: db.session.get(AnomalyFlag, flag).status)
        target = "confirmed" if verb == "confirm" else "dismissed"
        decision = anomalies.confirm if verb == "confirm" else anomalies.dismiss
        before = self.snapshot()
        outcome = self.act(f"{verb}_flag", InvalidTransition if status == target else None, lambda: decision(
            flag=db.session.get(AnomalyFlag, flag), reason="回访核实", actor=self.user(self.world.second_admin_id),
            now=self.now))
        if isinstance(outcome, Refused):
            return
        after = self.snapshot()
        assert self.read(lambda: db.session.get(AnomalyFlag, flag).status) == target
        # A hold moves money only by leaving services out of a later draft: deciding one moves none.
        assert {key: after[key] for key in MONEY_KEYS} == {key: before[key] for key in MONEY_KEYS}, (
            f"{verb}_flag changed {_changes(before, after)}")

    # --- settlement -------------------------------------------------------------------------------

    @rule(target=settlements, period=st.sampled_from(PROGRAMME_PERIODS), then=FOLLOW_UPS)
    def create_settlements(self, period, then):
        """Draft the period's settlements, then (each in its own transaction) approve them, and pay them."""
        end = month_end(period)

        def settleable():
            on_hold = select(Complaint.redemption_id).where(Complaint.status == "open",
                                                            Complaint.redemption_id.is_not(None))
            rows = db.session.execute(select(Redemption.provider_id, Redemption.id).where(
                Redemption.programme_id == self.programme_id, Redemption.status == "completed",
                Redemption.settlement_id.is_(None), Redemption.delivered_at < end,
                Redemption.id.not_in(on_hold))).all()
            flagged = held_by_confirmed_flags()
            rows = [(provider_id, redemption_id) for provider_id, redemption_id in rows if redemption_id not in flagged]
            settled = set(db.session.scalars(select(Settlement.provider_id).where(
                Settlement.programme_id == self.programme_id, Settlement.period == period)))
            expected: dict[int, set[int]] = {}
            for provider_id, redemption_id in rows:
                if provider_id not in settled:
                    expected.setdefault(provider_id, set()).add(redemption_id)
            return expected

        expected = self.read(settleable)
        created = self.act("create_settlements", None, lambda: [s.id for s in settlement_service.create_settlements(
            programme=self.programme(), period=period, evaluations={}, actor=self.user(self.world.admin_id),
            now=self.now)], writes=bool(expected))

        def check():
            got = {}
            for settlement_id in created:
                settlement = db.session.get(Settlement, settlement_id)
                lines = db.session.execute(select(Redemption.id, Redemption.face_value_fen)
                                           .where(Redemption.settlement_id == settlement_id)).all()
                got[settlement.provider_id] = {line.id for line in lines}
                assert settlement.status == "draft"
                assert settlement.created_by == self.world.admin_id
                assert (settlement.redemptions_count, settlement.gross_fen) == (
                    len(lines), sum(line.face_value_fen for line in lines))
                rule_ = [r for r in SETTLEMENT_RULES if r["min_score"] <= settlement.performance_score][-1]
                assert settlement.pay_percent == rule_["pay_percent"]
                assert settlement.net_fen == settlement.gross_fen * settlement.pay_percent // 100
                assert settlement.flagged_for_termination == (rule_ is SETTLEMENT_RULES[0])
            assert got == expected

        self.read(check)
        for settlement in created:
            if then in ("approve", "approve and pay"):
                self.approve_settlement(settlement=settlement, by_creator=False)
            if then == "approve and pay":
                self.pay_settlement(settlement=settlement)
        return multiple(*created)

    @rule(target=settlements, months_ago=st.sampled_from((0, 1)), then=FOLLOW_UPS)
    def create_settlements_for_a_recent_month(self, months_ago, then):
        """The monthly run as an operator would do it: this month or last (when inside the programme)."""
        day = local_day(self.now)
        index = day.year * 12 + day.month - 1 - months_ago
        period = f"{index // 12}-{index % 12 + 1:02d}"
        if period not in PROGRAMME_PERIODS:
            return multiple()
        return self.create_settlements(period=period, then=then)

    @rule(settlement=settlements, by_creator=MOSTLY_NOT)
    def approve_settlement(self, settlement, by_creator):
        if settlement in self.discarded:
            return
        before = self.read(lambda: db.session.get(Settlement, settlement))
        if by_creator:
            expected = FourEyesRequired
        elif before.status != "draft":
            expected = InvalidTransition
        else:
            expected = None
        balances = self.read(lambda: ledger.balances(self.programme_id))
        outcome = self.act("approve_settlement", expected, lambda: settlement_service.approve(
            settlement=db.session.get(Settlement, settlement),
            actor=self.user(self.world.admin_id if by_creator else self.world.second_admin_id), now=self.now))
        if isinstance(outcome, Refused):
            return
        after = self.read(lambda: ledger.balances(self.programme_id))
        assert after.settled_fen == balances.settled_fen + before.net_fen
        assert after.available_fen == balances.available_fen + before.gross_fen - before.net_fen
        self.approved[settlement] = self.read(lambda: settlement_snapshot(settlement))

    @rule(settlement=settlements)
    def pay_settlement(self, settlement):
        if settlement in self.discarded:
            return
        status = self.read(lambda: db.session.get(Settlement, settlement).status)
        self.act("pay_settlement", None if status == "approved" else NotApproved, lambda: settlement_service.pay(
            settlement=db.session.get(Settlement, settlement), payment_reference=f"BANK-{settlement}",
            actor=self.user(self.world.second_admin_id), now=self.now))

    @rule(settlement=settlements)
    def delete_draft_settlement(self, settlement):
        if settlement in self.discarded:
            return
        status = self.read(lambda: db.session.get(Settlement, settlement).status)
        outcome = self.act("delete_draft_settlement", None if status == "draft" else InvalidTransition,
                           lambda: settlement_service.discard(settlement=db.session.get(Settlement, settlement),
                                                              actor=self.user(self.world.admin_id), now=self.now))
        if not isinstance(outcome, Refused):
            self.discarded.add(settlement)

    # --- budget and programme ---------------------------------------------------------------------

    @rule(amount=st.sampled_from((3_000, 12_000, 25_000, -2_000, -8_000, -30_000)))
    def amend_budget(self, amount):
        available = self.available()
        if self.closed:
            expected = programme_service.ProgrammeClosed
        elif amount < 0 and -amount > available:
            expected = programme_service.BudgetBelowCommitted
        else:
            expected = None
        outcome = self.act("amend_budget", expected, lambda: programme_service.amend_budget(
            programme=self.programme(), amount_fen=amount, reason="预算调整", actor=self.user(self.world.admin_id),
            now=self.now))
        if not isinstance(outcome, Refused):
            self.allocated += amount
            assert self.available() == available + amount

    @precondition(lambda self: not self.closed and self.now >= CLOSABLE_FROM)
    @rule()
    def close_programme(self):
        self.act("close_programme", None, lambda: programme_service.close(
            programme=self.programme(), actor=self.user(self.world.admin_id), now=self.now))
        self.closed = True
        assert self.read(lambda: db.session.scalar(select(func.count()).select_from(Voucher).where(
            Voucher.programme_id == self.programme_id, Voucher.status == "issued"))) == 0

    # --- invariants -------------------------------------------------------------------------------

    @invariant()
    def money_adds_up(self):
        def check():
            balances = ledger.balances(self.programme_id)
            assert balances.available_fen >= 0, balances
            assert ledger.guarded_available(self.programme_id) >= 0
            assert unbalanced_entries() == [], "journal entries that do not balance (id, lines, sum)"
            ok, failing = failing_checks(self.programme_id)
            assert ok, f"reconciliation failed: {failing}"
            assert balances.allocated_fen == self.allocated

        self.read(check)

    @invariant()
    def each_voucher_redeemed_at_most_once(self):
        def check():
            assert vouchers_redeemed_more_than_once() == [], "(voucher id, completed redemptions)"
            assert voucher_status_disagreements() == [], "(voucher id, status, completed redemptions)"

        self.read(check)

    @invariant()
    def each_redemption_settled_at_most_once(self):
        def check():
            assert misplaced_settlement_lines() == []
            memberships = settlement_memberships()
            for redemption_id, settlement_id in memberships.items():
                previous = self.membership.get(redemption_id)
                # A redemption leaves a settlement only when that draft is deleted.
                assert previous in (None, settlement_id) or previous in self.discarded, (
                    f"redemption {redemption_id} moved from settlement {previous} to {settlement_id}")
            self.membership = memberships
            for settlement_id, snapshot in self.approved.items():
                assert db.session.get(Settlement, settlement_id).status in ("approved", "paid")
                assert settlement_snapshot(settlement_id) == snapshot, f"approved settlement {settlement_id} changed"

        self.read(check)

    @invariant()
    def rating_aggregates_match_the_ratings(self):
        def check():
            assert rating_aggregates() == recomputed_rating_aggregates()

        self.read(check)

    @invariant()
    def audit_chain_verifies(self):
        assert self.read(audit_chain_problem) is None


def test_any_sequence_of_operations_keeps_the_invariants(app):
    class Machine(MarketplaceMachine):
        application = app

    run_state_machine_as_test(Machine, settings=SETTINGS)

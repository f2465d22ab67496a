"""Races on the money: scans racing for vouchers, issues racing for budget — on SQLite and PostgreSQL.

Each racer is a real thread with its own app context, session and database connection, calling the
service layer and committing for real. A barrier releases them together. The outcome must be exactly
what the rules allow — one winner per voucher, never more redemptions than vouchers, never a fen more
committed than allocated — and reconciliation must come out clean afterwards.
"""

from sqlalchemy import func, select

from marketplace.audit import service as audit_service
from marketplace.auth.models import User
from marketplace.db import db, utcnow
from marketplace.errors import DomainError
from marketplace.programmes import ledger
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from tests.support.races import race_transactions
from tests.support.scenario import Builder
from vouchers.models import Issuance, Redemption, Voucher
from vouchers.service import issuance, redemption, revocation

RACERS = 32


def audit_chain_ok(build) -> bool:
    return build.read(lambda: audit_service.verify_chain().ok)


def world_with_meal_vouchers(app, count: int):
    """The standard world where alice and bob chose p1 for everything and alice holds *count* supplementary
    meal vouchers: (builder, world, alice's voucher ids)."""
    build = Builder(app)
    world = build.world()
    build.choose_all(world, world.p1)
    return build, world, build.supplementary(world.programme, world.alice, world.meal, count)


def scan_meals_at_once(app, world, codes: list[str]) -> list[str]:
    """p1's staff scan the presence codes for a meal all at once (racer i scans codes[i]); their outcomes."""
    scanner_id = world.p1.user.id

    def scan(index):
        redemption.redeem(actor=db.session.get(User, scanner_id), now=utcnow(), presence_token=codes[index],
                          item_code=world.meal)

    return race_transactions(app, scan, racers=len(codes))


def test_32_scans_of_one_voucher_card_redeem_it_exactly_once(app):
    build = Builder(app)
    world = build.world()
    build.issue(world.programme, build.period())
    build.choose_all(world, world.p1)
    build.choose_all(world, world.p2, world.bob)
    voucher = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.item_code == world.bath)[0]
    token = build.voucher_token(voucher.id)
    before = build.ledger(world.programme)
    scanner_id = world.p1.user.id

    def scan(_index):
        redemption.redeem(actor=db.session.get(User, scanner_id), now=utcnow(), voucher_token=token)

    outcomes = race_transactions(app, scan, racers=RACERS)

    assert outcomes.count("ok") == 1
    assert outcomes.count("VoucherAlreadyRedeemed") == RACERS - 1
    assert len(build.redemptions(Redemption.voucher_id == voucher.id)) == 1
    assert build.voucher(voucher.id).status == "redeemed"
    after = build.ledger(world.programme)
    assert after.redeemed_fen == voucher.face_value_fen
    assert after.committed_fen == before.committed_fen - voucher.face_value_fen
    assert build.failing_checks(world.programme) == []
    assert audit_chain_ok(build)


def test_32_presence_codes_racing_for_three_vouchers_redeem_exactly_three(app):
    build, world, vouchers = world_with_meal_vouchers(app, 3)
    codes = [build.presence_token(world.alice.id) for _ in range(RACERS)]

    outcomes = scan_meals_at_once(app, world, codes)

    assert outcomes.count("ok") == 3
    assert set(outcomes) - {"ok"} <= {"VoucherAlreadyRedeemed", "NoValidVoucher"}
    redemptions = build.redemptions()
    assert sorted(redemption.voucher_id for redemption in redemptions) == sorted(vouchers)
    assert {v.status for v in build.vouchers(Voucher.id.in_(vouchers))} == {"redeemed"}
    assert build.ledger(world.programme).redeemed_fen == 3 * 1140
    assert build.ledger(world.programme).committed_fen == 0
    assert build.failing_checks(world.programme) == []
    assert audit_chain_ok(build)


def test_scans_of_two_recipients_racing_do_not_take_each_others_vouchers(app):
    build, world, alices = world_with_meal_vouchers(app, 2)
    bobs = build.supplementary(world.programme, world.bob.id, world.meal, 2)
    people = [world.alice.id, world.bob.id] * (RACERS // 2)
    codes = [build.presence_token(recipient_id) for recipient_id in people]

    outcomes = scan_meals_at_once(app, world, codes)

    assert outcomes.count("ok") == 4
    by_recipient = {r.voucher_id: r.recipient_id for r in build.redemptions()}
    assert {voucher_id: by_recipient[voucher_id] for voucher_id in alices} == dict.fromkeys(alices, world.alice.id)
    assert {voucher_id: by_recipient[voucher_id] for voucher_id in bobs} == dict.fromkeys(bobs, world.bob.id)
    assert build.failing_checks(world.programme) == []


def test_one_presence_code_scanned_by_32_at_once_is_used_once(app):
    build, world, _vouchers = world_with_meal_vouchers(app, 5)
    code = build.presence_token(world.alice.id)

    outcomes = scan_meals_at_once(app, world, [code] * RACERS)

    assert outcomes.count("ok") == 1
    assert outcomes.count("TokenAlreadyUsed") == RACERS - 1
    assert len(build.redemptions()) == 1
    assert build.failing_checks(world.programme) == []


def test_supplementary_issues_racing_a_monthly_run_at_the_budget_edge_never_overspend(app):
    build = Builder(app)
    meal = build.item(price=1000)
    recipients = [build.recipient() for _ in range(5)]
    monthly_total = 5 * 2 * 1000  # five recipients, quota two, face value 1000 (no co-payment)
    budget = monthly_total + 15 * 1000 + 500  # room for the run and 15 extras, or for 25 extras alone
    programme = build.programme(items=[(meal, 1000, 2)], budget_fen=budget, copay={"default": 0}, min_age=None)
    period = build.period()
    low_water: list[int] = []

    def issue(index):
        current = db.session.get(Programme, programme.id)
        try:
            if index == 0:
                issuance.issue_monthly(programme=current, period=period, actor=None, now=utcnow())
            else:
                recipient = db.session.get(Recipient, recipients[index % len(recipients)].id)
                issuance.issue_supplementary(programme=current, recipient=recipient, item_code=meal, count=1,
                                                    actor=None, now=utcnow())
        finally:
            low_water.append(ledger.guarded_available(programme.id))

    outcomes = race_transactions(app, issue, racers=RACERS)

    monthly_issued = build.count(Issuance, Issuance.kind == "monthly")  # 0 or 1: refused runs leave no row
    extras = build.count(Issuance, Issuance.kind == "supplementary")  # one voucher each
    assert set(outcomes) <= {"ok", "BudgetExceeded"}
    assert outcomes.count("ok") == extras + monthly_issued
    assert outcomes.count("BudgetExceeded") >= 6  # 31 extras and the run ask for 41,000 of 25,500
    balances = build.ledger(programme)
    committed = build.issued_face_value(programme)
    assert balances.committed_fen == committed == extras * 1000 + monthly_issued * monthly_total
    assert balances.available_fen == budget - committed == 500  # everything that fitted was taken
    assert balances.allocated_fen == balances.available_fen + balances.committed_fen
    assert min(value for value in low_water if value is not None) >= 0
    assert build.count(Voucher) == extras + monthly_issued * 10
    assert build.failing_checks(programme) == []
    assert audit_chain_ok(build)


def test_two_monthly_runs_of_one_period_racing_issue_it_once(app):
    build = Builder(app)
    world = build.world()
    period = build.period()
    results = []

    def run(_index):
        results.append(issuance.issue_monthly(programme=db.session.get(Programme, world.programme.id),
                                                     period=period, actor=None, now=utcnow()))

    outcomes = race_transactions(app, run, racers=8)

    assert outcomes == ["ok"] * 8
    assert sorted(result.already_issued for result in results) == [False] + [True] * 7
    assert build.count(Voucher) == 12
    assert build.count(Issuance) == 1
    assert build.ledger(world.programme).committed_fen == build.issued_face_value(world.programme) == 25_900
    assert build.failing_checks(world.programme) == []


def test_redemptions_racing_revocations_leave_every_voucher_in_one_state(app):
    build, world, vouchers = world_with_meal_vouchers(app, RACERS // 2)
    tokens = [build.voucher_token(voucher_id) for voucher_id in vouchers]
    scanner_id, admin_id = world.p1.user.id, world.admin.id

    def act(index):
        voucher_id = vouchers[index // 2]
        if index % 2:
            redemption.redeem(actor=db.session.get(User, scanner_id), now=utcnow(),
                                   voucher_token=tokens[index // 2])
        else:
            revocation.revoke_voucher(voucher=db.session.get(Voucher, voucher_id), reason="核查",
                                           actor=db.session.get(User, admin_id), now=utcnow())

    outcomes = race_transactions(app, act, racers=RACERS)

    assert set(outcomes) <= {"ok", "InvalidTransition", "NoValidVoucher", "VoucherAlreadyRedeemed"}
    assert outcomes.count("ok") == len(vouchers)  # for each voucher exactly one of the two got there
    states = {v.id: v.status for v in build.vouchers()}
    redeemed = {r.voucher_id for r in build.redemptions()}
    assert {voucher_id for voucher_id, status in states.items() if status == "redeemed"} == redeemed
    assert set(states.values()) <= {"redeemed", "revoked"}
    balances = build.ledger(world.programme)
    assert balances.redeemed_fen == 1140 * len(redeemed)
    assert balances.released_fen == 1140 * (len(vouchers) - len(redeemed))
    assert balances.committed_fen == 0
    assert build.failing_checks(world.programme) == []
    assert build.read(lambda: db.session.scalar(select(func.count()).select_from(Redemption))) == len(redeemed)


def test_scans_crowding_more_vouchers_than_a_scan_looks_at_never_overspend_and_losers_can_scan_again(app):
    """A scan tries the recipient's five earliest-expiring vouchers; in a crush it may find all five
    taken and be refused ("scan again"). Never more redemptions than vouchers; a refused scan has not
    used its code, so scanning again redeems what is left."""
    build, world, vouchers = world_with_meal_vouchers(app, 8)
    codes = [build.presence_token(world.alice.id) for _ in range(RACERS)]

    outcomes = scan_meals_at_once(app, world, codes)

    assert 1 <= outcomes.count("ok") <= 8
    assert set(outcomes) - {"ok"} <= {"VoucherAlreadyRedeemed", "NoValidVoucher"}
    assert len(build.redemptions()) == outcomes.count("ok")
    retried = []
    for code in codes:
        try:
            build.run(lambda code=code: redemption.redeem(actor=db.session.get(User, world.p1.user.id), now=utcnow(),
                                                          presence_token=code, item_code=world.meal))
            retried.append("ok")
        except DomainError as refusal:
            retried.append(type(refusal).__name__)
    assert outcomes.count("ok") + retried.count("ok") == 8
    assert sorted(r.voucher_id for r in build.redemptions()) == sorted(vouchers)
    assert build.ledger(world.programme).redeemed_fen == 8 * 1140
    assert build.failing_checks(world.programme) == []

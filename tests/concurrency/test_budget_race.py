"""Rule 1 (docs/domain.md) under concurrency: racing commitments never overspend, on PostgreSQL and SQLite.

Each racer is a real thread with its own app context, session and database connection, committing
for real. A barrier releases them together.
"""

from sqlalchemy import select

from marketplace.db import db, utcnow
from marketplace.programmes import ledger
from marketplace.programmes import service as programme_service
from marketplace.programmes.models import Programme, ProgrammeBudget
from tests.support.races import race_transactions

RACERS = 32
ROOM = 20
PRICE_FEN = 1_250
# What a racer may be refused with: no room left, or a cut below what is committed.
REFUSALS = (ledger.InsufficientBudget, programme_service.BudgetBelowCommitted)


def ledger_checks_failing(programme_id) -> set[str]:
    """Failing reconciliation checks, apart from the vouchers one (raw commitments have no vouchers)."""
    checks = ledger.reconcile(programme_id)["checks"]
    return {check["name"] for check in checks if not check["ok"]} - {"committed_matches_issued_vouchers"}


def test_32_racers_for_room_for_20_commit_exactly_20(app, make_programme):
    programme = make_programme(budget_fen=ROOM * PRICE_FEN, activate=True)
    low_water = []

    def commit(programme_id):
        ledger.commit_budget(programme_id=programme_id, amount_fen=PRICE_FEN, now=utcnow())
        low_water.append(db.session.scalar(select(ProgrammeBudget.available_fen)
                                           .where(ProgrammeBudget.programme_id == programme_id)))

    outcomes = race_transactions(app, lambda _index: commit(programme.id), racers=RACERS, refusals=REFUSALS)

    assert outcomes.count("ok") == ROOM
    assert outcomes.count("InsufficientBudget") == RACERS - ROOM
    assert min(low_water) == 0
    with app.app_context():
        balances = ledger.balances(programme.id)
        assert balances.available_fen == 0
        assert balances.committed_fen == ROOM * PRICE_FEN
        assert ledger_checks_failing(programme.id) == set()


def test_a_budget_cut_racing_commitments_never_takes_available_below_zero(app, make_programme):
    programme = make_programme(budget_fen=ROOM * PRICE_FEN, activate=True)
    cut = 5 * PRICE_FEN
    turns = iter(range(RACERS))  # every eighth racer cuts the budget instead of committing

    def commit_or_cut(programme_id):
        if next(turns) % 8 == 0:
            programme_service.amend_budget(programme=db.session.get(Programme, programme_id), amount_fen=-cut,
                                           reason="mid-year cut", actor=None, now=utcnow())
        else:
            ledger.commit_budget(programme_id=programme_id, amount_fen=PRICE_FEN, now=utcnow())

    race_transactions(app, lambda _index: commit_or_cut(programme.id), racers=RACERS, refusals=REFUSALS)

    with app.app_context():
        balances = ledger.balances(programme.id)
        assert balances.available_fen >= 0
        assert ledger.guarded_available(programme.id) == balances.available_fen
        assert balances.allocated_fen == balances.available_fen + balances.committed_fen
        assert ledger_checks_failing(programme.id) == set()

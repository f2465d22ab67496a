"""Rule 1 (docs/domain.md) under concurrency: racing commitments never overspend, on PostgreSQL and SQLite.

Each racer is a real thread with its own app context, session and database connection, committing
for real. A barrier releases them together.
"""

import threading

from sqlalchemy import select

from marketplace.db import db, transaction, utcnow
from marketplace.programmes import ledger
from marketplace.programmes import service as programme_service
from marketplace.programmes.models import Programme, ProgrammeBudget

RACERS = 32
ROOM = 20
PRICE_FEN = 1_250


def ledger_checks_failing(programme_id) -> set[str]:
    """Failing reconciliation checks, apart from the vouchers one (raw commitments have no vouchers)."""
    checks = ledger.reconcile(programme_id)["checks"]
    return {check["name"] for check in checks if not check["ok"]} - {"committed_matches_issued_vouchers"}


def race(app, programme_id, racers, work):
    barrier = threading.Barrier(racers)
    outcomes, errors = [], []

    def racer():
        try:
            with app.app_context():
                barrier.wait(timeout=30)
                try:
                    with transaction():
                        work(programme_id)
                    outcomes.append("committed")
                except (ledger.InsufficientBudget, programme_service.BudgetBelowCommitted):
                    outcomes.append("refused")
                finally:
                    db.session.remove()
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(error))

    threads = [threading.Thread(target=racer) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    return outcomes


def test_32_racers_for_room_for_20_commit_exactly_20(app, make_programme):
    programme = make_programme(budget_fen=ROOM * PRICE_FEN, activate=True)
    low_water = []

    def commit(programme_id):
        ledger.commit_budget(programme_id=programme_id, amount_fen=PRICE_FEN, now=utcnow())
        low_water.append(db.session.scalar(select(ProgrammeBudget.available_fen)
                                           .where(ProgrammeBudget.programme_id == programme_id)))

    outcomes = race(app, programme.id, RACERS, commit)

    assert outcomes.count("committed") == ROOM
    assert outcomes.count("refused") == RACERS - ROOM
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

    race(app, programme.id, RACERS, commit_or_cut)

    with app.app_context():
        balances = ledger.balances(programme.id)
        assert balances.available_fen >= 0
        assert ledger.guarded_available(programme.id) == balances.available_fen
        assert balances.allocated_fen == balances.available_fen + balances.committed_fen
        assert ledger_checks_failing(programme.id) == set()

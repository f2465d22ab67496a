"""Settlement runs racing each other — on SQLite and PostgreSQL.

Each run is a real thread with its own session and connection, committing for real. However many
runs race, for the same month or for consecutive months, a redemption ends up in at most one
settlement, no draft is left empty, every draft's count and gross are exactly its redemptions', and
the audit chain and the books still verify.
"""

from sqlalchemy import func, select

from marketplace.audit import service as audit_service
from marketplace.db import db, utcnow
from marketplace.programmes.models import Programme
from tests.support.races import race_transactions
from tests.support.scenario import Builder
from vouchers.models import Redemption, Settlement
from vouchers.service import settlement

RUNS = 8


def settle(programme_id: int, period: str) -> None:
    """One run, inside the racer's own transaction."""
    settlement.create_settlements(programme=db.session.get(Programme, programme_id), period=period,
                                          evaluations={}, actor=None, now=utcnow())


def scene(build: Builder):
    """Three providers with services in each of the last two months."""
    meal = build.item()
    programme = build.programme(items=[(meal, 1237, 20)]).id
    providers = [build.provider(items=[meal], enrol_in=[programme]) for _ in range(3)]
    recipients = [build.recipient() for _ in range(3)]
    for offset in (-2, -1):
        build.issue(programme, build.period(offset))
    for provider, recipient in zip(providers, recipients, strict=True):
        build.serve(provider, [recipient], programme, meal,
                    delivered_at=[build.in_month(offset, 1, 9 + hour) for offset in (-2, -1) for hour in range(3)])
    return programme, providers


def drafts_match_their_redemptions(build) -> list[tuple[int, int, int]]:
    """(settlement id, count, gross) of every draft, asserting each equals its redemptions."""

    def check():
        rows = []
        for drafted in db.session.scalars(select(Settlement).order_by(Settlement.id)):
            count, gross = db.session.execute(
                select(func.count(), func.coalesce(func.sum(Redemption.face_value_fen), 0))
                .where(Redemption.settlement_id == drafted.id)).one()
            assert (drafted.redemptions_count, drafted.gross_fen) == (count, gross)
            assert count > 0, "an empty draft was left behind"
            rows.append((drafted.id, count, gross))
        return rows

    return build.read(check)


def test_racing_runs_for_one_month_draft_each_providers_settlement_once(app):
    build = Builder(app)
    programme, providers = scene(build)
    period = build.period(-1)

    outcomes = race_transactions(app, lambda _index: settle(programme, period), racers=RUNS)

    assert outcomes == ["ok"] * RUNS
    drafts = drafts_match_their_redemptions(build)
    assert len(drafts) == len(providers)
    assert sum(count for _id, count, _gross in drafts) == 3 * 6  # both months, delivered before period's end
    assert build.count(Redemption, Redemption.settlement_id.is_(None)) == 0
    assert build.read(lambda: audit_service.verify_chain().ok)
    assert build.failing_checks(programme) == []


def test_racing_runs_for_consecutive_months_never_share_a_redemption(app):
    build = Builder(app)
    programme, providers = scene(build)
    periods = [build.period(-2), build.period(-1)]

    outcomes = race_transactions(app, lambda index: settle(programme, periods[index % 2]), racers=RUNS)

    assert outcomes == ["ok"] * RUNS
    drafts = drafts_match_their_redemptions(build)
    # Every redemption is settled exactly once, by whichever month's run reached it first.
    assert sum(count for _id, count, _gross in drafts) == 3 * 6
    assert build.count(Redemption, Redemption.settlement_id.is_(None)) == 0
    per_provider_and_period = build.read(lambda: db.session.execute(
        select(Settlement.provider_id, Settlement.period, func.count()).group_by(
            Settlement.provider_id, Settlement.period)).all())
    assert all(count == 1 for _provider, _period, count in per_provider_and_period)
    assert build.read(lambda: audit_service.verify_chain().ok)
    assert build.failing_checks(programme) == []

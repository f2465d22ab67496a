"""Races on ratings and complaints, on SQLite and PostgreSQL.

Each racer is a real thread with its own app context, session and database connection, calling the
service layer and committing for real. A barrier releases them together. The outcome must be what the
rules allow: one rating per redemption, running totals equal to a recomputation, one resolution per
complaint.
"""

from marketplace.auth.models import User
from marketplace.db import db, utcnow
from providers.models import Complaint
from providers.service import complaints
from tests.support.races import race_transactions
from tests.support.scenario import Builder
from vouchers.models import Redemption
from vouchers.service import feedback, reversal

RACERS = 8


def _served(app, times):
    build = Builder(app)
    meal = build.item()
    programme = build.programme(items=[meal])
    provider = build.provider(items=[meal], enrol_in=[programme])
    recipient = build.recipient()
    build.issue(programme)
    return build, build.serve(provider, [recipient], programme, meal, times=times)


def test_first_ratings_racing_for_the_same_totals_row_all_count(app):
    build, redemptions = _served(app, RACERS)
    admin = build.system_admin

    def rate(index):
        feedback.rate_redemption(redemption_id=redemptions[index].id,
                                        score=index % 5 + 1, comment=None, source="phone_followup",
                                        actor=db.session.get(User, admin.id), now=utcnow())

    outcomes = race_transactions(app, rate, racers=RACERS)

    assert outcomes == ["ok"] * RACERS
    first = redemptions[0]
    scores = [index % 5 + 1 for index in range(RACERS)]
    assert build.aggregates() == build.recomputed_aggregates() == {
        (first.provider_id, first.programme_id, first.item_code): (RACERS, sum(scores),
                                                                   sum(score >= 4 for score in scores))}


def test_racing_ratings_of_one_redemption_give_one_rating(app):
    build, [redemption] = _served(app, 1)
    admin = build.system_admin

    def rate(index):
        feedback.rate_redemption(redemption_id=redemption.id, score=index % 5 + 1,
                                        comment=None, source="phone_followup", actor=db.session.get(User, admin.id),
                                        now=utcnow())

    outcomes = race_transactions(app, rate, racers=RACERS)

    assert sorted(outcomes) == ["AlreadyRated"] * (RACERS - 1) + ["ok"]
    [rating] = build.ratings()
    assert build.aggregates() == build.recomputed_aggregates() == {
        (redemption.provider_id, redemption.programme_id, redemption.item_code): (
            1, rating["score"], int(rating["score"] >= 4))}


def test_a_rating_racing_the_reversal_of_its_service_never_counts_a_reversed_service(app):
    pairs = RACERS // 2
    build, redemptions = _served(app, pairs)
    admin = build.system_admin

    def work(index):
        redemption = redemptions[index // 2]
        actor = db.session.get(User, admin.id)
        if index % 2:
            reversal.reverse_redemption(redemption=db.session.get(Redemption, redemption.id), reason="扫错了",
                                        actor=actor, now=utcnow())
        else:
            feedback.rate_redemption(redemption_id=redemption.id, score=5, comment=None, source="phone_followup",
                                     actor=actor, now=utcnow())

    outcomes = race_transactions(app, work, racers=RACERS)

    assert outcomes.count("ok") >= pairs  # every reversal wins; a rating loses only to its reversal
    assert set(outcomes) <= {"ok", "InvalidTransition"}
    assert build.aggregates() == build.recomputed_aggregates()


def test_racing_resolutions_of_one_complaint_give_one_resolution(app):
    build, [redemption] = _served(app, 1)
    admins = [build.admin() for _ in range(RACERS)]
    complaint_id = build.complain(redemption.provider_id, redemption=redemption, by=admins[0], text="服务人员迟到")

    def resolve(index):
        actor = db.session.get(User, admins[index].id)
        complaints.resolve_complaint(complaint_id=complaint_id, upheld=index % 2 == 0, resolution=f"处理意见 {index}",
                                     actor=actor, now=utcnow())

    outcomes = race_transactions(app, resolve, racers=RACERS)

    assert sorted(outcomes) == ["InvalidTransition"] * (RACERS - 1) + ["ok"]
    stored = build.read(lambda: db.session.get(Complaint, complaint_id))
    winner = int(stored.resolution.split()[-1])
    assert (stored.status, stored.upheld, stored.resolved_by) == ("resolved", winner % 2 == 0, admins[winner].id)

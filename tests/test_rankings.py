"""Provider ranking (GET /rankings; docs/domain.md#project-rules-beyond-the-policy, P10): every number against a hand
computation.

    bayesian_score = (C·m + Σ scores) / (C + n)

n and Σ are the provider's ratings of the item in the scope, m the mean of every rating in the scope
(item, and region and programme when given), C = RANKING_PRIOR_WEIGHT (10 by default). Rows are
ordered by bayesian_score desc, then ratings_count desc, then provider_id. Every rating here is about
a real redemption. The last tests check that the running totals (rating_aggregate) always equal a
recomputation from the rating table. Every test runs on SQLite and PostgreSQL.
"""

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, update

from marketplace.app import create_app
from marketplace.db import db, transaction, utcnow
from marketplace.errors import InvalidTransition
from providers.models import Rating, RatingAggregate
from providers.service.ratings import AlreadyRated, RatingWindowClosed
from tests.conftest import error_code
from tests.support.apps import app_config

URL = "/api/v1/rankings"
C = 10
EXACT = 1e-9


@pytest.fixture
def meal_programme(build):
    """An active county programme buying meals in which any enrolled provider may serve anyone."""
    meal = build.item()
    return build.programme(items=[meal], choice_required=False).id, meal


def ranking(client, **query) -> list[dict]:
    response = client.get(URL, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def expected_row(provider_id: int, scores: list[int], m: float | None, weight: int = C) -> dict:
    """A ranking row computed by hand from the provider's scores and the scope mean *m*."""
    n, total = len(scores), sum(scores)
    return {"provider_id": provider_id, "ratings_count": n, "mean_score": total / n if n else None,
            "bayesian_score": (weight * m + total) / (weight + n) if m is not None else None,
            "satisfaction_rate": sum(score >= 4 for score in scores) / n if n else None}


def assert_ranking(rows: list[dict], expected: list[dict]) -> None:
    """The rows are *expected*, in that order, ranked 1, 2, … and every number is right to 1e-9."""
    assert [row["provider_id"] for row in rows] == [row["provider_id"] for row in expected]
    assert [row["rank"] for row in rows] == list(range(1, len(expected) + 1))
    for row, wanted in zip(rows, expected, strict=True):
        for key, value in wanted.items():
            assert row[key] == (value if value is None or isinstance(value, int) else
                                pytest.approx(value, abs=EXACT)), (row["provider_id"], key)


# --- the numbers ----------------------------------------------------------------------------------

def test_ranking_numbers_equal_the_hand_computation(client, build, meal_programme):
    programme, meal = meal_programme
    a, b, c, d = (build.provider(items=[meal], enrol_in=[programme], name=f"服务商{x}") for x in "ABCD")
    people = [build.recipient(), build.recipient()]
    build.issue(programme)
    build.rated_services(a, people, programme, meal, [5, 5, 4, 3])
    build.rated_services(b, people, programme, meal, [4, 4])
    build.rated_services(c, people, programme, meal, [5])

    rows = ranking(client, item_code=meal)

    m = 30 / 7  # (5+5+4+3 + 4+4 + 5) / 7
    # By hand: C (47.857/11 = 4.3506), D (no ratings: m = 4.2857), A (59.857/14 = 4.2755), B (50.857/12 = 4.2381).
    assert_ranking(rows, [
        {"provider_id": c.id, "ratings_count": 1, "mean_score": 5.0, "bayesian_score": (C * m + 5) / 11,
         "satisfaction_rate": 1.0},
        {"provider_id": d.id, "ratings_count": 0, "mean_score": None, "bayesian_score": m,
         "satisfaction_rate": None},
        {"provider_id": a.id, "ratings_count": 4, "mean_score": 4.25, "bayesian_score": (C * m + 17) / 14,
         "satisfaction_rate": 0.75},
        {"provider_id": b.id, "ratings_count": 2, "mean_score": 4.0, "bayesian_score": (C * m + 8) / 12,
         "satisfaction_rate": 1.0},
    ])
    assert rows[0]["bayesian_score"] == pytest.approx(4.350649350649351, abs=EXACT)
    assert {row["provider_id"]: (row["name"], row["kind"], row["complaints_count"]) for row in rows} == {
        p.id: (f"服务商{x}", "social_organisation", 0) for p, x in zip((a, b, c, d), "ABCD", strict=True)}


def test_one_five_star_rating_ranks_below_many_ratings_averaging_4_8(client, build, meal_programme):
    programme, meal = meal_programme
    lucky, steady, weak = (build.provider(items=[meal], enrol_in=[programme]) for _ in range(3))
    people = [build.recipient() for _ in range(2)]
    build.issue(programme)
    build.rated_services(lucky, people, programme, meal, [5])
    build.rated_services(steady, people, programme, meal, [5] * 12 + [4] * 3)  # 15 ratings, mean 4.8
    build.rated_services(weak, people, programme, meal, [4] * 5 + [3] * 5)  # 10 ratings, mean 3.5

    rows = ranking(client, item_code=meal)

    m = (5 + 72 + 35) / 26
    assert_ranking(rows, [expected_row(steady.id, [5] * 12 + [4] * 3, m), expected_row(lucky.id, [5], m),
                          expected_row(weak.id, [4] * 5 + [3] * 5, m)])
    by_id = {row["provider_id"]: row for row in rows}
    assert by_id[lucky.id]["mean_score"] > by_id[steady.id]["mean_score"]  # the raw mean would have it the other way
    assert by_id[steady.id]["bayesian_score"] == pytest.approx((C * m + 72) / 25, abs=EXACT)  # 4.6031


def test_equal_scores_are_ordered_by_ratings_count_then_provider_id(client, build, meal_programme):
    programme, meal = meal_programme
    first, second, unrated, third = (build.provider(items=[meal], enrol_in=[programme]) for _ in range(4))
    people = [build.recipient()]
    build.issue(programme)
    build.rated_services(third, people, programme, meal, [4])  # rated first, yet a later id than `second`
    build.rated_services(second, people, programme, meal, [4])
    build.rated_services(first, people, programme, meal, [4, 4])

    rows = ranking(client, item_code=meal)

    # m = 4: everyone's Bayesian score is exactly 4.0, the unrated provider's included.
    assert [row["bayesian_score"] for row in rows] == [4.0] * 4
    assert [row["provider_id"] for row in rows] == [first.id, second.id, third.id, unrated.id]
    assert [row["rank"] for row in rows] == [1, 2, 3, 4]


def test_a_provider_without_ratings_scores_the_scope_mean(client, build, meal_programme):
    programme, meal = meal_programme
    rated, newcomer = (build.provider(items=[meal], enrol_in=[programme]) for _ in range(2))
    people = [build.recipient()]
    build.issue(programme)
    build.rated_services(rated, people, programme, meal, [2, 3, 5])

    rows = {row["provider_id"]: row for row in ranking(client, item_code=meal)}

    assert rows[newcomer.id] == {**rows[newcomer.id], "ratings_count": 0, "mean_score": None,
                                 "satisfaction_rate": None}
    assert rows[newcomer.id]["bayesian_score"] == pytest.approx(10 / 3, abs=EXACT)  # m = (2+3+5)/3
    assert rows[newcomer.id]["bayesian_score"] == pytest.approx((C * (10 / 3) + 0) / (C + 0), abs=EXACT)


def test_when_nobody_in_the_scope_is_rated_every_score_is_null_and_the_order_is_by_id(client, build,
                                                                                        meal_programme):
    programme, meal = meal_programme
    providers = [build.provider(items=[meal], enrol_in=[programme], login=False) for _ in range(3)]

    rows = ranking(client, item_code=meal)

    assert_ranking(rows, [expected_row(provider.id, [], None) for provider in providers])


def test_ratings_of_another_item_do_not_count(client, build):
    meal, bath = build.item(), build.item(name="助浴")
    programme = build.programme(items=[meal, bath], choice_required=False).id
    p1, p2 = (build.provider(items=[meal, bath], enrol_in=[programme]) for _ in range(2))
    people = [build.recipient()]
    build.issue(programme)
    build.rated_services(p1, people, programme, meal, [5, 5])
    build.rated_services(p2, people, programme, meal, [1])
    build.rated_services(p1, people, programme, bath, [1, 2])
    build.rated_services(p2, people, programme, bath, [4])

    m = 7 / 3
    assert_ranking(ranking(client, item_code=bath), [expected_row(p2.id, [4], m), expected_row(p1.id, [1, 2], m)])


# --- filters --------------------------------------------------------------------------------------

def test_the_item_code_is_required(client):
    response = client.get(URL)

    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "item_code" in response.get_json()["error"]["details"]["fields"]


@pytest.mark.parametrize("query", [{"region_code": "5101"}, {"region_code": "abcdef"}, {"programme_id": "x"},
                                   {"programme_id": 0}], ids=repr)
def test_malformed_filters_are_validation_errors(client, query):
    response = client.get(URL, query_string={"item_code": "HC-MEAL", **query})

    assert response.status_code == 422
    assert error_code(response) == "validation_error"


def test_an_item_nobody_offers_ranks_nobody(client, build, meal_programme):
    programme, meal = meal_programme
    build.provider(items=[meal], enrol_in=[programme], login=False)

    assert ranking(client, item_code="HC-NOBODY") == []


def test_the_region_filter_keeps_providers_serving_the_region_and_their_ratings_only(client, build):
    meal = build.item()
    city = build.programme(items=[meal], region_code="510100", choice_required=False).id  # the whole of 成都市
    citywide = build.provider(items=[meal], regions=("510100",), enrol_in=[city])
    county = build.provider(items=[meal], regions=("510131",), enrol_in=[city])
    neighbour = build.provider(items=[meal], regions=("510132",), enrol_in=[city])
    here, there = build.recipient(region_code="510131"), build.recipient(region_code="510132")
    build.issue(city)
    build.rated_services(citywide, [here], city, meal, [5, 4])
    build.rated_services(county, [here], city, meal, [4])
    build.rated_services(neighbour, [there], city, meal, [1, 2])

    m = (5 + 4 + 4) / 3  # the neighbouring county's ratings are outside the scope
    assert_ranking(ranking(client, item_code=meal, region_code="510131"),
                   [expected_row(citywide.id, [5, 4], m), expected_row(county.id, [4], m)])
    m = (5 + 4 + 1 + 2) / 4
    assert_ranking(ranking(client, item_code=meal, region_code="510132"),
                   [expected_row(citywide.id, [5, 4], m), expected_row(neighbour.id, [1, 2], m)])
    m = (5 + 4 + 4 + 1 + 2) / 5
    assert_ranking(ranking(client, item_code=meal), [expected_row(citywide.id, [5, 4], m),
                                                     expected_row(county.id, [4], m),
                                                     expected_row(neighbour.id, [1, 2], m)])


def test_the_programme_filter_keeps_enrolled_providers_and_that_programmes_ratings_only(client, build):
    meal = build.item()
    # One programme per county, so that each recipient's vouchers come from one programme only.
    first = build.programme(items=[meal], region_code="510131", choice_required=False).id
    second = build.programme(items=[meal], region_code="510132", choice_required=False).id
    both = build.provider(items=[meal], regions=("510100",), enrol_in=[first, second])
    first_only = build.provider(items=[meal], regions=("510131",), enrol_in=[first])
    unenrolled = build.provider(items=[meal], regions=("510131",), login=False)  # approved, offers meals
    in_first, in_second = build.recipient(region_code="510131"), build.recipient(region_code="510132")
    build.issue(first)
    build.issue(second)
    build.rated_services(both, [in_first], first, meal, [5, 4])
    build.rated_services(first_only, [in_first], first, meal, [4])
    [rated_in_second] = build.rated_services(both, [in_second], second, meal, [2])
    assert rated_in_second.programme_id == second

    m = (5 + 4 + 4) / 3
    assert_ranking(ranking(client, item_code=meal, programme_id=first),
                   [expected_row(both.id, [5, 4], m), expected_row(first_only.id, [4], m)])
    assert_ranking(ranking(client, item_code=meal, programme_id=second), [expected_row(both.id, [2], 2.0)])
    m = (5 + 4 + 4 + 2) / 4  # no programme: every programme's ratings, and the unenrolled provider too
    assert_ranking(ranking(client, item_code=meal), [
        expected_row(first_only.id, [4], m), expected_row(unenrolled.id, [], m),
        expected_row(both.id, [5, 4, 2], m)])


def test_suspended_revoked_and_pending_providers_are_not_ranked(client, build, meal_programme):
    programme, meal = meal_programme
    good, suspended, revoked = (build.provider(items=[meal], enrol_in=[programme]) for _ in range(3))
    build.provider(items=[meal], status="pending", login=False)
    people = [build.recipient()]
    build.issue(programme)
    build.rated_services(good, people, programme, meal, [4])
    build.rated_services(suspended, people, programme, meal, [5])
    build.rated_services(revoked, people, programme, meal, [3])
    everyone = {good.id, suspended.id, revoked.id}
    assert {row["provider_id"] for row in ranking(client, item_code=meal)} == everyone

    build.set_provider_status(suspended, "suspend")
    build.set_provider_status(revoked, "revoke")
    assert [row["provider_id"] for row in ranking(client, item_code=meal)] == [good.id]
    assert [row["provider_id"] for row in ranking(client, item_code=meal, programme_id=programme)] == [good.id]

    build.set_provider_status(suspended, "reinstate")
    assert {row["provider_id"] for row in ranking(client, item_code=meal)} == {good.id, suspended.id}


# --- the prior weight -----------------------------------------------------------------------------

def test_the_prior_weight_is_configurable(client, build, meal_programme, database_url, tmp_path):
    programme, meal = meal_programme
    single, several, low = (build.provider(items=[meal], enrol_in=[programme]) for _ in range(3))
    people = [build.recipient()]
    build.issue(programme)
    build.rated_services(single, people, programme, meal, [5])
    build.rated_services(several, people, programme, meal, [5, 5, 4, 4, 4])
    build.rated_services(low, people, programme, meal, [3, 3, 3, 3])
    m = 39 / 10

    # C = 10: several (61/15 = 4.0667) above single (44/11 = 4.0).
    assert_ranking(ranking(client, item_code=meal), [
        expected_row(several.id, [5, 5, 4, 4, 4], m), expected_row(single.id, [5], m),
        expected_row(low.id, [3, 3, 3, 3], m)])

    weighted = create_app(app_config(database_url, RANKING_PRIOR_WEIGHT=2, INSTANCE_PATH=str(tmp_path)))
    try:
        rows = ranking(weighted.test_client(), item_code=meal)
        # C = 2: single (12.8/3 = 4.2667) above several (29.8/7 = 4.2571).
        assert_ranking(rows, [expected_row(single.id, [5], m, weight=2),
                              expected_row(several.id, [5, 5, 4, 4, 4], m, weight=2),
                              expected_row(low.id, [3, 3, 3, 3], m, weight=2)])
        assert rows[0]["bayesian_score"] == pytest.approx(12.8 / 3, abs=EXACT)
        provider = weighted.test_client().get(f"/api/v1/providers/{single.id}").get_json()
        assert provider["rating"]["bayesian"] == pytest.approx((2 * m + 5) / 3, abs=EXACT)
    finally:
        with weighted.app_context():
            db.engine.dispose()


def test_a_zero_prior_weight_ranks_by_the_plain_mean_and_leaves_the_unrated_unscored(client, build, meal_programme,
                                                                                     database_url, tmp_path):
    programme, meal = meal_programme
    single, several = (build.provider(items=[meal], enrol_in=[programme]) for _ in range(2))
    unrated = build.provider(items=[meal], enrol_in=[programme], login=False)
    people = [build.recipient()]
    build.issue(programme)
    build.rated_services(single, people, programme, meal, [5])
    build.rated_services(several, people, programme, meal, [5, 4])

    plain = create_app(app_config(database_url, RANKING_PRIOR_WEIGHT=0, INSTANCE_PATH=str(tmp_path)))
    try:
        rows = ranking(plain.test_client(), item_code=meal)
        assert_ranking(rows, [
            {**expected_row(single.id, [5], 14 / 3, weight=0), "bayesian_score": 5.0},
            {**expected_row(several.id, [5, 4], 14 / 3, weight=0), "bayesian_score": 4.5},
            {**expected_row(unrated.id, [], None), "bayesian_score": None}])
        response = plain.test_client().get(f"/api/v1/providers/{unrated.id}")
        assert response.status_code == 200
        assert response.get_json()["rating"] == {"count": 0, "mean": None, "bayesian": None,
                                                 "satisfaction_rate": None}
    finally:
        with plain.app_context():
            db.engine.dispose()


# --- the running totals ---------------------------------------------------------------------------

def test_the_totals_follow_every_rating_and_a_tampered_total_is_noticed(app, build, meal_programme):
    """The recomputation the property test relies on does see a difference when there is one."""
    programme, meal = meal_programme
    provider = build.provider(items=[meal], enrol_in=[programme])
    people = [build.recipient()]
    build.issue(programme)
    build.rated_services(provider, people, programme, meal, [5, 3, 4])
    assert build.aggregates() == build.recomputed_aggregates() == {(provider.id, programme, meal): (3, 12, 2)}

    with app.app_context(), transaction():
        db.session.execute(update(RatingAggregate).values(score_sum=RatingAggregate.score_sum + 1))
    assert build.aggregates() != build.recomputed_aggregates()


def _pool(build):
    """Rateable redemptions across three providers, two programmes (one per county) and two items, plus
    one reversed redemption. Returns (redemptions, reversed redemption ids, recipient users by id)."""
    meal, bath = build.item(), build.item(name="助浴")
    east = build.programme(items=[meal, bath], region_code="510131", choice_required=False).id
    west = build.programme(items=[meal, bath], region_code="510132", choice_required=False).id
    both = build.provider(items=[meal, bath], regions=("510100",), enrol_in=[east, west])
    east_only = build.provider(items=[meal], regions=("510131",), enrol_in=[east])
    west_only = build.provider(items=[meal, bath], regions=("510132",), enrol_in=[west])
    eastern = build.recipient(region_code="510131", login=True)
    western = build.recipient(region_code="510132", login=True)
    build.issue(east)
    build.issue(west)
    plan = [(both, eastern, meal), (both, eastern, bath), (both, western, meal), (both, western, bath),
            (east_only, eastern, meal), (west_only, western, meal), (west_only, western, bath)]
    redemptions = [build.redeem(provider, recipient, item) for provider, recipient, item in plan for _ in range(3)]
    reversed_one = build.redeem(east_only, eastern, meal)
    build.reverse(reversed_one)
    assert {(r.provider_id, r.programme_id, r.item_code) for r in redemptions} == {
        (both.id, east, meal), (both.id, east, bath), (both.id, west, meal), (both.id, west, bath),
        (east_only.id, east, meal), (west_only.id, west, meal), (west_only.id, west, bath)}
    users = {eastern.id: eastern.user, western.id: western.user}
    return redemptions + [reversed_one], {reversed_one.id}, users


def test_the_totals_always_equal_a_recomputation_from_the_ratings(app, build):
    redemptions, reversed_ids, users = _pool(build)
    admin = build.system_admin
    steps = st.lists(st.tuples(st.integers(0, len(redemptions) - 1), st.integers(1, 5), st.booleans(),
                               st.sampled_from(["on_time", "on_time", "on_time", "late"])), min_size=1, max_size=25)

    @given(steps)
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def ratings_in_any_order(sequence):
        model: dict[tuple[int, int, str], list[int]] = {}
        rated: set[int] = set()
        try:
            for index, score, by_recipient, timing in sequence:
                redemption = redemptions[index]
                actor = users[redemption.recipient_id] if by_recipient else admin
                now = utcnow() + (timedelta(days=31) if timing == "late" else timedelta(0))
                refusals = set()
                if redemption.id in reversed_ids:
                    refusals.add(InvalidTransition)
                if timing == "late":
                    refusals.add(RatingWindowClosed)
                if redemption.id in rated:
                    refusals.add(AlreadyRated)
                refused = None
                try:
                    build.rate(redemption, score, by=actor, now=now)  # as the recipient, or the admin's 回访
                except (InvalidTransition, RatingWindowClosed, AlreadyRated) as refusal:
                    refused = type(refusal)
                if refusals:
                    assert refused in refusals, (refused, refusals)
                else:
                    assert refused is None, refused
                    rated.add(redemption.id)
                    key = (redemption.provider_id, redemption.programme_id, redemption.item_code)
                    model.setdefault(key, []).append(score)
                totals = build.aggregates()
                assert totals == build.recomputed_aggregates()
                assert totals == {key: (len(scores), sum(scores), sum(s >= 4 for s in scores))
                                  for key, scores in model.items()}
        finally:
            with app.app_context(), transaction():
                db.session.execute(delete(RatingAggregate))
                db.session.execute(delete(Rating))

    ratings_in_any_order()

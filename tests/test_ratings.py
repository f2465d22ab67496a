"""Satisfaction ratings over HTTP (POST /redemptions/{id}/rating; the `rating` summary of
GET /providers and GET /providers/{id}). Every rating is about a real redemption made by a provider
scanning the recipient's presence code. Every test runs on SQLite and PostgreSQL."""

from dataclasses import dataclass
from datetime import timedelta

import pytest

from providers.service.ratings import RatingWindowClosed
from tests.conftest import error_code
from tests.support.dates import month_of
from tests.support.scenario import Builder, World

C = 10  # RANKING_PRIOR_WEIGHT by default
EXACT = 1e-9


def rating_url(redemption_id: int) -> str:
    return f"/api/v1/redemptions/{redemption_id}/rating"


@dataclass(frozen=True)
class Cast(World):
    """The standard world (meals and baths, a 30-day rating window) with this month's vouchers issued;
    alice chose p1 for both items, bob chose p2 for meals."""

    build: Builder


@pytest.fixture
def cast(build):
    world = build.world()
    build.issue(world.programme)
    build.choose_all(world, world.p1, world.alice)
    build.choose(world.bob, world.programme, world.meal, world.p2)
    return Cast(**vars(world), build=build)


def rate(client, headers, redemption_id, **body):
    return client.post(rating_url(redemption_id), json=body, headers=headers)


# --- who may rate ---------------------------------------------------------------------------------

def test_the_recipient_rates_their_own_service_and_the_rating_is_theirs(client, cast):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)

    response = rate(client, build.headers(cast.alice.user), redemption.id, score=4, comment="饭菜可口，送得准时")

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert {key: body[key] for key in ("redemption_id", "provider_id", "programme_id", "item_code", "score",
                                       "comment", "source", "rated_by")} == {
        "redemption_id": redemption.id, "provider_id": cast.p1.id, "programme_id": cast.programme.id,
        "item_code": cast.meal, "score": 4, "comment": "饭菜可口，送得准时", "source": "recipient",
        "rated_by": cast.alice.user.id}
    [stored] = build.ratings()
    assert stored["id"] == body["id"]
    assert stored["recipient_id"] == cast.alice.id
    assert build.aggregates() == {(cast.p1.id, cast.programme.id, cast.meal): (1, 4, 1)}


def test_a_rating_is_recorded_in_the_audit_trail(client, cast):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)
    rating = rate(client, build.headers(cast.alice.user), redemption.id, score=2).get_json()

    auditor = build.auditor()
    events = client.get("/api/v1/audit", query_string={"entity": "provider", "entity_id": cast.p1.id},
                        headers=build.headers(auditor)).get_json()["items"]

    [event] = [event for event in events if event["action"] == "rating.recorded"]
    assert event["actor"] == cast.alice.user.username
    assert event["data"] == {"rating_id": rating["id"], "redemption_id": redemption.id, "score": 2,
                             "source": "recipient"}


def test_another_recipients_service_cannot_be_rated(client, cast):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)

    response = rate(client, build.headers(cast.bob.user), redemption.id, score=1)

    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert build.ratings() == []
    assert build.aggregates() == {}


@pytest.mark.parametrize("body", [{}, {"source": "recipient"}], ids=["no-source", "source-recipient"])
def test_an_admin_may_not_rate_without_marking_a_phone_followup(client, cast, body):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)

    response = rate(client, build.headers(build.admin()), redemption.id, score=5, **body)

    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert build.ratings() == []


def test_an_admin_records_a_phone_followup_attributed_to_the_admin(client, cast):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)
    admin = build.admin()

    response = rate(client, build.headers(admin), redemption.id, score=3, source="phone_followup",
                    comment="回访：老人说洗得不够仔细")

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["source"], body["rated_by"], body["score"]) == ("phone_followup", admin.id, 3)
    [stored] = build.ratings()
    # Attributed to the admin who called, yet still about alice's service by p1.
    assert (stored["source"], stored["rated_by"]) == ("phone_followup", admin.id)
    assert (stored["recipient_id"], stored["provider_id"], stored["item_code"]) == (cast.alice.id, cast.p1.id,
                                                                                    cast.meal)
    assert build.aggregates() == {(cast.p1.id, cast.programme.id, cast.meal): (1, 3, 0)}


def test_a_county_admin_rates_in_their_county_but_not_elsewhere(client, cast):
    build = cast.build
    first, second = build.redeem(cast.p1, cast.alice, cast.meal), build.redeem(cast.p1, cast.alice, cast.meal)

    elsewhere = rate(client, build.headers(build.admin(region_code="510132")), first.id, score=4,
                     source="phone_followup")
    here = rate(client, build.headers(build.admin(region_code="510131")), second.id, score=4,
                source="phone_followup")

    assert elsewhere.status_code == 403
    assert error_code(elsewhere) == "forbidden"
    assert here.status_code == 201, here.get_json()
    assert [rating["redemption_id"] for rating in build.ratings()] == [second.id]


def test_a_recipient_cannot_pass_their_rating_off_as_a_phone_followup(client, cast):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)

    response = rate(client, build.headers(cast.alice.user), redemption.id, score=5, source="phone_followup")

    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "source" in response.get_json()["error"]["details"]["fields"]
    assert build.ratings() == []


def test_a_provider_cannot_rate_even_its_own_service(client, cast):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)

    for source in ("recipient", "phone_followup"):
        response = rate(client, build.headers(cast.p1.user), redemption.id, score=5, source=source)
        assert response.status_code == 403
        assert error_code(response) == "forbidden"
    assert build.ratings() == []


def test_an_auditor_cannot_rate(client, cast):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)

    response = rate(client, build.headers(build.auditor()), redemption.id, score=5, source="phone_followup")

    assert response.status_code == 403
    assert error_code(response) == "forbidden"


def test_anonymous_rating_is_unauthenticated(client, cast):
    redemption = cast.build.redeem(cast.p1, cast.alice, cast.meal)

    response = rate(client, {}, redemption.id, score=5)

    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"
    assert cast.build.ratings() == []


def test_an_unknown_redemption_is_not_found(client, cast):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)

    for headers, body in ((build.headers(cast.alice.user), {}), (build.headers(build.admin()),
                                                                  {"source": "phone_followup"})):
        response = rate(client, headers, redemption.id + 1000, score=5, **body)
        assert response.status_code == 404
        assert error_code(response) == "not_found"


# --- once, in time, while it stands --------------------------------------------------------------

@pytest.mark.parametrize(("first", "second"), [("recipient", "recipient"), ("recipient", "admin"),
                                               ("admin", "recipient"), ("admin", "admin")])
def test_a_service_is_rated_once(client, cast, first, second):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)
    raters = {"recipient": (build.headers(cast.alice.user), {}),
              "admin": (build.headers(build.admin()), {"source": "phone_followup"})}

    headers, body = raters[first]
    assert rate(client, headers, redemption.id, score=5, **body).status_code == 201
    headers, body = raters[second]
    response = rate(client, headers, redemption.id, score=1, **body)

    assert response.status_code == 409
    assert error_code(response) == "already_rated"
    assert [rating["score"] for rating in build.ratings()] == [5]
    assert build.aggregates() == {(cast.p1.id, cast.programme.id, cast.meal): (1, 5, 1)}


def test_a_service_delivered_before_the_rating_window_can_no_longer_be_rated(client, cast):
    build = cast.build
    # A programme whose rating window is one day; the service was delivered two days ago (recorded then).
    cleaning = build.item(name="助洁")
    programme = build.programme(items=[cleaning], rating_window_days=1)
    provider = build.provider(items=[cleaning], enrol_in=[programme])
    two_days_ago = build.today() - timedelta(days=2)
    build.issue(programme, month_of(two_days_ago))
    build.choose(cast.alice, programme, cleaning, provider)
    delivered_at = build.at(two_days_ago)
    redemption = build.redeem(provider, cast.alice, cleaning, delivered_at=delivered_at, now=delivered_at)

    for headers, body in ((build.headers(cast.alice.user), {}), (build.headers(build.admin()),
                                                                  {"source": "phone_followup"})):
        response = rate(client, headers, redemption.id, score=4, **body)
        assert response.status_code == 410
        assert error_code(response) == "rating_window_closed"
    assert build.ratings() == []
    assert build.aggregates() == {}


def test_the_rating_window_closes_exactly_window_days_after_delivery(cast):
    build = cast.build
    on_time, late = build.redeem(cast.p1, cast.alice, cast.meal), build.redeem(cast.p1, cast.alice, cast.meal)
    window = timedelta(days=30)

    build.rate(on_time, 4, by=cast.alice.user, now=on_time.delivered_at + window)
    with pytest.raises(RatingWindowClosed):
        build.rate(late, 4, by=cast.alice.user, now=late.delivered_at + window + timedelta(seconds=1))

    assert [rating["redemption_id"] for rating in build.ratings()] == [on_time.id]


def test_a_reversed_redemption_cannot_be_rated(client, cast):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)
    build.reverse(redemption)

    response = rate(client, build.headers(cast.alice.user), redemption.id, score=1)

    assert response.status_code == 409
    assert error_code(response) == "invalid_transition"
    assert build.ratings() == []


# --- what a rating may say ------------------------------------------------------------------------

@pytest.mark.parametrize("score", [0, 6, -1, 3.5, "5", None, True], ids=repr)
def test_a_score_must_be_an_integer_from_one_to_five(client, cast, score):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)

    response = rate(client, build.headers(cast.alice.user), redemption.id, score=score)

    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "score" in response.get_json()["error"]["details"]["fields"]
    assert build.ratings() == []


@pytest.mark.parametrize("field", ["rated_by", "recipient_id", "provider_id", "item_code"])
def test_a_rating_cannot_say_who_rated_whom_or_what(client, cast, field):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)

    response = rate(client, build.headers(cast.alice.user), redemption.id, score=5,
                    **{field: cast.bath if field == "item_code" else cast.p2.id})

    assert response.status_code == 422
    assert field in response.get_json()["error"]["details"]["fields"]
    assert build.ratings() == []


def test_a_score_is_required(client, cast):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)

    response = rate(client, build.headers(cast.alice.user), redemption.id, comment="很好")

    assert response.status_code == 422
    assert "score" in response.get_json()["error"]["details"]["fields"]


@pytest.mark.parametrize("score", [1, 2, 3, 4, 5])
def test_every_score_from_one_to_five_is_accepted(client, cast, score):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)

    response = rate(client, build.headers(cast.alice.user), redemption.id, score=score)

    assert response.status_code == 201, response.get_json()
    assert build.aggregates() == {(cast.p1.id, cast.programme.id, cast.meal): (1, score, int(score >= 4))}


def test_a_comment_holds_at_most_500_characters(client, cast):
    build = cast.build
    too_long, longest = build.redeem(cast.p1, cast.alice, cast.meal), build.redeem(cast.p1, cast.alice, cast.meal)
    headers = build.headers(cast.alice.user)

    refused = rate(client, headers, too_long.id, score=4, comment="好" * 501)
    accepted = rate(client, headers, longest.id, score=4, comment="好" * 500)

    assert refused.status_code == 422
    assert "comment" in refused.get_json()["error"]["details"]["fields"]
    assert accepted.status_code == 201, accepted.get_json()
    assert [(rating["redemption_id"], rating["comment"]) for rating in build.ratings()] == [(longest.id, "好" * 500)]


# --- what a rating counts for ---------------------------------------------------------------------

def test_a_rating_counts_for_the_item_of_the_redeemed_voucher(client, cast):
    build = cast.build
    bath = build.redeem(cast.p1, cast.alice, cast.bath)

    assert rate(client, build.headers(cast.alice.user), bath.id, score=2).status_code == 201

    assert build.ratings()[0]["item_code"] == cast.bath
    assert build.aggregates() == {(cast.p1.id, cast.programme.id, cast.bath): (1, 2, 0)}
    bath_rows = {row["provider_id"]: row for row in
                 client.get("/api/v1/rankings", query_string={"item_code": cast.bath}).get_json()["items"]}
    meal_rows = {row["provider_id"]: row for row in
                 client.get("/api/v1/rankings", query_string={"item_code": cast.meal}).get_json()["items"]}
    assert (bath_rows[cast.p1.id]["ratings_count"], bath_rows[cast.p1.id]["mean_score"]) == (1, 2.0)
    assert meal_rows[cast.p1.id]["ratings_count"] == 0


def _summary(client, provider_id, headers=None) -> dict:
    response = client.get(f"/api/v1/providers/{provider_id}", headers=headers or {})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["rating"]


def test_a_provider_without_any_rating_anywhere_has_an_empty_summary(client, cast):
    assert _summary(client, cast.p1.id) == {"count": 0, "mean": None, "bayesian": None, "satisfaction_rate": None}


def test_the_rating_summary_on_provider_pages_follows_each_rating(client, cast):
    build = cast.build
    p3 = build.provider(items=[cast.meal], enrol_in=[cast.programme], login=False)  # never rated
    alice = build.headers(cast.alice.user)
    admin = build.headers(build.admin())
    # p1: 5 and 2 for meals, 4 for a bath (the summary spans items); p2: 3 for a meal.
    ratings = [(cast.p1, cast.alice, cast.meal, alice, {}, 5), (cast.p1, cast.alice, cast.meal, alice, {}, 2),
               (cast.p1, cast.alice, cast.bath, admin, {"source": "phone_followup"}, 4),
               (cast.p2, cast.bob, cast.meal, admin, {"source": "phone_followup"}, 3)]
    for provider, recipient, item, headers, body, score in ratings:
        redemption = build.redeem(provider, recipient, item)
        assert rate(client, headers, redemption.id, score=score, **body).status_code == 201

    m = (5 + 2 + 4 + 3) / 4  # 3.5: every rating anywhere
    expected = {
        cast.p1.id: {"count": 3, "mean": 11 / 3, "bayesian": (C * m + 11) / (C + 3), "satisfaction_rate": 2 / 3},
        cast.p2.id: {"count": 1, "mean": 3.0, "bayesian": (C * m + 3) / (C + 1), "satisfaction_rate": 0.0},
        p3.id: {"count": 0, "mean": None, "bayesian": m, "satisfaction_rate": None},
    }
    listed = {item["id"]: item["rating"] for item in client.get("/api/v1/providers").get_json()["items"]}
    for provider_id, summary in expected.items():
        wanted = {key: pytest.approx(value, abs=EXACT) if value is not None else None for key, value in
                  summary.items()}
        assert _summary(client, provider_id) == wanted
        assert listed[provider_id] == wanted
    assert expected[cast.p1.id]["bayesian"] == pytest.approx(46 / 13, abs=EXACT)  # the arithmetic, by hand


def test_a_refused_rating_leaves_the_summary_unchanged(client, cast):
    build = cast.build
    redemption = build.redeem(cast.p1, cast.alice, cast.meal)
    headers = build.headers(cast.alice.user)
    assert rate(client, headers, redemption.id, score=5).status_code == 201
    before = _summary(client, cast.p1.id)

    assert rate(client, headers, redemption.id, score=1).status_code == 409
    assert rate(client, build.headers(cast.bob.user), redemption.id, score=1).status_code == 403

    assert _summary(client, cast.p1.id) == before == {"count": 1, "mean": 5.0, "bayesian": 5.0,
                                                      "satisfaction_rate": 1.0}


def test_a_reversed_services_rating_leaves_the_summary_and_the_totals(client, cast):
    """A reversed service did not happen: its rating stops counting, and the voucher, redeemed again,
    gets a rating of its own."""
    build = cast.build
    headers = build.headers(cast.alice.user)
    kept, undone = build.redeem(cast.p1, cast.alice, cast.meal), build.redeem(cast.p1, cast.alice, cast.meal)
    assert rate(client, headers, kept.id, score=5).status_code == 201
    assert rate(client, headers, undone.id, score=1).status_code == 201

    build.reverse(undone)

    assert _summary(client, cast.p1.id) == {"count": 1, "mean": 5.0, "bayesian": 5.0, "satisfaction_rate": 1.0}
    assert build.aggregates() == build.recomputed_aggregates()
    again = build.redeem(cast.p1, cast.alice, cast.meal)
    assert rate(client, headers, again.id, score=4).status_code == 201
    assert _summary(client, cast.p1.id)["count"] == 2


def test_ratings_by_phone_followup_count_like_the_recipients_own(cast):
    build = cast.build
    own = build.redeem(cast.p1, cast.alice, cast.meal)
    called = build.redeem(cast.p1, cast.alice, cast.meal)

    build.rate(own, 5, by=cast.alice.user)
    build.rate(called, 3)  # the system admin's 回访

    assert build.aggregates() == {(cast.p1.id, cast.programme.id, cast.meal): (2, 8, 1)}
    assert build.aggregates() == build.recomputed_aggregates()

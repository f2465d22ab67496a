"""Idempotency-Key on money-moving POSTs: a repeat replays the first answer and moves nothing again."""

from datetime import timedelta

from sqlalchemy import func, select

from marketplace.db import db, transaction, utcnow
from marketplace.idempotency import IdempotencyRecord, purge
from tests.conftest import error_code
from tests.support.races import failures, race

BUDGET = {"amount_fen": 10_000, "reason": "supplementary appropriation"}


def amend(client, headers, programme_id, body=BUDGET, key="key-1"):
    return client.post(f"/api/v1/programmes/{programme_id}/budget", json=body,
                       headers={**headers, "Idempotency-Key": key})


def allocated(client, headers, programme_id):
    return client.get(f"/api/v1/programmes/{programme_id}/ledger", headers=headers).get_json()["allocated_fen"]


def test_a_repeat_with_the_same_key_and_body_replays_the_first_answer(client, make_user, auth, make_programme):
    headers, programme = auth(make_user()), make_programme()
    first = amend(client, headers, programme.id)
    again = amend(client, headers, programme.id)
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert allocated(client, headers, programme.id) == 10_000


def test_key_order_and_spacing_of_the_body_do_not_matter(client, make_user, auth, make_programme):
    headers, programme = auth(make_user()), make_programme()
    amend(client, headers, programme.id)
    reordered = client.post(f"/api/v1/programmes/{programme.id}/budget",
                            data='{ "reason": "supplementary appropriation",  "amount_fen": 10000 }',
                            headers={**headers, "Idempotency-Key": "key-1", "Content-Type": "application/json"})
    assert reordered.headers["Idempotent-Replayed"] == "true"
    assert allocated(client, headers, programme.id) == 10_000


def test_the_same_key_with_another_body_is_refused(client, make_user, auth, make_programme):
    headers, programme = auth(make_user()), make_programme()
    amend(client, headers, programme.id)
    other = amend(client, headers, programme.id, body={**BUDGET, "amount_fen": 99})
    assert other.status_code == 422
    assert error_code(other) == "idempotency_key_reused"
    assert allocated(client, headers, programme.id) == 10_000


def test_keys_are_scoped_to_the_user(client, make_user, auth, make_programme):
    programme = make_programme()
    alice, bob = auth(make_user()), auth(make_user())
    assert amend(client, alice, programme.id).status_code == 200
    second = amend(client, bob, programme.id)
    assert second.status_code == 200
    assert "Idempotent-Replayed" not in second.headers
    assert allocated(client, alice, programme.id) == 20_000


def test_a_refused_request_is_not_remembered(client, app, make_user, auth, make_programme):
    headers, programme = auth(make_user()), make_programme()
    too_much = amend(client, headers, programme.id, body={"amount_fen": -5, "reason": "cut below zero"})
    assert error_code(too_much) == "budget_below_committed"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 0


def test_a_malformed_key_is_a_validation_error(client, make_user, auth, make_programme):
    headers, programme = auth(make_user()), make_programme()
    response = amend(client, headers, programme.id, key="x" * 201)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["error"]["details"]["fields"]
    assert allocated(client, headers, programme.id) == 0


def test_concurrent_repeats_move_money_exactly_once(app, make_user, token_for, make_programme):
    user, programme = make_user(), make_programme()
    headers = {"Authorization": f"Bearer {token_for(user)}", "Idempotency-Key": "race-1"}
    racers = 12

    def racer(_index):
        response = app.test_client().post(f"/api/v1/programmes/{programme.id}/budget", json=BUDGET, headers=headers)
        return (response.status_code, response.headers.get("Idempotent-Replayed"),
                (response.get_json().get("error") or {}).get("code"))

    statuses = race(racers, racer)
    assert failures(statuses) == []
    fresh = [s for s in statuses if s[0] == 200 and s[1] is None]
    replays = [s for s in statuses if s[0] == 200 and s[1] == "true"]
    in_flight = [s for s in statuses if s[0] == 409 and s[2] == "idempotency_key_in_flight"]
    assert len(fresh) == 1
    assert len(fresh) + len(replays) + len(in_flight) == racers
    with app.app_context():
        client = app.test_client()
        assert allocated(client, {"Authorization": headers["Authorization"]}, programme.id) == 10_000


def test_old_keys_are_purged_after_the_ttl(app, client, make_user, auth, make_programme):
    headers, programme = auth(make_user()), make_programme()
    amend(client, headers, programme.id)
    with app.app_context(), transaction():
        assert purge(now=utcnow()) == 0
        assert purge(now=utcnow() + timedelta(hours=app.config["IDEMPOTENCY_TTL_HOURS"], minutes=1)) == 1

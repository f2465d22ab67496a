"""Presence by typed code: the 8 digits of a presence code, for where its QR code cannot be scanned.

POST /me/presence-code gives a token and its short code; POST /redemptions takes `{short_code, item_code}` in
place of `presence_token` and redeems exactly as the token would (same voucher choice, ledger, idempotency and
audit), the redemption marked `typed_code`. The code lives as long as its token and once: using either uses
both. The digits are kept only as a keyed hash, never logged or audited; more than 10 wrong codes from one
provider login within 10 minutes are 429 `too_many_attempts` (counted in the rate-limit store, raced here with
real threads). Every test runs on SQLite and PostgreSQL.
"""

import hashlib
import hmac
import json
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.config import parse_token_keys
from marketplace.db import db, transaction, utcnow
from tests.conftest import error_code
from vouchers import tokens
from vouchers.models import PresenceShortCode, Redemption, UsedPresenceCode, Voucher
from vouchers.service import redemption as redemption_service

API = "/api/v1"
ALICE_MEAL = 1140  # alice is low_income: 5 % co-payment of 1200


@pytest.fixture
def chosen(build):
    """The standard world, this month issued, alice and bob chose p1 for meals and baths."""
    world = build.world()
    build.issue(world.programme, build.period())
    build.choose_all(world, world.p1)
    return world


def presence_code(client, headers) -> dict:
    response = client.post(f"{API}/me/presence-code", headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def redeem(client, headers, **body):
    return client.post(f"{API}/redemptions", json=body, headers=headers)


def refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_json()
    assert error_code(response) == code, response.get_json()


def rows(build, model, *where) -> list:
    return build.read(lambda: db.session.scalars(select(model).where(*where)).all())


def other_digits(code: str) -> str:
    """Eight digits that are not *code* (and, drawn this way, no other live code in these tests)."""
    return f"{(int(code) + 50_000_000) % 100_000_000:08d}"


# --- the code ---------------------------------------------------------------------------------------

def test_a_presence_code_comes_with_eight_digits_to_type_in(build, client, chosen):
    body = presence_code(client, build.headers(chosen.alice.user))

    assert set(body) >= {"token", "short_code", "expires_at"}
    assert re.fullmatch("[0-9]{8}", body["short_code"])
    assert body["short_code_display"] == f"{body['short_code'][:4]} {body['short_code'][4:]}"
    assert 20 <= len(body["token"]) <= 80  # the token is as it was
    assert datetime.fromisoformat(body["expires_at"]) <= utcnow() + timedelta(seconds=120)


def test_the_digits_are_kept_only_as_a_keyed_hash_under_a_key_derived_from_the_token_key(app, build, client,
                                                                                           chosen):
    body = presence_code(client, build.headers(chosen.alice.user))

    [row] = rows(build, PresenceShortCode)
    _kid, secret = parse_token_keys(app.config["TOKEN_KEYS"])[0]
    key = hmac.new(secret, tokens.SHORT_CODE_LABEL, hashlib.sha256).digest()
    assert row.code_hash == hmac.new(key, body["short_code"].encode(), hashlib.sha256).hexdigest()
    assert body["short_code"] not in " ".join(str(value) for value in (row.code_hash, row.nonce, row.recipient_id))
    # The row names the token's own nonce and expiry: the two are one presence code.
    with app.app_context():
        claims = tokens.read_presence_token(body["token"], now=utcnow())
    assert (row.nonce, row.recipient_id, row.expires_at) == (claims.nonce, chosen.alice.id, claims.expires_at)


def test_every_new_code_gets_digits_no_live_code_has(app, build, chosen, monkeypatch):
    first = build.presence_code(chosen.alice)["short_code"]
    draws = iter([first, first, "00000042"])
    monkeypatch.setattr(tokens, "new_short_code", lambda: next(draws))

    second = build.presence_code(chosen.bob)["short_code"]

    assert second == "00000042"
    assert build.count(PresenceShortCode) == 2


@pytest.mark.parametrize("how", ["used", "expired"])
def test_a_dead_codes_digits_may_be_drawn_again(app, build, client, chosen, monkeypatch, how):
    old = build.presence_code(chosen.alice, now=utcnow() - timedelta(minutes=5) if how == "expired" else None)
    if how == "used":  # by its token: the code goes with it
        assert redeem(client, build.headers(chosen.p1.user), presence_token=old["token"],
                      item_code=chosen.meal).status_code == 201
    monkeypatch.setattr(tokens, "new_short_code", lambda: old["short_code"])

    again = build.presence_code(chosen.bob)

    assert again["short_code"] == old["short_code"]
    with app.app_context():
        claims = tokens.read_presence_token(again["token"], now=utcnow())
    assert [(row.nonce, row.recipient_id) for row in rows(build, PresenceShortCode)] == [(claims.nonce, chosen.bob.id)]


def test_codes_issued_just_before_a_key_rotation_still_work_and_keep_their_digits(make_app, build, chosen,
                                                                                  monkeypatch):
    before = make_app(TOKEN_KEYS="1:the-old-token-key")
    after = make_app(TOKEN_KEYS="2:the-new-token-key,1:the-old-token-key")  # a new signing key in front
    with before.app_context(), transaction():
        old = redemption_service.create_presence_code(recipient_id=chosen.alice.id, now=utcnow())
    draws = iter([old["short_code"], "00000042"])
    monkeypatch.setattr(tokens, "new_short_code", lambda: next(draws))

    with after.app_context(), transaction():
        new = redemption_service.create_presence_code(recipient_id=chosen.bob.id, now=utcnow())
    typed = redeem(after.test_client(), build.headers(chosen.p1.user), short_code=old["short_code"],
                   item_code=chosen.meal)

    assert new["short_code"] == "00000042"  # the old code's digits were live under the old key
    assert typed.status_code == 201, typed.get_json()
    assert typed.get_json()["recipient_id"] == chosen.alice.id


# --- redeeming by typed code ------------------------------------------------------------------------

def test_typed_digits_redeem_as_the_token_would(build, client, chosen):
    code = presence_code(client, build.headers(chosen.alice.user))
    before = build.ledger(chosen.programme)
    typed = f"  {code['short_code'][:4]} {code['short_code'][4:]} "

    response = redeem(client, build.headers(chosen.p1.user), short_code=typed, item_code=chosen.meal,
                      duration_minutes=40)

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    voucher = build.voucher(body["voucher_id"])
    assert (voucher.recipient_id, voucher.item_code, voucher.status) == (chosen.alice.id, chosen.meal, "redeemed")
    assert (body["presence"], body["face_value_fen"], body["provider_id"]) == ("typed_code", ALICE_MEAL,
                                                                                chosen.p1.id)
    after = build.ledger(chosen.programme)
    assert (after.committed_fen, after.redeemed_fen) == (before.committed_fen - ALICE_MEAL,
                                                         before.redeemed_fen + ALICE_MEAL)
    assert build.failing_checks(chosen.programme) == []
    events = rows(build, AuditEvent, AuditEvent.action == "voucher.redeemed")
    assert [json.loads(event.data)["presence"] for event in events] == ["typed_code"]


def test_the_service_redeems_by_short_code(build, chosen):
    served = build.redeem(chosen.p1, chosen.bob, chosen.bath, typed=True)

    assert build.redemption(served.id).presence == "typed_code"
    assert build.voucher(served.voucher_id).status == "redeemed"


def test_a_used_code_is_refused_and_so_is_its_token(build, client, chosen):
    code = presence_code(client, build.headers(chosen.alice.user))
    provider = build.headers(chosen.p1.user)
    assert redeem(client, provider, short_code=code["short_code"], item_code=chosen.meal).status_code == 201

    refused(redeem(client, provider, short_code=code["short_code"], item_code=chosen.meal), 409,
            "token_already_used")
    refused(redeem(client, provider, presence_token=code["token"], item_code=chosen.meal), 409, "token_already_used")
    assert build.count(Redemption) == 1


def test_using_the_token_uses_its_code(build, client, chosen):
    code = presence_code(client, build.headers(chosen.alice.user))
    provider = build.headers(chosen.p1.user)
    assert redeem(client, provider, presence_token=code["token"], item_code=chosen.meal).status_code == 201

    refused(redeem(client, provider, short_code=code["short_code"], item_code=chosen.meal), 409,
            "token_already_used")
    assert build.count(Redemption) == 1


def test_an_expired_code_is_refused_as_an_expired_token(build, client, chosen):
    code = build.presence_code(chosen.alice, now=utcnow() - timedelta(seconds=121))

    refused(redeem(client, build.headers(chosen.p1.user), short_code=code["short_code"], item_code=chosen.meal), 422,
            "token_expired")
    assert build.count(Redemption) == build.count(UsedPresenceCode) == 0


def test_unknown_digits_are_an_invalid_token(build, client, chosen):
    code = presence_code(client, build.headers(chosen.alice.user))

    response = redeem(client, build.headers(chosen.p1.user), short_code=other_digits(code["short_code"]),
                      item_code=chosen.meal)

    refused(response, 422, "invalid_token")
    assert build.count(Redemption) == 0


def test_a_refused_scan_leaves_the_code_usable(build, client, chosen):
    other = build.item()
    code = presence_code(client, build.headers(chosen.alice.user))
    provider = build.headers(chosen.p1.user)

    refused(redeem(client, provider, short_code=code["short_code"], item_code=other), 409, "no_valid_voucher")

    assert redeem(client, provider, short_code=code["short_code"], item_code=chosen.meal).status_code == 201


def test_a_typed_code_redemption_replays_under_its_idempotency_key(build, client, chosen):
    code = presence_code(client, build.headers(chosen.alice.user))
    headers = {**build.headers(chosen.p1.user), "Idempotency-Key": "scan-0001"}

    first = redeem(client, headers, short_code=code["short_code"], item_code=chosen.meal)
    again = redeem(client, headers, short_code=code["short_code"], item_code=chosen.meal)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == first.get_json()
    assert build.count(Redemption) == 1


@pytest.mark.parametrize("typed", ["1234567", "123456789", "1234-5678", "abcdefgh", "１２３４５６７８", "١٢٣٤٥٦٧٨",
                                   "", "12345678" * 6, "+1234567", 12345678])
def test_anything_but_eight_digits_is_a_validation_error(build, client, chosen, typed):
    response = redeem(client, build.headers(chosen.p1.user), short_code=typed, item_code=chosen.meal)

    refused(response, 422, "validation_error")
    assert "short_code" in response.get_json()["error"]["details"]["fields"]


def test_a_short_code_needs_an_item_and_comes_alone(build, client, chosen):
    code = presence_code(client, build.headers(chosen.alice.user))
    provider = build.headers(chosen.p1.user)

    no_item = redeem(client, provider, short_code=code["short_code"])
    with_token = redeem(client, provider, short_code=code["short_code"], presence_token=code["token"],
                        item_code=chosen.meal)

    refused(no_item, 422, "validation_error")
    assert "item_code" in no_item.get_json()["error"]["details"]["fields"]
    refused(with_token, 422, "validation_error")
    assert "short_code" in with_token.get_json()["error"]["details"]["fields"]
    assert build.count(Redemption) == 0


def test_the_digits_are_never_logged_or_audited(app, build, client, chosen, caplog, capfd):
    caplog.set_level("DEBUG")
    alice, provider = build.headers(chosen.alice.user), build.headers(chosen.p1.user)
    used = presence_code(client, alice)
    assert redeem(client, provider, short_code=used["short_code"], item_code=chosen.meal).status_code == 201
    redeem(client, provider, short_code=used["short_code"], item_code=chosen.meal)  # 409, logged or not
    wrong = other_digits(presence_code(client, alice)["short_code"])
    redeem(client, provider, short_code=wrong, item_code=chosen.meal)

    events = rows(build, AuditEvent)
    audit_text = " ".join(f"{event.data} {event.entity_id}" for event in events)
    logged = caplog.text + "".join(capfd.readouterr())
    for digits in (used["short_code"], wrong):
        assert digits not in audit_text
        assert digits not in logged
    assert "voucher.redeemed" in {event.action for event in events}


# --- wrong codes are counted ------------------------------------------------------------------------

def test_more_than_ten_wrong_codes_from_one_login_are_too_many(app, build, client, chosen):
    code = presence_code(client, build.headers(chosen.alice.user))
    provider = build.headers(chosen.p1.user)
    limit = app.config["SHORT_CODE_FAILURES_PER_LOGIN"]
    assert (limit, app.config["SHORT_CODE_FAILURE_WINDOW_SECONDS"]) == (10, 600)
    wrong = [f"{n:08d}" for n in range(1, limit + 3) if f"{n:08d}" != code["short_code"]]

    answers = [redeem(client, provider, short_code=digits, item_code=chosen.meal) for digits in wrong[:limit + 1]]

    assert [response.status_code for response in answers] == [422] * limit + [429]
    refused(answers[-1], 429, "too_many_attempts")
    assert 0 < answers[-1].get_json()["error"]["details"]["retry_after_seconds"] <= 600
    # Now even the right code waits, from this login; another login of the same provider types it fine.
    refused(redeem(client, provider, short_code=code["short_code"], item_code=chosen.meal), 429, "too_many_attempts")
    colleague = build.user(role="provider", provider_id=chosen.p1.id)
    assert redeem(client, build.headers(colleague), short_code=code["short_code"],
                  item_code=chosen.meal).status_code == 201


def test_right_used_and_expired_codes_are_not_counted_as_wrong(app, build, client, chosen):
    provider = build.headers(chosen.p1.user)
    limit = app.config["SHORT_CODE_FAILURES_PER_LOGIN"]
    expired = build.presence_code(chosen.bob, now=utcnow() - timedelta(minutes=3))["short_code"]
    for _ in range(limit + 2):
        refused(redeem(client, provider, short_code=expired, item_code=chosen.meal), 422, "token_expired")
    used = presence_code(client, build.headers(chosen.alice.user))["short_code"]
    assert redeem(client, provider, short_code=used, item_code=chosen.meal).status_code == 201
    for _ in range(limit + 2):
        refused(redeem(client, provider, short_code=used, item_code=chosen.meal), 409, "token_already_used")

    for _ in range(limit):
        refused(redeem(client, provider, short_code=other_digits(used), item_code=chosen.meal), 422, "invalid_token")


def test_the_wrong_code_limit_is_a_setting(make_app, build, chosen):
    application = make_app(SHORT_CODE_FAILURES_PER_LOGIN=2)
    client = application.test_client()
    provider = build.headers(chosen.p1.user)

    statuses = [redeem(client, provider, short_code="00000001", item_code=chosen.meal).status_code for _ in range(4)]

    assert statuses == [422, 422, 429, 429]


RACERS = 24


def test_racing_wrong_codes_get_no_more_than_ten_refusals_as_wrong(app, build, chosen):
    """Real threads, each with its own test client (its own session and connection), released together: the
    count is taken atomically before the code is looked up, so no more than the limit are ever looked up."""
    provider = build.headers(chosen.p1.user)
    barrier = threading.Barrier(RACERS)

    def attempt(index):
        client = app.test_client()
        barrier.wait(timeout=30)
        response = redeem(client, provider, short_code=f"{90_000_000 + index:08d}", item_code=chosen.meal)
        return response.status_code, error_code(response)

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        outcome = Counter(pool.map(attempt, range(RACERS)))

    limit = app.config["SHORT_CODE_FAILURES_PER_LOGIN"]
    assert outcome == {(422, "invalid_token"): limit, (429, "too_many_attempts"): RACERS - limit}


# --- purge ------------------------------------------------------------------------------------------

def test_purge_forgets_used_and_expired_codes_and_keeps_live_ones(app, build, runner, chosen):
    live = build.presence_code(chosen.alice)
    build.presence_code(chosen.alice, now=utcnow() - timedelta(minutes=3))  # expired
    build.redeem(chosen.p1, chosen.bob, chosen.meal, typed=True)  # used by its code
    build.redeem(chosen.p1, chosen.bob, chosen.meal)  # used by its token
    assert build.count(PresenceShortCode) == 4

    result = runner.invoke(args=["purge-expired"])

    assert result.exit_code == 0, result.output
    assert "3 short codes" in result.output
    with app.app_context():
        claims = tokens.read_presence_token(live["token"], now=utcnow())
    assert [row.nonce for row in rows(build, PresenceShortCode)] == [claims.nonce]
    assert build.vouchers(Voucher.status == "redeemed")  # the redemptions themselves stay

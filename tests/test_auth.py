"""Bearer tokens, login throttling, /me and user creation (roles: docs/domain.md#roles-and-four-eyes)."""

import hashlib
import secrets
import threading
import time
import tomllib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import func, select, text, update

from marketplace.audit.models import AuditEvent
from marketplace.auth.models import AuthToken, User
from marketplace.db import db, transaction, utcnow
from tests.conftest import PASSWORD, error_code
from tests.support.databases import REDIS_URL, redis_unavailable_reason

OWASP_ARGON2ID_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"
NEW_PASSWORD = "a perfectly fine passphrase"


def login(client, username, password=PASSWORD, **kwargs):
    return client.post("/api/v1/auth/token", json={"username": username, "password": password}, **kwargs)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def sql(app, statement, **params):
    """Change rows behind the application's back (a plain string is SQL text)."""
    if isinstance(statement, str):
        statement = text(statement)
    with app.app_context(), transaction():
        db.session.execute(statement, params)


def user_row(app, username):
    with app.app_context():
        return db.session.scalar(select(User).where(User.username == username))


def user_count(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


# --- POST /api/v1/auth/token ------------------------------------------------------------------------

def test_valid_credentials_get_a_bearer_token_and_the_user(client, make_user):
    user = make_user(role="auditor")
    response = login(client, user.username)
    assert response.status_code == 200
    body = response.get_json()
    assert len(body["token"]) >= 40
    assert body["token_type"] == "Bearer"
    assert body["user"]["id"] == user.id
    assert body["user"]["username"] == user.username
    assert body["user"]["role"] == "auditor"
    assert "password_hash" not in body["user"]
    assert datetime.fromisoformat(body["expires_at"]).tzinfo is not None


def test_username_is_matched_without_regard_to_case(client, make_user):
    make_user(role="admin", username="mixed.case")
    assert login(client, "Mixed.CASE").status_code == 200


def test_token_opens_authenticated_endpoints(client, make_user):
    user = make_user(role="admin")
    token = login(client, user.username).get_json()["token"]
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["username"] == user.username


def test_unknown_user_is_refused_as_invalid_credentials(client):
    response = login(client, "nobody-here")
    assert response.status_code == 401
    assert error_code(response) == "invalid_credentials"


def test_wrong_password_is_refused_as_invalid_credentials(client, make_user):
    user = make_user()
    response = login(client, user.username, "not the password at all")
    assert response.status_code == 401
    assert error_code(response) == "invalid_credentials"


def test_unknown_user_and_wrong_password_are_indistinguishable(client, make_user):
    user = make_user()
    unknown = login(client, "nobody-here").get_json()
    wrong = login(client, user.username, "not the password at all").get_json()
    assert unknown == wrong


def test_inactive_user_is_refused_as_invalid_credentials(app, client, make_user):
    user = make_user()
    sql(app, "UPDATE user_account SET active = :active WHERE id = :id", active=False, id=user.id)
    response = login(client, user.username)
    assert response.status_code == 401
    assert error_code(response) == "invalid_credentials"


def test_token_of_a_deactivated_user_is_refused(app, client, make_user):
    user = make_user()
    token = login(client, user.username).get_json()["token"]
    sql(app, "UPDATE user_account SET active = :active WHERE id = :id", active=False, id=user.id)
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


def test_missing_credentials_are_a_validation_error_naming_both_fields(client):
    response = client.post("/api/v1/auth/token", json={})
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert set(response.get_json()["error"]["details"]["fields"]) == {"username", "password"}


def test_missing_password_is_a_validation_error_naming_it(client):
    response = client.post("/api/v1/auth/token", json={"username": "someone"})
    assert response.status_code == 422
    assert list(response.get_json()["error"]["details"]["fields"]) == ["password"]


def test_successful_login_is_audited(app, client, make_user):
    user = make_user()
    login(client, user.username)
    with app.app_context():
        actions = db.session.scalars(
            select(AuditEvent.action).where(AuditEvent.entity == "user", AuditEvent.entity_id == str(user.id))
        ).all()
    assert "auth.login" in actions


# --- throttling -------------------------------------------------------------------------------------
# Three counters (docs: README, Auth): failures for one username from one client (what a single guesser
# gets, and what the owner's own typos cost), failures from one client whatever the usernames, and a
# higher ceiling of failures for one username from all clients (what a distributed guesser gets).

def from_address(address):
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_repeated_failures_for_a_username_from_one_client_are_refused_with_too_many_attempts(app, client,
                                                                                              make_user):
    user = make_user()
    limit = app.config["LOGIN_FAILURES_PER_USERNAME_AND_CLIENT"]
    for _ in range(limit):
        assert login(client, user.username, "wrong password!").status_code == 401
    response = login(client, user.username, "wrong password!")
    assert response.status_code == 429
    assert error_code(response) == "too_many_attempts"
    retry_after = response.get_json()["error"]["details"]["retry_after_seconds"]
    assert 0 < retry_after <= app.config["LOGIN_FAILURE_WINDOW_SECONDS"]


def test_default_throttling_settings(app):
    assert app.config["LOGIN_FAILURES_PER_USERNAME_AND_CLIENT"] == 5
    assert app.config["LOGIN_FAILURES_PER_CLIENT"] == 20
    assert app.config["LOGIN_FAILURES_PER_USERNAME"] == 100
    assert app.config["LOGIN_FAILURE_WINDOW_SECONDS"] == 900


def test_locked_client_is_refused_even_the_correct_password(app, client, make_user):
    # Else the guesser would learn the password from the one answer that is not 429.
    user = make_user()
    for _ in range(app.config["LOGIN_FAILURES_PER_USERNAME_AND_CLIENT"]):
        login(client, user.username, "wrong password!")
    response = login(client, user.username)
    assert response.status_code == 429
    assert error_code(response) == "too_many_attempts"
    assert client.post("/api/v1/auth/login", json={"username": user.username, "password": PASSWORD}).status_code == 429


def test_a_strangers_failures_do_not_lock_the_owner_out(app, make_user):
    user = make_user()
    client = app.test_client()
    for _ in range(app.config["LOGIN_FAILURES_PER_USERNAME_AND_CLIENT"] + 3):
        login(client, user.username, "wrong password!", **from_address("203.0.113.7"))
    assert login(client, user.username, **from_address("203.0.113.7")).status_code == 429
    assert login(client, user.username, **from_address("198.51.100.20")).status_code == 200
    assert client.post("/api/v1/auth/login", json={"username": user.username, "password": PASSWORD},
                       **from_address("198.51.100.20")).status_code == 200


def test_failures_for_a_username_from_many_clients_reach_a_ceiling(make_app, make_user):
    user = make_user()
    application = make_app(LOGIN_FAILURES_PER_USERNAME_AND_CLIENT=2, LOGIN_FAILURES_PER_USERNAME=5,
                           LOGIN_FAILURES_PER_CLIENT=100)
    client = application.test_client()
    for address in ("10.0.0.1", "10.0.0.2"):
        assert login(client, user.username, "wrong password!", **from_address(address)).status_code == 401
        assert login(client, user.username, "wrong password!", **from_address(address)).status_code == 401
        assert login(client, user.username, "wrong password!", **from_address(address)).status_code == 429
    assert login(client, user.username, "wrong password!", **from_address("10.0.0.3")).status_code == 401
    # Five failures from three clients: the username is closed to everyone until the window ends.
    refused = login(client, user.username, **from_address("10.0.0.4"))
    assert refused.status_code == 429
    assert error_code(refused) == "too_many_attempts"
    assert login(client, make_user().username, **from_address("10.0.0.4")).status_code == 200


def test_refused_attempts_are_not_counted_as_failures(make_app, make_user):
    # A guesser hammering from one client past its limit must not push the username to its ceiling.
    user = make_user()
    application = make_app(LOGIN_FAILURES_PER_USERNAME_AND_CLIENT=2, LOGIN_FAILURES_PER_USERNAME=5,
                           LOGIN_FAILURES_PER_CLIENT=100)
    client = application.test_client()
    statuses = [login(client, user.username, "wrong password!", **from_address("10.0.0.1")).status_code
                for _ in range(20)]
    assert statuses == [401, 401] + [429] * 18
    for _ in range(2):
        assert login(client, user.username, "wrong password!", **from_address("10.0.0.2")).status_code == 401
    assert login(client, user.username, **from_address("10.0.0.3")).status_code == 200


def test_successful_logins_are_not_counted(app, client, make_user):
    user = make_user()
    for _ in range(app.config["LOGIN_FAILURES_PER_USERNAME_AND_CLIENT"] * 3):
        assert login(client, user.username).status_code == 200


def test_a_successful_login_ends_the_run_of_failures_from_that_client(app, client, make_user):
    user = make_user()
    limit = app.config["LOGIN_FAILURES_PER_USERNAME_AND_CLIENT"]
    for _round in range(3):
        for _ in range(limit - 1):
            assert login(client, user.username, "wrong password!").status_code == 401
        assert login(client, user.username).status_code == 200


def test_username_lock_counts_failures_whatever_the_case(app, client, make_user):
    make_user(username="locked.user")
    for attempt in range(app.config["LOGIN_FAILURES_PER_USERNAME_AND_CLIENT"]):
        login(client, "LOCKED.user" if attempt % 2 else "locked.USER", "wrong password!")
    assert login(client, "locked.user").status_code == 429


def test_username_lock_does_not_lock_other_users(app, client, make_user):
    victim, other = make_user(), make_user()
    for _ in range(app.config["LOGIN_FAILURES_PER_USERNAME_AND_CLIENT"]):
        login(client, victim.username, "wrong password!")
    assert login(client, other.username).status_code == 200


def test_repeated_failures_from_one_client_lock_that_client(make_app, make_user):
    user = make_user()
    application = make_app(LOGIN_FAILURES_PER_CLIENT=3, LOGIN_FAILURES_PER_USERNAME=100)
    client = application.test_client()
    here = from_address("10.0.0.1")
    for name in ("guess-one", "guess-two", "guess-three"):
        assert login(client, name, "wrong password!", **here).status_code == 401
    refused = login(client, user.username, **here)
    assert refused.status_code == 429
    assert error_code(refused) == "too_many_attempts"
    assert login(client, user.username, **from_address("10.0.0.2")).status_code == 200


def test_login_lock_lifts_after_the_failure_window(make_app, make_user):
    user = make_user()
    application = make_app(LOGIN_FAILURES_PER_USERNAME_AND_CLIENT=2, LOGIN_FAILURE_WINDOW_SECONDS=1)
    client = application.test_client()
    login(client, user.username, "wrong password!")
    login(client, user.username, "wrong password!")
    assert login(client, user.username).status_code == 429
    time.sleep(1.2)
    assert login(client, user.username).status_code == 200


RACERS = 16


def race_logins(application, username, password, *, addresses) -> Counter:
    """RACERS logins at once, each thread with its own test client; the (status, code) of each answer."""
    barrier = threading.Barrier(RACERS)

    def attempt(index):
        client = application.test_client()
        barrier.wait(timeout=30)
        response = login(client, username, password, **from_address(addresses(index)))
        return response.status_code, (response.get_json() or {}).get("error", {}).get("code")

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        return Counter(pool.map(attempt, range(RACERS)))


def test_concurrent_wrong_logins_get_no_more_401s_than_the_limit(make_app, make_user):
    # Counting and checking are one atomic step (the limiter's hit), taken before the password is
    # verified: racing threads cannot all pass the check before any of them has counted.
    user = make_user()
    application = make_app(LOGIN_FAILURES_PER_USERNAME_AND_CLIENT=5)
    outcome = race_logins(application, user.username, "wrong password!", addresses=lambda _index: "10.0.0.1")
    assert outcome == {(401, "invalid_credentials"): 5, (429, "too_many_attempts"): RACERS - 5}


def test_concurrent_wrong_logins_from_many_clients_stop_at_the_username_ceiling(make_app, make_user):
    user = make_user()
    application = make_app(LOGIN_FAILURES_PER_USERNAME=4)
    outcome = race_logins(application, user.username, "wrong password!", addresses=lambda index: f"10.0.1.{index}")
    assert outcome == {(401, "invalid_credentials"): 4, (429, "too_many_attempts"): RACERS - 4}


def test_with_redis_the_failure_counters_are_shared_by_every_process(make_app, make_user):
    reason = redis_unavailable_reason()
    if reason:
        pytest.skip(reason)
    # Two apps stand for two gunicorn workers: failures counted by one lock the username in the other.
    # Their own key prefix: another suite sharing this Redis cannot reset (or read) these counters.
    user = make_user(username=f"shared-{secrets.token_hex(4)}")
    prefix = f"test-auth-{secrets.token_hex(6)}"
    first, second = (make_app(RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_KEY_PREFIX=prefix,
                              LOGIN_FAILURES_PER_USERNAME_AND_CLIENT=4) for _ in range(2))
    try:
        for attempt in range(4):
            application = first if attempt % 2 else second
            assert login(application.test_client(), user.username, "wrong password!").status_code == 401
        assert login(first.test_client(), user.username).status_code == 429
        assert login(second.test_client(), user.username).status_code == 429
    finally:
        first.extensions["rate_limiter"].storage.reset()


def test_redis_counters_live_under_the_configured_key_prefix(make_app, make_user):
    reason = redis_unavailable_reason()
    if reason:
        pytest.skip(reason)
    import redis

    user = make_user()
    prefix = f"test-auth-{secrets.token_hex(6)}"
    application = make_app(RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_KEY_PREFIX=prefix)
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        assert login(application.test_client(), user.username, "wrong password!").status_code == 401
        keys = [key.decode() for key in connection.scan_iter(match=f"{prefix}:*")]
        assert len(keys) == 3
        # Usernames are hashed in the keys: a password typed into the username field is not stored.
        assert all(user.username not in key for key in keys)
    finally:
        application.extensions["rate_limiter"].storage.reset()
        connection.close()


# --- token lifetime and revocation ------------------------------------------------------------------

def test_token_expires_after_its_configured_lifetime(make_app, make_user):
    user = make_user()
    application = make_app(TOKEN_TTL_SECONDS=60)
    before = utcnow()
    body = login(application.test_client(), user.username).get_json()
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(seconds=59) <= expires_at <= utcnow() + timedelta(seconds=61)
    with application.app_context():
        row = db.session.scalar(select(AuthToken).where(AuthToken.token_hash == sha256(body["token"])))
        assert row.expires_at - row.created_at == timedelta(seconds=60)


def test_expired_token_is_refused(app, client, make_user):
    user = make_user()
    token = login(client, user.username).get_json()["token"]
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    sql(app, update(AuthToken).where(AuthToken.token_hash == sha256(token))
        .values(expires_at=utcnow() - timedelta(seconds=1)))
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


def test_revoked_token_is_refused(app, client, make_user):
    user = make_user()
    token = login(client, user.username).get_json()["token"]
    response = client.delete("/api/v1/auth/token", headers=bearer(token))
    assert response.status_code == 204
    refused = client.get("/api/v1/me", headers=bearer(token))
    assert refused.status_code == 401
    assert error_code(refused) == "unauthenticated"
    with app.app_context():
        row = db.session.scalar(select(AuthToken).where(AuthToken.token_hash == sha256(token)))
        assert row.revoked_at is not None


def test_revoking_one_token_leaves_the_users_other_tokens_alive(client, make_user):
    user = make_user()
    first = login(client, user.username).get_json()["token"]
    second = login(client, user.username).get_json()["token"]
    client.delete("/api/v1/auth/token", headers=bearer(first))
    assert client.get("/api/v1/me", headers=bearer(first)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(second)).status_code == 200


def test_logout_with_a_bearer_token_revokes_it(app, client, make_user):
    user = make_user()
    token = login(client, user.username).get_json()["token"]
    assert client.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.entity_id == str(user.id))).all()
    assert "auth.logout" in actions


def test_revoking_without_a_token_is_unauthenticated(client):
    response = client.delete("/api/v1/auth/token")
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


def test_made_up_token_is_refused(client):
    response = client.get("/api/v1/me", headers=bearer("made-up-token-" + "x" * 30))
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


def test_token_is_stored_only_as_its_sha256(app, client, make_user):
    user = make_user()
    token = login(client, user.username).get_json()["token"]
    with app.app_context(), db.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM auth_token")).mappings().all()
        other_text = [str(value) for table in ("user_account", "audit_event")
                      for row in conn.execute(text(f"SELECT * FROM {table}")).all() for value in row]
    assert [row["token_hash"] for row in rows] == [sha256(token)]
    assert all(token not in str(value) for row in rows for value in row.values())
    assert all(token not in value for value in other_text)


def sha256(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


# --- GET /api/v1/me ---------------------------------------------------------------------------------

def test_me_describes_the_authenticated_user(client, make_user, auth):
    user = make_user(role="admin", region_code="5101")
    response = client.get("/api/v1/me", headers=auth(user))
    assert response.status_code == 200
    body = response.get_json()
    assert {key: body[key] for key in ("id", "username", "role", "provider_id", "recipient_id", "region_code")} == {
        "id": user.id, "username": user.username, "role": "admin", "provider_id": None, "recipient_id": None,
        "region_code": "5101",
    }
    assert "password_hash" not in body


def test_me_for_anonymous_is_unauthenticated(client):
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


# --- POST /api/v1/users -----------------------------------------------------------------------------

def new_user(**overrides):
    return {"username": "new.auditor", "password": NEW_PASSWORD, "role": "auditor", **overrides}


def test_admin_creates_a_user_who_can_log_in(client, make_user, auth):
    admin = make_user(role="admin")
    response = client.post("/api/v1/users", json=new_user(username="New.Auditor"), headers=auth(admin))
    assert response.status_code == 201
    body = response.get_json()
    assert body["username"] == "new.auditor"
    assert body["role"] == "auditor"
    assert "password" not in body
    assert "password_hash" not in body
    assert login(client, "new.auditor", NEW_PASSWORD).status_code == 200


def test_user_creation_is_audited_with_its_actor(app, client, make_user, auth):
    admin = make_user(role="admin")
    created = client.post("/api/v1/users", json=new_user(), headers=auth(admin)).get_json()
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.action == "user.created", AuditEvent.entity_id == str(created["id"]))
        )
    assert event.actor == admin.username
    assert event.actor_id == admin.id
    assert NEW_PASSWORD not in event.data


def test_admin_creates_a_region_scoped_admin(client, make_user, auth):
    admin = make_user(role="admin")
    response = client.post("/api/v1/users", json=new_user(username="county", role="admin", region_code="510131"),
                           headers=auth(admin))
    assert response.status_code == 201
    assert response.get_json()["region_code"] == "510131"


def test_duplicate_username_is_refused_whatever_the_case(app, client, make_user, auth):
    admin = make_user(role="admin")
    make_user(role="auditor", username="carol")
    before = user_count(app)
    response = client.post("/api/v1/users", json=new_user(username="CAROL"), headers=auth(admin))
    assert response.status_code == 409
    assert error_code(response) == "duplicate_username"
    assert user_count(app) == before


@pytest.mark.parametrize(("overrides", "field"), [
    ({"password": "short1"}, "password"),
    ({"password": "x" * 257}, "password"),
    ({"username": "Same.As.Password", "password": "same.as.password"}, "password"),
    ({"username": "has spaces in it"}, "username"),
    ({"username": "ab"}, "username"),
    ({"username": "-leading-dash"}, "username"),
    ({"role": "superuser"}, "role"),
    ({"region_code": "510131"}, "region_code"),
    ({"role": "admin", "region_code": "5x"}, "region_code"),
    ({"role": "provider"}, "provider_id"),
    ({"role": "provider", "provider_id": 999}, "provider_id"),
    ({"role": "recipient"}, "recipient_id"),
    ({"provider_id": 1}, "provider_id"),
    ({"recipient_id": 1}, "recipient_id"),
])
def test_invalid_user_is_a_validation_error_naming_the_field(app, client, make_user, auth, overrides, field):
    admin = make_user(role="admin")
    before = user_count(app)
    response = client.post("/api/v1/users", json=new_user(**overrides), headers=auth(admin))
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]["fields"]
    assert user_count(app) == before


# Password policy (NIST SP 800-63B: a minimum length and a blocklist of common passwords, no composition
# rules); refusals say why.
@pytest.mark.parametrize(("password", "why"), [
    ("aaaaaaaaaa", "different characters"),
    ("ababababab", "different characters"),
    ("abcabcabca", "different characters"),
    ("1111122222", "different characters"),
    (" " * 10, "whitespace"),
    (" \t \n \u3000" * 3, "whitespace"),
    ("1234567890", "common"),
    ("password12", "common"),
    ("Password12", "common"),
    ("PASSWORD123", "common"),
    ("qwertyuiop", "common"),
    (" 1q2w3e4r5t ", "common"),
])
def test_weak_passwords_are_refused_saying_why(app, client, make_user, auth, password, why):
    admin = make_user(role="admin")
    before = user_count(app)
    response = client.post("/api/v1/users", json=new_user(password=password), headers=auth(admin))
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    messages = response.get_json()["error"]["details"]["fields"]["password"]
    assert any(why in message for message in messages), messages
    assert user_count(app) == before
    assert login(client, "new.auditor", password).status_code == 401


@pytest.mark.parametrize("password", ["abcdabcdab", "correct horse battery", "蒲江县居家养老服务券", "  a b c d e  "])
def test_passwords_of_enough_length_and_variety_that_are_not_common_are_accepted(client, make_user, auth,
                                                                                  password):
    admin = make_user(role="admin")
    response = client.post("/api/v1/users", json=new_user(password=password), headers=auth(admin))
    assert response.status_code == 201, response.get_json()
    assert login(client, "new.auditor", password).status_code == 200


def test_the_common_password_list_is_shipped_with_the_package():
    from importlib.resources import files

    listed = files("marketplace.auth").joinpath("common_passwords.txt").read_text(encoding="utf-8").splitlines()
    entries = [line for line in listed if line and not line.startswith("#")]
    assert len(entries) >= 10_000
    assert all(entry == entry.lower() and entry.strip() == entry for entry in entries)
    assert {"123456", "password", "1234567890", "password12"} <= set(entries)
    header = "\n".join(line for line in listed if line.startswith("#"))
    assert "zxcvbn" in header
    assert "MIT" in header
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    package_data = project["tool"]["setuptools"]["package-data"]
    patterns = [pattern for patterns in package_data.values() for pattern in patterns]
    assert "*.txt" in patterns


def test_missing_user_fields_are_a_validation_error(client, make_user, auth):
    admin = make_user(role="admin")
    response = client.post("/api/v1/users", json={}, headers=auth(admin))
    assert response.status_code == 422
    assert set(response.get_json()["error"]["details"]["fields"]) >= {"username", "password", "role"}


def test_auditor_may_not_create_users(app, client, make_user, auth):
    auditor = make_user(role="auditor")
    before = user_count(app)
    response = client.post("/api/v1/users", json=new_user(), headers=auth(auditor))
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert user_count(app) == before


def test_anonymous_may_not_create_users(app, client):
    response = client.post("/api/v1/users", json=new_user())
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"
    assert user_count(app) == 0


def test_anonymous_request_is_unauthenticated_before_its_body_is_looked_at(client):
    response = client.post("/api/v1/users", json={"username": 5})
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


def test_wrong_role_is_forbidden_before_the_body_is_looked_at(client, make_user, auth):
    response = client.post("/api/v1/users", json={"username": 5}, headers=auth(make_user(role="auditor")))
    assert response.status_code == 403
    assert error_code(response) == "forbidden"


@pytest.mark.parametrize("overrides", [
    {"role": "admin", "region_code": "510131"},  # inside its region: still a second admin of its making
    {"role": "admin", "region_code": "5102"},  # another region
    {"role": "admin", "region_code": "51"},  # wider than its own scope
    {"role": "admin"},  # unscoped: every region
    {"role": "auditor"},  # not an admin at all
])
def test_region_scoped_admin_may_not_create_logins_outside_or_above_its_scope(app, client, make_user, auth,
                                                                               overrides):
    scoped = make_user(role="admin", region_code="5101")
    before = user_count(app)
    response = client.post("/api/v1/users", json=new_user(username="outsider", **overrides), headers=auth(scoped))
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert user_count(app) == before


# --- password storage -------------------------------------------------------------------------------

def test_passwords_are_stored_as_argon2id_with_owasp_parameters(app, client, make_user, auth):
    admin = make_user(role="admin")
    client.post("/api/v1/users", json=new_user(), headers=auth(admin))
    for username in (admin.username, "new.auditor"):
        stored = user_row(app, username).password_hash
        assert stored.startswith(OWASP_ARGON2ID_PREFIX)
        assert PASSWORD not in stored
        assert NEW_PASSWORD not in stored


def test_weaker_password_hash_is_upgraded_on_login(app, client, make_user):
    user = make_user()
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.ID).hash(PASSWORD)
    sql(app, "UPDATE user_account SET password_hash = :hash WHERE id = :id", hash=weak, id=user.id)
    assert login(client, user.username).status_code == 200
    assert user_row(app, user.username).password_hash.startswith(OWASP_ARGON2ID_PREFIX)
    assert login(client, user.username).status_code == 200

"""Bearer tokens, login throttling, /me and user creation (roles: docs/domain.md#roles-and-four-eyes)."""

import hashlib
import os
import secrets
import time
from datetime import datetime, timedelta

import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import func, select, text, update

from marketplace.audit.models import AuditEvent
from marketplace.auth.models import AuthToken, User
from marketplace.db import db, transaction, utcnow
from tests.conftest import PASSWORD, error_code

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

def test_repeated_failures_for_a_username_are_refused_with_too_many_attempts(app, client, make_user):
    user = make_user()
    limit = app.config["LOGIN_FAILURES_PER_USERNAME"]
    for _ in range(limit):
        assert login(client, user.username, "wrong password!").status_code == 401
    response = login(client, user.username, "wrong password!")
    assert response.status_code == 429
    assert error_code(response) == "too_many_attempts"
    assert response.get_json()["error"]["details"]["retry_after_seconds"] > 0


def test_locked_username_refuses_even_the_correct_password(app, client, make_user):
    user = make_user()
    for _ in range(app.config["LOGIN_FAILURES_PER_USERNAME"]):
        login(client, user.username, "wrong password!")
    response = login(client, user.username)
    assert response.status_code == 429
    assert error_code(response) == "too_many_attempts"
    assert client.post("/api/v1/auth/login", json={"username": user.username, "password": PASSWORD}).status_code == 429


def test_username_lock_counts_failures_whatever_the_case(app, client, make_user):
    make_user(username="locked.user")
    for attempt in range(app.config["LOGIN_FAILURES_PER_USERNAME"]):
        login(client, "LOCKED.user" if attempt % 2 else "locked.USER", "wrong password!")
    assert login(client, "locked.user").status_code == 429


def test_username_lock_does_not_lock_other_users(app, client, make_user):
    victim, other = make_user(), make_user()
    for _ in range(app.config["LOGIN_FAILURES_PER_USERNAME"]):
        login(client, victim.username, "wrong password!")
    assert login(client, other.username).status_code == 200


def test_repeated_failures_from_one_client_lock_that_client(make_app, make_user):
    user = make_user()
    application = make_app(LOGIN_FAILURES_PER_CLIENT=3, LOGIN_FAILURES_PER_USERNAME=100)
    client = application.test_client()
    here = {"environ_base": {"REMOTE_ADDR": "10.0.0.1"}}
    for name in ("guess-one", "guess-two", "guess-three"):
        assert login(client, name, "wrong password!", **here).status_code == 401
    refused = login(client, user.username, **here)
    assert refused.status_code == 429
    assert error_code(refused) == "too_many_attempts"
    assert login(client, user.username, environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_login_lock_lifts_after_the_failure_window(make_app, make_user):
    user = make_user()
    application = make_app(LOGIN_FAILURES_PER_USERNAME=2, LOGIN_FAILURE_WINDOW_SECONDS=1)
    client = application.test_client()
    login(client, user.username, "wrong password!")
    login(client, user.username, "wrong password!")
    assert login(client, user.username).status_code == 429
    time.sleep(1.2)
    assert login(client, user.username).status_code == 200


def redis_unavailable_reason() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        return f"Redis at {REDIS_URL} is not reachable: {error}"
    return None


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def test_with_redis_the_failure_counters_are_shared_by_every_process(make_app, make_user):
    reason = redis_unavailable_reason()
    if reason:
        pytest.skip(reason)
    # Two apps stand for two gunicorn workers: failures counted by one lock the username in the other.
    user = make_user(username=f"shared-{secrets.token_hex(4)}")
    first, second = (make_app(RATELIMIT_STORAGE_URI=REDIS_URL, LOGIN_FAILURES_PER_USERNAME=4) for _ in range(2))
    try:
        for attempt in range(4):
            application = first if attempt % 2 else second
            assert login(application.test_client(), user.username, "wrong password!").status_code == 401
        assert login(first.test_client(), user.username).status_code == 429
        assert login(second.test_client(), user.username).status_code == 429
    finally:
        first.extensions["rate_limiter"].storage.reset()


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


def test_region_scoped_admin_creates_admins_inside_its_region(client, make_user, auth):
    scoped = make_user(role="admin", region_code="5101")
    response = client.post("/api/v1/users", json=new_user(username="town", role="admin", region_code="510131"),
                           headers=auth(scoped))
    assert response.status_code == 201
    assert response.get_json()["region_code"] == "510131"


@pytest.mark.parametrize("overrides", [
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

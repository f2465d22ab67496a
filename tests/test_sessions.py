"""Cookie sessions for browsers: login, rotation, logout, CSRF, and how they meet bearer tokens."""

import hashlib
import re
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from marketplace.auth.models import AuthToken, User
from marketplace.db import db, transaction, utcnow
from tests.conftest import PASSWORD, error_code

NEW_USER = {"username": "made.by.cookie", "password": "a perfectly fine passphrase", "role": "auditor"}


def cookie_login(client, user, password=PASSWORD):
    return client.post("/api/v1/auth/login", json={"username": user.username, "password": password})


def session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    assert cookie.value
    return cookie.value


def client_with_cookie(app, value):
    """A fresh browser that only knows a captured session cookie."""
    other = app.test_client()
    other.set_cookie("session", value)
    return other


def session_rows(app, user):
    with app.app_context():
        return db.session.scalars(
            select(AuthToken).where(AuthToken.user_id == user.id, AuthToken.kind == "session").order_by(AuthToken.id)
        ).all()


def raw_session_secret(app, cookie_value) -> str:
    """The secret Flask-Login keeps in the signed cookie (what the server hashes into auth_token)."""
    return app.session_interface.get_signing_serializer(app).loads(cookie_value)["_user_id"]


def user_count(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


def test_cookie_login_returns_a_csrf_token_and_sets_a_protected_cookie(app, client, make_user):
    user = make_user(role="admin")
    before = utcnow()
    response = cookie_login(client, user)
    assert response.status_code == 200
    body = response.get_json()
    assert len(body["csrf_token"]) >= 32
    assert body["user"]["username"] == user.username
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert expires_at >= before + timedelta(seconds=app.config["SESSION_TTL_SECONDS"] - 1)
    set_cookie = response.headers["Set-Cookie"]
    assert set_cookie.startswith("session=")
    assert "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie
    assert client.get("/api/v1/me").get_json()["username"] == user.username


def test_cookie_login_with_a_wrong_password_is_refused_and_sets_no_session(client, make_user):
    user = make_user()
    response = cookie_login(client, user, "not the password at all")
    assert response.status_code == 401
    assert error_code(response) == "invalid_credentials"
    assert client.get("/api/v1/me").status_code == 401


def test_session_is_stored_only_as_the_hash_of_its_secret(app, client, make_user):
    user = make_user()
    cookie_login(client, user)
    secret = raw_session_secret(app, session_cookie(client))
    rows = session_rows(app, user)
    assert [row.token_hash for row in rows] == [hashlib.sha256(secret.encode()).hexdigest()]


def test_login_rotates_the_session_and_ends_the_one_it_replaces(app, client, make_user):
    user = make_user()
    first = cookie_login(client, user).get_json()
    first_cookie = session_cookie(client)
    second = cookie_login(client, user).get_json()
    second_cookie = session_cookie(client)

    assert second_cookie != first_cookie
    assert second["csrf_token"] != first["csrf_token"]
    old_row, new_row = session_rows(app, user)
    assert old_row.token_hash != new_row.token_hash
    assert old_row.revoked_at is not None
    assert new_row.revoked_at is None
    assert client_with_cookie(app, first_cookie).get("/api/v1/me").status_code == 401
    assert client_with_cookie(app, second_cookie).get("/api/v1/me").status_code == 200


def test_cookie_captured_before_logout_is_refused_after_it(app, client, make_user):
    user = make_user()
    csrf = cookie_login(client, user).get_json()["csrf_token"]
    captured = session_cookie(client)
    assert client_with_cookie(app, captured).get("/api/v1/me").status_code == 200

    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204

    assert client.get("/api/v1/me").status_code == 401
    replayed = client_with_cookie(app, captured).get("/api/v1/me")
    assert replayed.status_code == 401
    assert error_code(replayed) == "unauthenticated"
    replayed_raw = app.test_client().get("/api/v1/me", headers={"Cookie": f"session={captured}"})
    assert replayed_raw.status_code == 401
    [row] = session_rows(app, user)
    assert row.revoked_at is not None


def test_expired_session_is_refused(app, client, make_user):
    user = make_user()
    cookie_login(client, user)
    with app.app_context(), transaction():
        db.session.execute(update(AuthToken).where(AuthToken.user_id == user.id)
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


def test_session_secret_is_not_a_bearer_token(app, client, make_user):
    user = make_user()
    cookie_login(client, user)
    secret = raw_session_secret(app, session_cookie(client))
    response = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401


def test_bearer_token_forged_into_a_session_cookie_is_refused(app, client, make_user):
    user = make_user()
    response = client.post("/api/v1/auth/token", json={"username": user.username, "password": PASSWORD})
    token = response.get_json()["token"]
    forged = app.session_interface.get_signing_serializer(app).dumps({"_user_id": token, "_fresh": True})
    assert client_with_cookie(app, forged).get("/api/v1/me").status_code == 401


# --- CSRF -------------------------------------------------------------------------------------------

def test_cookie_state_change_without_csrf_token_is_refused(app, client, make_user):
    admin = make_user(role="admin")
    cookie_login(client, admin)
    before = user_count(app)
    response = client.post("/api/v1/users", json=NEW_USER)
    assert response.status_code == 403
    assert error_code(response) == "csrf_failed"
    assert user_count(app) == before


def test_cookie_state_change_with_a_wrong_csrf_token_is_refused(app, client, make_user):
    admin = make_user(role="admin")
    cookie_login(client, admin)
    response = client.post("/api/v1/users", json=NEW_USER, headers={"X-CSRF-Token": "not-the-token"})
    assert response.status_code == 403
    assert error_code(response) == "csrf_failed"


def test_csrf_token_of_another_session_is_refused(app, client, make_user):
    admin = make_user(role="admin")
    other_csrf = cookie_login(app.test_client(), admin).get_json()["csrf_token"]
    cookie_login(client, admin)
    response = client.post("/api/v1/users", json=NEW_USER, headers={"X-CSRF-Token": other_csrf})
    assert response.status_code == 403
    assert error_code(response) == "csrf_failed"


def test_cookie_state_change_with_the_right_csrf_token_is_carried_out(app, client, make_user):
    admin = make_user(role="admin")
    csrf = cookie_login(client, admin).get_json()["csrf_token"]
    response = client.post("/api/v1/users", json=NEW_USER, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 201
    assert response.get_json()["username"] == NEW_USER["username"]


def test_cookie_reads_need_no_csrf_token(client, make_user):
    admin = make_user(role="admin")
    cookie_login(client, admin)
    assert client.get("/api/v1/me").status_code == 200
    assert client.get("/api/v1/audit").status_code == 200


def test_cookie_logout_without_csrf_token_is_refused_and_the_session_lives_on(client, make_user):
    user = make_user()
    cookie_login(client, user)
    response = client.post("/api/v1/auth/logout")
    assert response.status_code == 403
    assert error_code(response) == "csrf_failed"
    assert client.get("/api/v1/me").status_code == 200


def test_cookie_token_revocation_without_csrf_token_is_refused(client, make_user):
    user = make_user()
    csrf = cookie_login(client, user).get_json()["csrf_token"]
    assert error_code(client.delete("/api/v1/auth/token")) == "csrf_failed"
    assert client.get("/api/v1/me").status_code == 200
    assert client.delete("/api/v1/auth/token", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/v1/me").status_code == 401


def test_bearer_state_change_needs_no_csrf_token(client, make_user, auth):
    admin = make_user(role="admin")
    response = client.post("/api/v1/users", json=NEW_USER, headers=auth(admin))
    assert response.status_code == 201


# --- bearer and cookie together ---------------------------------------------------------------------

def test_bearer_header_takes_precedence_over_a_session_cookie(app, client, make_user, auth):
    admin, auditor = make_user(role="admin"), make_user(role="auditor")
    auditor_headers = auth(auditor)  # logs in through `client` before it holds any cookie
    cookie_login(client, admin)
    assert client.get("/api/v1/me").get_json()["username"] == admin.username
    assert client.get("/api/v1/me", headers=auditor_headers).get_json()["username"] == auditor.username
    response = client.post("/api/v1/users", json=NEW_USER, headers=auditor_headers)
    assert response.status_code == 403
    assert error_code(response) == "forbidden"


def test_invalid_bearer_header_is_not_rescued_by_a_session_cookie(client, make_user):
    admin = make_user(role="admin")
    cookie_login(client, admin)
    response = client.get("/api/v1/me", headers={"Authorization": "Bearer not-a-live-token"})
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


def test_bearer_state_change_alongside_a_session_cookie_needs_no_csrf_token(app, client, make_user, auth):
    admin = make_user(role="admin")
    headers = auth(admin)
    cookie_login(client, admin)
    response = client.post("/api/v1/users", json=NEW_USER, headers=headers)
    assert response.status_code == 201


def test_failed_login_leaves_the_current_session_alive(app, client, make_user):
    user = make_user()
    cookie_login(client, user)
    assert cookie_login(client, user, "not the password at all").status_code == 401
    assert client.get("/api/v1/me").status_code == 200
    [row] = session_rows(app, user)
    assert row.revoked_at is None


def test_login_as_someone_else_ends_the_previous_users_session(app, client, make_user):
    first, second = make_user(), make_user()
    cookie_login(client, first)
    captured = session_cookie(client)
    cookie_login(client, second)
    assert client.get("/api/v1/me").get_json()["username"] == second.username
    assert client_with_cookie(app, captured).get("/api/v1/me").status_code == 401


def test_every_cookie_authenticated_state_change_needs_the_csrf_token(app, make_user):
    """Walk the URL map: every state-changing route refuses a cookie session without X-CSRF-Token."""
    client = app.test_client()
    user = make_user(role="admin")
    assert client.post("/api/v1/auth/login", json={"username": user.username, "password": PASSWORD}).status_code == 200
    exempt = {"auth.login", "auth.create_token"}  # they start a session; the cookie authenticates nothing there
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1") or rule.endpoint in exempt:
            continue
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH", "DELETE"}):
            path = re.sub(r"<int:[a-z_]+>", "1", rule.rule)
            response = client.open(path, method=method, json={})
            assert response.status_code == 403, (method, rule.rule, response.status_code)
            assert response.get_json()["error"]["code"] == "csrf_failed", (method, rule.rule)
            checked += 1
    assert checked > 30
    # …and the session is still alive afterwards: nothing was done, nothing was revoked.
    assert client.get("/api/v1/me").status_code == 200

"""A provider's staff logins: its manager (its first login) adds scanning staff logins for that provider
only and deactivates or reactivates them; admins in scope do the same; a deactivated login's tokens and
sessions stop working at once. The API, then the page /provider/logins (both databases)."""

import re

import pytest
from sqlalchemy import select

from marketplace.accounts import service as accounts
from marketplace.auth.models import AuthToken, User
from marketplace.db import db, utcnow
from tests.conftest import PASSWORD, error_code
from tests.support.console import csrf_from, login_page, visible_text
from tests.support.races import race_transactions

STAFF_PASSWORD = "door-to-door scanning 7"
FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')


@pytest.fixture
def cast(build):
    """p1 (蒲江县, 510131) with its manager and one scanning staff login; p2 with its manager."""
    world = build.world()
    staff = build.user(role="provider", provider_id=world.p1.id, username="p1-staff")
    return world, staff


def logins_path(provider) -> str:
    return f"/api/v1/providers/{provider.id}/logins"


def deactivate(client, user, headers, reason="离职", action="deactivate"):
    return client.post(f"/api/v1/users/{user.id}/{action}", json={"reason": reason}, headers=headers)


def login_row(app, user_id) -> User:
    with app.app_context():
        return db.session.get(User, user_id)


def audit_events(client, build, user, action):
    events = client.get("/api/v1/audit", query_string={"entity": "user", "entity_id": user.id, "per_page": 100},
                        headers=build.headers(build.system_admin)).get_json()["items"]
    return [event for event in events if event["action"] == action]


# --- the list ---------------------------------------------------------------------------------------

def test_the_manager_lists_its_providers_logins_manager_first(client, build, cast):
    world, staff = cast
    response = client.get(logins_path(world.p1), headers=build.headers(world.p1.user))
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert [(item["username"], item["provider_manager"], item["active"]) for item in items] == [
        (world.p1.user.username, True, True), ("p1-staff", False, True)]
    assert set(items[0]) == {"id", "username", "provider_manager", "active", "created_at", "last_login_at"}


def test_staff_may_not_see_the_logins_and_another_provider_sees_none(client, build, cast):
    world, staff = cast
    assert client.get(logins_path(world.p1), headers=build.headers(staff)).status_code == 403
    response = client.get(logins_path(world.p1), headers=build.headers(world.p2.user))
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_auditors_and_admins_in_scope_read_the_logins_admins_out_of_scope_do_not(client, build, cast):
    world, _staff = cast
    for reader in (build.auditor(), build.admin(region_code="510100")):
        assert client.get(logins_path(world.p1), headers=build.headers(reader)).status_code == 200
    response = client.get(logins_path(world.p1), headers=build.headers(build.admin(region_code="510129")))
    assert response.status_code == 403
    assert error_code(response) == "forbidden"


# --- adding a staff login ---------------------------------------------------------------------------

def test_the_manager_adds_a_staff_login_for_its_own_provider_who_then_scans_but_manages_nothing(client, build, cast):
    world, _staff = cast
    response = client.post(logins_path(world.p1), json={"username": "Wang.Fang", "password": STAFF_PASSWORD},
                           headers=build.headers(world.p1.user))
    assert response.status_code == 201, response.get_json()
    added = response.get_json()
    assert (added["username"], added["provider_manager"], added["active"], added["last_login_at"]) == (
        "wang.fang", False, True, None)
    row = login_row(client.application, added["id"])
    assert (row.role, row.provider_id, row.created_by) == ("provider", world.p1.id, world.p1.user.id)

    token = client.post("/api/v1/auth/token", json={"username": "wang.fang", "password": STAFF_PASSWORD})
    headers = {"Authorization": f"Bearer {token.get_json()['token']}"}
    assert client.get("/api/v1/me", headers=headers).get_json()["provider_id"] == world.p1.id
    assert client.get("/api/v1/redemptions", headers=headers).status_code == 200
    refused = client.post(logins_path(world.p1), json={"username": "cousin", "password": STAFF_PASSWORD},
                          headers=headers)
    assert refused.status_code == 403


def test_a_staff_login_may_not_add_logins_and_a_manager_not_for_another_provider(client, build, cast):
    world, staff = cast
    body = {"username": "intruder", "password": STAFF_PASSWORD}
    assert client.post(logins_path(world.p1), json=body, headers=build.headers(staff)).status_code == 403
    assert client.post(logins_path(world.p2), json=body, headers=build.headers(world.p1.user)).status_code == 404
    with client.application.app_context():
        assert db.session.scalar(select(User).where(User.username == "intruder")) is None


def test_the_password_policy_and_duplicate_usernames_are_those_of_post_users(client, build, cast):
    world, staff = cast
    manager = build.headers(world.p1.user)
    weak = client.post(logins_path(world.p1), json={"username": "new-staff", "password": "password123"},
                       headers=manager)
    assert weak.status_code == 422
    assert "password" in weak.get_json()["error"]["details"]["fields"]
    taken = client.post(logins_path(world.p1), json={"username": "P1-Staff", "password": STAFF_PASSWORD},
                        headers=manager)
    assert taken.status_code == 409
    assert error_code(taken) == "duplicate_username"


def test_an_admin_adds_a_staff_login_only_for_a_provider_in_its_region(client, build, cast):
    world, _staff = cast
    body = {"username": "city-added", "password": STAFF_PASSWORD}
    outside = client.post(logins_path(world.p1), json=body, headers=build.headers(build.admin(region_code="510129")))
    assert outside.status_code == 403
    inside = client.post(logins_path(world.p1), json=body, headers=build.headers(build.admin(region_code="510100")))
    assert inside.status_code == 201
    assert inside.get_json()["provider_manager"] is False
    auditor = client.post(logins_path(world.p1), json={**body, "username": "auditor-added"},
                          headers=build.headers(build.auditor()))
    assert auditor.status_code == 403


# --- deactivating -----------------------------------------------------------------------------------

def test_deactivation_kills_the_bearer_token_and_the_cookie_session_at_once(app, client, build, cast):
    world, staff = cast
    bearer = build.headers(staff)
    browser = app.test_client()
    cookie_login = browser.post("/api/v1/auth/login", json={"username": staff.username, "password": PASSWORD})
    assert cookie_login.status_code == 200
    assert browser.get("/api/v1/me").status_code == 200
    assert client.get("/api/v1/me", headers=bearer).status_code == 200

    response = deactivate(client, staff, build.headers(world.p1.user), reason="已离职")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["active"] is False

    assert client.get("/api/v1/me", headers=bearer).status_code == 401
    assert browser.get("/api/v1/me").status_code == 401
    assert browser.get("/provider").status_code == 302  # the console sends it to /login
    with app.app_context():
        live = db.session.scalars(select(AuthToken).where(AuthToken.user_id == staff.id,
                                                          AuthToken.revoked_at.is_(None))).all()
    assert live == []
    login = client.post("/api/v1/auth/token", json={"username": staff.username, "password": PASSWORD})
    assert login.status_code == 401


def test_deactivation_and_reactivation_are_audited_with_the_reason_and_the_providers_region(client, build, cast):
    world, staff = cast
    manager = build.headers(world.p1.user)
    assert deactivate(client, staff, manager, reason="已离职").status_code == 200
    again = deactivate(client, staff, manager, reason="又点了一次")
    assert again.status_code == 409
    assert error_code(again) == "invalid_transition"
    assert deactivate(client, staff, manager, reason="回来上班", action="reactivate").status_code == 200

    [off] = audit_events(client, build, staff, "user.deactivated")
    [on] = audit_events(client, build, staff, "user.reactivated")
    assert off["data"]["reason"] == "已离职"
    assert on["data"]["reason"] == "回来上班"
    assert off["actor"] == world.p1.user.username
    assert off["region_code"] == on["region_code"] == "510131"
    county = build.headers(build.admin(region_code="510131"))
    seen = client.get("/api/v1/audit", query_string={"entity": "user", "entity_id": staff.id}, headers=county)
    assert {"user.deactivated", "user.reactivated"} <= {event["action"] for event in seen.get_json()["items"]}


def test_a_reactivated_login_logs_in_again_with_its_password_but_old_tokens_stay_dead(client, build, cast):
    world, staff = cast
    old = build.headers(staff)
    manager = build.headers(world.p1.user)
    deactivate(client, staff, manager)
    assert deactivate(client, staff, manager, action="reactivate").get_json()["active"] is True
    assert client.get("/api/v1/me", headers=old).status_code == 401
    assert client.post("/api/v1/auth/token", json={"username": staff.username, "password": PASSWORD}).status_code == 200
    active_again = deactivate(client, staff, manager, action="reactivate")
    assert active_again.status_code == 409


def test_a_manager_may_not_deactivate_itself(client, build, cast):
    world, _staff = cast
    manager = build.headers(world.p1.user)
    response = deactivate(client, world.p1.user, manager)
    assert response.status_code == 409
    assert error_code(response) == "cannot_deactivate_self"
    assert client.get("/api/v1/me", headers=manager).status_code == 200


def test_outside_its_provider_a_manager_finds_nothing_to_deactivate_and_staff_may_not(client, build, cast):
    world, staff = cast
    manager = build.headers(world.p1.user)
    for other in (world.p2.user, world.alice.user, world.admin):
        response = deactivate(client, other, manager)
        assert response.status_code == 404, other.username
    assert deactivate(client, world.p1.user, build.headers(staff)).status_code == 403
    assert deactivate(client, staff, build.headers(world.p2.user)).status_code == 404
    assert deactivate(client, staff, build.headers(build.auditor())).status_code == 403
    assert login_row(client.application, staff.id).active is True
    assert login_row(client.application, world.p2.user.id).active is True


def test_admins_deactivate_provider_and_recipient_logins_in_their_region_only(client, build, cast):
    world, staff = cast
    outside = build.headers(build.admin(region_code="510129"))
    inside = build.headers(build.admin(region_code="510131"))
    for login in (staff, world.alice.user):
        refused = deactivate(client, login, outside)
        assert refused.status_code == 403
        assert error_code(refused) == "forbidden"
        assert login_row(client.application, login.id).active is True
        assert deactivate(client, login, inside).status_code == 200
        assert login_row(client.application, login.id).active is False
    [event] = audit_events(client, build, world.alice.user, "user.deactivated")
    assert event["region_code"] == "510131"


def test_only_an_unscoped_admin_deactivates_admin_logins_and_nobody_themself(client, build, cast):
    _world, _staff = cast
    target, scoped, root = build.admin(region_code="510131"), build.admin(region_code="510100"), build.admin()
    assert deactivate(client, target, build.headers(scoped)).status_code == 403
    root_headers = build.headers(root)
    assert deactivate(client, root, root_headers).status_code == 409
    assert deactivate(client, target, root_headers).status_code == 200
    assert deactivate(client, build.auditor(), root_headers).status_code == 200


def test_an_admin_may_deactivate_a_providers_manager(client, build, cast):
    world, _staff = cast
    manager = build.headers(world.p1.user)
    assert deactivate(client, world.p1.user, build.headers(world.admin), reason="负责人变更").status_code == 200
    assert client.get(logins_path(world.p1), headers=manager).status_code == 401


def test_racing_deactivations_deactivate_once_and_audit_once(app, client, build, cast):
    world, staff = cast
    manager_id = world.p1.user.id

    def deactivate_as_manager(index):
        accounts.set_login_active(user_id=staff.id, active=False, reason=f"第{index}次", now=utcnow(),
                                  actor=db.session.get(User, manager_id))

    outcomes = race_transactions(app, deactivate_as_manager, racers=6)

    assert sorted(outcomes) == ["InvalidTransition"] * 5 + ["ok"]
    assert len(audit_events(client, build, staff, "user.deactivated")) == 1


@pytest.mark.parametrize("body", [{}, {"reason": " "}, {"reason": "x" * 501}, {"reason": "离职", "extra": 1}])
def test_a_reason_is_required(client, build, cast, body):
    world, staff = cast
    response = client.post(f"/api/v1/users/{staff.id}/deactivate", json=body, headers=build.headers(world.p1.user))
    assert response.status_code == 422
    assert login_row(client.application, staff.id).active is True


# --- the page /provider/logins ----------------------------------------------------------------------

PAGE = "/provider/logins"


def manager_browser(app, world):
    browser = app.test_client()
    assert login_page(browser, world.p1.user.username, PASSWORD).status_code == 302
    return browser


def test_the_page_lists_the_providers_logins_with_role_state_and_last_login(app, build, cast):
    world, staff = cast
    browser = manager_browser(app, world)
    response = browser.get(PAGE)
    assert response.status_code == 200
    text = visible_text(response)
    assert world.p1.user.username in text
    assert "p1-staff" in text
    assert "负责人" in text
    assert "工作人员" in text
    assert "还没有登录过" in text  # p1-staff never logged in
    assert world.p2.user.username not in text
    assert 'href="/provider/logins"' in response.get_data(as_text=True)  # in its navigation


def test_a_staff_login_gets_the_consoles_403_page_and_no_link(app, build, cast):
    _world, staff = cast
    browser = app.test_client()
    login_page(browser, staff.username, PASSWORD)
    response = browser.get(PAGE)
    assert response.status_code == 403
    assert "没有权限" in visible_text(response)
    assert 'href="/provider/logins"' not in browser.get("/provider").get_data(as_text=True)
    form = browser.get("/provider")  # a forged post from a staff login changes nothing
    refused = browser.post(PAGE, data={"csrf_token": csrf_from(form.get_data(as_text=True)), "username": "sneaky",
                                       "password": STAFF_PASSWORD, "password_again": STAFF_PASSWORD,
                                       "form_key": "k" * 24})
    assert refused.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "sneaky")) is None


def test_the_manager_adds_a_staff_login_through_the_form_once_per_form(app, build, cast):
    world, _staff = cast
    browser = manager_browser(app, world)
    page = browser.get(PAGE).get_data(as_text=True)
    key = FORM_KEY.search(page).group(1)
    data = {"csrf_token": csrf_from(page), "form_key": key, "username": "li.na", "password": STAFF_PASSWORD,
            "password_again": STAFF_PASSWORD}
    first = browser.post(PAGE, data=data)
    assert first.status_code == 303
    second = browser.post(PAGE, data=data)  # a double tap
    assert second.status_code == 303
    assert second.location == first.location
    text = visible_text(browser.get(first.location))
    assert "li.na" in text
    with app.app_context():
        rows = db.session.scalars(select(User).where(User.username == "li.na")).all()
    assert [(row.provider_id, row.provider_manager) for row in rows] == [(world.p1.id, False)]
    assert login_page(app.test_client(), "li.na", STAFF_PASSWORD).location == "/provider"


@pytest.mark.parametrize(("fields", "status", "field", "words"), [
    ({"username": "li.na", "password": STAFF_PASSWORD, "password_again": "something else 9"}, 422, "password_again",
     "两次填写的密码不一样"),
    ({"username": "li.na", "password": "short", "password_again": "short"}, 422, "password", "至少要 10 个字符"),
    ({"username": "li.na", "password": "password1234", "password_again": "password1234"}, 422, "password",
     "很容易被猜到"),
    ({"username": "P1-STAFF", "password": STAFF_PASSWORD, "password_again": STAFF_PASSWORD}, 409, "username",
     "这个用户名已经有人用了"),
    ({"username": "", "password": STAFF_PASSWORD, "password_again": STAFF_PASSWORD}, 422, "username", "请填写这一项"),
    ({"username": "李 娜", "password": STAFF_PASSWORD, "password_again": STAFF_PASSWORD}, 422, "username",
     "3 到 64 个字符"),
])
def test_a_bad_form_comes_back_with_the_message_beside_the_field_and_nothing_added(app, build, cast, fields, status,
                                                                                    field, words):
    world, _staff = cast
    browser = manager_browser(app, world)
    page = browser.get(PAGE).get_data(as_text=True)
    response = browser.post(PAGE, data={"csrf_token": csrf_from(page), "form_key": FORM_KEY.search(page).group(1),
                                        **fields})
    assert response.status_code == status
    body = response.get_data(as_text=True)
    assert f'id="error-{field}"' in body
    assert words in visible_text(response)
    assert STAFF_PASSWORD not in body  # a password is never sent back
    with app.app_context():
        count = len(db.session.scalars(select(User).where(User.provider_id == world.p1.id)).all())
    assert count == 2


def test_the_manager_deactivates_with_a_reason_after_a_confirmation_and_the_staff_is_logged_out(app, build, cast):
    world, staff = cast
    staff_browser = app.test_client()
    login_page(staff_browser, staff.username, PASSWORD)
    assert staff_browser.get("/provider").status_code == 200
    browser = manager_browser(app, world)

    confirm = browser.get(f"{PAGE}/{staff.id}/deactivate")
    assert confirm.status_code == 200
    assert "马上退出登录" in visible_text(confirm)
    page = confirm.get_data(as_text=True)
    path = f"{PAGE}/{staff.id}/deactivate"
    blank = browser.post(path, data={"csrf_token": csrf_from(page), "form_key": FORM_KEY.search(page).group(1),
                                     "reason": ""})
    assert blank.status_code == 422
    assert 'id="error-reason"' in blank.get_data(as_text=True)
    assert login_row(app, staff.id).active is True

    done = browser.post(path, data={"csrf_token": csrf_from(page), "form_key": FORM_KEY.search(page).group(1),
                                    "reason": "已离职"})
    assert done.status_code == 303
    assert "已停用" in visible_text(browser.get(done.location))
    assert login_row(app, staff.id).active is False
    assert staff_browser.get("/provider").location.startswith("/login")
    [event] = audit_events(browser, build, staff, "user.deactivated")
    assert event["data"]["reason"] == "已离职"

    again = browser.get(f"{PAGE}/{staff.id}/reactivate").get_data(as_text=True)
    back = browser.post(f"{PAGE}/{staff.id}/reactivate",
                        data={"csrf_token": csrf_from(again), "form_key": FORM_KEY.search(again).group(1),
                              "reason": "回来上班"})
    assert back.status_code == 303
    assert login_row(app, staff.id).active is True


def test_the_confirmation_of_a_stale_change_says_so_and_other_providers_logins_are_not_found(app, build, cast):
    world, staff = cast
    browser = manager_browser(app, world)
    assert browser.get(f"{PAGE}/{world.p2.user.id}/deactivate").status_code == 404
    assert browser.get(f"{PAGE}/{world.p1.user.id}/deactivate").status_code == 409  # itself
    page = browser.get(f"{PAGE}/{staff.id}/deactivate").get_data(as_text=True)
    client = app.test_client()
    assert deactivate(client, staff, build.headers(world.admin)).status_code == 200  # meanwhile, an admin
    response = browser.post(f"{PAGE}/{staff.id}/deactivate",
                            data={"csrf_token": csrf_from(page), "form_key": FORM_KEY.search(page).group(1),
                                  "reason": "已离职"})
    assert response.status_code == 409
    assert "当前状态下不能这样改" in visible_text(response)


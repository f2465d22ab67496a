"""Applications to join a programme (申请加入项目), through the API: a provider's manager applies, an admin in
the programme's region accepts (which enrols the provider) or refuses with a reason; each refusal of the
application itself, who sees which applications, and racing decisions with one winner."""

from types import SimpleNamespace

import pytest

from marketplace.auth.models import User
from marketplace.db import db, utcnow
from providers.service import applications
from tests.conftest import error_code
from tests.support.races import race_transactions

HOME, ELSEWHERE = "510131", "510129"  # 蒲江县, 大邑县


@pytest.fixture
def scene(build):
    """An active programme in 蒲江县 buying meals and baths (p1 enrolled, alice its recipient), and a
    newcomer: approved, offering meals there, not enrolled, with its manager and a scanning staff login."""
    world = build.world()
    newcomer = build.provider(items=[world.meal], name="鹤山助餐服务社")
    staff = build.user(role="provider", provider_id=newcomer.id)
    return SimpleNamespace(world=world, programme=world.programme, newcomer=newcomer,
                           manager=build.headers(newcomer.user), staff=build.headers(staff),
                           admin=build.headers(world.admin), build=build)


def apply(client, scene, headers=None, programme_id=None, **body):
    return client.post(f"/api/v1/programmes/{programme_id or scene.programme.id}/applications", json=body,
                       headers=headers or scene.manager)


def applied(client, scene, **body) -> dict:
    response = apply(client, scene, **body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def events(client, scene, application_id) -> list[dict]:
    response = client.get(f"/api/v1/audit?entity=programme_application&entity_id={application_id}",
                          headers=scene.admin)
    assert response.status_code == 200
    return response.get_json()["items"]


def enrolled_programmes(client, scene) -> list[int]:
    response = client.get(f"/api/v1/providers/{scene.newcomer.id}/enrolments", headers=scene.admin)
    return [row["programme_id"] for row in response.get_json()]


# --- applying ---------------------------------------------------------------------------------------

def test_a_providers_manager_applies_and_the_application_waits_for_the_bureau(client, scene):
    body = applied(client, scene, note="我们有 12 名助餐员，在鹤山街道做了五年。")
    assert body["status"] == "pending"
    assert body["programme_id"] == scene.programme.id
    assert body["provider_id"] == scene.newcomer.id
    assert body["note"] == "我们有 12 名助餐员，在鹤山街道做了五年。"
    assert body["decided_at"] is None
    assert body["reason"] is None
    [event] = events(client, scene, body["id"])
    assert event["action"] == "programme_application.created"
    assert event["region_code"] == HOME
    assert event["data"] == {"programme_id": scene.programme.id, "provider_id": scene.newcomer.id}
    assert enrolled_programmes(client, scene) == []  # nothing is enrolled before a decision


def test_the_note_is_optional_and_a_blank_one_is_none(client, scene):
    assert applied(client, scene, note="   ")["note"] is None


def test_a_note_longer_than_500_characters_is_refused(client, scene):
    response = apply(client, scene, note="长" * 501)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"


def test_scanning_staff_may_not_apply_for_their_provider(client, scene):
    response = apply(client, scene, headers=scene.staff)
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert client.get("/api/v1/programme-applications", headers=scene.admin).get_json()["total"] == 0


def test_an_unknown_programme_is_not_found(client, scene):
    response = apply(client, scene, programme_id=999_999)
    assert response.status_code == 404


@pytest.mark.parametrize("status", ["draft", "closed"])
def test_a_programme_that_is_not_active_takes_no_applications(client, scene, build, status):
    other = build.programme(items=[scene.world.meal], status=status)
    response = apply(client, scene, programme_id=other.id)
    assert response.status_code == 409
    assert error_code(response) == "programme_not_active"
    assert response.get_json()["error"]["details"]["status"] == status


@pytest.mark.parametrize("status", ["pending", "suspended"])
def test_a_provider_that_is_not_approved_may_not_apply(client, scene, build, status):
    provider = build.provider(items=[scene.world.meal], status=status)
    response = apply(client, scene, headers=build.headers(provider.user))
    assert response.status_code == 409
    assert error_code(response) == "provider_not_approved"


def test_an_enrolled_provider_need_not_apply(client, scene, build):
    response = apply(client, scene, headers=build.headers(scene.world.p1.user))
    assert response.status_code == 409
    assert error_code(response) == "already_enrolled"


def test_one_pending_application_per_programme_and_provider(client, scene):
    applied(client, scene)
    response = apply(client, scene, note="再申请一次")
    assert response.status_code == 409
    assert error_code(response) == "application_pending"
    assert client.get("/api/v1/programme-applications", headers=scene.admin).get_json()["total"] == 1


def test_a_provider_offering_none_of_the_programmes_items_is_refused(client, scene, build):
    cleaning = build.item(name="助洁")
    provider = build.provider(items=[cleaning])
    response = apply(client, scene, headers=build.headers(provider.user))
    assert response.status_code == 422
    assert error_code(response) == "no_matching_items"


def test_a_provider_serving_no_part_of_the_programmes_region_is_refused(client, scene, build):
    provider = build.provider(items=[scene.world.meal], regions=(ELSEWHERE,))
    response = apply(client, scene, headers=build.headers(provider.user))
    assert response.status_code == 422
    assert error_code(response) == "no_matching_regions"


def test_applications_racing_each_other_leave_one_pending(app, scene):
    manager_id = scene.newcomer.user.id

    def one(_index):
        applications.apply(programme_id=scene.programme.id, note=None, actor=db.session.get(User, manager_id),
                           now=utcnow())

    outcomes = race_transactions(app, one, racers=4)
    assert sorted(outcomes) == ["ApplicationPending"] * 3 + ["ok"]


# --- who sees which ---------------------------------------------------------------------------------

def test_admins_and_auditors_see_every_application_a_provider_only_its_own(client, scene, build):
    mine = applied(client, scene)["id"]
    other = build.provider(items=[scene.world.bath])
    theirs = applied(client, scene, headers=build.headers(other.user))["id"]
    listing = "/api/v1/programme-applications"
    for reader in (scene.admin, build.headers(build.auditor())):
        assert [row["id"] for row in client.get(listing, headers=reader).get_json()["items"]] == [theirs, mine]
    for headers in (scene.manager, scene.staff):
        assert [row["id"] for row in client.get(listing, headers=headers).get_json()["items"]] == [mine]
        asked = client.get(f"{listing}?provider_id={other.id}", headers=headers).get_json()
        assert asked["items"] == []
        assert asked["total"] == 0


def test_an_admin_of_another_region_neither_sees_nor_decides_them(client, scene, build):
    application = applied(client, scene)["id"]
    outsider = build.headers(build.admin(region_code=ELSEWHERE))
    assert client.get("/api/v1/programme-applications", headers=outsider).get_json()["items"] == []
    for action, body in (("accept", {}), ("refuse", {"reason": "不在本区"})):
        response = client.post(f"/api/v1/programme-applications/{application}/{action}", json=body,
                               headers=outsider)
        assert response.status_code == 403
        assert error_code(response) == "forbidden"
    county = build.headers(build.admin(region_code=HOME))
    assert [row["id"] for row in client.get("/api/v1/programme-applications", headers=county).get_json()["items"]] \
        == [application]


def test_the_list_filters_by_programme_status_and_provider(client, scene, build):
    first = applied(client, scene)["id"]
    other_programme = build.programme(items=[scene.world.meal], name="蒲江县助餐补贴")
    second = applied(client, scene, programme_id=other_programme.id)["id"]
    client.post(f"/api/v1/programme-applications/{second}/refuse", json={"reason": "名额已满"}, headers=scene.admin)

    def ids(query):
        response = client.get(f"/api/v1/programme-applications?{query}", headers=scene.admin)
        assert response.status_code == 200
        return [row["id"] for row in response.get_json()["items"]]

    assert ids(f"programme_id={scene.programme.id}") == [first]
    assert ids("status=refused") == [second]
    assert ids("status=pending") == [first]
    assert ids(f"provider_id={scene.newcomer.id}&per_page=1") == [second]
    assert ids(f"provider_id={scene.world.p1.id}") == []
    response = client.get("/api/v1/programme-applications?status=maybe", headers=scene.admin)
    assert response.status_code == 422


def test_auditors_and_providers_do_not_decide(client, scene, build):
    application = applied(client, scene)["id"]
    for headers in (build.headers(build.auditor()), scene.manager):
        response = client.post(f"/api/v1/programme-applications/{application}/accept", json={}, headers=headers)
        assert response.status_code == 403
    assert client.get("/api/v1/programme-applications?status=pending", headers=scene.admin).get_json()["total"] == 1


# --- deciding ---------------------------------------------------------------------------------------

def test_accepting_enrols_the_provider_who_can_then_be_chosen(client, scene, build):
    application = applied(client, scene)["id"]
    alice = scene.world.alice
    choice = {"programme_id": scene.programme.id, "item_code": scene.world.meal, "provider_id": scene.newcomer.id}
    refused = client.put(f"/api/v1/recipients/{alice.id}/choices", json=choice, headers=build.headers(alice.user))
    assert refused.status_code == 422
    assert error_code(refused) == "provider_not_eligible"

    response = client.post(f"/api/v1/programme-applications/{application}/accept", json={"reason": "资质齐全"},
                           headers=scene.admin)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "accepted"
    assert body["reason"] == "资质齐全"
    assert body["decided_at"] is not None
    assert enrolled_programmes(client, scene) == [scene.programme.id]
    providers = client.get(f"/api/v1/programmes/{scene.programme.id}/providers").get_json()
    assert scene.newcomer.id in [row["id"] for row in providers]
    chosen = client.put(f"/api/v1/recipients/{alice.id}/choices", json=choice, headers=build.headers(alice.user))
    assert chosen.status_code == 200, chosen.get_json()
    actions = [event["action"] for event in events(client, scene, application)]
    assert sorted(actions) == ["programme_application.accepted", "programme_application.created"]
    # Accepted: a second application is "already enrolled", not "pending".
    assert error_code(apply(client, scene)) == "already_enrolled"


def test_accepting_needs_no_reason(client, scene):
    application = applied(client, scene)["id"]
    response = client.post(f"/api/v1/programme-applications/{application}/accept", json={}, headers=scene.admin)
    assert response.status_code == 200
    assert response.get_json()["reason"] is None


def test_refusing_keeps_the_reason_for_the_provider_to_read(client, scene):
    application = applied(client, scene)["id"]
    response = client.post(f"/api/v1/programme-applications/{application}/refuse",
                           json={"reason": "本年度助餐名额已满，明年再申请"}, headers=scene.admin)
    assert response.status_code == 200
    assert response.get_json()["status"] == "refused"
    [seen] = client.get("/api/v1/programme-applications", headers=scene.manager).get_json()["items"]
    assert seen["status"] == "refused"
    assert seen["reason"] == "本年度助餐名额已满，明年再申请"
    assert enrolled_programmes(client, scene) == []
    [event] = [e for e in events(client, scene, application) if e["action"] == "programme_application.refused"]
    assert event["region_code"] == HOME
    assert event["data"]["reason"] == "本年度助餐名额已满，明年再申请"
    # Refused is decided: the provider may apply again.
    assert applied(client, scene)["status"] == "pending"


@pytest.mark.parametrize("body", [{}, {"reason": " "}])
def test_refusing_without_a_reason_is_refused(client, scene, body):
    application = applied(client, scene)["id"]
    response = client.post(f"/api/v1/programme-applications/{application}/refuse", json=body, headers=scene.admin)
    assert response.status_code == 422
    assert client.get("/api/v1/programme-applications?status=pending", headers=scene.admin).get_json()["total"] == 1


def test_a_decided_application_is_not_decided_again(client, scene):
    application = applied(client, scene)["id"]
    assert client.post(f"/api/v1/programme-applications/{application}/refuse", json={"reason": "名额已满"},
                       headers=scene.admin).status_code == 200
    for action, body in (("accept", {}), ("refuse", {"reason": "再拒绝一次"})):
        response = client.post(f"/api/v1/programme-applications/{application}/{action}", json=body,
                               headers=scene.admin)
        assert response.status_code == 409
        assert error_code(response) == "invalid_transition"
    assert enrolled_programmes(client, scene) == []


def test_an_unknown_application_is_not_found(client, scene):
    response = client.post("/api/v1/programme-applications/999999/accept", json={}, headers=scene.admin)
    assert response.status_code == 404


def test_accepting_a_provider_suspended_meanwhile_is_refused_and_it_stays_pending(client, scene, build):
    application = applied(client, scene)["id"]
    build.set_provider_status(scene.newcomer, "suspend")
    response = client.post(f"/api/v1/programme-applications/{application}/accept", json={}, headers=scene.admin)
    assert response.status_code == 409
    assert error_code(response) == "provider_not_approved"
    [row] = client.get("/api/v1/programme-applications", headers=scene.admin).get_json()["items"]
    assert row["status"] == "pending"
    assert row["decided_at"] is None
    assert enrolled_programmes(client, scene) == []
    assert [event["action"] for event in events(client, scene, application)] == ["programme_application.created"]


def test_racing_decisions_have_one_winner(app, client, scene):
    application = applied(client, scene)["id"]
    admin_id = scene.world.admin.id

    def decide(index):
        actor, now = db.session.get(User, admin_id), utcnow()
        if index % 2:
            applications.refuse(application_id=application, reason="名额已满", actor=actor, now=now)
        else:
            applications.accept(application_id=application, reason=None, actor=actor, now=now)

    outcomes = race_transactions(app, decide, racers=6)
    assert outcomes.count("ok") == 1
    assert sorted(set(outcomes) - {"ok"}) == ["InvalidTransition"]
    [row] = client.get("/api/v1/programme-applications", headers=scene.admin).get_json()["items"]
    decisions = [event["action"] for event in events(client, scene, application)
                 if event["action"] != "programme_application.created"]
    assert decisions == [f"programme_application.{row['status']}"]
    assert enrolled_programmes(client, scene) == ([scene.programme.id] if row["status"] == "accepted" else [])

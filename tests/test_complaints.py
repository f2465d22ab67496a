"""Complaints over HTTP (POST /complaints, POST /complaints/{id}/resolve; GET /complaints and
GET /complaints/{id}; `complaints_count` in GET /rankings, upheld ones only). Complaints about a redemption
are about real redemptions. Every test runs on SQLite and PostgreSQL."""

from dataclasses import dataclass

import pytest

from tests.conftest import error_code
from tests.support.scenario import Builder, World

URL = "/api/v1/complaints"


@dataclass(frozen=True)
class Cast(World):
    """The standard world with this month's vouchers issued; alice chose p1 and bob chose p2 for meals, and
    each has one meal redeemed."""

    build: Builder
    alice_meal: int  # redemption ids
    bob_meal: int

    def headers(self, user):
        return self.build.headers(user)


@pytest.fixture
def cast(build):
    world = build.world()
    build.issue(world.programme)
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.bob, world.programme, world.meal, world.p2)
    return Cast(**vars(world), build=build, alice_meal=build.redeem(world.p1, world.alice, world.meal).id,
                bob_meal=build.redeem(world.p2, world.bob, world.meal).id)


@pytest.fixture
def admin(cast):
    return cast.build.admin()


def complain(client, headers, **body):
    return client.post(URL, json={"text": "送餐晚了一个小时，饭菜是凉的", **body}, headers=headers)


def filed(client, headers, **body) -> dict:
    response = complain(client, headers, **body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def resolve(client, headers, complaint_id, upheld=True, resolution="已核实，责令整改并向老人道歉"):
    return client.post(f"{URL}/{complaint_id}/resolve", json={"upheld": upheld, "resolution": resolution},
                       headers=headers)


def listed(client, headers, **query) -> list[int]:
    response = client.get(URL, query_string=query, headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["total"] == len(body["items"])
    return [item["id"] for item in body["items"]]


def complaint_count(client, admin_headers) -> int:
    return client.get(URL, headers=admin_headers).get_json()["total"]


# --- filing ---------------------------------------------------------------------------------------

def test_a_recipient_complains_about_a_provider(client, cast):
    body = filed(client, cast.headers(cast.alice.user), provider_id=cast.p1.id)

    assert {key: body[key] for key in ("provider_id", "recipient_id", "redemption_id", "status", "upheld",
                                       "resolution", "resolved_at", "text")} == {
        "provider_id": cast.p1.id, "recipient_id": cast.alice.id, "redemption_id": None, "status": "open",
        "upheld": None, "resolution": None, "resolved_at": None, "text": "送餐晚了一个小时，饭菜是凉的"}
    assert body["created_at"]


def test_a_recipient_complains_about_their_own_redemption(client, cast):
    body = filed(client, cast.headers(cast.alice.user), provider_id=cast.p1.id, redemption_id=cast.alice_meal)

    assert (body["provider_id"], body["recipient_id"], body["redemption_id"]) == (cast.p1.id, cast.alice.id,
                                                                                  cast.alice_meal)


def test_a_recipient_cannot_complain_about_someone_elses_redemption(client, cast, admin):
    # bob's meal was delivered by p2: naming p2 is consistent, but the service is not alice's.
    response = complain(client, cast.headers(cast.alice.user), provider_id=cast.p2.id, redemption_id=cast.bob_meal)

    assert response.status_code == 404
    assert error_code(response) == "not_found"
    assert complaint_count(client, cast.headers(admin)) == 0


def test_a_redemption_by_another_provider_is_not_found(client, cast, admin):
    # alice's meal was delivered by p1, not by p2.
    response = complain(client, cast.headers(cast.alice.user), provider_id=cast.p2.id, redemption_id=cast.alice_meal)

    assert response.status_code == 404
    assert error_code(response) == "not_found"
    assert complaint_count(client, cast.headers(admin)) == 0


@pytest.mark.parametrize("unknown", ["provider_id", "redemption_id"])
def test_an_unknown_provider_or_redemption_is_not_found(client, cast, admin, unknown):
    body = {"provider_id": cast.p1.id, "redemption_id": cast.alice_meal}
    body[unknown] += 1000

    response = complain(client, cast.headers(cast.alice.user), **body)

    assert response.status_code == 404
    assert complaint_count(client, cast.headers(admin)) == 0


def test_a_recipient_always_complains_in_their_own_name(client, cast):
    body = filed(client, cast.headers(cast.alice.user), provider_id=cast.p2.id, recipient_id=cast.bob.id)

    assert body["recipient_id"] == cast.alice.id


def test_an_admin_files_a_complaint_for_a_recipient(client, cast, admin):
    body = filed(client, cast.headers(admin), provider_id=cast.p1.id, recipient_id=cast.alice.id,
                 text="电话回访：老人反映服务人员态度不好")

    assert (body["provider_id"], body["recipient_id"], body["redemption_id"], body["status"]) == (
        cast.p1.id, cast.alice.id, None, "open")


def test_an_admin_filing_about_a_redemption_files_it_for_that_redemptions_recipient(client, cast, admin):
    body = filed(client, cast.headers(admin), provider_id=cast.p2.id, redemption_id=cast.bob_meal)

    assert (body["recipient_id"], body["redemption_id"]) == (cast.bob.id, cast.bob_meal)


def test_an_admin_cannot_tie_a_redemption_to_another_recipient(client, cast, admin):
    response = complain(client, cast.headers(admin), provider_id=cast.p2.id, redemption_id=cast.bob_meal,
                        recipient_id=cast.alice.id)

    assert response.status_code == 404
    assert complaint_count(client, cast.headers(admin)) == 0


def test_an_admin_may_file_about_a_provider_without_naming_a_recipient(client, cast, admin):
    body = filed(client, cast.headers(admin), provider_id=cast.p1.id, text="社区反映：服务站点长期无人值守")

    assert (body["recipient_id"], body["redemption_id"]) == (None, None)


def test_an_admin_naming_an_unknown_recipient_is_not_found(client, cast, admin):
    response = complain(client, cast.headers(admin), provider_id=cast.p1.id, recipient_id=cast.bob.id + 1000)

    assert response.status_code == 404
    assert complaint_count(client, cast.headers(admin)) == 0


@pytest.mark.parametrize("role", ["provider", "auditor"])
def test_providers_and_auditors_cannot_file_complaints(client, cast, admin, role):
    user = cast.p2.user if role == "provider" else cast.build.auditor()

    response = complain(client, cast.headers(user), provider_id=cast.p1.id)

    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert complaint_count(client, cast.headers(admin)) == 0


def test_anonymous_complaints_are_unauthenticated(client, cast):
    response = complain(client, {}, provider_id=cast.p1.id)

    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


@pytest.mark.parametrize(("field", "body"), [
    ("text", {"text": ""}), ("text", {"text": "投" * 2001}), ("text", {"text": None}),
    ("provider_id", {"provider_id": None}), ("provider_id", {"provider_id": "1"}),
    ("redemption_id", {"redemption_id": "1"}),
], ids=["empty-text", "long-text", "null-text", "no-provider", "string-provider", "string-redemption"])
def test_a_malformed_complaint_is_a_validation_error(client, cast, admin, field, body):
    response = complain(client, cast.headers(cast.alice.user), **{"provider_id": cast.p1.id, **body})

    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]["fields"]
    assert complaint_count(client, cast.headers(admin)) == 0


# --- who sees which complaints --------------------------------------------------------------------

def test_each_role_lists_the_complaints_it_may_see(client, cast, admin):
    alice, bob = cast.headers(cast.alice.user), cast.headers(cast.bob.user)
    about_p1 = filed(client, alice, provider_id=cast.p1.id, redemption_id=cast.alice_meal)["id"]
    about_p2 = filed(client, bob, provider_id=cast.p2.id)["id"]
    for_bob_about_p1 = filed(client, cast.headers(admin), provider_id=cast.p1.id, recipient_id=cast.bob.id)["id"]
    auditor = cast.headers(cast.build.auditor())

    everything = [for_bob_about_p1, about_p2, about_p1]  # newest first
    assert listed(client, cast.headers(admin)) == everything
    assert listed(client, auditor) == everything
    assert listed(client, cast.headers(cast.p1.user)) == [for_bob_about_p1, about_p1]
    assert listed(client, cast.headers(cast.p2.user)) == [about_p2]
    assert listed(client, alice) == [about_p1]
    assert listed(client, bob) == [for_bob_about_p1, about_p2]
    # A provider cannot widen its view with the filter.
    assert listed(client, cast.headers(cast.p2.user), provider_id=cast.p1.id) == []
    assert listed(client, cast.headers(admin), provider_id=cast.p1.id) == [for_bob_about_p1, about_p1]


def test_one_complaint_is_visible_only_to_those_who_may_see_it(client, cast, admin):
    complaint = filed(client, cast.headers(cast.alice.user), provider_id=cast.p1.id)["id"]
    auditor = cast.build.auditor()

    for user in (admin, auditor, cast.p1.user, cast.alice.user):
        response = client.get(f"{URL}/{complaint}", headers=cast.headers(user))
        assert response.status_code == 200, (user.role, response.get_json())
        assert response.get_json()["id"] == complaint
    for user in (cast.p2.user, cast.bob.user):
        response = client.get(f"{URL}/{complaint}", headers=cast.headers(user))
        assert response.status_code == 404, user.role
        assert error_code(response) == "not_found"
    assert client.get(f"{URL}/{complaint}").status_code == 401
    assert client.get(URL).status_code == 401


def test_the_list_filters_by_status(client, cast, admin):
    headers = cast.headers(admin)
    first = filed(client, headers, provider_id=cast.p1.id)["id"]
    second = filed(client, headers, provider_id=cast.p2.id)["id"]
    assert resolve(client, headers, first).status_code == 200

    assert listed(client, headers, status="open") == [second]
    assert listed(client, headers, status="resolved") == [first]


# --- resolution -----------------------------------------------------------------------------------

@pytest.mark.parametrize("upheld", [True, False], ids=["upheld", "not-upheld"])
def test_an_admin_resolves_a_complaint(client, cast, admin, upheld):
    complaint = filed(client, cast.headers(cast.alice.user), provider_id=cast.p1.id, redemption_id=cast.alice_meal)

    response = resolve(client, cast.headers(admin), complaint["id"], upheld=upheld, resolution="经核查，情况属实")

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["status"], body["upheld"], body["resolution"]) == ("resolved", upheld, "经核查，情况属实")
    assert body["resolved_at"] is not None
    again = client.get(f"{URL}/{complaint['id']}", headers=cast.headers(cast.alice.user)).get_json()
    assert (again["status"], again["upheld"]) == ("resolved", upheld)


def test_a_complaint_is_resolved_once(client, cast, admin):
    complaint = filed(client, cast.headers(cast.alice.user), provider_id=cast.p1.id)["id"]
    assert resolve(client, cast.headers(admin), complaint, upheld=True).status_code == 200

    response = resolve(client, cast.headers(cast.build.admin()), complaint, upheld=False, resolution="改判：不成立")

    assert response.status_code == 409
    assert error_code(response) == "invalid_transition"
    stored = client.get(f"{URL}/{complaint}", headers=cast.headers(admin)).get_json()
    assert (stored["upheld"], stored["resolution"]) == (True, "已核实，责令整改并向老人道歉")


@pytest.mark.parametrize("who", ["provider-concerned", "recipient", "auditor"])
def test_only_an_admin_resolves_complaints(client, cast, admin, who):
    complaint = filed(client, cast.headers(cast.alice.user), provider_id=cast.p1.id)["id"]
    user = {"provider-concerned": cast.p1.user, "recipient": cast.alice.user,
            "auditor": cast.build.auditor()}[who]

    response = resolve(client, cast.headers(user), complaint, upheld=False)

    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert client.get(f"{URL}/{complaint}", headers=cast.headers(admin)).get_json()["status"] == "open"


def test_anonymous_resolution_is_unauthenticated(client, cast):
    complaint = filed(client, cast.headers(cast.alice.user), provider_id=cast.p1.id)["id"]

    response = resolve(client, {}, complaint)

    assert response.status_code == 401


def test_resolving_an_unknown_complaint_is_not_found(client, cast, admin):
    response = resolve(client, cast.headers(admin), 4242)

    assert response.status_code == 404
    assert error_code(response) == "not_found"


@pytest.mark.parametrize(("field", "body"), [
    ("upheld", {"resolution": "已核实"}), ("resolution", {"upheld": True}),
    ("resolution", {"upheld": True, "resolution": "好"}), ("upheld", {"upheld": "maybe", "resolution": "已核实"}),
], ids=["no-upheld", "no-resolution", "short-resolution", "bad-upheld"])
def test_a_resolution_names_the_outcome_and_explains_it(client, cast, admin, field, body):
    complaint = filed(client, cast.headers(cast.alice.user), provider_id=cast.p1.id)["id"]

    response = client.post(f"{URL}/{complaint}/resolve", json=body, headers=cast.headers(admin))

    assert response.status_code == 422
    assert field in response.get_json()["error"]["details"]["fields"]
    assert client.get(f"{URL}/{complaint}", headers=cast.headers(admin)).get_json()["status"] == "open"


# --- audit and ranking ----------------------------------------------------------------------------

def test_filing_and_resolving_are_audited(client, cast, admin):
    complaint = filed(client, cast.headers(cast.alice.user), provider_id=cast.p1.id, redemption_id=cast.alice_meal)
    assert resolve(client, cast.headers(admin), complaint["id"], upheld=False).status_code == 200

    response = client.get("/api/v1/audit", query_string={"entity": "provider", "entity_id": cast.p1.id},
                          headers=cast.headers(cast.build.auditor()))
    events = {event["action"]: event for event in response.get_json()["items"]
              if event["action"].startswith("complaint.")}

    assert events["complaint.filed"]["actor"] == cast.alice.user.username
    assert events["complaint.filed"]["data"] == {"complaint_id": complaint["id"], "redemption_id": cast.alice_meal}
    assert events["complaint.resolved"]["actor"] == admin.username
    assert events["complaint.resolved"]["data"] == {"complaint_id": complaint["id"], "upheld": False}
    verify = client.get("/api/v1/audit/verify", headers=cast.headers(admin)).get_json()
    assert verify["ok"] is True


def test_rankings_count_only_upheld_complaints_against_a_provider(client, cast, admin):
    p3 = cast.build.provider(items=[cast.meal], enrol_in=[cast.programme], login=False)
    alice, bob, staff = cast.headers(cast.alice.user), cast.headers(cast.bob.user), cast.headers(admin)
    not_upheld = filed(client, alice, provider_id=cast.p1.id, redemption_id=cast.alice_meal)["id"]
    upheld = filed(client, staff, provider_id=cast.p1.id, recipient_id=cast.bob.id)["id"]
    filed(client, bob, provider_id=cast.p1.id)  # open: one person's word, not counted yet
    filed(client, bob, provider_id=cast.p2.id)
    assert resolve(client, staff, not_upheld, upheld=False).status_code == 200
    assert resolve(client, staff, upheld, upheld=True).status_code == 200

    rows = client.get("/api/v1/rankings", query_string={"item_code": cast.meal}).get_json()["items"]

    assert {row["provider_id"]: row["complaints_count"] for row in rows} == {cast.p1.id: 1, cast.p2.id: 0, p3.id: 0}


# --- region-scoped admins -------------------------------------------------------------------------

def test_a_region_scoped_admin_lists_and_reads_only_complaints_in_their_region(client, cast, admin):
    about_alice = filed(client, cast.headers(cast.alice.user), provider_id=cast.p1.id)["id"]
    about_p2 = filed(client, cast.headers(admin), provider_id=cast.p2.id)["id"]  # no recipient; p2 serves 510131
    county, city, neighbour = (cast.build.admin(region_code=code) for code in ("510131", "510100", "510132"))

    assert listed(client, cast.headers(county)) == [about_p2, about_alice]
    assert listed(client, cast.headers(city)) == [about_p2, about_alice]
    assert listed(client, cast.headers(neighbour)) == []
    for complaint in (about_alice, about_p2):
        assert client.get(f"{URL}/{complaint}", headers=cast.headers(county)).status_code == 200
        response = client.get(f"{URL}/{complaint}", headers=cast.headers(neighbour))
        assert response.status_code == 403
        assert error_code(response) == "forbidden"


def test_a_region_scoped_admin_resolves_only_complaints_in_their_region(client, cast, admin):
    complaint = filed(client, cast.headers(cast.alice.user), provider_id=cast.p1.id)["id"]
    neighbour, county = cast.build.admin(region_code="510132"), cast.build.admin(region_code="510131")

    refused = resolve(client, cast.headers(neighbour), complaint, upheld=False)
    assert refused.status_code == 403
    assert error_code(refused) == "forbidden"
    assert client.get(f"{URL}/{complaint}", headers=cast.headers(admin)).get_json()["status"] == "open"

    assert resolve(client, cast.headers(county), complaint).status_code == 200


def test_a_region_scoped_admin_files_complaints_only_inside_their_region(client, cast, admin):
    neighbour = cast.headers(cast.build.admin(region_code="510132"))

    for body in ({"provider_id": cast.p1.id, "recipient_id": cast.alice.id},
                 {"provider_id": cast.p1.id, "redemption_id": cast.alice_meal},
                 {"provider_id": cast.p1.id}):  # p1 serves 510131 only
        response = complain(client, neighbour, **body)
        assert response.status_code == 403, body
        assert error_code(response) == "forbidden"
    assert complaint_count(client, cast.headers(admin)) == 0

    county = cast.headers(cast.build.admin(region_code="510131"))
    assert complain(client, county, provider_id=cast.p1.id, recipient_id=cast.alice.id).status_code == 201

"""Providers over HTTP (docs/domain.md#life-cycles and rule 5; POST /programmes/{id}/providers): registration,
qualification decisions, who sees which provider, and programme enrolment. Every test runs on SQLite and PostgreSQL."""

from itertools import count

import pytest

from marketplace.db import transaction, utcnow
from marketplace.recipients import service as recipient_service
from tests.conftest import PASSWORD, error_code
from tests.test_creditcode import PUBLISHED_EXAMPLE, make_credit_code
from tests.test_idnumber import make_id_number

URL = "/api/v1/providers"
MEAL, BATH, CLEAN = "HC-MEAL", "HC-BATH", "HC-CLEAN"
ACTIONS = ("approve", "suspend", "reinstate", "revoke")
STATUSES = ("pending", "approved", "suspended", "revoked")
# How a freshly registered (pending) provider reaches each status.
PATH_TO = {"pending": (), "approved": ("approve",), "suspended": ("approve", "suspend"), "revoked": ("revoke",)}
# The qualification workflow of docs/domain.md#life-cycles: (status, action) → new status; every other pair is
# impossible.
ALLOWED = {("pending", "approve"): "approved", ("approved", "suspend"): "suspended",
           ("suspended", "reinstate"): "approved", ("pending", "revoke"): "revoked",
           ("approved", "revoke"): "revoked", ("suspended", "revoke"): "revoked"}
AUDIT_ACTIONS = {"approve": "provider.approved", "suspend": "provider.suspended",
                 "reinstate": "provider.reinstated", "revoke": "provider.revoked"}

_serial = count(1)


def new_credit_code() -> str:
    """A valid, never used credit code (a 民政 social organisation in the demo county)."""
    return make_credit_code("5", "2", "510131", f"MA{next(_serial):06d}")


def provider_body(**overrides) -> dict:
    body = {"name": "蒲江县鹤山街道社区养老服务中心", "kind": "social_organisation", "credit_code": new_credit_code(),
            "legal_representative": "张建华", "phone": "028-88550001", "address": "四川省成都市蒲江县鹤山街道",
            "region_codes": ["510131"], "item_codes": [MEAL, BATH], "capacity": 2000}
    return {**body, **overrides}


def account(username: str | None = None) -> dict:
    return {"username": username or f"staff-{next(_serial)}", "password": PASSWORD}


def register(client, headers=None, **overrides):
    return client.post(URL, json=provider_body(**overrides), headers=headers or {})


def registered(client, headers=None, **overrides) -> dict:
    response = register(client, headers, **overrides)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def decide(client, headers, provider_id: int, action: str, reason: str = "资质审核通过"):
    return client.post(f"{URL}/{provider_id}/{action}", json={"reason": reason}, headers=headers)


def provider_in(client, headers, status: str, **overrides) -> dict:
    """Register a provider (as admin) and take it to *status*."""
    provider = registered(client, headers, **overrides)
    for action in PATH_TO[status]:
        response = decide(client, headers, provider["id"], action)
        assert response.status_code == 200, response.get_json()
        provider = response.get_json()
    assert provider["status"] == status
    return provider


def listed_ids(client, headers=None, **query) -> list[int]:
    response = client.get(URL, query_string=query, headers=headers or {})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["total"] == len(body["items"])
    return [item["id"] for item in body["items"]]


def login(client, username: str) -> dict:
    response = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def items(make_item):
    return [make_item(code=code).code for code in (MEAL, BATH, CLEAN)]


@pytest.fixture
def admin(make_user, items):
    return make_user(role="admin")


@pytest.fixture
def admin_headers(admin, auth):
    return auth(admin)


@pytest.fixture
def staff_headers(make_user, auth):
    """Headers for a login of the provider *provider_id*: `staff_headers(provider_id)`."""
    return lambda provider_id: auth(make_user(role="provider", provider_id=provider_id))


@pytest.fixture
def recipient_user(app, make_user):
    with app.app_context(), transaction():
        recipient = recipient_service.create_recipient(
            name="王秀英", id_number=make_id_number(), phone=None, region_code="510131", address=None, tags=[],
            actor=None, now=utcnow())
    return make_user(role="recipient", recipient_id=recipient.id)


# --- registration ---------------------------------------------------------------------------------

def test_self_registration_creates_a_pending_provider_whose_account_logs_in_as_its_staff(client, items):
    body = provider_body(account=account("heshan-centre"))
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.get_json()
    provider = response.get_json()
    assert provider["status"] == "pending"
    for field in ("name", "kind", "credit_code", "legal_representative", "phone", "address", "capacity"):
        assert provider[field] == body[field]
    assert provider["region_codes"] == ["510131"]
    assert sorted(provider["item_codes"]) == [BATH, MEAL]
    assert "account" not in provider
    assert "password" not in str(provider)

    token = login(client, "heshan-centre")
    assert token["user"]["role"] == "provider"
    assert token["user"]["provider_id"] == provider["id"]
    headers = {"Authorization": f"Bearer {token['token']}"}
    me = client.get("/api/v1/me", headers=headers).get_json()
    assert (me["role"], me["provider_id"]) == ("provider", provider["id"])
    own = client.get(f"{URL}/{provider['id']}", headers=headers)
    assert own.status_code == 200
    assert own.get_json()["status"] == "pending"


def test_an_admin_registers_a_provider_without_an_account(client, admin_headers):
    provider = registered(client, admin_headers)
    assert provider["status"] == "pending"
    assert client.post("/api/v1/auth/token", json={"username": "nobody", "password": PASSWORD}).status_code == 401


def test_an_admin_registers_a_provider_with_its_first_account(client, admin_headers):
    provider = registered(client, admin_headers, account=account("leling-staff"))
    user = login(client, "leling-staff")["user"]
    assert (user["role"], user["provider_id"]) == ("provider", provider["id"])


def test_the_registration_is_audited_and_recorded_as_the_first_status_change(client, admin, admin_headers):
    provider = registered(client, admin_headers)
    events = client.get("/api/v1/audit", query_string={"entity": "provider", "entity_id": provider["id"]},
                        headers=admin_headers).get_json()["items"]
    assert [event["action"] for event in events] == ["provider.registered"]
    assert events[0]["data"]["credit_code"] == provider["credit_code"]
    history = client.get(f"{URL}/{provider['id']}/status-history", headers=admin_headers).get_json()
    assert [(h["from_status"], h["to_status"], h["actor_id"]) for h in history] == [(None, "pending", admin.id)]


def test_registration_asks_for_no_founding_date(client, app):
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    create = next(schema for name, schema in schemas.items()
                  if name.startswith("ProviderCreate") and "credit_code" in schema.get("properties", {}))
    assert set(create["required"]) == {"name", "kind", "credit_code", "legal_representative", "phone", "address",
                                       "region_codes", "item_codes", "capacity"}
    assert not [name for name in create["properties"] if "found" in name or "establish" in name]


def test_a_provider_registered_with_a_lower_case_code_stores_it_in_upper_case(client, admin_headers):
    code = new_credit_code()
    provider = registered(client, admin_headers, credit_code=code.lower())
    assert provider["credit_code"] == code


def test_the_real_published_example_code_registers(client, admin_headers):
    assert registered(client, admin_headers, credit_code=PUBLISHED_EXAMPLE)["credit_code"] == PUBLISHED_EXAMPLE


@pytest.mark.parametrize(("credit_code", "part"), [
    ("91350100M000100Y4", "length"),
    ("91350100M000100Y4I", "characters"),
    ("B1350100M000100Y43", "authority"),
    (make_credit_code("9", "9"), "organisation_type"),
    (make_credit_code(region="003501"), "region"),
    ("91350100M000100Y53", "organisation_code"),
    ("91350100M000100Y44", "check_character"),
])
def test_an_invalid_credit_code_is_refused_naming_the_part(client, admin_headers, credit_code, part):
    response = register(client, admin_headers, credit_code=credit_code)
    assert response.status_code == 422
    assert error_code(response) == "invalid_credit_code"
    details = response.get_json()["error"]["details"]
    assert details["part"] == part
    assert details["fields"]["credit_code"]
    assert listed_ids(client, admin_headers) == []


def test_an_anonymous_registration_with_an_invalid_code_is_refused_too(client, items):
    response = register(client, credit_code="91350100M000100Y44", account=account())
    assert (response.status_code, error_code(response)) == (422, "invalid_credit_code")
    assert response.get_json()["error"]["details"]["part"] == "check_character"


def test_a_second_provider_with_the_same_code_is_a_duplicate_in_either_case(client, admin_headers):
    code = new_credit_code()
    first = registered(client, admin_headers, credit_code=code)
    for variant in (code, code.lower(), f" {code} "):
        response = register(client, admin_headers, credit_code=variant, name="另一家机构")
        assert (response.status_code, error_code(response)) == (409, "duplicate_provider")
    assert listed_ids(client, admin_headers) == [first["id"]]


def test_a_duplicate_self_registration_creates_no_account(client, admin_headers):
    code = new_credit_code()
    registered(client, admin_headers, credit_code=code)
    response = register(client, credit_code=code, account=account("late-comer"))
    assert (response.status_code, error_code(response)) == (409, "duplicate_provider")
    assert client.post("/api/v1/auth/token",
                       json={"username": "late-comer", "password": PASSWORD}).status_code == 401


def test_a_self_registration_with_a_taken_username_leaves_no_provider_behind(client, admin_headers, make_user):
    make_user(role="admin", username="taken-name")
    response = register(client, account=account("taken-name"))
    assert (response.status_code, error_code(response)) == (409, "duplicate_username")
    assert listed_ids(client, admin_headers) == []


def test_a_self_registration_whose_account_is_refused_leaves_no_provider_behind(client, admin_headers):
    response = register(client, account={"username": "short-pw", "password": "short"})
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert "password" in response.get_json()["error"]["details"]["fields"]
    assert listed_ids(client, admin_headers) == []


@pytest.mark.parametrize(("overrides", "field"), [
    ({"kind": "charity"}, "kind"),
    ({"kind": "Enterprise"}, "kind"),
    ({"item_codes": [MEAL, "HC-UNKNOWN"]}, "item_codes"),
    ({"item_codes": []}, "item_codes"),
    ({"region_codes": ["51013"]}, "region_codes"),
    ({"region_codes": ["51013X"]}, "region_codes"),
    ({"region_codes": ["991234"]}, "region_codes"),
    ({"region_codes": []}, "region_codes"),
    ({"capacity": 0}, "capacity"),
    ({"capacity": -5}, "capacity"),
    ({"capacity": "100"}, "capacity"),
    ({"phone": "12345"}, "phone"),
    ({"name": ""}, "name"),
])
def test_invalid_registration_fields_are_refused_with_422_naming_the_field(client, admin_headers, overrides, field):
    response = register(client, admin_headers, **overrides)
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert field in response.get_json()["error"]["details"]["fields"]
    assert listed_ids(client, admin_headers) == []


def test_an_item_outside_the_catalogue_is_named_in_the_refusal(client, admin_headers):
    response = register(client, admin_headers, item_codes=[MEAL, "HC-UNKNOWN"])
    assert "HC-UNKNOWN" in response.get_json()["error"]["details"]["fields"]["item_codes"][0]


@pytest.mark.parametrize("account_value", [None, {}])
def test_a_self_registration_without_an_account_is_refused(client, admin_headers, account_value):
    body = provider_body(account=account_value) if account_value is not None else provider_body()
    response = client.post(URL, json=body)
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert "account" in response.get_json()["error"]["details"]["fields"]
    assert listed_ids(client, admin_headers) == []


def test_a_logged_in_recipient_may_not_register_a_provider(client, auth, recipient_user, admin_headers):
    response = register(client, auth(recipient_user), account=account())
    assert (response.status_code, error_code(response)) == (403, "forbidden")
    assert listed_ids(client, admin_headers) == []


def test_a_providers_staff_may_not_register_another_provider(client, admin_headers, staff_headers):
    own = registered(client, admin_headers)
    response = register(client, staff_headers(own["id"]), account=account())
    assert (response.status_code, error_code(response)) == (403, "forbidden")
    assert listed_ids(client, admin_headers) == [own["id"]]


def test_a_region_scoped_admin_registers_only_providers_serving_their_region(client, make_user, auth,
                                                                               admin_headers):
    county_admin = auth(make_user(role="admin", region_code="510131"))
    outside = register(client, county_admin, region_codes=["510132"])
    assert (outside.status_code, error_code(outside)) == (403, "forbidden")
    inside = registered(client, county_admin, region_codes=["510131", "510132"])
    assert listed_ids(client, admin_headers) == [inside["id"]]


# --- qualification decisions ----------------------------------------------------------------------

# The status each action applies to (for the reason tests).
APPLIES_TO = {"approve": "pending", "suspend": "approved", "reinstate": "suspended", "revoke": "approved"}


@pytest.mark.parametrize("action", ACTIONS)
def test_every_decision_needs_a_reason(client, admin_headers, action):
    provider = provider_in(client, admin_headers, APPLIES_TO[action])
    for body in ({}, {"reason": ""}, {"reason": "  "}, {"reason": "      "}, {"reason": "\t\n \u3000"},
                 {"reason": None}):
        response = client.post(f"{URL}/{provider['id']}/{action}", json=body, headers=admin_headers)
        assert (response.status_code, error_code(response)) == (422, "validation_error"), body
        assert "reason" in response.get_json()["error"]["details"]["fields"]
    history = client.get(f"{URL}/{provider['id']}/status-history", headers=admin_headers).get_json()
    assert history[-1]["to_status"] == provider["status"] == APPLIES_TO[action]


def test_each_decision_is_audited_and_kept_in_the_status_history_with_its_reason(client, admin, admin_headers):
    provider = registered(client, admin_headers)
    steps = [("approve", "资质审核通过", "approved"), ("suspend", "投诉核查期间暂停", "suspended"),
             ("reinstate", "核查完毕恢复", "approved"), ("revoke", "弄虚作假，取消资格", "revoked")]
    for action, reason, status in steps:
        response = decide(client, admin_headers, provider["id"], action, reason)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["status"] == status
        assert response.get_json()["status_reason"] == reason

    events = client.get("/api/v1/audit", query_string={"entity": "provider", "entity_id": provider["id"]},
                        headers=admin_headers).get_json()["items"]
    decisions = [(e["action"], e["data"]["from"], e["data"]["to"], e["data"]["reason"], e["actor"])
                 for e in sorted(events, key=lambda e: e["id"]) if e["action"] != "provider.registered"]
    assert decisions == [
        ("provider.approved", "pending", "approved", "资质审核通过", admin.username),
        ("provider.suspended", "approved", "suspended", "投诉核查期间暂停", admin.username),
        ("provider.reinstated", "suspended", "approved", "核查完毕恢复", admin.username),
        ("provider.revoked", "approved", "revoked", "弄虚作假，取消资格", admin.username),
    ]

    history = client.get(f"{URL}/{provider['id']}/status-history", headers=admin_headers).get_json()
    assert [(h["from_status"], h["to_status"], h["reason"], h["actor_id"]) for h in history] == [
        (None, "pending", history[0]["reason"], admin.id),
        ("pending", "approved", "资质审核通过", admin.id),
        ("approved", "suspended", "投诉核查期间暂停", admin.id),
        ("suspended", "approved", "核查完毕恢复", admin.id),
        ("approved", "revoked", "弄虚作假，取消资格", admin.id),
    ]
    verify = client.get("/api/v1/audit/verify", headers=admin_headers).get_json()
    assert verify["ok"] is True


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", ACTIONS)
def test_the_transition_matrix_allows_only_the_workflow_and_refuses_the_rest_with_409(client, admin_headers,
                                                                                     status, action):
    provider = provider_in(client, admin_headers, status)
    history_before = client.get(f"{URL}/{provider['id']}/status-history", headers=admin_headers).get_json()
    response = decide(client, admin_headers, provider["id"], action, "按规定处理")
    history = client.get(f"{URL}/{provider['id']}/status-history", headers=admin_headers).get_json()
    current = client.get(f"{URL}/{provider['id']}", headers=admin_headers).get_json()["status"]
    if (status, action) in ALLOWED:
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["status"] == current == ALLOWED[(status, action)]
        assert history[len(history_before):] == [{**history[-1], "from_status": status,
                                                  "to_status": ALLOWED[(status, action)], "reason": "按规定处理"}]
    else:
        assert (response.status_code, error_code(response)) == (409, "invalid_transition")
        assert current == status
        assert history == history_before


def test_an_impossible_transition_is_not_audited(client, admin_headers):
    provider = provider_in(client, admin_headers, "revoked")
    query = {"entity": "provider", "entity_id": provider["id"]}
    before = client.get("/api/v1/audit", query_string=query, headers=admin_headers).get_json()["total"]
    for action in ACTIONS:
        assert decide(client, admin_headers, provider["id"], action).status_code == 409
    assert client.get("/api/v1/audit", query_string=query, headers=admin_headers).get_json()["total"] == before


@pytest.mark.parametrize("role", ["auditor", "provider", "recipient"])
def test_only_admins_decide_on_qualification(client, auth, make_user, admin_headers, recipient_user, role):
    provider = provider_in(client, admin_headers, "pending")
    if role == "recipient":
        headers = auth(recipient_user)
    elif role == "provider":
        headers = auth(make_user(role="provider", provider_id=provider["id"]))
    else:
        headers = auth(make_user(role=role))
    for action in ACTIONS:
        response = decide(client, headers, provider["id"], action)
        assert (response.status_code, error_code(response)) == (403, "forbidden"), action
    assert client.get(f"{URL}/{provider['id']}", headers=admin_headers).get_json()["status"] == "pending"


def test_anonymous_decisions_are_refused_with_401(client, admin_headers):
    provider = provider_in(client, admin_headers, "pending")
    for action in ACTIONS:
        for body in ({"reason": "资质审核通过"}, {}):
            response = client.post(f"{URL}/{provider['id']}/{action}", json=body)
            assert (response.status_code, error_code(response)) == (401, "unauthenticated")
    assert client.get(f"{URL}/{provider['id']}", headers=admin_headers).get_json()["status"] == "pending"


def test_a_decision_on_an_unknown_provider_is_404(client, admin_headers):
    for action in ACTIONS:
        response = decide(client, admin_headers, 999_999, action)
        assert (response.status_code, error_code(response)) == (404, "not_found")


def test_a_region_scoped_admin_decides_only_on_providers_serving_their_region(client, make_user, auth,
                                                                              admin_headers):
    provider = provider_in(client, admin_headers, "pending", region_codes=["510132"])
    other_county = auth(make_user(role="admin", region_code="510131"))
    response = decide(client, other_county, provider["id"], "approve")
    assert (response.status_code, error_code(response)) == (403, "forbidden")
    own_county = auth(make_user(role="admin", region_code="510132"))
    assert decide(client, own_county, provider["id"], "approve").get_json()["status"] == "approved"


# --- who sees which provider ----------------------------------------------------------------------

def test_the_public_list_shows_approved_providers_only(client, admin_headers):
    providers = {status: provider_in(client, admin_headers, status) for status in STATUSES}
    assert listed_ids(client) == [providers["approved"]["id"]]
    for status in STATUSES:  # the status filter is for admins and auditors; the public still sees approved only
        assert listed_ids(client, status=status) == [providers["approved"]["id"]]


def test_admins_and_auditors_see_every_provider_and_filter_by_status(client, admin_headers, make_user, auth):
    providers = {status: provider_in(client, admin_headers, status) for status in STATUSES}
    auditor_headers = auth(make_user(role="auditor"))
    for headers in (admin_headers, auditor_headers):
        assert listed_ids(client, headers) == sorted(provider["id"] for provider in providers.values())
        for status in STATUSES:
            assert listed_ids(client, headers, status=status) == [providers[status]["id"]]


def test_admins_filter_by_kind_and_item(client, admin_headers):
    enterprise = provider_in(client, admin_headers, "pending", kind="enterprise", item_codes=[MEAL])
    hospital = provider_in(client, admin_headers, "approved", kind="public_institution", item_codes=[BATH, CLEAN])
    assert listed_ids(client, admin_headers, kind="enterprise") == [enterprise["id"]]
    assert listed_ids(client, admin_headers, kind="public_institution") == [hospital["id"]]
    assert listed_ids(client, admin_headers, kind="rural_collective") == []
    assert listed_ids(client, admin_headers, item_code=MEAL) == [enterprise["id"]]
    assert listed_ids(client, admin_headers, item_code=CLEAN) == [hospital["id"]]
    assert listed_ids(client, admin_headers, item_code="HC-UNKNOWN") == []
    assert listed_ids(client, admin_headers, kind="enterprise", item_code=CLEAN) == []
    assert listed_ids(client, kind="enterprise") == []  # the public sees approved ones only
    assert listed_ids(client, item_code=BATH) == [hospital["id"]]


def test_a_provider_serving_a_city_serves_its_counties_but_a_county_provider_serves_only_its_own(client,
                                                                                                 admin_headers):
    city = provider_in(client, admin_headers, "approved", region_codes=["510100"])
    county = provider_in(client, admin_headers, "approved", region_codes=["510131"])
    assert listed_ids(client, admin_headers, region_code="510131") == [city["id"], county["id"]]
    assert listed_ids(client, admin_headers, region_code="510132") == [city["id"]]
    assert listed_ids(client, admin_headers, region_code="510100") == [city["id"]]
    assert listed_ids(client, admin_headers, region_code="330106") == []
    assert listed_ids(client, region_code="510132") == [city["id"]]


def test_an_invalid_list_filter_is_refused_with_422(client, admin_headers):
    for query in ({"status": "deleted"}, {"kind": "charity"}, {"region_code": "5101"}):
        response = client.get(URL, query_string=query, headers=admin_headers)
        assert (response.status_code, error_code(response)) == (422, "validation_error"), query


def test_an_approved_provider_is_public_with_an_empty_rating_summary(client, admin_headers):
    provider = provider_in(client, admin_headers, "approved")
    response = client.get(f"{URL}/{provider['id']}")
    assert response.status_code == 200
    assert response.get_json()["rating"]["count"] == 0
    assert {"count", "mean", "bayesian", "satisfaction_rate"} <= set(response.get_json()["rating"])
    listed = client.get(URL).get_json()["items"]
    assert [item["rating"]["count"] for item in listed] == [0]


@pytest.mark.parametrize("status", ["suspended", "revoked"])
def test_a_suspended_or_revoked_provider_disappears_from_public_view_but_not_from_admins_or_its_staff(
        client, admin_headers, staff_headers, status):
    provider = provider_in(client, admin_headers, "approved")
    staff = staff_headers(provider["id"])
    assert listed_ids(client) == [provider["id"]]
    action = "suspend" if status == "suspended" else "revoke"
    assert decide(client, admin_headers, provider["id"], action).status_code == 200

    assert listed_ids(client) == []
    public = client.get(f"{URL}/{provider['id']}")
    assert (public.status_code, error_code(public)) == (404, "not_found")
    assert client.get(f"{URL}/{provider['id']}", headers=admin_headers).get_json()["status"] == status
    own = client.get(f"{URL}/{provider['id']}", headers=staff)
    assert (own.status_code, own.get_json()["status"]) == (200, status)
    history = client.get(f"{URL}/{provider['id']}/status-history", headers=staff)
    assert history.status_code == 200
    assert history.get_json()[-1]["to_status"] == status
    assert client.get(f"{URL}/{provider['id']}/enrolments", headers=staff).status_code == 200


def test_the_staff_of_a_suspended_provider_can_still_log_in(client, admin_headers):
    provider = registered(client, admin_headers, account=account("still-here"))
    decide(client, admin_headers, provider["id"], "approve")
    decide(client, admin_headers, provider["id"], "suspend")
    assert login(client, "still-here")["user"]["provider_id"] == provider["id"]


def test_a_pending_provider_is_404_for_the_public_and_other_providers_staff(client, admin_headers, staff_headers):
    pending = provider_in(client, admin_headers, "pending")
    other = provider_in(client, admin_headers, "approved")
    for headers in ({}, staff_headers(other["id"])):
        response = client.get(f"{URL}/{pending['id']}", headers=headers)
        assert (response.status_code, error_code(response)) == (404, "not_found")
    assert client.get(f"{URL}/{pending['id']}", headers=admin_headers).status_code == 200
    assert client.get(f"{URL}/{pending['id']}", headers=staff_headers(pending["id"])).status_code == 200


def test_a_providers_staff_see_nothing_of_another_providers_history_or_enrolments(client, admin_headers,
                                                                                 staff_headers):
    own = provider_in(client, admin_headers, "approved")
    other = provider_in(client, admin_headers, "approved")
    staff = staff_headers(own["id"])
    assert client.get(f"{URL}/{other['id']}", headers=staff).status_code == 200  # approved ones are public
    for path in ("status-history", "enrolments"):
        response = client.get(f"{URL}/{other['id']}/{path}", headers=staff)
        assert (response.status_code, error_code(response)) == (404, "not_found"), path
        assert client.get(f"{URL}/{own['id']}/{path}", headers=staff).status_code == 200


def test_status_history_and_enrolments_need_a_login_and_are_not_for_recipients(client, admin_headers, auth,
                                                                               recipient_user):
    provider = provider_in(client, admin_headers, "approved")
    recipient = auth(recipient_user)
    for path in ("status-history", "enrolments"):
        anonymous = client.get(f"{URL}/{provider['id']}/{path}")
        assert (anonymous.status_code, error_code(anonymous)) == (401, "unauthenticated")
        refused = client.get(f"{URL}/{provider['id']}/{path}", headers=recipient)
        assert (refused.status_code, error_code(refused)) == (403, "forbidden")


def test_an_unknown_provider_is_404(client, admin_headers):
    for path in (f"{URL}/999999", f"{URL}/999999/status-history", f"{URL}/999999/enrolments"):
        response = client.get(path, headers=admin_headers)
        assert (response.status_code, error_code(response)) == (404, "not_found"), path


# --- programme enrolment --------------------------------------------------------------------------

def enrol(client, headers, programme_id: int, provider_id: int):
    return client.post(f"/api/v1/programmes/{programme_id}/providers", json={"provider_id": provider_id},
                       headers=headers)


def programme_provider_ids(client, programme_id: int, headers=None) -> list[int]:
    response = client.get(f"/api/v1/programmes/{programme_id}/providers", headers=headers or {})
    assert response.status_code == 200, response.get_json()
    return [provider["id"] for provider in response.get_json()]


@pytest.fixture
def programme(make_programme, items):
    """A draft programme in 蒲江县 (510131) buying meals and cleaning."""
    return make_programme(item_codes=[MEAL, CLEAN])


def test_an_approved_provider_offering_an_item_and_serving_the_region_is_enrolled(client, admin, admin_headers,
                                                                                  programme, staff_headers):
    provider = provider_in(client, admin_headers, "approved", item_codes=[MEAL, BATH])
    response = enrol(client, admin_headers, programme.id, provider["id"])
    assert response.status_code == 201, response.get_json()
    enrolment = response.get_json()
    assert (enrolment["programme_id"], enrolment["provider_id"]) == (programme.id, provider["id"])
    assert enrolment["enrolled_at"]

    assert programme_provider_ids(client, programme.id) == [provider["id"]]
    own = client.get(f"{URL}/{provider['id']}/enrolments", headers=staff_headers(provider["id"])).get_json()
    assert [(e["id"], e["programme_id"]) for e in own] == [(enrolment["id"], programme.id)]
    events = client.get("/api/v1/audit", query_string={"entity": "programme", "entity_id": programme.id},
                        headers=admin_headers).get_json()["items"]
    enrolled = [e for e in events if e["action"] == "programme.provider_enrolled"]
    assert len(enrolled) == 1
    assert enrolled[0]["data"]["provider_id"] == provider["id"]
    assert enrolled[0]["actor"] == admin.username


@pytest.mark.parametrize("status", ["pending", "suspended", "revoked"])
def test_only_an_approved_provider_is_enrolled(client, admin_headers, programme, status):
    provider = provider_in(client, admin_headers, status, item_codes=[MEAL])
    response = enrol(client, admin_headers, programme.id, provider["id"])
    assert (response.status_code, error_code(response)) == (409, "provider_not_approved")
    assert programme_provider_ids(client, programme.id, admin_headers) == []


def test_a_provider_offering_none_of_the_programmes_items_is_refused(client, admin_headers, programme):
    provider = provider_in(client, admin_headers, "approved", item_codes=[BATH])
    response = enrol(client, admin_headers, programme.id, provider["id"])
    assert (response.status_code, error_code(response)) == (422, "no_matching_items")
    assert programme_provider_ids(client, programme.id, admin_headers) == []


def test_a_provider_serving_no_region_inside_the_programmes_region_is_refused(client, admin_headers, programme):
    provider = provider_in(client, admin_headers, "approved", item_codes=[MEAL], region_codes=["510132", "330106"])
    response = enrol(client, admin_headers, programme.id, provider["id"])
    assert (response.status_code, error_code(response)) == (422, "no_matching_regions")
    assert programme_provider_ids(client, programme.id, admin_headers) == []


def test_a_provider_serving_the_whole_city_is_enrolled_in_a_county_programme(client, admin_headers, programme):
    provider = provider_in(client, admin_headers, "approved", item_codes=[MEAL], region_codes=["510100"])
    assert enrol(client, admin_headers, programme.id, provider["id"]).status_code == 201


def test_a_county_provider_is_enrolled_in_a_city_programme(client, admin_headers, make_programme):
    city_programme = make_programme(item_codes=[MEAL], region_code="510100")
    provider = provider_in(client, admin_headers, "approved", item_codes=[MEAL], region_codes=["510131"])
    assert enrol(client, admin_headers, city_programme.id, provider["id"]).status_code == 201


def test_a_provider_is_enrolled_once(client, admin_headers, programme):
    provider = provider_in(client, admin_headers, "approved", item_codes=[MEAL])
    assert enrol(client, admin_headers, programme.id, provider["id"]).status_code == 201
    response = enrol(client, admin_headers, programme.id, provider["id"])
    assert (response.status_code, error_code(response)) == (409, "already_enrolled")
    assert programme_provider_ids(client, programme.id, admin_headers) == [provider["id"]]


def test_nobody_is_enrolled_in_a_closed_programme(client, admin_headers, programme):
    provider = provider_in(client, admin_headers, "approved", item_codes=[MEAL])
    assert client.post(f"/api/v1/programmes/{programme.id}/close", headers=admin_headers).status_code == 200
    response = enrol(client, admin_headers, programme.id, provider["id"])
    assert (response.status_code, error_code(response)) == (409, "programme_closed")
    assert programme_provider_ids(client, programme.id, admin_headers) == []


def test_enrolment_of_an_unknown_provider_or_in_an_unknown_programme_is_404(client, admin_headers, programme):
    provider = provider_in(client, admin_headers, "approved", item_codes=[MEAL])
    for programme_id, provider_id in ((programme.id, 999_999), (999_999, provider["id"])):
        response = enrol(client, admin_headers, programme_id, provider_id)
        assert (response.status_code, error_code(response)) == (404, "not_found")
    assert programme_provider_ids(client, programme.id, admin_headers) == []


def test_an_enrolment_without_a_provider_id_is_422(client, admin_headers, programme):
    for body in ({}, {"provider_id": "1"}, {"provider_id": 0}):
        response = client.post(f"/api/v1/programmes/{programme.id}/providers", json=body, headers=admin_headers)
        assert (response.status_code, error_code(response)) == (422, "validation_error"), body


def test_a_region_scoped_admin_enrols_only_in_programmes_of_their_region(client, admin_headers, make_user, auth,
                                                                          programme):
    provider = provider_in(client, admin_headers, "approved", item_codes=[MEAL], region_codes=["510100"])
    elsewhere = auth(make_user(role="admin", region_code="510132"))
    response = enrol(client, elsewhere, programme.id, provider["id"])
    assert (response.status_code, error_code(response)) == (403, "forbidden")
    assert programme_provider_ids(client, programme.id, admin_headers) == []
    county_admin = auth(make_user(role="admin", region_code="510131"))
    assert enrol(client, county_admin, programme.id, provider["id"]).status_code == 201


def test_only_admins_enrol_providers(client, admin_headers, make_user, auth, programme):
    provider = provider_in(client, admin_headers, "approved", item_codes=[MEAL])
    anonymous = enrol(client, {}, programme.id, provider["id"])
    assert (anonymous.status_code, error_code(anonymous)) == (401, "unauthenticated")
    for headers in (auth(make_user(role="auditor")), auth(make_user(role="provider", provider_id=provider["id"]))):
        response = enrol(client, headers, programme.id, provider["id"])
        assert (response.status_code, error_code(response)) == (403, "forbidden")
    assert programme_provider_ids(client, programme.id, admin_headers) == []


def test_a_programmes_providers_are_the_approved_enrolled_ones_publicly_and_all_enrolled_for_admins(
        client, admin_headers, programme):
    stays, suspended, revoked, not_enrolled = (provider_in(client, admin_headers, "approved", item_codes=[MEAL])
                                               for _ in range(4))
    for provider in (stays, suspended, revoked):
        assert enrol(client, admin_headers, programme.id, provider["id"]).status_code == 201
    decide(client, admin_headers, suspended["id"], "suspend")
    decide(client, admin_headers, revoked["id"], "revoke")

    assert programme_provider_ids(client, programme.id) == [stays["id"]]
    assert programme_provider_ids(client, programme.id, admin_headers) == [stays["id"], suspended["id"],
                                                                           revoked["id"]]
    assert not_enrolled["id"] not in programme_provider_ids(client, programme.id, admin_headers)
    listed = client.get(f"/api/v1/programmes/{programme.id}/providers").get_json()
    assert listed[0]["rating"]["count"] == 0

    decide(client, admin_headers, suspended["id"], "reinstate")
    assert programme_provider_ids(client, programme.id) == [stays["id"], suspended["id"]]


def test_the_providers_of_an_unknown_programme_are_404(client):
    response = client.get("/api/v1/programmes/999999/providers")
    assert (response.status_code, error_code(response)) == (404, "not_found")

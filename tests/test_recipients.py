"""Recipients over HTTP (docs/domain.md#privacy and #region-scope): enrolment, privacy of the ID number, region scope,
recipient logins, status changes and the departure signal. Every test runs on SQLite and PostgreSQL."""

import hashlib
import hmac
from datetime import date

import pytest
from sqlalchemy import String, Text, func, select

from marketplace.audit.models import AuditEvent
from marketplace.db import db
from marketplace.recipients import service
from marketplace.recipients.idnumber import check_character
from marketplace.recipients.models import Recipient
from marketplace.signals import recipient_departed
from tests.conftest import PASSWORD, error_code
from tests.test_idnumber import make_id_number, with_check_x

URL = "/api/v1/recipients"


def recipient_body(**overrides) -> dict:
    body = {"name": "王秀英", "id_number": make_id_number("510131", date(1945, 3, 12), 123),
            "phone": "13812345678", "region_code": "510131", "address": "蒲江县鹤山镇1村2组",
            "tags": ["living_alone", "advanced_age"]}
    return {**body, **overrides}


def enrol(client, headers, **overrides):
    return client.post(URL, json=recipient_body(**overrides), headers=headers)


def enrolled(client, headers, **overrides) -> dict:
    response = enrol(client, headers, **overrides)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def recipient_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Recipient))


def text_values(app, *tables: str) -> list[str]:
    """Every non-null value of every text column of *tables* (all tables when none are named)."""
    values = []
    with app.app_context():
        for table in db.metadata.sorted_tables:
            if tables and table.name not in tables:
                continue
            columns = [column for column in table.columns if isinstance(column.type, String | Text)]
            if not columns:
                continue
            for row in db.session.execute(select(*columns)):
                values.extend(str(value) for value in row if value is not None)
    return values


def assert_never_stored(app, number: str) -> None:
    """Neither the number (either case of X) nor its first seventeen digits is in any text column."""
    values = text_values(app, "recipient", "audit_event")
    values += text_values(app)  # and, for good measure, nowhere else either
    assert values, "the scan found nothing to scan"
    for value in values:
        assert number.upper() not in value.upper()
        assert number[:17] not in value


@pytest.fixture
def admin(make_user):
    return make_user(role="admin")


@pytest.fixture
def admin_headers(admin, auth):
    return auth(admin)


# --- POST /api/v1/recipients ------------------------------------------------------------------------

def test_enrolment_returns_the_masked_number_birth_date_and_sex_but_never_the_number(client, admin_headers):
    number = make_id_number("510131", date(1945, 3, 12), 123)  # 17th digit 3: a man
    response = enrol(client, admin_headers, id_number=number)
    assert response.status_code == 201
    body = response.get_json()
    assert body["id_number_masked"] == number[:6] + "********" + number[-4:]
    assert body["birth_date"] == "1945-03-12"
    assert body["sex"] == "male"
    assert body["status"] == "active"
    assert body["region_code"] == "510131"
    assert body["tags"] == ["advanced_age", "living_alone"]
    assert "id_number" not in body
    assert number not in response.get_data(as_text=True)
    assert number[:17] not in response.get_data(as_text=True)

    detail = client.get(f"{URL}/{body['id']}", headers=admin_headers)
    assert detail.status_code == 200
    assert detail.get_json()["id_number_masked"] == body["id_number_masked"]
    listing = client.get(URL, headers=admin_headers)
    for response in (detail, listing):
        assert number not in response.get_data(as_text=True)
        assert number[:17] not in response.get_data(as_text=True)


def test_an_even_seventeenth_digit_is_a_woman(client, admin_headers):
    body = enrolled(client, admin_headers, id_number=make_id_number("510131", date(1950, 1, 2), 124))
    assert body["sex"] == "female"
    assert body["birth_date"] == "1950-01-02"


def _wrong(part: str) -> str:
    number = make_id_number()
    if part == "length":
        return number[:17]
    if part == "characters":
        return number[:10] + "A" + number[11:]
    if part == "region":
        first17 = "99" + number[2:17]
        return first17 + check_character(first17)
    if part == "birth_date":
        first17 = "51013119450230123"  # 30 February
        return first17 + check_character(first17)
    assert part == "check_character"
    return number[:17] + ("0" if number[17] != "0" else "1")


@pytest.mark.parametrize("part", ["length", "characters", "region", "birth_date", "check_character"])
def test_an_invalid_id_number_is_refused_naming_the_wrong_part(app, client, admin_headers, part):
    number = _wrong(part)
    response = enrol(client, admin_headers, id_number=number)
    assert response.status_code == 422
    assert error_code(response) == "invalid_id_number"
    assert response.get_json()["error"]["details"]["part"] == part
    assert number not in response.get_data(as_text=True)
    assert recipient_count(app) == 0


def test_enrolling_the_same_id_number_twice_is_a_conflict(app, client, admin_headers):
    enrolled(client, admin_headers)
    response = enrol(client, admin_headers, name="另一个人", phone="13900000000")
    assert response.status_code == 409
    assert error_code(response) == "duplicate_recipient"
    assert recipient_count(app) == 1


def test_a_lower_case_x_is_the_same_number_as_an_upper_case_x(app, client, admin_headers):
    number = with_check_x()
    first = enrolled(client, admin_headers, id_number=number)
    assert first["id_number_masked"].endswith("X")
    response = enrol(client, admin_headers, id_number=number.lower())
    assert response.status_code == 409
    assert error_code(response) == "duplicate_recipient"
    assert recipient_count(app) == 1


def test_a_lower_case_x_is_enrolled_as_an_upper_case_x(client, admin_headers):
    number = with_check_x()
    body = enrolled(client, admin_headers, id_number=number.lower())
    assert body["id_number_masked"] == number[:6] + "********" + number[-4:]


@pytest.mark.parametrize(("field", "value"), [
    ("phone", "12345"),
    ("phone", "1381234567a"),
    ("region_code", "51013"),
    ("region_code", "990101"),  # no such province
    ("tags", ["living_alone", "vip"]),
    ("name", ""),
])
def test_a_bad_field_is_a_validation_error_naming_it(app, client, admin_headers, field, value):
    response = enrol(client, admin_headers, **{field: value})
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]["fields"]
    assert recipient_count(app) == 0


def test_anonymous_enrolment_is_unauthenticated(app, client):
    response = client.post(URL, json=recipient_body())
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"
    assert recipient_count(app) == 0


def test_anonymous_enrolment_with_a_bad_body_is_still_unauthenticated(client):
    response = client.post(URL, json={"id_number": "nonsense"})
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


def test_an_auditor_may_not_enrol(app, client, make_user, auth):
    response = client.post(URL, json=recipient_body(), headers=auth(make_user(role="auditor")))
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert recipient_count(app) == 0


def test_a_scoped_admin_may_not_enrol_outside_their_region(app, client, make_user, auth):
    headers = auth(make_user(role="admin", region_code="510131"))
    response = enrol(client, headers, region_code="310101")
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert recipient_count(app) == 0
    assert enrol(client, headers, region_code="510131").status_code == 201


def test_the_database_never_holds_the_id_number_in_clear(app, client, admin_headers):
    number = with_check_x(birth=date(1941, 7, 9))
    body = enrolled(client, admin_headers, id_number=number.lower())
    enrol(client, admin_headers, id_number=number)  # a refused duplicate
    client.patch(f"{URL}/{body['id']}", json={"status": "moved", "phone": "13700000000"}, headers=admin_headers)
    client.post(f"{URL}/{body['id']}/account", json={"username": "wang.xiuying", "password": PASSWORD},
                headers=admin_headers)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) >= 3
    assert_never_stored(app, number)


def test_the_blind_index_is_an_hmac_sha256_under_id_hash_key(app, client, admin_headers, monkeypatch):
    number = make_id_number()
    body = enrolled(client, admin_headers, id_number=number)
    with app.app_context():
        stored = db.session.scalar(select(Recipient.id_number_hash).where(Recipient.id == body["id"]))
    key = app.config["ID_HASH_KEY"]
    assert key
    assert key != app.config["SECRET_KEY"]
    assert stored == hmac.new(key.encode(), number.encode(), hashlib.sha256).hexdigest()
    assert stored != hashlib.sha256(number.encode()).hexdigest()
    assert stored != hmac.new(app.config["SECRET_KEY"].encode(), number.encode(), hashlib.sha256).hexdigest()

    monkeypatch.setitem(app.config, "ID_HASH_KEY", "another key entirely")
    with app.app_context():
        rekeyed = service.id_number_hash(number)
    assert rekeyed != stored
    assert rekeyed == hmac.new(b"another key entirely", number.encode(), hashlib.sha256).hexdigest()


# --- GET /api/v1/recipients, /recipients/{id} -------------------------------------------------------

def test_a_region_scoped_admin_sees_only_recipients_in_their_region(client, admin_headers, make_user, auth):
    inside = [enrolled(client, admin_headers, id_number=make_id_number(sequence=n), region_code="510131")["id"]
              for n in (1, 2)]
    outside = enrolled(client, admin_headers, id_number=make_id_number(sequence=3), region_code="310101")["id"]
    neighbour = enrolled(client, admin_headers, id_number=make_id_number(sequence=4), region_code="510132")["id"]
    headers = auth(make_user(role="admin", region_code="510131"))

    listing = client.get(URL, headers=headers)
    assert listing.status_code == 200
    assert [item["id"] for item in listing.get_json()["items"]] == inside
    assert listing.get_json()["total"] == 2

    assert client.get(f"{URL}/{inside[0]}", headers=headers).status_code == 200
    for other in (outside, neighbour):
        response = client.get(f"{URL}/{other}", headers=headers)
        assert response.status_code == 403
        assert error_code(response) == "forbidden"
        response = client.patch(f"{URL}/{other}", json={"status": "moved"}, headers=headers)
        assert response.status_code == 403

    # Asking for another region does not widen the scope.
    assert client.get(URL, query_string={"region_code": "31"}, headers=headers).get_json()["total"] == 0
    assert client.get(URL, query_string={"region_code": "51"}, headers=headers).get_json()["total"] == 2
    # An unscoped admin sees everyone.
    assert client.get(URL, headers=admin_headers).get_json()["total"] == 4


def test_a_city_scoped_admin_sees_every_county_of_the_city(client, admin_headers, make_user, auth):
    in_city = [enrolled(client, admin_headers, id_number=make_id_number(sequence=n), region_code=code)["id"]
               for n, code in ((1, "510131"), (2, "510104"))]
    enrolled(client, admin_headers, id_number=make_id_number(sequence=3), region_code="511002")
    headers = auth(make_user(role="admin", region_code="510100"))
    listing = client.get(URL, headers=headers).get_json()
    assert [item["id"] for item in listing["items"]] == in_city


def test_the_list_filters_by_region_status_and_tag(client, admin_headers):
    first = enrolled(client, admin_headers, id_number=make_id_number(sequence=1), tags=["disabled"])
    second = enrolled(client, admin_headers, id_number=make_id_number(sequence=2), tags=[], region_code="310101")
    third = enrolled(client, admin_headers, id_number=make_id_number(sequence=3), tags=["disabled", "low_income"])
    client.patch(f"{URL}/{third['id']}", json={"status": "moved"}, headers=admin_headers)

    def ids(**query):
        response = client.get(URL, query_string=query, headers=admin_headers)
        assert response.status_code == 200
        return [item["id"] for item in response.get_json()["items"]]

    assert ids(tag="disabled") == [first["id"], third["id"]]
    assert ids(status="moved") == [third["id"]]
    assert ids(status="active", tag="disabled") == [first["id"]]
    assert ids(region_code="310000") == [second["id"]]
    assert ids(per_page=1, page=2) == [second["id"]]
    assert client.get(URL, query_string={"tag": "vip"}, headers=admin_headers).status_code == 422


def test_an_unknown_recipient_is_not_found(client, admin_headers):
    response = client.get(f"{URL}/999999", headers=admin_headers)
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_a_recipient_login_sees_only_itself(client, admin_headers, auth, token_for):
    own = enrolled(client, admin_headers, id_number=make_id_number(sequence=11))
    other = enrolled(client, admin_headers, id_number=make_id_number(sequence=12))
    account = client.post(f"{URL}/{own['id']}/account", json={"username": "own.login", "password": PASSWORD},
                          headers=admin_headers)
    assert account.status_code == 201
    token = client.post("/api/v1/auth/token", json={"username": "own.login", "password": PASSWORD})
    assert token.status_code == 200
    headers = {"Authorization": f"Bearer {token.get_json()['token']}"}

    assert client.get(f"{URL}/{own['id']}", headers=headers).get_json()["id"] == own["id"]
    for missing in (other["id"], 999999):
        response = client.get(f"{URL}/{missing}", headers=headers)
        assert response.status_code == 404
        assert error_code(response) == "not_found"
    listing = client.get(URL, headers=headers).get_json()
    assert [item["id"] for item in listing["items"]] == [own["id"]]
    assert listing["total"] == 1

    # A recipient may not change anything, not even their own record.
    response = client.patch(f"{URL}/{own['id']}", json={"phone": "13700000000"}, headers=headers)
    assert response.status_code == 403
    assert error_code(response) == "forbidden"


def test_an_auditor_may_not_list_recipients(client, make_user, auth):
    response = client.get(URL, headers=auth(make_user(role="auditor")))
    assert response.status_code == 403
    assert error_code(response) == "forbidden"


# --- PATCH /api/v1/recipients/{id} ------------------------------------------------------------------

def audit_events(client, headers, recipient_id):
    response = client.get("/api/v1/audit", query_string={"entity": "recipient", "entity_id": recipient_id},
                          headers=headers)
    assert response.status_code == 200
    return response


def test_changes_of_phone_address_and_tags_are_audited_without_the_phone_in_clear(client, admin_headers):
    recipient = enrolled(client, admin_headers, phone="13812345678", tags=["living_alone", "advanced_age"])
    response = client.patch(f"{URL}/{recipient['id']}", headers=admin_headers, json={
        "phone": "13987654321", "address": "蒲江县寿安镇3村4组", "tags": ["advanced_age", "disabled"]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["phone"] == "13987654321"
    assert body["address"] == "蒲江县寿安镇3村4组"
    assert body["tags"] == ["advanced_age", "disabled"]
    again = client.get(f"{URL}/{recipient['id']}", headers=admin_headers).get_json()
    assert (again["phone"], again["tags"]) == ("13987654321", ["advanced_age", "disabled"])

    trail = audit_events(client, admin_headers, recipient["id"])
    updates = [event for event in trail.get_json()["items"] if event["action"] == "recipient.updated"]
    assert len(updates) == 1
    data = updates[0]["data"]
    assert set(data) == {"phone", "address", "tags"}
    assert data["tags"] == {"from": ["advanced_age", "living_alone"], "to": ["advanced_age", "disabled"]}
    assert "13987654321" not in trail.get_data(as_text=True)
    assert "13812345678" not in trail.get_data(as_text=True)


def test_a_patch_that_changes_nothing_records_nothing(client, admin_headers):
    recipient = enrolled(client, admin_headers, phone="13812345678")
    response = client.patch(f"{URL}/{recipient['id']}", json={"phone": "13812345678"}, headers=admin_headers)
    assert response.status_code == 200
    actions = [event["action"] for event in audit_events(client, admin_headers, recipient["id"]).get_json()["items"]]
    assert actions == ["recipient.created"]


def test_a_recipient_may_move_away_and_come_back(client, admin_headers):
    recipient = enrolled(client, admin_headers)
    url = f"{URL}/{recipient['id']}"
    moved = client.patch(url, json={"status": "moved"}, headers=admin_headers)
    assert moved.status_code == 200
    assert moved.get_json()["status"] == "moved"
    back = client.patch(url, json={"status": "active"}, headers=admin_headers)
    assert back.status_code == 200
    assert back.get_json()["status"] == "active"
    changes = [event["data"]["status"] for event in audit_events(client, admin_headers, recipient["id"]).get_json()
               ["items"] if event["action"] == "recipient.updated"]
    assert sorted(map(tuple, (c.values() for c in changes))) == [("active", "moved"), ("moved", "active")]


@pytest.mark.parametrize("before", [[], ["moved"]])
def test_death_is_final(client, admin_headers, before):
    recipient = enrolled(client, admin_headers)
    url = f"{URL}/{recipient['id']}"
    for status in [*before, "deceased"]:
        assert client.patch(url, json={"status": status}, headers=admin_headers).status_code == 200
    for status in ("active", "moved"):
        response = client.patch(url, json={"status": status}, headers=admin_headers)
        assert response.status_code == 409
        assert error_code(response) == "invalid_transition"
    assert client.get(url, headers=admin_headers).get_json()["status"] == "deceased"


def test_a_refused_transition_changes_nothing_else_in_the_same_request(client, admin_headers):
    recipient = enrolled(client, admin_headers, phone="13812345678")
    url = f"{URL}/{recipient['id']}"
    assert client.patch(url, json={"status": "deceased"}, headers=admin_headers).status_code == 200
    response = client.patch(url, json={"status": "active", "phone": "13700000000"}, headers=admin_headers)
    assert response.status_code == 409
    assert client.get(url, headers=admin_headers).get_json()["phone"] == "13812345678"


def test_an_empty_patch_is_a_validation_error(client, admin_headers):
    recipient = enrolled(client, admin_headers)
    response = client.patch(f"{URL}/{recipient['id']}", json={}, headers=admin_headers)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"


@pytest.mark.parametrize("body", [{"phone": "12345"}, {"tags": ["vip"]}, {"status": "emigrated"}])
def test_a_bad_patch_is_a_validation_error_and_changes_nothing(client, admin_headers, body):
    recipient = enrolled(client, admin_headers)
    url = f"{URL}/{recipient['id']}"
    response = client.patch(url, json=body, headers=admin_headers)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert set(body) <= set(response.get_json()["error"]["details"]["fields"])
    assert client.get(url, headers=admin_headers).get_json() == recipient


def test_patching_an_unknown_recipient_is_not_found(client, admin_headers):
    response = client.patch(f"{URL}/999999", json={"status": "moved"}, headers=admin_headers)
    assert response.status_code == 404


@pytest.fixture
def departures():
    """Every recipient_departed signal sent while the test runs, as (recipient id, status)."""
    sent = []

    def receiver(recipient, *, actor, now, status):
        sent.append((recipient.id, status))

    recipient_departed.connect(receiver)
    try:
        yield sent
    finally:
        recipient_departed.disconnect(receiver)


@pytest.mark.parametrize("status", ["moved", "deceased"])
def test_a_departure_sends_the_signal_exactly_once(client, admin_headers, departures, status):
    recipient = enrolled(client, admin_headers)
    response = client.patch(f"{URL}/{recipient['id']}", json={"status": status}, headers=admin_headers)
    assert response.status_code == 200
    assert departures == [(recipient["id"], status)]


def test_other_changes_send_no_departure_signal(client, admin_headers, departures):
    recipient = enrolled(client, admin_headers)
    url = f"{URL}/{recipient['id']}"
    for body in ({"phone": "13700000000"}, {"address": "别处"}, {"tags": ["disabled"]}, {"status": "active"}):
        assert client.patch(url, json=body, headers=admin_headers).status_code == 200
    assert departures == []

    assert client.patch(url, json={"status": "moved"}, headers=admin_headers).status_code == 200
    assert client.patch(url, json={"status": "moved"}, headers=admin_headers).status_code == 200  # no change
    assert client.patch(url, json={"status": "active"}, headers=admin_headers).status_code == 200  # coming back
    assert departures == [(recipient["id"], "moved")]

    assert client.patch(url, json={"status": "deceased"}, headers=admin_headers).status_code == 200
    assert client.patch(url, json={"status": "moved"}, headers=admin_headers).status_code == 409
    assert departures == [(recipient["id"], "moved"), (recipient["id"], "deceased")]


def test_a_departure_refused_for_scope_sends_no_signal(client, admin_headers, make_user, auth, departures):
    recipient = enrolled(client, admin_headers, region_code="310101")
    headers = auth(make_user(role="admin", region_code="510131"))
    assert client.patch(f"{URL}/{recipient['id']}", json={"status": "deceased"}, headers=headers).status_code == 403
    assert departures == []


# --- POST /api/v1/recipients/{id}/account -----------------------------------------------------------

def test_an_admin_gives_a_recipient_a_login_of_their_own(client, admin_headers):
    recipient = enrolled(client, admin_headers)
    response = client.post(f"{URL}/{recipient['id']}/account", json={"username": "Wang.XY", "password": PASSWORD},
                           headers=admin_headers)
    assert response.status_code == 201
    body = response.get_json()
    assert body["role"] == "recipient"
    assert body["recipient_id"] == recipient["id"]
    assert body["username"] == "wang.xy"
    assert "password_hash" not in body
    token = client.post("/api/v1/auth/token", json={"username": "wang.xy", "password": PASSWORD}).get_json()["token"]
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert (me["role"], me["recipient_id"]) == ("recipient", recipient["id"])


def test_a_scoped_admin_may_create_logins_only_for_recipients_in_their_region(client, admin_headers, make_user,
                                                                              auth):
    outside = enrolled(client, admin_headers, id_number=make_id_number(sequence=1), region_code="310101")
    inside = enrolled(client, admin_headers, id_number=make_id_number(sequence=2), region_code="510131")
    headers = auth(make_user(role="admin", region_code="510131"))
    response = client.post(f"{URL}/{outside['id']}/account", json={"username": "outsider", "password": PASSWORD},
                           headers=headers)
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert client.post("/api/v1/auth/token", json={"username": "outsider", "password": PASSWORD}).status_code == 401
    response = client.post(f"{URL}/{inside['id']}/account", json={"username": "insider", "password": PASSWORD},
                           headers=headers)
    assert response.status_code == 201


def test_a_taken_username_is_a_conflict(client, admin_headers, make_user):
    make_user(role="auditor", username="taken.name")
    recipient = enrolled(client, admin_headers)
    response = client.post(f"{URL}/{recipient['id']}/account", json={"username": "Taken.Name", "password": PASSWORD},
                           headers=admin_headers)
    assert response.status_code == 409
    assert error_code(response) == "duplicate_username"


def test_an_account_for_an_unknown_recipient_is_not_found(client, admin_headers):
    response = client.post(f"{URL}/999999/account", json={"username": "nobody.here", "password": PASSWORD},
                           headers=admin_headers)
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_an_auditor_may_not_create_recipient_logins(client, admin_headers, make_user, auth):
    recipient = enrolled(client, admin_headers)
    response = client.post(f"{URL}/{recipient['id']}/account", json={"username": "sneaky", "password": PASSWORD},
                           headers=auth(make_user(role="auditor")))
    assert response.status_code == 403

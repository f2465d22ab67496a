"""Finding a recipient: by national ID number through the blind index (POST /recipients/lookup), and by a
search term (GET /recipients?q=) matching a part of the name or phone, or the last 4 characters of the masked
ID number. Both only inside the admin's region; a recipient of another region is not found (404, not 403:
a number must not tell whether someone is enrolled elsewhere). The number is never stored or logged. Every
test runs on SQLite and PostgreSQL.
"""

import json

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.db import db, utcnow
from marketplace.errors import NotFound
from marketplace.recipients import service
from marketplace.recipients.idnumber import check_character
from tests.conftest import error_code

URL = "/api/v1/recipients"
REGIONS = {"wang": "510131", "li": "510131", "zhang": "510131", "far": "510129"}  # where `people` live


@pytest.fixture
def people(build):
    """Three recipients in 蒲江县 (510131), one in 大邑县 (510129); the test knows names, phones and ID numbers."""
    return {
        "wang": build.recipient(name="王秀英", phone="13812345678"),
        "li": build.recipient(name="李建国", phone="028-88551234"),
        "zhang": build.recipient(name="张秀兰", phone="13900001111"),
        "far": build.recipient(name="王桂芳", phone="13812349999", region_code=REGIONS["far"]),
    }



def lookup(client, headers, id_number):
    return client.post(f"{URL}/lookup", json={"id_number": id_number}, headers=headers)


def search(client, headers, q, **query) -> list[int]:
    response = client.get(URL, query_string={"q": q, "per_page": 500, **query}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return sorted(item["id"] for item in response.get_json()["items"])


# --- look-up by ID number ---------------------------------------------------------------------------

def test_an_admin_finds_a_recipient_by_id_number(build, client, people):
    wang = people["wang"]

    response = lookup(client, build.headers(build.system_admin), wang.id_number)

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["id"], body["name"], body["id_number_masked"]) == (wang.id, "王秀英", wang.id_number_masked)
    assert "id_number" not in body


def test_the_look_up_is_audited_without_the_number(build, client, people):
    admin = build.system_admin
    wang = people["wang"]

    assert lookup(client, build.headers(admin), wang.id_number).status_code == 200

    events = build.read(lambda: db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "recipient.looked_up")).all())
    assert [(event.actor_id, event.entity_id, event.region_code) for event in events] == [
        (admin.id, str(wang.id), "510131")]
    assert json.loads(events[0].data) == {"by": "id_number"}


def test_spaces_and_a_lower_case_x_are_read_as_the_number(build, client):
    admin = build.headers(build.system_admin)
    first17 = next(f"5101311945031{n:04d}" for n in range(1000) if check_character(f"5101311945031{n:04d}") == "X")
    created = client.post(URL, headers=admin, json={"name": "赵玉兰", "id_number": first17 + "X", "phone": None,
                                                   "region_code": "510131", "address": None, "tags": []})
    assert created.status_code == 201, created.get_json()

    response = lookup(client, admin, f"  {first17}x ")

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["id"] == created.get_json()["id"]


def test_an_unknown_number_is_not_found(build, client, people):
    first17 = "51013119300101999"
    response = lookup(client, build.headers(build.system_admin), first17 + check_character(first17))

    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_a_number_that_is_not_valid_says_which_part_is_wrong(build, client, people):
    wang = people["wang"].id_number
    wrong_check = wang[:17] + ("0" if wang[17] != "0" else "1")

    response = lookup(client, build.headers(build.system_admin), wrong_check)

    assert response.status_code == 422
    assert error_code(response) == "invalid_id_number"
    assert response.get_json()["error"]["details"]["part"] == "check_character"
    assert wrong_check not in response.get_data(as_text=True)


def test_a_recipient_of_another_region_is_not_found_not_forbidden(build, client, people):
    county = build.headers(build.admin(region_code="510131"))

    elsewhere = lookup(client, county, people["far"].id_number)
    at_home = lookup(client, county, people["wang"].id_number)

    assert elsewhere.status_code == 404
    assert error_code(elsewhere) == "not_found"
    assert at_home.status_code == 200
    assert lookup(client, build.headers(build.admin(region_code="510100")), people["wang"].id_number).status_code == 200


@pytest.mark.parametrize("role", ["recipient", "provider", "auditor"])
def test_only_admins_look_up_by_id_number(build, client, people, role):
    if role == "recipient":
        user = build.recipient(login=True).user
    elif role == "provider":
        user = build.provider(items=[build.item()]).user
    else:
        user = build.auditor()

    assert lookup(client, build.headers(user), people["wang"].id_number).status_code == 403
    assert lookup(client, {}, people["wang"].id_number).status_code == 401


@pytest.mark.parametrize("body", [{}, {"id_number": 510131}, {"id_number": "5" * 65}, {"id_number": None}])
def test_a_malformed_body_is_a_validation_error(build, client, body):
    response = client.post(f"{URL}/lookup", json=body, headers=build.headers(build.system_admin))

    assert response.status_code == 422
    assert error_code(response) == "validation_error"


def test_the_service_finds_in_scope_only(build, people):
    county = build.admin(region_code="510131")

    found = build.read(lambda: service.lookup_by_id_number(id_number=people["wang"].id_number, actor=county,
                                                           now=utcnow()).id)

    assert found == people["wang"].id
    with pytest.raises(NotFound):
        build.read(lambda: service.lookup_by_id_number(id_number=people["far"].id_number, actor=county,
                                                       now=utcnow()))


def test_the_number_looked_up_is_never_stored_or_logged(app, build, client, people, caplog, capfd):
    caplog.set_level("DEBUG")
    county = build.headers(build.admin(region_code="510131"))
    numbers = [people["wang"].id_number, people["far"].id_number]
    first17 = "51013119300101999"
    numbers.append(first17 + check_character(first17))  # nobody's
    numbers.append(people["li"].id_number[:17] + ("0" if people["li"].id_number[17] != "0" else "1"))  # not valid

    statuses = [lookup(client, county, number).status_code for number in numbers]

    assert statuses == [200, 404, 404, 422]
    events = build.read(lambda: db.session.scalars(select(AuditEvent)).all())
    audited = " ".join(f"{event.entity_id} {event.data}" for event in events)
    assert "recipient.looked_up" in {event.action for event in events}
    logged = caplog.text + "".join(capfd.readouterr())
    stored = " ".join(" ".join(str(value) for value in row)
                      for table in ("recipient", "audit_event", "idempotency_record")
                      for row in build.read(lambda t=table: db.session.execute(
                          select(db.metadata.tables[t])).all()))
    for number in numbers:
        for where, text in (("audit", audited), ("logs", logged), ("database", stored)):
            assert number.upper() not in text.upper(), where
            assert number[:17] not in text, where


# --- GET /recipients?q= -----------------------------------------------------------------------------

def test_q_matches_a_part_of_the_name(build, client, people):
    admin = build.headers(build.system_admin)

    assert search(client, admin, "秀") == sorted([people["wang"].id, people["zhang"].id])
    assert search(client, admin, "王") == sorted([people["wang"].id, people["far"].id])
    assert search(client, admin, "建国") == [people["li"].id]


def test_q_matches_a_part_of_the_phone(build, client, people):
    admin = build.headers(build.system_admin)

    assert search(client, admin, "1381234") == sorted([people["wang"].id, people["far"].id])
    assert search(client, admin, "8855") == [people["li"].id]


def matching(people, q, region="5101") -> list[int]:
    """What q= should find among *people* living in *region*: a part of the name or phone, or the ID number's tail."""
    tail = q.upper() if len(q) == 4 else None
    return sorted(p.id for key, p in people.items() if REGIONS[key].startswith(region) and (
        q in p.name or q in (p.phone or "") or (tail is not None and p.id_number_masked.endswith(tail))))


def test_q_matches_exactly_the_last_four_characters_of_the_masked_id_number(build, client, people):
    admin = build.headers(build.system_admin)
    wang = people["wang"]
    tail = wang.id_number_masked[-4:]

    assert wang.id in search(client, admin, tail.lower())
    assert search(client, admin, tail.lower()) == matching(people, tail)
    # The masked middle is never matched, and three characters are not a tail.
    assert search(client, admin, wang.id_number[10:14]) == matching(people, wang.id_number[10:14], region="")
    assert search(client, admin, tail[1:]) == matching(people, tail[1:])


def test_q_keeps_to_the_admins_region(build, client, people):
    county = build.headers(build.admin(region_code="510131"))
    far_tail = people["far"].id_number_masked[-4:]

    assert search(client, county, "王") == [people["wang"].id]
    assert people["far"].id not in search(client, county, far_tail)
    assert search(client, county, far_tail) == matching(people, far_tail, region="510131")


def test_q_is_literal_text_and_blank_is_no_filter(build, client, people):
    admin = build.headers(build.system_admin)

    assert search(client, admin, "%") == []
    assert search(client, admin, "_") == []
    assert search(client, admin, "   ") == sorted(p.id for p in people.values())


def test_q_combines_with_the_other_filters(build, client, people):
    admin = build.headers(build.system_admin)

    assert search(client, admin, "王", region_code="510129") == [people["far"].id]


def test_q_longer_than_fifty_characters_is_a_validation_error(build, client):
    response = client.get(URL, query_string={"q": "秀" * 51}, headers=build.headers(build.system_admin))

    assert response.status_code == 422
    assert error_code(response) == "validation_error"

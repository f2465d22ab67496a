"""Hostile input never makes a 5xx (docs/errors.md; the contract: "No request may produce a 5xx").

Each shape below once answered 500 with a traceback, on both databases: JSON nested 2,000 deep
(RecursionError in the JSON parser), a lone surrogate in a text field (UnicodeEncodeError on the way
to the database), a 5,001-digit integer (ValueError: Python's digit limit), an instant at the edge of
year 1 or 9999 with an offset that carries it out of range (OverflowError), a period in year 9999
(OverflowError at the month's end). Each is refused where it enters — a body that does not parse is
400 `malformed_json`, a field that is out of range is 422 `validation_error` naming the field — in one
place for the whole app (marketplace/api.py reads every JSON body; marketplace/schemas.py holds
InputSchema, Instant, Day, Period). tests/test_fuzz.py sends the same shapes to every operation.
"""

import io
import json
from datetime import date

import pytest

from marketplace.demo import demo_credit_code
from tests.conftest import PASSWORD, error_code, programme_payload

API = "/api/v1"
SURROGATE = "\ud800"
HUGE_INTEGER = "1" * 5001
EARLY = "0001-01-01T00:00:00+14:00"   # before year 1 in UTC
LATE = "9999-12-31T23:59:59-14:00"    # after year 9999 in UTC


def deeply_nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def post_json(client, url, body, headers=None):
    """POST *body* as JSON with every non-ASCII character escaped: a lone surrogate travels as "\\ud800", as it
    would from any client (the test client's own json= cannot encode one)."""
    return client.post(url, data=json.dumps(body), content_type="application/json", headers=headers or {})


def post_raw(client, url, text, headers=None):
    return client.post(url, data=text.encode("utf-8", "surrogatepass"), content_type="application/json",
                       headers=headers or {})


def refused(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert error_code(response) == code
    return response.get_json()["error"]


def refused_field(response, field):
    error = refused(response, 422, "validation_error")
    assert field in error["details"]["fields"], error
    return error


@pytest.fixture
def admin_headers(make_user, auth):
    return auth(make_user(role="admin"))


@pytest.fixture
def programme(make_programme):
    return make_programme(budget_fen=1_000_000, activate=True)


@pytest.fixture
def provider_id(client, admin_headers, make_item):
    item = make_item(code="HC-HOSTILE")
    body = {"name": "蒲江县鹤山街道社区养老服务中心", "kind": "social_organisation",
            "credit_code": demo_credit_code("52", "MA5F7K3R"), "legal_representative": "张建华",
            "phone": "028-88550001", "address": "四川省成都市蒲江县鹤山街道", "region_codes": ["510131"],
            "item_codes": [item.code], "capacity": 100}
    response = client.post(f"{API}/providers", json=body, headers=admin_headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


# --- bodies that do not parse: 400 malformed_json -------------------------------------------------

@pytest.mark.parametrize("url", [f"{API}/auth/token", f"{API}/auth/login", f"{API}/providers"])
@pytest.mark.parametrize("depth", [2000, 100_000])
def test_json_nested_thousands_deep_is_malformed(client, url, depth):
    refused(post_raw(client, url, deeply_nested(depth)), 400, "malformed_json")


@pytest.mark.parametrize("url", [f"{API}/auth/token", f"{API}/providers"])
def test_json_nested_deeper_than_the_limit_is_malformed_whatever_the_interpreter_could_parse(client, url):
    refused(post_raw(client, url, deeply_nested(65)), 400, "malformed_json")
    refused(post_raw(client, url, '{"username": ' + deeply_nested(200) + ', "password": "x"}'), 400,
            "malformed_json")
    # 64 levels parse; the schema then refuses the shape
    refused(post_raw(client, url, '{"username": ' + deeply_nested(63) + "}"), 422, "validation_error")


def test_a_deep_body_to_an_idempotent_route_is_malformed_too(client, admin_headers, programme):
    """The Idempotency-Key fingerprint reads the body before the schema does: the same parser, the same answer."""
    headers = {**admin_headers, "Idempotency-Key": "deep-1"}
    refused(post_raw(client, f"{API}/programmes/{programme.id}/issuance", deeply_nested(2000), headers), 400,
            "malformed_json")


# --- lone surrogates: 422, naming the field -------------------------------------------------------

@pytest.mark.parametrize("url", [f"{API}/auth/token", f"{API}/auth/login"])
def test_a_lone_surrogate_in_a_username_is_refused(client, url):
    response = post_json(client, url, {"username": f"admin{SURROGATE}", "password": PASSWORD})
    refused_field(response, "username")


def test_a_lone_surrogate_in_a_password_is_refused(client, make_user):
    user = make_user(role="admin")
    refused_field(post_json(client, f"{API}/auth/token", {"username": user.username, "password": SURROGATE}),
                  "password")


def test_a_lone_surrogate_in_a_reason_is_refused(client, admin_headers, programme, provider_id):
    refused_field(post_json(client, f"{API}/programmes/{programme.id}/budget",
                            {"amount_fen": 100, "reason": f"追加{SURROGATE}"}, admin_headers), "reason")
    refused_field(post_json(client, f"{API}/providers/{provider_id}/approve", {"reason": f"资质{SURROGATE}审核"},
                            admin_headers), "reason")


def test_a_lone_surrogate_in_a_complaint_is_refused(client, admin_headers, provider_id):
    response = post_json(client, f"{API}/complaints", {"provider_id": provider_id, "text": f"服务{SURROGATE}很差"},
                         admin_headers)
    refused_field(response, "text")


@pytest.mark.parametrize("code_point", [0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0xD83D])
def test_every_lone_surrogate_anywhere_in_a_body_is_refused(client, admin_headers, code_point):
    item = {"item_code": f"HC{chr(code_point)}", "unit_price_fen": 1, "monthly_quota": 1}
    body = programme_payload(["HC-X"], items=[item])
    refused_field(post_json(client, f"{API}/programmes", body, admin_headers), "items")


def test_a_lone_surrogate_in_a_key_is_refused_without_echoing_the_key(client, admin_headers):
    response = post_json(client, f"{API}/programmes", {f"name{SURROGATE}": "x"}, admin_headers)
    error = refused(response, 422, "validation_error")
    assert list(error["details"]["fields"]) == ["_schema"]


def test_a_pair_of_surrogates_is_one_character_and_welcome(client, admin_headers, programme):
    """JSON spells 😀 as the escaped pair \\ud83d\\ude00: that is a real character, not a lone surrogate."""
    response = post_raw(client, f"{API}/programmes/{programme.id}/budget",
                        '{"amount_fen": 100, "reason": "\\u8ffd\\u52a0 \\ud83d\\ude00"}', admin_headers)
    assert response.status_code == 200, response.get_json()


def test_query_strings_cannot_carry_a_surrogate(client, admin_headers):
    """Percent-encoded surrogate bytes are not UTF-8: werkzeug keeps them as the literal text, which is harmless."""
    response = client.get(f"{API}/recipients?region_code=%ED%A0%80", headers=admin_headers)
    refused_field(response, "region_code")


def test_a_csv_cell_holding_an_encoded_surrogate_is_not_utf8(client, admin_headers):
    """A surrogate cannot come out of UTF-8 decoding: its bytes (CESU-8 style) make the whole file refused."""
    cell = "李\ud800".encode("utf-8", "surrogatepass")
    data = b"name,id_number,phone,region_code,address,tags\n" + cell + b",510131195005050015,,510131,,\n"
    response = client.post(f"{API}/recipients/import", data={"file": (io.BytesIO(data), "r.csv")},
                           headers=admin_headers, content_type="multipart/form-data")
    refused_field(response, "file")


def test_a_recipient_name_with_a_surrogate_is_refused_by_the_shared_field_rule(app):
    """The CSV's cells (and the CLI's) are checked by the same rule as request bodies."""
    from marketplace.recipients.service import check_fields

    with app.app_context():
        checked = check_fields(name=f"李{SURROGATE}", id_number="", phone=None, region_code="510131",
                               address=f"蒲江{SURROGATE}", tags=[], actor=None, today=date(2026, 3, 1))
    assert "surrogate" in checked.problems["name"]
    assert "surrogate" in checked.problems["address"]


# --- integers too long for Python: 422, naming the field ------------------------------------------

def test_a_5001_digit_integer_is_a_bad_field_not_a_crash(client, admin_headers, programme):
    url = f"{API}/programmes/{programme.id}/budget"
    refused_field(post_raw(client, url, f'{{"amount_fen": {HUGE_INTEGER}, "reason": "追加"}}', admin_headers),
                  "amount_fen")
    refused_field(post_raw(client, url, f'{{"amount_fen": -{HUGE_INTEGER}, "reason": "追加"}}', admin_headers),
                  "amount_fen")


def test_a_5001_digit_integer_where_text_belongs_is_a_bad_field(client):
    response = post_raw(client, f"{API}/auth/token", f'{{"username": {HUGE_INTEGER}, "password": "x"}}')
    refused_field(response, "username")


def test_a_5001_digit_integer_to_an_idempotent_route(client, admin_headers, programme):
    headers = {**admin_headers, "Idempotency-Key": "huge-1"}
    response = post_raw(client, f"{API}/programmes/{programme.id}/budget",
                        f'{{"amount_fen": {HUGE_INTEGER}, "reason": "追加"}}', headers)
    refused_field(response, "amount_fen")


def test_a_5001_digit_integer_in_a_query_string_is_a_bad_field(client, admin_headers):
    refused_field(client.get(f"{API}/programmes?page={HUGE_INTEGER}", headers=admin_headers), "page")


# --- instants, days and periods out of range: 422, naming the field -------------------------------

@pytest.mark.parametrize(("name", "value"), [("from", EARLY), ("to", LATE), ("from", LATE), ("to", EARLY),
                                             ("from", "1969-12-31T23:59:59Z"), ("to", "2200-01-01T00:00:00Z")])
def test_a_redemption_filter_outside_the_sane_range_is_refused(client, admin_headers, name, value):
    refused_field(client.get(f"{API}/redemptions", query_string={name: value}, headers=admin_headers), name)


def test_the_edges_of_the_sane_range_are_accepted(client, admin_headers):
    response = client.get(f"{API}/redemptions", query_string={"from": "1970-01-01T08:00:00+08:00",
                                                              "to": "2199-12-31T23:59:59Z"}, headers=admin_headers)
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("value", [EARLY, LATE])
def test_a_delivery_time_outside_the_sane_range_is_refused(client, make_user, auth, provider_id, value):
    headers = auth(make_user(role="provider", provider_id=provider_id))
    response = client.post(f"{API}/redemptions", json={"voucher_token": "X" * 36, "delivered_at": value},
                           headers=headers)
    refused_field(response, "delivered_at")


def test_programme_dates_outside_the_sane_range_are_refused(client, admin_headers, make_item):
    item = make_item()
    body = programme_payload([item.code], starts_on="0001-01-01", ends_on="0001-12-31")
    error = refused_field(client.post(f"{API}/programmes", json=body, headers=admin_headers), "starts_on")
    assert "ends_on" in error["details"]["fields"]
    body = programme_payload([item.code], starts_on="9999-01-01", ends_on="9999-12-31")
    refused_field(client.post(f"{API}/programmes", json=body, headers=admin_headers), "ends_on")


@pytest.mark.parametrize("period", ["9999-12", "0001-01", "1969-12", "2200-01", "2026-13", "2026-03\n"])
def test_a_settlement_period_outside_the_sane_range_is_refused(client, admin_headers, programme, period):
    response = client.post(f"{API}/programmes/{programme.id}/settlements", json={"period": period},
                           headers=admin_headers)
    refused_field(response, "period")


@pytest.mark.parametrize("period", ["9999-12", "0001-01"])
def test_an_issuance_period_outside_the_sane_range_is_refused(client, admin_headers, programme, period):
    response = client.post(f"{API}/programmes/{programme.id}/issuance", json={"period": period},
                           headers=admin_headers)
    refused_field(response, "period")


@pytest.mark.parametrize("url", [f"{API}/settlements", f"{API}/public/settlements"])
def test_a_period_filter_outside_the_sane_range_is_refused(client, admin_headers, url):
    refused_field(client.get(url, query_string={"period": "9999-12"}, headers=admin_headers), "period")


def test_the_services_refuse_a_period_out_of_range_themselves(app, programme):
    """The CLI (`issue-vouchers`, `settle`) reaches the services without a schema: the same rule holds there."""
    from marketplace.errors import ValidationFailed
    from vouchers.service.issuance import period_bounds

    with app.app_context():
        assert period_bounds("2199-12")[1].isoformat() == "2199-12-31"
        for period in ("9999-12", "0001-01", "2026-03\n", "2026-3"):
            with pytest.raises(ValidationFailed):
                period_bounds(period)


def test_the_openapi_document_states_the_ranges(client):
    spec = client.get(f"{API}/openapi.json").get_json()
    settle = spec["paths"][f"{API}/programmes/{{programme_id}}/settlements"]["post"]
    ref = settle["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert spec["components"]["schemas"][ref]["properties"]["period"]["pattern"] == \
        r"^(19[7-9]\d|2[01]\d\d)-(0[1-9]|1[0-2])$"
    assert json.dumps(spec)  # and it still serialises


def test_every_request_field_of_a_bounded_kind_uses_the_shared_type():
    """One field type per kind, used by every request schema: a new schema cannot bring an unbounded one."""
    import marshmallow as ma

    import marketplace.app  # noqa: F401  (imports every domain, so every request schema exists)
    from marketplace import schemas

    pending, wrong, seen = list(schemas.InputSchema.__subclasses__()), [], 0
    while pending:
        schema = pending.pop()
        pending.extend(schema.__subclasses__())
        for name, field in schema._declared_fields.items():
            where = f"{schema.__module__}.{schema.__name__}.{name}"
            if isinstance(field, ma.fields.DateTime) and not isinstance(field, schemas.Instant):
                wrong.append(f"{where}: an instant must be schemas.Instant")
            elif isinstance(field, ma.fields.Date) and not isinstance(field, schemas.Day):
                wrong.append(f"{where}: a date must be schemas.Day")
            elif name == "period" and not isinstance(field, schemas.Period):
                wrong.append(f"{where}: a period must be schemas.Period")
            else:
                seen += isinstance(field, schemas.Instant | schemas.Day | schemas.Period)
    assert wrong == []
    assert seen >= 8

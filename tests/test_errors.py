"""Every error uses the envelope of docs/domain.md#api-conventions; a 500 reveals nothing but a request id, which is
logged."""

import logging
import re

import pytest
from sqlalchemy.exc import OperationalError

from marketplace.audit import service as audit_service

SECRET_DETAIL = "password=hunter2 at /srv/marketplace/secret.py"


def assert_envelope(response, status, code):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def test_unknown_api_path_is_a_not_found_envelope(client):
    assert_envelope(client.get("/api/v1/no-such-thing"), 404, "not_found")


def test_unknown_path_outside_the_api_is_the_consoles_not_found_page(client):
    page = client.get("/no-such-page")
    assert page.status_code == 404
    assert page.mimetype == "text/html"
    assert "找不到这个页面" in page.get_data(as_text=True)


def test_wrong_method_is_a_method_not_allowed_envelope_listing_the_allowed_ones(client):
    error = assert_envelope(client.delete("/api/v1/health"), 405, "method_not_allowed")
    assert "GET" in error["details"]["allowed"]


def test_oversized_body_is_a_payload_too_large_envelope(app, make_app):
    client = make_app(MAX_CONTENT_LENGTH=200).test_client()
    response = client.post("/api/v1/auth/token", json={"username": "someone", "password": "x" * 500})
    assert_envelope(response, 413, "payload_too_large")


def test_malformed_json_is_a_malformed_json_envelope(client):
    response = client.post("/api/v1/auth/token", data='{"username": "x",', content_type="application/json")
    assert_envelope(response, 400, "malformed_json")


@pytest.mark.parametrize(("data", "content_type"), [
    ("username=someone&password=secret", "application/x-www-form-urlencoded"),
    ('{"username": "someone", "password": "secret"}', "text/plain"),
])
def test_body_that_is_not_json_is_an_unsupported_media_type_envelope(client, data, content_type):
    response = client.post("/api/v1/auth/token", data=data, content_type=content_type)
    assert_envelope(response, 415, "unsupported_media_type")


def test_invalid_fields_are_a_validation_envelope_with_per_field_messages(client):
    response = client.post("/api/v1/auth/token", json={"username": 12, "password": ""})
    error = assert_envelope(response, 422, "validation_error")
    fields = error["details"]["fields"]
    assert set(fields) == {"username", "password"}
    assert all(isinstance(messages, list) and messages for messages in fields.values())


def test_json_that_is_not_an_object_is_a_validation_envelope(client):
    response = client.post("/api/v1/auth/token", json=["someone", "secret"])
    assert_envelope(response, 422, "validation_error")


def test_invalid_query_parameters_are_a_validation_envelope_naming_them(client, make_user, auth):
    headers = auth(make_user(role="auditor"))
    error = assert_envelope(client.get("/api/v1/audit?page=0&per_page=501", headers=headers), 422,
                            "validation_error")
    assert set(error["details"]["fields"]) == {"page", "per_page"}


def test_service_level_validation_uses_the_same_envelope(client, make_user, auth):
    response = client.post("/api/v1/users", json={"username": "new.user", "password": "short", "role": "auditor"},
                           headers=auth(make_user(role="admin")))
    error = assert_envelope(response, 422, "validation_error")
    assert list(error["details"]["fields"]) == ["password"]
    assert isinstance(error["details"]["fields"]["password"], list)


def test_unauthenticated_and_forbidden_use_the_envelope(client, make_user, auth):
    assert_envelope(client.get("/api/v1/audit"), 401, "unauthenticated")
    response = client.post("/api/v1/users", json={"username": "new.user", "password": "long enough password",
                                                  "role": "auditor"}, headers=auth(make_user(role="auditor")))
    assert_envelope(response, 403, "forbidden")


# --- unexpected exceptions --------------------------------------------------------------------------

def explode(**_kwargs):
    raise RuntimeError(SECRET_DETAIL)


def test_unexpected_exception_is_a_500_revealing_only_a_request_id(client, make_user, auth, monkeypatch, caplog):
    headers = auth(make_user(role="auditor"))
    monkeypatch.setattr(audit_service, "list_events", explode)
    with caplog.at_level(logging.ERROR, logger="marketplace"):
        response = client.get("/api/v1/audit", headers=headers)

    error = assert_envelope(response, 500, "internal_error")
    request_id = response.headers["X-Request-Id"]
    assert error["details"] == {"request_id": request_id}
    body = response.get_data(as_text=True)
    assert "hunter2" not in body
    assert "RuntimeError" not in body
    assert "Traceback" not in body

    [record] = [r for r in caplog.records if r.levelno == logging.ERROR and request_id in r.getMessage()]
    assert record.exc_info[0] is RuntimeError
    assert "/api/v1/audit" in record.getMessage()


def test_500_carries_the_request_id_the_client_sent(client, make_user, auth, monkeypatch, caplog):
    headers = {**auth(make_user(role="auditor")), "X-Request-Id": "console-req-42"}
    monkeypatch.setattr(audit_service, "list_events", explode)
    with caplog.at_level(logging.ERROR, logger="marketplace"):
        response = client.get("/api/v1/audit", headers=headers)
    assert assert_envelope(response, 500, "internal_error")["details"] == {"request_id": "console-req-42"}
    assert any("console-req-42" in r.getMessage() for r in caplog.records)


def test_database_outage_is_a_503_that_leaks_no_sql_and_the_next_request_works(client, make_user, auth, monkeypatch,
                                                                                caplog):
    headers = auth(make_user(role="auditor"))

    def broken_database(**_kwargs):
        raise OperationalError("SELECT secret_column FROM audit_event", {}, Exception("connection refused"))

    monkeypatch.setattr(audit_service, "verify_chain", broken_database)
    with caplog.at_level(logging.WARNING, logger="marketplace"):
        response = client.get("/api/v1/audit/verify", headers=headers)
    assert_envelope(response, 503, "database_unavailable")
    assert "secret_column" not in response.get_data(as_text=True)
    assert "secret_column" not in caplog.text
    monkeypatch.undo()
    assert client.get("/api/v1/audit/verify", headers=headers).status_code == 200


def test_exception_in_any_view_is_a_500_envelope_that_is_logged(app, make_app, caplog):
    application = make_app()

    @application.get("/api/v1/boom")
    def boom():
        raise KeyError(SECRET_DETAIL)

    with caplog.at_level(logging.ERROR, logger="marketplace"):
        response = application.test_client().get("/api/v1/boom", headers={"X-Request-Id": "boom-0001"})
    error = assert_envelope(response, 500, "internal_error")
    assert error["details"] == {"request_id": "boom-0001"}
    assert "hunter2" not in response.get_data(as_text=True)
    [record] = [r for r in caplog.records if "boom-0001" in r.getMessage()]
    assert record.exc_info[0] is KeyError


# --- request ids ------------------------------------------------------------------------------------

def test_request_id_sent_by_the_client_is_echoed(client):
    response = client.get("/api/v1/health", headers={"X-Request-Id": "abc.DEF-123_x"})
    assert response.headers["X-Request-Id"] == "abc.DEF-123_x"


def test_error_responses_echo_the_request_id_too(client):
    response = client.get("/api/v1/nowhere", headers={"X-Request-Id": "lost-0001"})
    assert response.status_code == 404
    assert response.headers["X-Request-Id"] == "lost-0001"


def test_request_without_an_id_gets_a_fresh_one(client):
    first = client.get("/api/v1/health").headers["X-Request-Id"]
    second = client.get("/api/v1/health").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert first != second


@pytest.mark.parametrize("unsafe", ["has spaces", "x" * 65, "line\tbreak", "<script>", "short-7"])
def test_unsafe_request_id_is_replaced_not_echoed(client, unsafe):
    echoed = client.get("/api/v1/health", headers={"X-Request-Id": unsafe}).headers["X-Request-Id"]
    assert echoed != unsafe
    assert re.fullmatch(r"[0-9a-f]{16}", echoed)

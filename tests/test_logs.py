"""Logs: JSON lines in production (LOG_FORMAT, by default json when APP_ENV=production, text elsewhere); one
access line per request with time (UTC), level, logger, request id, user id and role, method, URL rule, status
and duration; every other line of a request carries its request id; a CLI command's lines carry its run id
instead. X-Request-ID: the caller's when it is 8–64 of [A-Za-z0-9._-], else a new one, on every response.
In-process on both databases, and through a real gunicorn as deployed."""

import json
import logging
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from marketplace import logs
from marketplace.config import ConfigError
from marketplace.db import db
from tests.conftest import PASSWORD
from tests.support.apps import new_secrets
from tests.support.console import login_page
from tests.support.databases import fresh_database
from tests.support.servers import Server

RULE = "/api/v1/recipients/<int:recipient_id>"


def access_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == logs.ACCESS_LOGGER]


def command_lines(result) -> list[dict]:
    """The JSON lines of the commands' logger in a CLI run's stderr (the runner stands in for the terminal)."""
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "marketplace.commands"]


# --- request ids ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("given", ["abcd1234", "x" * 64, "A.b-c_d.0123", "0f1e2d3c4b5a6978"])
def test_a_well_formed_request_id_is_kept_and_echoed(client, given):
    assert client.get("/api/v1/health", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given


@pytest.mark.parametrize("given", ["abc1234", "x" * 65, "has space1", "semi;colon", "ünïcode-id", ""])
def test_a_malformed_request_id_is_replaced_by_a_new_one(client, given):
    echoed = client.get("/api/v1/health", headers={"X-Request-ID": given}).headers["X-Request-ID"]
    assert echoed != given
    assert re.fullmatch(r"[0-9a-f]{16}", echoed)


@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/", "/login", "/metrics", "/api/v1/health/ready",
                                  "/static/nothing.css"])
def test_every_response_carries_the_request_id_pages_errors_and_metrics_too(client, path):
    assert client.get(path, headers={"X-Request-ID": "trace-0001"}).headers["X-Request-ID"] == "trace-0001"


# --- the JSON lines -----------------------------------------------------------------------------------------

def test_each_request_writes_one_json_access_line_with_its_context(build, client, json_logs):
    admin = build.admin()
    headers = {**build.headers(admin), "X-Request-ID": "req-access-0001"}
    json_logs()

    response = client.get("/api/v1/recipients/987654?fields=secret-query", headers=headers)

    assert response.status_code == 404
    [line] = access_lines(json_logs())
    assert list(line)[:5] == ["time", "level", "logger", "message", "request_id"]
    assert line["level"] == "INFO"
    assert line["request_id"] == "req-access-0001"
    assert (line["method"], line["route"], line["status"]) == ("GET", RULE, 404)
    assert (line["user_id"], line["role"]) == (admin.id, "admin")
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    at = datetime.fromisoformat(line["time"])
    assert at.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - at).total_seconds()) < 60
    assert line["message"] == f"GET {RULE} 404 {line['duration_ms']}ms"
    text = str(line)
    assert "987654" not in text  # the rule, never the path
    assert "secret-query" not in text  # nor its query string


def test_an_anonymous_request_logs_no_user_and_an_unmatched_path_no_route(client, json_logs):
    client.get("/no/such/page/13912345678")
    [line] = access_lines(json_logs())
    assert (line["user_id"], line["role"], line["route"], line["status"]) == (None, None, logs.NO_ROUTE, 404)
    assert "13912345678" not in str(line)


def test_every_line_of_a_request_carries_its_request_id(make_app, app, json_logs):
    application = make_app(LOG_FORMAT="json", LOG_LEVEL="DEBUG")  # an app configures the process's logging

    @application.get("/api/v1/chatty")
    def chatty():
        logging.getLogger("vouchers.service.example").warning("something worth knowing")
        raise KeyError("boom")

    application.test_client().get("/api/v1/chatty", headers={"X-Request-ID": "req-chatty-01"})
    lines = json_logs()
    said = [line for line in lines if line["logger"] == "vouchers.service.example"]
    failed = [line for line in lines if line["level"] == "ERROR"]
    assert [line["request_id"] for line in said] == ["req-chatty-01"]
    assert [line["request_id"] for line in failed] == ["req-chatty-01"]
    assert "KeyError" in failed[0]["exc_info"]
    assert [line["status"] for line in access_lines(lines)] == [500]


def test_a_database_error_is_logged_without_the_values_of_its_statement(make_app, app, json_logs):
    application = make_app(LOG_FORMAT="json", LOG_LEVEL="DEBUG")

    @application.post("/api/v1/clash")
    def clash():
        # The same key twice: an IntegrityError whose message would otherwise quote both values.
        db.session.execute(text("INSERT INTO alembic_version (version_num) VALUES (:name), (:name)"),
                           {"name": "李秘密13912345678"})
        return "never"

    assert application.test_client().post("/api/v1/clash").status_code == 500
    lines = json_logs()
    [failed] = [line for line in lines if line["level"] == "ERROR"]
    assert "IntegrityError" in failed["exc_info"]
    assert "[SQL: INSERT INTO alembic_version" in failed["exc_info"]  # what failed, without the values
    assert logs.WITHHELD in failed["exc_info"]
    written = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    assert "13912345678" not in written
    assert "李秘密" not in written


def test_probes_and_scrapes_are_logged_at_debug_unless_they_fail(make_app, app, json_logs):
    client = make_app(LOG_FORMAT="json", LOG_LEVEL="DEBUG").test_client()
    client.get("/api/v1/health")
    client.get("/api/v1/health/ready")
    client.get("/metrics")
    client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})  # refused: worth seeing
    assert [(line["route"], line["level"]) for line in access_lines(json_logs())] == [
        ("/api/v1/health", "DEBUG"), ("/api/v1/health/ready", "DEBUG"), ("/metrics", "DEBUG"), ("/metrics", "INFO")]


def test_a_console_page_logs_its_user_and_role(build, client, json_logs):
    auditor = build.auditor()
    assert login_page(client, auditor.username, PASSWORD).status_code == 302
    json_logs()
    client.get("/staff/audit")
    [line] = access_lines(json_logs())
    assert (line["route"], line["status"], line["user_id"], line["role"]) == ("/staff/audit", 200, auditor.id,
                                                                              "auditor")


# --- CLI commands ---------------------------------------------------------------------------------------------

def test_a_command_logs_its_start_and_end_with_a_run_id_and_no_request_id(runner, json_logs):
    result = runner.invoke(args=["audit-verify"])
    assert result.exit_code == 0, result.output
    lines = command_lines(result)
    assert [line["message"].split(" (")[0] for line in lines] == ["command audit-verify started",
                                                                   "command audit-verify ok"]
    assert len({line["run_id"] for line in lines}) == 1
    assert {line["command"] for line in lines} == {"audit-verify"}
    assert all("request_id" not in line for line in lines)
    assert (lines[1]["outcome"], lines[1]["exit_code"]) == ("ok", 0)


def test_a_failing_command_logs_an_error_with_its_exit_code(runner, json_logs):
    result = runner.invoke(args=["settle", "999999", "2026-01"])
    assert result.exit_code == 1
    [end] = [line for line in command_lines(result) if "started" not in line["message"]]
    assert (end["level"], end["outcome"], end["exit_code"]) == ("ERROR", "failed", 1)


def test_two_runs_have_two_run_ids(runner, json_logs):
    lines = command_lines(runner.invoke(args=["audit-verify"])) + command_lines(runner.invoke(args=["audit-verify"]))
    assert len({line["run_id"] for line in lines}) == 2


# --- the format's setting ----------------------------------------------------------------------------------

@pytest.fixture
def restore_format():
    previous = logs.configured_format(), logging.getLogger(logs.PACKAGES[0]).level
    yield
    logs.configure(*previous)


def test_production_logs_json_and_development_text_unless_told(make_app, app, restore_format):
    make_app(APP_ENV="production", **new_secrets())
    assert logs.configured_format() == "json"
    make_app(APP_ENV="development")
    assert logs.configured_format() == "text"
    make_app(APP_ENV="production", LOG_FORMAT="text", **new_secrets())
    assert logs.configured_format() == "text"
    make_app(APP_ENV="development", LOG_FORMAT="json", LOG_LEVEL="warning")
    assert logs.configured_format() == "json"
    assert logging.getLogger("vouchers").level == logging.WARNING


@pytest.mark.parametrize(("setting", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD")])
def test_an_unknown_log_format_or_level_is_refused_at_start(make_app, app, setting, value):
    with pytest.raises(ConfigError, match=setting):
        make_app(**{setting: value})


def test_text_lines_name_the_request_id(make_app, app, capsys, restore_format):
    client = make_app(LOG_FORMAT="text", LOG_LEVEL="INFO").test_client()
    capsys.readouterr()
    client.get("/api/v1/recipients/5", headers={"X-Request-ID": "text-line-01"})
    [line] = [each for each in capsys.readouterr().err.splitlines() if "marketplace.access" in each
              and "text-line-01" in each]
    assert re.search(rf"INFO \[text-line-01\] marketplace.access: GET {re.escape(RULE)} 401 [0-9.]+ms$", line)


# --- as deployed -------------------------------------------------------------------------------------------

def test_gunicorn_in_production_writes_json_access_lines_with_the_callers_request_id(tmp_path):
    with fresh_database("sqlite", tmp_path, prefix="vm_logs") as url:
        server = Server(url, tmp_path, workers=1, threads=2)
        try:
            server.start()
            reply = server.call("GET", "/api/v1/recipients/77?q=13912345678",
                                headers={"X-Request-ID": "gunicorn-req-01"})
            assert reply.headers["x-request-id"] == "gunicorn-req-01"
            logged = server.error_text()
        finally:
            server.stop()
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    [line] = [each for each in access_lines(lines) if each.get("request_id") == "gunicorn-req-01"]
    assert (line["method"], line["route"], line["status"]) == ("GET", RULE, 401)
    assert "13912345678" not in logged

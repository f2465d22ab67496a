"""GET /metrics: Prometheus's text format, to METRICS_TOKEN's bearer or (no token set) to callers on this host;
requests counted by URL rule, method and status with their latency; redemptions by result code; issuance and
settlement runs timed from the API, the console and the CLI (a repeated form runs, and counts, nothing);
audit verifications by result; anomaly flags by rule. In-process on both databases, and through a real
gunicorn with two workers sharing PROMETHEUS_MULTIPROC_DIR: the sum over both equals what was sent, each
worker shows as a pid, and a worker killed and replaced leaves its counts in the sums and its pid out."""

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from marketplace import metrics
from marketplace.audit.models import AuditEvent
from marketplace.db import db
from tests.conftest import PASSWORD, error_code
from tests.support.console import login_page
from tests.support.databases import fresh_database, postgres_unavailable_reason
from tests.support.servers import PROJECT_ROOT, VENV_BIN, Server
from tests.test_scan_pages import inputs, offer_form, read_code

API = "/api/v1"
REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


def sample(name: str, **labels) -> float:
    """The value of one series in this process (the tests run without PROMETHEUS_MULTIPROC_DIR)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def families(exposition: str) -> dict:
    """`{metric name: [(labels, value), …]}` of a scrape (sample names with their _total, _count… suffixes)."""
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(exposition):
        for each in family.samples:
            found.setdefault(each.name, []).append((each.labels, each.value))
    return found


def hidden_fields(page_html: str) -> dict:
    return {field["name"]: field.get("value", "") for field in inputs(page_html) if field.get("type") == "hidden"}


# --- who may read them ------------------------------------------------------------------------------------

def test_a_caller_on_this_host_reads_the_metrics_in_prometheus_text_format_when_no_token_is_set(client):
    client.get(f"{API}/health")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Request-ID"]
    scraped = families(response.get_data(as_text=True))
    assert "marketplace_http_requests_total" in scraped
    assert "marketplace_http_request_duration_seconds_bucket" in scraped


def test_a_scraper_that_asks_for_openmetrics_gets_it(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


def test_another_host_is_refused_without_a_token_in_the_apis_error_format(client):
    response = client.get("/metrics", environ_base=REMOTE)
    assert response.status_code == 403
    assert response.is_json
    assert error_code(response) == "forbidden"
    assert "METRICS_TOKEN" in response.get_json()["error"]["message"]


def test_a_proxy_on_this_host_does_not_make_its_clients_local(client):
    # nginx connects from 127.0.0.1 for everyone; what it forwards is somebody else's request.
    response = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 403
    assert error_code(response) == "forbidden"


def test_with_a_token_set_only_its_bearer_reads_them_from_anywhere(make_app):
    token = "metrics-token-" + "x" * 32
    client = make_app(METRICS_TOKEN=token).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
        refused = client.get("/metrics", headers=headers)  # from this host too: the token decides
        assert refused.status_code == 401, headers
        assert error_code(refused) == "unauthenticated"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    allowed = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}, environ_base=REMOTE)
    assert allowed.status_code == 200
    assert "marketplace_http_requests_total" in allowed.get_data(as_text=True)


# --- what they count -----------------------------------------------------------------------------------------

def test_requests_are_counted_by_url_rule_method_and_status_never_by_path(client):
    rule = f"{API}/recipients/<int:recipient_id>"
    before = sample("marketplace_http_requests_total", method="GET", route=rule, status="401")
    timed = sample("marketplace_http_request_duration_seconds_count", method="GET", route=rule)
    lost = sample("marketplace_http_requests_total", method="GET", route="(no route)", status="404")

    assert client.get(f"{API}/recipients/424242").status_code == 401
    assert client.get(f"{API}/recipients/434343?q=13912345678").status_code == 401
    assert client.get("/nowhere/110101194910011238").status_code == 404

    assert sample("marketplace_http_requests_total", method="GET", route=rule, status="401") == before + 2
    assert sample("marketplace_http_request_duration_seconds_count", method="GET", route=rule) == timed + 2
    assert sample("marketplace_http_requests_total", method="GET", route="(no route)", status="404") == lost + 1
    scraped = client.get("/metrics").get_data(as_text=True)
    for path_data in ("424242", "434343", "13912345678", "110101194910011238", "/nowhere"):
        assert path_data not in scraped


@pytest.fixture
def door(build, client):
    """The standard world, this month issued, alice and bob chose p1 for both items."""
    world = build.world()
    build.issue(world.programme, build.period())
    build.choose_all(world, world.p1)
    return world


def test_redemptions_are_counted_by_result_code(build, client, door):
    provider = build.headers(door.p1.user)
    token = build.presence_token(door.alice)
    success = sample("marketplace_redemptions_total", result="success")
    used = sample("marketplace_redemptions_total", result="token_already_used")
    invalid = sample("marketplace_redemptions_total", result="invalid_token")

    assert client.post(f"{API}/redemptions", json={"presence_token": token, "item_code": door.meal},
                       headers=provider).status_code == 201
    assert client.post(f"{API}/redemptions", json={"presence_token": token, "item_code": door.meal},
                       headers=provider).status_code == 409
    assert client.post(f"{API}/redemptions", json={"short_code": "12345678", "item_code": door.meal},
                       headers=provider).status_code == 422

    assert sample("marketplace_redemptions_total", result="success") == success + 1
    assert sample("marketplace_redemptions_total", result="token_already_used") == used + 1
    assert sample("marketplace_redemptions_total", result="invalid_token") == invalid + 1


def test_a_redemption_confirmed_twice_at_the_door_counts_once(build, client, door):
    assert login_page(client, door.p1.user.username, PASSWORD).status_code == 302
    success = sample("marketplace_redemptions_total", result="success")
    offer = read_code(client, scanned=build.presence_token(door.bob))
    form = offer_form(offer.get_data(as_text=True), item_code=door.meal)
    assert client.post("/provider/scan/confirm", data=form).status_code == 303
    assert client.post("/provider/scan/confirm", data=form).status_code == 303  # a double tap redeems nothing
    assert sample("marketplace_redemptions_total", result="success") == success + 1


def test_issuance_runs_are_timed_from_the_api_and_refusals_by_their_code(build, client):
    rich, poor = build.world(), build.world(budget_fen=100)
    admin = build.headers(build.system_admin)
    ok = sample("marketplace_run_duration_seconds_count", run="issuance", result="ok")
    short = sample("marketplace_run_duration_seconds_count", run="issuance", result="budget_exceeded")

    answer = client.post(f"{API}/programmes/{rich.programme.id}/issuance", json={"period": build.period()},
                         headers=admin)
    assert answer.status_code == 200, answer.get_json()
    refused = client.post(f"{API}/programmes/{poor.programme.id}/issuance", json={"period": build.period()},
                          headers=admin)
    assert error_code(refused) == "budget_exceeded"

    assert sample("marketplace_run_duration_seconds_count", run="issuance", result="ok") == ok + 1
    assert sample("marketplace_run_duration_seconds_count", run="issuance", result="budget_exceeded") == short + 1
    assert sample("marketplace_run_duration_seconds_sum", run="issuance", result="ok") > 0


def test_an_issuance_form_posted_twice_runs_and_counts_once(build, client):
    world = build.world()
    assert login_page(client, build.admin().username, PASSWORD).status_code == 302
    ok = sample("marketplace_run_duration_seconds_count", run="issuance", result="ok")
    path = f"/staff/programmes/{world.programme.id}/issue"
    form = {**hidden_fields(client.get(f"{path}?period={build.period()}").get_data(as_text=True)),
            "period": build.period()}
    assert client.post(path, data=form).status_code == 303
    assert client.post(path, data=form).status_code == 303  # a double click
    assert sample("marketplace_run_duration_seconds_count", run="issuance", result="ok") == ok + 1


def test_settlement_runs_are_timed_from_the_cli_and_the_api(build, client, runner):
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.choose_all(world, world.p1)
    build.redeem(world.p1, world.alice, world.meal, delivered_at=build.in_month(-1, 10))
    ok = sample("marketplace_run_duration_seconds_count", run="settlement", result="ok")

    result = runner.invoke(args=["settle", str(world.programme.id), build.period(-1)])
    assert result.exit_code == 0, result.output
    again = client.post(f"{API}/programmes/{world.programme.id}/settlements", json={"period": build.period(-1)},
                        headers=build.headers(build.system_admin))
    assert again.status_code == 201
    assert again.get_json()["items"] == []  # nothing twice, but a run all the same

    assert sample("marketplace_run_duration_seconds_count", run="settlement", result="ok") == ok + 2


def test_audit_verifications_are_counted_by_result_from_the_api_the_page_and_the_cli(app, build, client, runner):
    build.world()  # some audited changes
    auditor = build.auditor()
    ok = sample("marketplace_audit_verifications_total", result="ok")
    broken = sample("marketplace_audit_verifications_total", result="broken")

    assert client.get(f"{API}/audit/verify", headers=build.headers(auditor)).get_json()["ok"] is True
    assert runner.invoke(args=["audit-verify"]).exit_code == 0
    assert login_page(client, auditor.username, PASSWORD).status_code == 302
    assert client.get("/staff/audit/verify").status_code == 200
    assert sample("marketplace_audit_verifications_total", result="ok") == ok + 3
    assert sample("marketplace_audit_last_verification_timestamp_seconds", result="ok") == pytest.approx(time.time(),
                                                                                                        abs=60)

    first = build.read(lambda: db.session.scalar(db.select(db.func.min(AuditEvent.id))))
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_event SET data = :data WHERE id = :id"),
                           {"data": '{"tampered":true}', "id": first})
    assert runner.invoke(args=["audit-verify"]).exit_code == 1
    assert sample("marketplace_audit_verifications_total", result="broken") == broken + 1


def test_anomaly_flags_are_counted_by_rule():
    before = sample("marketplace_anomaly_flags_total", rule="staff_velocity")
    unused = sample("marketplace_anomaly_flags_total", rule="over_capacity")
    metrics.record_anomalies({"staff_velocity": 3, "over_capacity": 0})
    assert sample("marketplace_anomaly_flags_total", rule="staff_velocity") == before + 3
    assert sample("marketplace_anomaly_flags_total", rule="over_capacity") == unused


# --- through gunicorn: two workers, one set of numbers ------------------------------------------------------

READY = f"{API}/health/ready"


def served_by_workers(server: Server) -> set[str]:
    scraped = families(server.call("GET", "/metrics").body.decode())
    return {labels["pid"] for labels, value in scraped.get("marketplace_worker_up", []) if value == 1}


def ready_count(server: Server) -> float:
    scraped = families(server.call("GET", "/metrics").body.decode())
    return sum(value for labels, value in scraped.get("marketplace_http_requests_total", [])
               if labels["route"] == READY and labels["status"] == "200")


def send_ready(server: Server, count: int) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _i: server.call("GET", READY).status, range(count)))
    assert statuses == [200] * count


def until_both_served(server: Server, pids: set[int], sent: int, *, timeout: float = 60) -> int:
    """Send batches of readiness probes until both *pids* have answered one (their `worker_up`; a new worker
    takes a few seconds to load the app); the total sent."""
    deadline = time.monotonic() + timeout
    while served_by_workers(server) != {str(pid) for pid in pids}:
        assert time.monotonic() < deadline, f"workers {pids} did not both answer: {served_by_workers(server)}"
        send_ready(server, 10)
        sent += 10
        time.sleep(0.2)
    return sent


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request, tmp_path):
    """gunicorn (2 workers × 4 threads) with a metrics folder of its own, holding a stale file of an earlier run."""
    if request.param == "postgresql" and (reason := postgres_unavailable_reason()):
        pytest.skip(reason)
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"not a metrics file: gunicorn must empty the folder at start")
    with fresh_database(request.param, tmp_path, prefix="vm_metrics") as url:
        server = Server(url, tmp_path, workers=2, threads=4, settings={"PROMETHEUS_MULTIPROC_DIR": str(folder)})
        try:
            server.start()
            yield server, folder
        finally:
            server.stop()


def test_two_gunicorn_workers_add_up_to_what_was_sent_and_a_replaced_worker_keeps_its_counts(served):
    server, folder = served
    first = set(server.wait_for_workers(2))
    assert len(first) == 2
    assert not (folder / "counter_1.db").exists()

    sent = until_both_served(server, first, 0)
    send_ready(server, 40)
    sent += 40
    assert ready_count(server) == sent  # whichever worker answered the scrape, it added up both
    assert {path.name for path in folder.glob("counter_*.db")} >= {f"counter_{pid}.db" for pid in first}

    killed = min(first)
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while killed in (now := set(server.worker_pids())) or len(now) < 2:
        assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.1)
    sent = until_both_served(server, now, sent)
    assert ready_count(server) == sent  # the dead worker's counts are still in the sum
    assert str(killed) not in served_by_workers(server)  # child_exit dropped its live gauge
    assert server.server_side_5xx() == []

    # A cron job given the same folder adds its figures to the same scrape.
    subprocess.run([str(VENV_BIN / "flask"), "--app", "wsgi", "audit-verify"], cwd=PROJECT_ROOT,
                   env=server.environment(), check=True, capture_output=True, timeout=120)
    scraped = families(server.call("GET", "/metrics").body.decode())
    assert [value for labels, value in scraped["marketplace_audit_verifications_total"]
            if labels["result"] == "ok"] == [1.0]

"""Prometheus metrics at GET /metrics (prometheus_client), shared by every gunicorn worker.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets one up, and marks dead workers in `child_exit`)
each process writes its samples to files there and a scrape adds them up, whichever worker answers it;
without it (the development server, the tests) the samples live in this process.

Series (all prefixed `marketplace_`):
- `http_requests_total{method, route, status}`, `http_request_duration_seconds{method, route}`: every
  request, by URL rule (never the path: no ids of people, no tokens);
- `redemptions_total{result}`: redemption attempts answered, `success` or the refusal's error code;
- `anomaly_flags_total{rule}`: market-integrity flags created by detection;
- `run_duration_seconds{run, result}`: issuance and settlement runs (API, console and CLI);
- `audit_verifications_total{result}` (`ok`, `broken`) and `audit_last_verification_timestamp_seconds{result}`;
- `worker_up{pid}` (with PROMETHEUS_MULTIPROC_DIR): 1 for each live worker process.

Access (API.md "Operations"): `Authorization: Bearer <METRICS_TOKEN>`; with no METRICS_TOKEN set, only a
caller on this host (a loopback address, and no X-Forwarded-For: not through a proxy on this host).
"""

import hmac
import ipaddress
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Blueprint, Flask, current_app, g, jsonify, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

from marketplace.errors import DomainError, Forbidden, Unauthenticated
from marketplace.logs import route

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):
    # A CLI command run with the servers' environment writes its samples there too: make sure it exists.
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)

# Runs take from a second to many minutes on a province's data.
RUN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

http_requests = Counter("marketplace_http_requests", "HTTP requests answered, by URL rule, method and status",
                        ["method", "route", "status"])
http_duration = Histogram("marketplace_http_request_duration_seconds",
                          "Time to answer an HTTP request (until the response starts), by URL rule and method",
                          ["method", "route"])
redemptions = Counter("marketplace_redemptions", "Redemption attempts answered, by result (success or error code)",
                      ["result"])
anomaly_flags = Counter("marketplace_anomaly_flags", "Market-integrity flags created by detection, by rule",
                        ["rule"])
run_duration = Histogram("marketplace_run_duration_seconds", "Duration of issuance and settlement runs, by result",
                         ["run", "result"], buckets=RUN_BUCKETS)
audit_verifications = Counter("marketplace_audit_verifications", "Audit chain verifications, by result (ok, broken)",
                              ["result"])
audit_last_verification = Gauge("marketplace_audit_last_verification_timestamp_seconds",
                                "When the audit chain was last verified (Unix time), by result", ["result"],
                                multiprocess_mode="max")
worker_up = Gauge("marketplace_worker_up", "1 for each live process serving the app (its pid label: multiprocess)",
                  multiprocess_mode="liveall")
_marked_pid = None

scrape_page = Blueprint("metrics", __name__)


# --- recording ------------------------------------------------------------------------------------------

def _start_request() -> None:
    global _marked_pid
    if _marked_pid != os.getpid():  # once per process (after a fork too)
        worker_up.set(1)
        _marked_pid = os.getpid()
    g.metrics_started = time.perf_counter()


def _observe_request(response):
    started = g.get("metrics_started")
    rule = route()
    method = request.method if request.method in HTTP_METHODS else "other"
    http_requests.labels(method, rule, str(response.status_code)).inc()
    if started is not None:
        http_duration.labels(method, rule).observe(time.perf_counter() - started)
    return response


@contextmanager
def redemption_result() -> Iterator[None]:
    """Count the redemption attempt inside: `success` when it ends (committed), else its error code."""
    try:
        yield
    except DomainError as refused:
        redemptions.labels(refused.code).inc()
        raise
    except Exception:
        redemptions.labels("error").inc()
        raise
    redemptions.labels("success").inc()


@contextmanager
def timed_run(run: str) -> Iterator[None]:
    """Time the run inside (`issuance`, `settlement`): result `ok`, the refusal's error code, or `error`."""
    started = time.perf_counter()
    result = "error"
    try:
        yield
        result = "ok"
    except DomainError as refused:
        result = refused.code
        raise
    finally:
        run_duration.labels(run, result).observe(time.perf_counter() - started)


def record_anomalies(by_rule: dict[str, int]) -> None:
    """Count the flags one detection run created, `{rule: how many}`."""
    for rule, created in by_rule.items():
        if created:
            anomaly_flags.labels(rule).inc(created)


def record_audit_verification(ok: bool) -> None:
    result = "ok" if ok else "broken"
    audit_verifications.labels(result).inc()
    audit_last_verification.labels(result).set(time.time())


# --- the scrape -----------------------------------------------------------------------------------------

def _refusal(error: DomainError, status: int):
    response = jsonify({"error": {"code": error.code, "message": error.message, "details": {}}})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def _local_caller() -> bool:
    try:
        loopback = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False
    # A proxy on this host (nginx) connects from 127.0.0.1 for every client: what it forwards is not local.
    return loopback and "X-Forwarded-For" not in request.headers and "Forwarded" not in request.headers


def exposition(accept: str | None) -> tuple[bytes, str]:
    """Every series, summed over the processes' files in multiprocess mode, and its content type: Prometheus's
    text format 0.0.4 unless *accept* (the Accept header) asks for OpenMetrics or a later text format."""
    encode, content_type = choose_encoder(accept or "")
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return encode(registry), content_type
    return encode(REGISTRY), content_type


@scrape_page.get("/metrics")
def scrape():
    """The metrics, to METRICS_TOKEN's bearer (401 else) or, with no token set, to local callers (403 else)."""
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _refusal(Unauthenticated("Send Authorization: Bearer <METRICS_TOKEN>."), 401)
    elif not _local_caller():
        return _refusal(Forbidden("Only this host may read the metrics; set METRICS_TOKEN to scrape from another."),
                        403)
    body, content_type = exposition(request.headers.get("Accept"))
    return body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"}


def init_app(app: Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_observe_request)
    app.register_blueprint(scrape_page)


def mark_process_dead(pid: int) -> None:
    """gunicorn's `child_exit`: forget a dead worker's live gauges (its counts stay in the sums)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)

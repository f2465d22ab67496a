"""Login throttling through a real gunicorn: counters shared by every worker, counted atomically.

(a) Redis, 2 workers × 8 threads, PostgreSQL and SQLite: 30 wrong logins for one username from one
    client at once → no more 401s than LOGIN_FAILURES_PER_USERNAME_AND_CLIENT, every other answer
    429 `too_many_attempts`; the owner still logs in from another client. The same from 30 clients
    at once → no more 401s than the per-username ceiling.
(b) memory:// and the worker count gunicorn.conf.py chooses (what `make run` does): one worker, so
    12 wrong logins in a row give exactly the limit of 401s and then only 429s.
(c) memory:// with two workers forced: gunicorn warns at start that the counters are per process.

Every test uses a Redis key prefix of its own, so suites sharing the Redis server never meet.
"""

import logging
import secrets
from collections import Counter

import pytest

from marketplace.auth import service as auth_service
from marketplace.db import transaction, utcnow
from tests.support.databases import REDIS_URL, fresh_database, postgres_unavailable_reason, redis_unavailable_reason
from tests.support.races import race
from tests.support.servers import Server

log = logging.getLogger(__name__)  # the measured outcomes: pytest --log-cli-level=INFO shows them
PASSWORD = "correct horse battery"
RACERS = 30
PER_PAIR = 5
CEILING = 10
SETTINGS = {"LOGIN_FAILURES_PER_USERNAME_AND_CLIENT": PER_PAIR, "LOGIN_FAILURES_PER_USERNAME": CEILING,
            "LOGIN_FAILURES_PER_CLIENT": 100, "PROXY_FIX_X_FOR": 1}


def make_login(server: Server, username: str) -> None:
    application = server.local_app()
    with application.app_context(), transaction():
        auth_service.create_user(username=username, password=PASSWORD, role="auditor", actor=None, now=utcnow())


def attempt(server: Server, username: str, password: str, address: str):
    reply = server.call("POST", "/api/v1/auth/token", json_body={"username": username, "password": password},
                        headers={"X-Forwarded-For": address})
    return reply.status, reply.error_code


def outcomes(replies) -> Counter:
    failures = [repr(reply) for reply in replies if isinstance(reply, BaseException)]
    assert failures == [], failures
    return Counter(replies)


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def redis_server(request, tmp_path_factory):
    if request.param == "postgresql" and (reason := postgres_unavailable_reason()):
        pytest.skip(reason)
    if reason := redis_unavailable_reason():
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp(f"login-{request.param}")
    prefix = f"test-login-races-{secrets.token_hex(6)}"
    with fresh_database(request.param, folder, prefix="vm_login") as url:
        server = Server(url, folder, ratelimit_uri=REDIS_URL, settings={**SETTINGS, "RATELIMIT_KEY_PREFIX": prefix})
        try:
            server.start()
            yield server
        finally:
            # The test process's app on the same prefix: clears exactly this run's counters.
            storage = server.local_app().extensions["rate_limiter"].storage
            if getattr(storage, "key_prefix", None) == prefix:
                storage.reset()
            server.stop()


def test_concurrent_wrong_logins_from_one_client_get_at_most_the_limit_of_401s(redis_server, record_property):
    username = f"racer-{secrets.token_hex(4)}"
    make_login(redis_server, username)

    replies = race(RACERS, lambda _index: attempt(redis_server, username, "wrong password!", "203.0.113.5"))

    outcome = outcomes(replies)
    record_property("outcome", dict(outcome))
    log.info("%s concurrent wrong logins, one client: %s", RACERS, dict(outcome))
    assert outcome[(401, "invalid_credentials")] <= PER_PAIR
    assert outcome[(401, "invalid_credentials")] + outcome[(429, "too_many_attempts")] == RACERS
    # The guesser's client stays closed, even to the right password; the owner's is open.
    assert attempt(redis_server, username, PASSWORD, "203.0.113.5") == (429, "too_many_attempts")
    assert attempt(redis_server, username, PASSWORD, "198.51.100.9") == (200, None)
    assert redis_server.client_side_5xx() == []
    assert redis_server.server_side_5xx() == []


def test_concurrent_wrong_logins_from_many_clients_get_at_most_the_ceiling_of_401s(redis_server, record_property):
    username = f"spread-{secrets.token_hex(4)}"
    make_login(redis_server, username)

    replies = race(RACERS, lambda index: attempt(redis_server, username, "wrong password!", f"10.20.0.{index + 1}"))

    outcome = outcomes(replies)
    record_property("outcome", dict(outcome))
    log.info("%s concurrent wrong logins, %s clients: %s", RACERS, RACERS, dict(outcome))
    assert outcome[(401, "invalid_credentials")] <= CEILING
    assert outcome[(401, "invalid_credentials")] + outcome[(429, "too_many_attempts")] == RACERS
    assert attempt(redis_server, username, PASSWORD, "10.20.1.1") == (429, "too_many_attempts")
    assert redis_server.server_side_5xx() == []


def test_with_memory_counters_gunicorn_runs_one_worker_and_the_limit_holds(tmp_path):
    # What `make run` does: gunicorn.conf.py picks the worker count; RATELIMIT_STORAGE_URI is memory://.
    with fresh_database("sqlite", tmp_path, prefix="vm_login") as url:
        server = Server(url, tmp_path, workers=None, threads=None, settings=SETTINGS)
        try:
            server.start()
            assert len(server.wait_for_workers(1)) == 1
            username = f"serial-{secrets.token_hex(4)}"
            make_login(server, username)
            statuses = [attempt(server, username, "wrong password!", "203.0.113.5")[0] for _ in range(12)]
            assert len(server.worker_pids()) == 1
        finally:
            server.stop()
    assert statuses == [401] * PER_PAIR + [429] * (12 - PER_PAIR)


def test_several_workers_with_memory_counters_are_warned_about_at_start(tmp_path):
    with fresh_database("sqlite", tmp_path, prefix="vm_login") as url:
        server = Server(url, tmp_path, workers=2, threads=1)
        try:
            server.start()
            log = server.error_text()
        finally:
            server.stop()
    assert "RATELIMIT_STORAGE_URI=memory://" in log
    assert "2 workers" in log

"""GET /api/v1/health/ready: 200 when the database answers, its schema is at the migrations' head and (when the
login counters live in Redis) Redis answers; else 503. Both answers list the checks `{name, ok}`. Liveness
(GET /api/v1/health) stays as it was. On both databases."""

import pytest
from alembic.script import ScriptDirectory
from flask_migrate import upgrade

from marketplace.app import PROJECT_ROOT
from tests.support.apps import dispose, make_app
from tests.support.databases import REDIS_URL, fresh_database, redis_unavailable_reason

READY = "/api/v1/health/ready"
CLOSED_PORT = 1  # nothing listens there: connections are refused at once


def checks(response) -> dict[str, bool]:
    return {check["name"]: check["ok"] for check in response.get_json()["checks"]}


def test_a_migrated_database_is_ready_and_says_which_checks_passed(client):
    response = client.get(READY)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": [{"name": "database", "ok": True},
                                                                 {"name": "schema", "ok": True}]}
    assert response.headers["X-Request-ID"]
    assert response.headers["Cache-Control"] == "no-store"


def test_a_database_one_migration_behind_is_not_ready(backend, tmp_path):
    script = ScriptDirectory(str(PROJECT_ROOT / "migrations"))
    previous = script.get_revision(script.get_current_head()).down_revision
    with fresh_database(backend, tmp_path, prefix="vm_ready") as url:
        application = make_app(url, instance_path=tmp_path / "instance")
        try:
            with application.app_context():
                upgrade(revision=previous)
            behind = application.test_client().get(READY)
            with application.app_context():
                upgrade()
            caught_up = application.test_client().get(READY)
        finally:
            dispose(application)
    assert behind.status_code == 503
    assert behind.get_json()["status"] == "not_ready"
    assert checks(behind) == {"database": True, "schema": False}
    assert caught_up.status_code == 200


def test_an_empty_database_is_not_ready(backend, tmp_path):
    with fresh_database(backend, tmp_path, prefix="vm_ready") as url:
        application = make_app(url, instance_path=tmp_path / "instance")
        try:
            response = application.test_client().get(READY)
        finally:
            dispose(application)
    assert response.status_code == 503
    assert checks(response) == {"database": True, "schema": False}


def test_a_database_that_does_not_answer_is_not_ready(tmp_path):
    application = make_app(f"postgresql+psycopg://postgres@127.0.0.1:{CLOSED_PORT}/nowhere",
                           instance_path=tmp_path / "instance")
    try:
        response = application.test_client().get(READY)
    finally:
        dispose(application)
    assert response.status_code == 503
    assert checks(response) == {"database": False, "schema": False}


def test_redis_is_checked_when_it_holds_the_login_counters(make_app, app):
    if reason := redis_unavailable_reason():
        pytest.skip(reason)
    response = make_app(RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_KEY_PREFIX="test-readiness").test_client().get(READY)
    assert response.status_code == 200
    assert checks(response) == {"database": True, "schema": True, "redis": True}


def test_a_redis_that_does_not_answer_is_not_ready(make_app, app):
    client = make_app(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{CLOSED_PORT}").test_client()
    response = client.get(READY)
    assert response.status_code == 503
    assert response.get_json()["status"] == "not_ready"
    assert checks(response) == {"database": True, "schema": True, "redis": False}
    assert client.get("/api/v1/health").status_code == 200  # alive all the same: liveness does not ask Redis

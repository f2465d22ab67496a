"""Test fixtures: every test runs once on SQLite and once on PostgreSQL.

PostgreSQL comes from TEST_DATABASE_URL (default: the local `test` database). When it does not answer,
its half of the suite is skipped with the reason shown — unless REQUIRE_POSTGRES=1 (CI), where that
is a failure. The browser tests (tests/browser/) are skipped the same way when Chromium is missing,
unless REQUIRE_BROWSER=1. Schemas are built by running the migrations, never by `create_all`. Each
backend gets one app for the session; after each test every table is emptied (reference data that the migrations
seed is kept) and the login-failure counters are reset. The plumbing behind these fixtures (databases,
apps, servers, races) is the package tests/support/.
"""

import os
from itertools import count

import pytest

from marketplace.auth import service as auth_service
from marketplace.db import transaction, utcnow
from tests.support import apps
from tests.support.browsers import chromium_unavailable_reason, chromium_version
from tests.support.databases import empty_database, pg_url, postgres_unavailable_reason, reset_postgres_schema

PASSWORD = "correct horse battery"

_PG_REASON = postgres_unavailable_reason()
BROWSER_REASON = chromium_unavailable_reason()


def pytest_sessionstart(session):
    if _PG_REASON and os.environ.get("REQUIRE_POSTGRES") == "1":
        raise pytest.UsageError(f"REQUIRE_POSTGRES=1 but {_PG_REASON}")
    if BROWSER_REASON and os.environ.get("REQUIRE_BROWSER") == "1":
        raise pytest.UsageError(f"REQUIRE_BROWSER=1 but {BROWSER_REASON}")


def pytest_report_header(config):
    return [f"databases: sqlite, postgresql ({'skipped: ' + _PG_REASON if _PG_REASON else pg_url()})",
            f"browser tests: {'skipped: ' + BROWSER_REASON if BROWSER_REASON else chromium_version()}"]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request):
    if request.param == "postgresql" and _PG_REASON:
        pytest.skip(_PG_REASON)
    return request.param


@pytest.fixture(scope="session")
def database_url(backend, tmp_path_factory):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.sqlite3'}"
    reset_postgres_schema(pg_url())
    return pg_url()


@pytest.fixture(scope="session")
def app(database_url, tmp_path_factory):
    application = apps.make_app(database_url, instance_path=tmp_path_factory.mktemp("instance"), migrate=True)
    yield application
    apps.dispose(application)


@pytest.fixture
def make_app(database_url, tmp_path):
    """More apps on the test database, each with settings of its own: `make_app(TOKEN_KEYS=…)`.

    They share the session app's database (request `app` too for its migrated schema and the cleaning
    after the test) and are disposed of after the test.
    """
    built = []

    def factory(**overrides):
        application = apps.make_app(database_url, instance_path=tmp_path / f"instance-{len(built) + 1}", **overrides)
        built.append(application)
        return application

    yield factory
    for application in built:
        apps.dispose(application)


@pytest.fixture(autouse=True)
def _clean_database(request):
    yield
    if "app" in request.fixturenames:
        empty_database(request.getfixturevalue("app"))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


_serial = count(1)


@pytest.fixture
def make_user(app):
    """Create a user through the service layer: `make_user(role="admin", region_code=None)`."""

    def factory(*, role="admin", username=None, password=PASSWORD, region_code=None, provider_id=None,
                recipient_id=None):
        username = username or f"{role}-{next(_serial)}"
        with app.app_context(), transaction():
            user = auth_service.create_user(username=username, password=password, role=role, region_code=region_code,
                                            provider_id=provider_id, recipient_id=recipient_id, actor=None,
                                            now=utcnow())
        return user

    return factory


@pytest.fixture
def token_for(client):
    """Log in through the API and return the bearer token: `token_for(user)`."""

    def factory(user, password=PASSWORD):
        response = client.post("/api/v1/auth/token", json={"username": user.username, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["token"]

    return factory


@pytest.fixture
def auth(token_for):
    """Headers for a bearer-authenticated request as *user*: `client.get(url, headers=auth(user))`."""

    def factory(user):
        return {"Authorization": f"Bearer {token_for(user)}"}

    return factory


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


@pytest.fixture
def make_item(app):
    """Add a catalogue service item: `make_item(code="HC-MEAL", standard_price_fen=1500)`."""

    def factory(*, code=None, name="助餐", category_code="basic_public", unit="餐", standard_price_fen=1500):
        from marketplace.catalogue import service as catalogue_service

        with app.app_context(), transaction():
            return catalogue_service.create_item(code=code or f"ITEM-{next(_serial)}", name=name,
                                                 category_code=category_code, unit=unit,
                                                 standard_price_fen=standard_price_fen, nature="service", actor=None,
                                                 now=utcnow())

    return factory


def programme_payload(item_codes, **overrides) -> dict:
    """A valid POST /programmes body buying *item_codes*."""
    payload = {
        "name": "蒲江县居家养老服务券",
        "authority": "蒲江县民政局",
        "region_code": "510131",
        "starts_on": "2026-01-01",
        "ends_on": "2026-12-31",
        "items": [{"item_code": code, "unit_price_fen": 1200, "monthly_quota": 4} for code in item_codes],
        "eligibility": {"min_age": 60, "tags_any": []},
        "copay_percent": {"default": 20, "low_income": 5},
        "reserved_share_percent": 30,
        "settlement_rules": [{"min_score": 0, "pay_percent": 60}, {"min_score": 80, "pay_percent": 100}],
        "rating_window_days": 30,
        "reversal_window_hours": 48,
        "choice_required": True,
    }
    payload.update(overrides)
    return payload


@pytest.fixture
def make_programme(app, make_item):
    """Create a programme through the service layer: `make_programme(budget_fen=100_000, activate=True)`."""

    def factory(*, budget_fen=0, activate=False, region_code="510131", item_codes=None, **overrides):
        from datetime import date

        from marketplace.programmes import service as programme_service

        codes = item_codes or [make_item().code]
        payload = programme_payload(codes, region_code=region_code, **overrides)
        payload["starts_on"] = date.fromisoformat(payload["starts_on"])
        payload["ends_on"] = date.fromisoformat(payload["ends_on"])
        with app.app_context(), transaction():
            programme = programme_service.create_programme(**payload, actor=None, now=utcnow())
            if budget_fen:
                programme_service.amend_budget(programme=programme, amount_fen=budget_fen, reason="initial budget",
                                               actor=None, now=utcnow())
            if activate:
                programme_service.activate(programme=programme, actor=None, now=utcnow())
        return programme

    return factory


# --- the scenario builder -------------------------------------------------------------------------

@pytest.fixture
def build(app):
    """The scenario builder on this test's app: `build.world()`, `build.redeem(p1, alice, meal)` … (its
    docstring lists the whole vocabulary: tests/support/scenario.py)."""
    from tests.support.scenario import Builder

    return Builder(app)


# --- logs -------------------------------------------------------------------------------------------------

@pytest.fixture
def json_logs(capsys):
    """Our packages log as in production — JSON lines on stderr — for this test, from DEBUG up; returns a
    function that reads the lines written since its last call, as dicts (the test's other output is skipped)."""
    import json
    import logging

    from marketplace import logs

    previous = logs.configured_format() or "text", logging.getLogger(logs.PACKAGES[0]).level or logging.INFO
    logs.configure("json", "DEBUG")
    capsys.readouterr()

    def read() -> list[dict]:
        lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
        return [json.loads(line) for line in lines]

    yield read
    logs.configure(*previous)

"""`flask create-user` and `flask seed-demo`."""

import pytest
from sqlalchemy import func, select

from marketplace.audit.models import AuditEvent
from marketplace.auth.models import User
from marketplace.db import db
from marketplace.demo import DEMO_USERS
from tests.conftest import PASSWORD

CLI_PASSWORD = "first admin passphrase"


def users(app):
    with app.app_context():
        return {user.username: user for user in db.session.scalars(select(User))}


def can_log_in(client, username, password):
    return client.post("/api/v1/auth/token", json={"username": username, "password": password}).status_code == 200


def test_create_user_with_password_creates_a_login(app, runner, client):
    result = runner.invoke(args=["create-user", "First.Admin", "--role", "admin", "--password", CLI_PASSWORD])
    assert result.exit_code == 0, result.output
    assert "created admin first.admin" in result.output
    created = users(app)["first.admin"]
    assert created.role == "admin"
    assert created.region_code is None
    assert can_log_in(client, "first.admin", CLI_PASSWORD)


def test_create_user_reads_the_password_from_stdin(app, runner, client):
    result = runner.invoke(args=["create-user", "reader", "--role", "auditor", "--password-stdin"],
                           input=CLI_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert users(app)["reader"].role == "auditor"
    assert can_log_in(client, "reader", CLI_PASSWORD)
    assert CLI_PASSWORD not in result.output


def test_create_user_sets_a_region_scope(app, runner):
    result = runner.invoke(args=["create-user", "county", "--role", "admin", "--region-code", "510131",
                                 "--password", CLI_PASSWORD])
    assert result.exit_code == 0, result.output
    assert users(app)["county"].region_code == "510131"


def test_created_user_is_audited_as_done_by_the_system(app, runner):
    runner.invoke(args=["create-user", "first.admin", "--role", "admin", "--password", CLI_PASSWORD])
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user.created"))
    assert event.actor == "system"
    assert CLI_PASSWORD not in event.data


@pytest.mark.parametrize("password_args", [
    ["--password", CLI_PASSWORD, "--password-stdin"],
    [],
])
def test_create_user_needs_exactly_one_password_option(app, runner, password_args):
    result = runner.invoke(args=["create-user", "someone", "--role", "admin", *password_args],
                           input=CLI_PASSWORD + "\n")
    assert result.exit_code != 0
    assert "Give exactly one of --password and --password-stdin" in result.output
    assert users(app) == {}


def test_create_user_refuses_a_taken_username(app, runner, make_user):
    make_user(role="admin", username="taken")
    result = runner.invoke(args=["create-user", "TAKEN", "--role", "auditor", "--password", CLI_PASSWORD])
    assert result.exit_code != 0
    assert "username is taken" in result.output
    assert users(app)["taken"].role == "admin"


def test_create_user_refuses_a_weak_password(app, runner):
    result = runner.invoke(args=["create-user", "someone", "--role", "admin", "--password", "short"])
    assert result.exit_code != 0
    assert "password" in result.output
    assert "at least 10 characters" in result.output
    assert users(app) == {}


def test_create_user_refuses_an_unknown_role(app, runner):
    result = runner.invoke(args=["create-user", "someone", "--role", "superuser", "--password", CLI_PASSWORD])
    assert result.exit_code != 0
    assert "superuser" in result.output
    assert users(app) == {}


def test_create_user_refuses_a_provider_login_without_its_provider(app, runner):
    result = runner.invoke(args=["create-user", "someone", "--role", "provider", "--password", CLI_PASSWORD])
    assert result.exit_code != 0
    assert "provider_id" in result.output
    assert users(app) == {}


def test_seed_demo_fills_an_empty_database_and_prints_working_logins(app, runner, client):
    result = runner.invoke(args=["seed-demo", "--recipients", "12"])
    assert result.exit_code == 0, result.output
    created = users(app)
    for username, password, role, region, _note in DEMO_USERS:
        assert created[username].role == role
        assert created[username].region_code == region
        assert username in result.output
        assert password in result.output
        assert can_log_in(client, username, password)


def test_seed_demo_twice_creates_nothing_the_second_time(app, runner):
    assert runner.invoke(args=["seed-demo", "--recipients", "12"]).exit_code == 0
    before = users(app)
    with app.app_context():
        events_before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    second = runner.invoke(args=["seed-demo", "--recipients", "12"])
    assert second.exit_code == 0
    assert "already has users" in second.output
    assert users(app).keys() == before.keys()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == events_before


def test_seed_demo_leaves_a_database_with_users_alone(app, runner, make_user):
    make_user(role="admin", username="real.admin", password=PASSWORD)
    result = runner.invoke(args=["seed-demo", "--recipients", "12"])
    assert result.exit_code == 0
    assert set(users(app)) == {"real.admin"}

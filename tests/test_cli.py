"""`flask create-user` and `flask seed-demo`."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from marketplace.audit.models import AuditEvent
from marketplace.auth.models import User
from marketplace.db import db, local_date, transaction, utcnow
from marketplace.demo import AUDIENCES, DEMO_PROVIDER_PASSWORD, DEMO_PROVIDERS, DEMO_RECIPIENT, DEMO_USERS, seed_demo
from marketplace.programmes.models import Programme
from providers.models import Rating
from tests.conftest import PASSWORD
from vouchers.models import Redemption, Voucher

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


def test_seed_demo_gives_every_approved_provider_a_working_login(app, runner, client):
    result = runner.invoke(args=["seed-demo", "--recipients", "12"])
    assert result.exit_code == 0, result.output
    created = users(app)
    for name, _kind, _prefix, _body, _items, status, login in DEMO_PROVIDERS:
        assert login in result.output
        assert created[login].role == "provider"
        if status == "approved":
            assert can_log_in(client, login, DEMO_PROVIDER_PASSWORD), name


def test_seed_demo_gives_the_demo_recipient_a_month_to_try(app, runner, client):
    assert runner.invoke(args=["seed-demo", "--recipients", "12"]).exit_code == 0
    username, password = DEMO_RECIPIENT
    login = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert login.status_code == 200
    headers = {"Authorization": f"Bearer {login.get_json()['token']}"}
    recipient_id = client.get("/api/v1/me", headers=headers).get_json()["recipient_id"]

    # Vouchers left this month, for every item.
    left = client.get("/api/v1/vouchers", query_string={"status": "issued", "per_page": 100}, headers=headers)
    assert left.status_code == 200
    with app.app_context():
        today = local_date(utcnow()).isoformat()
        programme = db.session.scalars(select(Programme)).one()
        items = {item.item_code for item in programme.items}
        window = timedelta(days=programme.rating_window_days)
        services = db.session.scalars(select(Redemption).where(Redemption.recipient_id == recipient_id)).all()
        rated = set(db.session.scalars(select(Rating.redemption_id).where(Rating.recipient_id == recipient_id)))
    this_month = [v for v in left.get_json()["items"] if v["valid_from"] <= today <= v["valid_until"]]
    assert {voucher["item_code"] for voucher in this_month} == items

    # A provider chosen for every item, and one earlier switch.
    choices = client.get(f"/api/v1/recipients/{recipient_id}/choices", headers=headers).get_json()
    assert {choice["item_code"] for choice in choices["current"]} == items
    switches = [event for event in choices["history"] if event["from_provider_id"]]
    assert [(event["item_code"], event["switch_reason"]) for event in switches] == [("HC-MEAL", "timeliness")]

    # Services this month and last, every one rated but one, which is inside the rating window.
    assert len(services) > 20
    unrated = [service for service in services if service.id not in rated]
    assert len(unrated) == 1
    assert unrated[0].status == "completed"
    assert utcnow() - unrated[0].delivered_at < window
    latest_rated = max((service for service in services if service.id in rated), key=lambda s: s.delivered_at)
    again = client.post(f"/api/v1/redemptions/{latest_rated.id}/rating", json={"score": 5, "source": "recipient"},
                        headers=headers)
    assert again.status_code == 409
    rating = client.post(f"/api/v1/redemptions/{unrated[0].id}/rating", json={"score": 5, "source": "recipient"},
                         headers=headers)
    assert rating.status_code == 201, rating.get_json()


@pytest.mark.parametrize("local_now", ["2026-12-01T00:30", "2027-01-02T09:00", "2026-12-20T16:00"])
def test_the_demo_recipient_has_a_service_to_rate_whatever_the_day(app, local_now):
    """Early in a month (even the first half-hour, even in January) her month still holds a service to
    rate and vouchers left."""
    local = datetime.fromisoformat(local_now).replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    now = local.astimezone(UTC)
    with app.app_context():
        with transaction():
            seed_demo(now=now, recipients=3)
        wang = db.session.scalar(select(User).where(User.username == DEMO_RECIPIENT[0]))
        services = db.session.scalars(select(Redemption).where(Redemption.recipient_id == wang.recipient_id)).all()
        rated = set(db.session.scalars(select(Rating.redemption_id).where(Rating.recipient_id == wang.recipient_id)))
        left = db.session.scalar(select(func.count()).select_from(Voucher).where(
            Voucher.recipient_id == wang.recipient_id, Voucher.status == "issued",
            Voucher.valid_from <= local.date(), Voucher.valid_until >= local.date()))
    unrated = [service for service in services if service.id not in rated]
    assert len(unrated) == 1
    assert timedelta(0) < now - unrated[0].delivered_at < timedelta(days=30)
    assert local_date_of(unrated[0].delivered_at).month == local.month
    assert left >= 20  # of 39 a month


def local_date_of(instant):
    return instant.astimezone(ZoneInfo("Asia/Shanghai")).date()


def test_seed_demo_says_where_each_audience_starts_every_time(app, runner):
    first = runner.invoke(args=["seed-demo", "--recipients", "12"])
    later = runner.invoke(args=["seed-demo", "--recipients", "12", "--base-url", "http://demo.example:8000/"])
    passwords = {username: password for username, password, *_rest in DEMO_USERS}
    passwords |= {DEMO_RECIPIENT[0]: DEMO_RECIPIENT[1], "provider-heshan": DEMO_PROVIDER_PASSWORD}
    for result, base in ((first, "http://127.0.0.1:8000"), (later, "http://demo.example:8000")):
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        for audience, page, username in AUDIENCES:
            line = next(line for line in lines if line.strip().startswith(audience))
            assert f"{base}{page} " in line
            assert (f"{username} / {passwords[username]}" if username else "no login") in line
    assert [audience for audience, *_rest in AUDIENCES] == ["公众", "服务对象", "服务机构", "民政工作人员", "审计"]


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

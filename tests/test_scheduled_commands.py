"""The commands cron and systemd timers run (deploy/cron.example, deploy/systemd/): safe to run twice,
one line on failure, `all` programmes and `this-month` / `last-month` so that a schedule needs no ids.

Each command's own behaviour is tested beside its service (test_vouchers_issuance.py, test_settlement.py,
test_audit.py, test_presence_short_codes.py); here is what a schedule relies on.
"""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent, AuditHead
from marketplace.db import db
from marketplace.idempotency import IdempotencyRecord
from marketplace.programmes.models import JournalEntry
from tests.support.apps import dispose, make_app
from tests.support.commands import said
from vouchers import cli as vouchers_cli
from vouchers.models import Issuance, Redemption, Settlement, UsedPresenceCode, Voucher

# What the timers run, in the order of a month (deploy/systemd/*.service).
SCHEDULE = [
    ["expire-vouchers"],
    ["issue-vouchers", "all", "this-month"],
    ["settle", "all", "last-month"],
    ["purge-expired"],
    ["audit-verify"],
    ["backup", "{backups}"],
]


def footprint(build) -> dict:
    models = (Voucher, Issuance, JournalEntry, Redemption, Settlement, AuditEvent)
    return {model.__name__: build.count(model) for model in models}


def lines(text: str) -> list[str]:
    return said(text)


@pytest.fixture
def month_of_service(build):
    """Last month issued, chosen and partly served; this month not issued yet; nothing settled."""
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.serve(world.p1, [world.alice, world.bob], world.programme, world.meal,
                delivered_at=[build.in_month(-1, 3), build.in_month(-1, 10)])
    return world


def test_the_whole_schedule_run_twice_does_nothing_new_the_second_time(build, runner, month_of_service, tmp_path):
    backups = tmp_path / "backups"
    backups.mkdir()
    commands = [[arg.format(backups=backups) for arg in command] for command in SCHEDULE]

    first = [runner.invoke(args=command) for command in commands]
    after_first = footprint(build)
    second = [runner.invoke(args=command) for command in commands]

    for command, result in zip(commands * 2, first + second, strict=True):
        assert result.exit_code == 0, (command, result.output)
    assert footprint(build) == after_first
    assert after_first["Settlement"] == 1
    assert after_first["Issuance"] == 2  # last month's and this month's
    said = {command[0]: result.output for command, result in zip(commands, second, strict=True)}
    assert "was issued before: nothing new." in said["issue-vouchers"]
    assert "nothing to settle" in said["settle"]
    assert "expired 0, released 0 fen" in said["expire-vouchers"]
    assert "purged 0 idempotency keys, 0 used presence codes and 0 short codes" in said["purge-expired"]
    assert "audit chain ok" in said["audit-verify"]
    assert len(list(backups.iterdir())) == 2  # a backup a night, each a new file


def test_issue_all_this_month_issues_every_active_programme_that_runs_now(app, build, runner):
    world = build.world()
    later = build.programme(items=[world.meal], starts_on=build.first_day(2), ends_on=build.last_day(8))
    draft = build.programme(items=[world.meal], status="draft")
    closed = build.programme(items=[world.meal], status="closed")

    result = runner.invoke(args=["issue-vouchers", "all", "this-month"])

    assert result.exit_code == 0, result.output
    said = lines(result.output)
    assert said[0].startswith(f"programme {world.programme.id}: issued 12 vouchers to 2 recipients")
    assert said[1].startswith(f"programme {later.id}: does not run in {build.period()}")
    assert len(said) == 2
    assert not any(f"programme {draft.id}:" in line or f"programme {closed.id}:" in line for line in said)
    assert build.count(Issuance) == 1


def test_one_refused_programme_does_not_stop_the_others_and_the_run_exits_1_in_one_line(build, runner):
    world = build.world()
    poor = build.programme(items=[world.meal], budget_fen=1)
    before = vars(build.footprint(poor)) | {"audit_events": None}

    result = runner.invoke(args=["issue-vouchers", "all", "this-month"])

    assert result.exit_code == 1
    assert f"programme {world.programme.id}: issued 12 vouchers" in result.stdout
    [error] = lines(result.stderr)[-1:]
    assert error.startswith(f"Error: issuance refused for 1 of 2 programmes: programme {poor.id}: The available "
                            "budget cannot cover this issue; nothing was issued. (shortfall_fen=")
    assert f"programme {poor.id}: refused, nothing written" in result.stderr
    assert vars(build.footprint(poor)) | {"audit_events": None} == before
    assert build.failing_checks(world.programme) == []

    again = runner.invoke(args=["issue-vouchers", "all", "this-month"])
    assert again.exit_code == 1  # still refused, and still nothing issued twice
    assert f"programme {world.programme.id}: {build.period()} was issued before: nothing new." in again.stdout
    assert build.count(Issuance) == 1


def test_settle_all_last_month_drafts_active_and_closed_programmes(build, runner, month_of_service):
    world = month_of_service
    build.close(world.programme)
    result = runner.invoke(args=["settle", "all", "last-month"])
    assert result.exit_code == 0, result.output
    assert lines(result.output)[0].startswith(f"programme {world.programme.id}: provider {world.p1.id}: 2 redemptions")
    [draft] = build.settlements()
    assert draft.period == build.period(-1)


def test_with_no_programme_there_is_nothing_to_do(runner):
    assert lines(runner.invoke(args=["issue-vouchers", "all", "this-month"]).output) == [
        "no active programme: no issuance"]
    assert lines(runner.invoke(args=["settle", "all", "last-month"]).output) == [
        "no active or closed programme: no settlement"]


@pytest.mark.parametrize(("local_now", "this_month", "last_month"), [
    ("2026-02-01T00:30", "2026-02", "2026-01"),  # 16:30 UTC the day before: still January in Greenwich
    ("2026-01-01T00:05", "2026-01", "2025-12"),
    ("2026-12-31T23:59", "2026-12", "2026-11"),
])
def test_this_month_and_last_month_are_those_of_the_local_calendar(app, local_now, this_month, last_month):
    from zoneinfo import ZoneInfo

    now = datetime.fromisoformat(local_now).replace(tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    with app.app_context():
        assert vouchers_cli.resolve_period("this-month", now) == this_month
        assert vouchers_cli.resolve_period("last-month", now) == last_month
        assert vouchers_cli.resolve_period("2024-07", now) == "2024-07"


# --- failures: one line, exit 1 -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["issue-vouchers", "999999", "2026-01"],
    ["settle", "999999", "2026-01"],
    ["expire-vouchers", "999999"],
])
def test_an_unknown_programme_fails_in_one_line(app, runner, command):
    result = runner.invoke(args=command)
    assert result.exit_code == 1
    assert lines(result.stderr) == ["Error: No programme 999999."]


@pytest.mark.parametrize("command", [["issue-vouchers", "all", "2026-13"], ["settle", "all", "last-year"],
                                     ["issue-vouchers", "{programme}", "26-01"]])
def test_a_bad_period_fails_in_one_line_before_anything_is_done(build, runner, command):
    world = build.world()
    result = runner.invoke(args=[arg.format(programme=world.programme.id) for arg in command])
    assert result.exit_code == 1
    [line] = lines(result.stderr)
    assert line.startswith("Error: The request has invalid fields. period: A month as YYYY-MM")
    assert build.count(Issuance) == 0


def test_a_broken_audit_chain_fails_in_one_line_naming_the_event(app, build, runner):
    build.world()
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(AuditEvent.__table__.update().where(AuditEvent.id == 2).values(data='{"forged": 1}'))

    result = runner.invoke(args=["audit-verify"])

    assert result.exit_code == 1
    [line] = lines(result.stderr)
    assert line.startswith("audit chain BROKEN at event 2: ")


def test_audit_verify_prints_the_head_hash(app, build, runner):
    build.world()
    result = runner.invoke(args=["audit-verify"])
    with app.app_context():
        head = db.session.scalar(select(AuditHead.last_hash))
    assert result.exit_code == 0
    assert lines(result.output) == [f"audit chain ok: {build.count(AuditEvent)} events, head {head}"]


@pytest.mark.parametrize("command", [["expire-vouchers"], ["issue-vouchers", "all", "this-month"],
                                     ["settle", "all", "last-month"], ["purge-expired"], ["audit-verify"]])
@pytest.mark.parametrize("url", ["postgresql+psycopg://postgres@127.0.0.1:1/nothing",
                                 "sqlite:////nonexistent-folder/marketplace.sqlite3"])
def test_a_database_that_does_not_answer_fails_in_one_line(tmp_path, command, url):
    application = make_app(url, instance_path=tmp_path)
    try:
        result = application.test_cli_runner().invoke(args=command)
    finally:
        dispose(application)
    assert result.exit_code == 1, result.output
    [line] = lines(result.output)
    assert line.startswith("Error: database error: ")
    assert "SELECT" not in line


# --- purge -------------------------------------------------------------------------------------------------

def test_purge_forgets_old_idempotency_keys_and_used_presence_codes_once(app, build, client, runner, monkeypatch):
    world = build.world()
    build.issue(world.programme)
    build.choose_all(world, world.p1)
    scanner = build.headers(world.p1.user)
    token = build.presence_token(world.alice)
    answered = client.post("/api/v1/redemptions", json={"presence_token": token, "item_code": world.meal},
                           headers={**scanner, "Idempotency-Key": "purge-me-0001"})
    assert answered.status_code == 201, answered.get_json()
    assert build.count(IdempotencyRecord) == 1
    assert build.count(UsedPresenceCode) == 1

    soon = runner.invoke(args=["purge-expired"])  # both still needed: nothing goes
    monkeypatch.setattr(vouchers_cli, "utcnow", lambda: datetime.now(UTC) + timedelta(hours=49))
    later = runner.invoke(args=["purge-expired"])
    again = runner.invoke(args=["purge-expired"])

    assert "purged 0 idempotency keys, 0 used presence codes" in soon.output
    assert "purged 1 idempotency keys, 1 used presence codes" in later.output
    assert "purged 0 idempotency keys, 0 used presence codes" in again.output
    assert build.count(IdempotencyRecord) == 0
    assert build.count(UsedPresenceCode) == 0
    assert build.count(Redemption) == 1

"""deploy/systemd/ and deploy/cron.example: the schedule of the monthly cycle says what it runs, and runs it.

- every `flask --app wsgi …` they name is a command of the app, with arguments it accepts;
- systemd and cron run the same commands; issuance on the 1st after the expiry, detection and
  settlement drafts on the 2nd, daily expiry and purge, nightly backup and audit verification, all in
  the programmes' time zone;
- `systemd-analyze verify` accepts every unit (skipped, with the reason, where systemd is absent);
- deploy/marketplace-job (what cron runs) loads the environment file, passes the exit status on and
  never runs one command twice at once.
"""

import configparser
import fcntl
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.commands import said
from tests.support.servers import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
UNITS = DEPLOY / "systemd"
CRON = DEPLOY / "cron.example"
JOB = DEPLOY / "marketplace-job"
FLASK = "/srv/marketplace/.venv/bin/flask --app wsgi "
# A command the schedule names that may not be in this build yet: detect-anomalies comes with the anomaly
# rules. Once it is, it is checked like the others (and must take `all last-month`: vouchers.cli.each_programme).
PENDING = {"detect-anomalies"}


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


def unit_commands(path: Path) -> list[str]:
    """The flask commands of a .service, ExecStartPre first."""
    service = unit(path)["Service"]
    return [value.removeprefix(FLASK) for key in ("ExecStartPre", "ExecStart") if (value := service.get(key))
            and value.startswith(FLASK)]


def systemd_commands() -> list[str]:
    return [command for path in sorted(UNITS.glob("*.service")) for command in unit_commands(path)]


def cron_jobs() -> list[tuple[list[str], str]]:
    """(the five time fields, the command) of every job line."""
    jobs = []
    for line in CRON.read_text().splitlines():
        if not line.strip() or line.startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(None, 6)
        assert fields[5] == "marketplace", line
        jobs.append((fields[:5], fields[6]))
    return jobs


def cron_commands() -> list[str]:
    commands = []
    for _times, command in cron_jobs():
        for part in command.split("&&"):
            part = part.strip()
            if part.startswith("$JOB "):
                commands.append(part.removeprefix("$JOB ").split(" >>")[0].strip())
    return commands


def test_every_scheduled_command_is_a_command_of_the_app_with_arguments_it_accepts(app):
    commands = systemd_commands() + cron_commands()
    assert len(commands) >= 8
    for line in commands:
        name, *args = shlex.split(line)
        command = app.cli.get_command(None, name)
        if command is None and name in PENDING:
            continue
        assert command is not None, f"{line}: no such command"
        command.make_context(name, list(args))  # raises on arguments the command does not take


def test_systemd_and_cron_run_the_same_commands():
    assert sorted(set(systemd_commands())) == sorted(set(cron_commands()))


def timer_calendar(name: str) -> str:
    return unit(UNITS / f"{name}.timer")["Timer"]["OnCalendar"]


def test_the_timers_keep_the_calendar_of_the_cycle(app):
    zone = app.config["LOCAL_TIMEZONE"]
    assert timer_calendar("voucher-issue") == f"*-*-01 00:30:00 {zone}"
    assert timer_calendar("voucher-settle") == f"*-*-02 02:00:00 {zone}"
    for daily in ("voucher-expire", "marketplace-purge", "marketplace-audit-verify", "marketplace-backup"):
        assert timer_calendar(daily).startswith("*-*-* "), daily
        assert timer_calendar(daily).endswith(f" {zone}"), daily
    assert unit_commands(UNITS / "voucher-issue.service") == ["expire-vouchers all", "issue-vouchers all this-month"]
    assert unit_commands(UNITS / "voucher-settle.service") == ["detect-anomalies all last-month",
                                                              "settle all last-month"]
    for timer in UNITS.glob("*.timer"):
        assert (UNITS / f"{timer.stem}.service").is_file(), timer
        assert unit(timer)["Timer"]["Persistent"] == "true", timer  # a missed run happens at boot
        assert unit(timer)["Install"]["WantedBy"] == "timers.target", timer


def test_cron_keeps_the_same_calendar():
    assert (["15", "0", "*", "*", "*"], "$JOB expire-vouchers all >>$LOG") in cron_jobs()
    issue = next(times for times, command in cron_jobs() if "issue-vouchers" in command)
    settle = next(times for times, command in cron_jobs() if "settle all" in command)
    assert issue[:5] == ["30", "0", "1", "*", "*"]
    assert settle[:5] == ["0", "2", "2", "*", "*"]
    issuing = next(command for _times, command in cron_jobs() if "issue-vouchers" in command)
    assert issuing.index("expire-vouchers") < issuing.index("issue-vouchers")


def test_systemd_accepts_every_unit(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the units are not verified here")
    env_file = tmp_path / "env"
    env_file.write_text("APP_ENV=development\n")
    for path in UNITS.iterdir():
        text = path.read_text().replace("/srv/marketplace", str(PROJECT_ROOT)).replace(
            "/etc/marketplace/env", str(env_file))
        text = re.sub(r"^(User|Group)=marketplace$", r"\1=root", text, flags=re.MULTILINE)
        (tmp_path / path.name).write_text(text)
    units = sorted(str(path) for path in tmp_path.glob("*.service")) + sorted(
        str(path) for path in tmp_path.glob("*.timer"))
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True,
                              timeout=60, check=False)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr


# --- deploy/marketplace-job ------------------------------------------------------------------------------------

@pytest.fixture
def job(tmp_path):
    """Run deploy/marketplace-job against this checkout with a development environment file of its own."""
    env_file = tmp_path / "marketplace.env"
    env_file.write_text(f"APP_ENV=development\nINSTANCE_PATH={tmp_path / 'instance'}\n"
                        f"DATABASE_URL=sqlite:///{tmp_path / 'jobs.sqlite3'}\n")
    (tmp_path / "locks").mkdir()

    def run(*args):
        environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "MARKETPLACE_DIR": str(PROJECT_ROOT),
                       "MARKETPLACE_ENV": str(env_file), "MARKETPLACE_LOCK_DIR": str(tmp_path / "locks")}
        return subprocess.run([str(JOB), *args], env=environment, capture_output=True, text=True, timeout=180,
                              check=False)

    run.locks = tmp_path / "locks"
    return run


def test_the_cron_job_runs_a_command_with_the_environment_file_and_its_exit_status(job):
    assert job("db", "upgrade").returncode == 0
    verified = job("audit-verify")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("audit chain ok: 0 events, head ")

    refused = job("settle", "999999", "2026-01")
    assert refused.returncode == 1
    assert said(refused.stderr) == ["Error: No programme 999999."]  # beside the command's own log lines


def test_the_cron_job_never_runs_one_command_twice_at_once(job):
    with open(job.locks / "marketplace-purge-expired.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        second = job("purge-expired")
    assert second.returncode == 75
    assert "purge-expired is still running from an earlier start" in second.stderr


def test_the_cron_job_needs_a_command(job):
    assert job().returncode == 64

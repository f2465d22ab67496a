"""`flask --app wsgi check-config` and the start check: one verdict per setting, from one set of checks.

The start itself (refusals naming the variable and the fix, development secrets) is tests/test_config.py.
"""

import logging
import os
import secrets
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest

from marketplace.app import create_app
from marketplace.config import Config, ConfigError
from marketplace.config_checks import (
    check_settings,
    estimated_bits,
    filesystem_of,
    flask_command,
    gunicorn_workers,
)
from marketplace.db import db
from tests.support.commands import said
from tests.support.servers import PROJECT_ROOT, VENV_BIN

SECRET = secrets.token_hex(32)
ID_KEY = secrets.token_hex(32)
TOKEN_KEY = secrets.token_hex(32)
METRICS = secrets.token_hex(32)
SOUND = {  # a production configuration with nothing to say against it
    "APP_ENV": "production", "SECRET_KEY": SECRET, "ID_HASH_KEY": ID_KEY, "TOKEN_KEYS": f"3:{TOKEN_KEY}",
    "DATABASE_URL": "postgresql+psycopg://vouchers:db-password@db.internal:5432/vouchers",
    "RATELIMIT_STORAGE_URI": "redis://redis.internal:6379", "PUBLIC_URL": "https://vouchers.example.gov.cn",
    "PROXY_FIX_X_FOR": 1, "METRICS_TOKEN": METRICS, "LOCAL_TIMEZONE": "Asia/Shanghai", "IDEMPOTENCY_TTL_HOURS": 48,
    "SQLITE_SYNCHRONOUS": "FULL", "LOGIN_FAILURES_PER_CLIENT": 20,
}
INTEGERS = [field.name for field in fields(Config) if field.type is int]


def verdicts_of(tmp_path, *, environ=None, mounts="/proc/self/mounts", **settings):
    config = {**SOUND, **settings}
    config = {name: value for name, value in config.items() if value is not None}
    return check_settings(config, instance_path=str(tmp_path / "instance"), integer_settings=INTEGERS,
                          environ=environ or {}, mounts=mounts)


def levels(verdicts) -> dict[str, str]:
    """setting → its worst level."""
    order = {"ok": 0, "warning": 1, "error": 2}
    worst: dict[str, str] = {}
    for verdict in verdicts:
        if order[verdict.level] >= order[worst.get(verdict.setting, "ok")]:
            worst[verdict.setting] = verdict.level
    return worst


def message(verdicts, setting) -> str:
    return " ".join(verdict.message for verdict in verdicts if verdict.setting == setting)


@pytest.fixture
def environment(monkeypatch, tmp_path):
    """A clean environment: none of the app's settings, the instance folder and SQLite file in *tmp_path*."""
    for field in fields(Config):
        monkeypatch.delenv(field.name, raising=False)
    for name in ("METRICS_TOKEN", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'check.sqlite3'}")
    return monkeypatch


@pytest.fixture
def built(environment):
    apps = []

    def build(**settings):
        for name, value in settings.items():
            environment.setenv(name, str(value))
        application = create_app()
        apps.append(application)
        return application

    yield build
    for application in apps:
        with application.app_context():
            db.engine.dispose()


def production_settings(**overrides) -> dict:
    return {"APP_ENV": "production", "SECRET_KEY": SECRET, "ID_HASH_KEY": ID_KEY, "TOKEN_KEYS": f"3:{TOKEN_KEY}",
            **overrides}


# --- the command --------------------------------------------------------------------------------------------

def test_check_config_prints_a_verdict_on_every_setting_and_no_secret(built):
    application = built(**production_settings(PUBLIC_URL="https://vouchers.example.gov.cn", PROXY_FIX_X_FOR=1,
                                              METRICS_TOKEN=METRICS))
    result = application.test_cli_runner().invoke(args=["check-config"])

    assert result.exit_code == 0, result.output
    lines = said(result.output)
    shown = {line.split()[1]: line.split()[0] for line in lines[:-1]}
    for setting in ("APP_ENV", "SECRET_KEY", "ID_HASH_KEY", "TOKEN_KEYS", "DATABASE_URL", "RATELIMIT_STORAGE_URI",
                    "SESSION_COOKIE_SECURE", "PUBLIC_URL", "PROXY_FIX_X_FOR", "METRICS_TOKEN", "LOCAL_TIMEZONE"):
        assert shown[setting] == "ok", result.output
    assert lines[-1] == "0 errors, 0 warnings."
    assert "key 3 signs" in result.output
    for value in (SECRET, ID_KEY, TOKEN_KEY, METRICS):
        assert value not in result.output


def test_check_config_lists_warnings_and_still_exits_0(built):
    application = built(**production_settings(PUBLIC_URL="http://vouchers.example.gov.cn"))
    result = application.test_cli_runner().invoke(args=["check-config"])
    assert result.exit_code == 0, result.output
    assert any(line.startswith("warning  PUBLIC_URL") for line in said(result.output))
    assert said(result.output)[-1].endswith("warnings: the app starts; read the warnings.")


def flask_cli(*args, environ):
    env = {name: value for name, value in os.environ.items()
           if name not in {field.name for field in fields(Config)} | {"FLASK_APP", "GUNICORN_CMD_ARGS"}}
    return subprocess.run([str(VENV_BIN / "flask"), "--app", "wsgi", *args], cwd=PROJECT_ROOT,
                          env={**env, **environ}, capture_output=True, text=True, timeout=120, check=False)


def test_check_config_lists_every_error_even_when_the_app_refuses_to_start(tmp_path):
    environ = {"APP_ENV": "production", "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "short",
               "TOKEN_TTL_SECONDS": "eight hours", "LOCAL_TIMEZONE": "Mars/Olympus_Mons",
               "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}

    result = flask_cli("check-config", environ=environ)

    assert result.returncode == 1, result.stderr
    errors = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("error ")]
    assert errors == ["TOKEN_TTL_SECONDS", "SECRET_KEY", "ID_HASH_KEY", "TOKEN_KEYS", "LOCAL_TIMEZONE"]
    assert result.stdout.splitlines()[-1] == (
        "5 errors, 2 warnings: the app refuses to start until the errors are fixed.")
    assert "Traceback" not in result.stderr

    # Any other command still meets the refusal: only check-config runs on a refused configuration.
    other = flask_cli("backup", str(tmp_path), environ=environ)
    assert other.returncode != 0
    assert "TOKEN_TTL_SECONDS must be an integer" in other.stderr
    assert "(4 more problems: `flask --app wsgi check-config` lists them all)" in other.stderr
    assert list(tmp_path.glob("marketplace-*")) == []


def test_the_start_refuses_with_the_first_error_and_carries_every_verdict(environment):
    environment.setenv("APP_ENV", "production")
    environment.setenv("SECRET_KEY", SECRET)
    with pytest.raises(ConfigError, match=r"^ID_HASH_KEY is not set.*\(1 more problem: `flask --app wsgi "
                                          r"check-config` lists them all\)$") as refused:
        create_app()
    assert levels(refused.value.verdicts)["TOKEN_KEYS"] == "error"
    assert levels(refused.value.verdicts)["SECRET_KEY"] == "ok"


def test_the_start_logs_the_warnings(built, caplog):
    with caplog.at_level(logging.WARNING, logger="marketplace.config"):
        built(**production_settings(SQLITE_SYNCHRONOUS="NORMAL"))
    logged = [record.getMessage() for record in caplog.records if record.name == "marketplace.config"]
    assert any(line.startswith("SQLITE_SYNCHRONOUS: NORMAL") for line in logged)
    assert any(line.startswith("PUBLIC_URL: not set") for line in logged)
    assert not any(SECRET in line for line in logged)


@pytest.mark.parametrize(("argv", "command"), [
    (["/srv/app/.venv/bin/flask", "--app", "wsgi", "check-config"], "check-config"),
    (["flask", "-A", "wsgi", "--debug", "run", "--port", "8000"], "run"),
    (["/usr/lib/python3/site-packages/flask/__main__.py", "--app=wsgi", "backup", "/var/backups"], "backup"),
    (["flask", "--env-file", "check-config", "routes"], "routes"),
    (["/srv/app/.venv/bin/gunicorn", "check-config"], None),
    (["/usr/bin/pytest", "check-config"], None),
    ([], None),
])
def test_the_flask_command_is_read_from_the_command_line(argv, command):
    assert flask_command(argv) == command


# --- secrets ------------------------------------------------------------------------------------------------

def test_a_sound_production_configuration_is_all_ok(tmp_path):
    verdicts = verdicts_of(tmp_path)
    assert {verdict.level for verdict in verdicts} == {"ok"}, [v for v in verdicts if v.level != "ok"]


@pytest.mark.parametrize("name", ["SECRET_KEY", "ID_HASH_KEY"])
@pytest.mark.parametrize("weak", ["a" * 64, "ab" * 32, "0123456" * 6])
def test_a_long_secret_of_few_characters_is_an_error_in_production(tmp_path, name, weak):
    verdicts = verdicts_of(tmp_path, **{name: weak})
    assert levels(verdicts)[name] == "error"
    assert "is not random" in message(verdicts, name)
    assert weak not in message(verdicts, name)


def test_a_token_key_of_few_characters_is_an_error_naming_the_key(tmp_path):
    verdicts = verdicts_of(tmp_path, TOKEN_KEYS=f"3:{TOKEN_KEY},1:{'xy' * 20}")
    assert levels(verdicts)["TOKEN_KEYS"] == "error"
    assert message(verdicts, "TOKEN_KEYS").startswith("TOKEN_KEYS key 1 is not random")


def test_a_secret_of_digits_only_is_a_warning(tmp_path):
    digits = "".join(secrets.choice("0123456789") for _ in range(33))
    verdicts = verdicts_of(tmp_path, SECRET_KEY=digits)
    assert levels(verdicts)["SECRET_KEY"] == "warning"
    assert "about 109 bits" in message(verdicts, "SECRET_KEY")


@pytest.mark.parametrize(("secret", "bits"), [(secrets.token_hex(16), 128), (secrets.token_hex(32), 256),
                                              ("1" + "0123456789" * 3 + "2", 106)])
def test_entropy_is_reckoned_from_the_kinds_of_characters(secret, bits):
    assert estimated_bits(secret) == bits


def test_a_production_secret_copied_from_the_development_one_is_a_warning(tmp_path):
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "token_keys.dev").write_text(TOKEN_KEY)
    verdicts = verdicts_of(tmp_path)
    assert levels(verdicts)["TOKEN_KEYS"] == "warning"
    assert "token_keys.dev" in message(verdicts, "TOKEN_KEYS")


def test_development_secrets_are_ok_and_say_where_they_are_kept(built, tmp_path):
    application = built(APP_ENV="development")
    result = application.test_cli_runner().invoke(args=["check-config"])
    assert result.exit_code == 0
    assert "kept in instance/secret_key.dev" in result.output
    assert (tmp_path / "instance" / "secret_key.dev").read_text().strip() not in result.output


# --- the database and gunicorn's workers --------------------------------------------------------------------------

def sqlite(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'marketplace.sqlite3'}"


def test_sqlite_with_one_worker_is_ok(tmp_path):
    verdicts = verdicts_of(tmp_path, DATABASE_URL=sqlite(tmp_path), RATELIMIT_STORAGE_URI="memory://")
    assert levels(verdicts)["DATABASE_URL"] == "ok"
    assert levels(verdicts)["RATELIMIT_STORAGE_URI"] == "ok"


def test_sqlite_with_two_workers_sharing_redis_is_a_warning_saying_why(tmp_path):
    verdicts = verdicts_of(tmp_path, DATABASE_URL=sqlite(tmp_path))  # redis: gunicorn.conf.py runs two
    assert levels(verdicts)["DATABASE_URL"] == "warning"
    assert "2 gunicorn workers (gunicorn.conf.py)" in message(verdicts, "DATABASE_URL")
    assert "PostgreSQL" in message(verdicts, "DATABASE_URL")
    assert levels(verdicts)["RATELIMIT_STORAGE_URI"] == "ok"


def test_memory_counters_with_several_workers_are_a_warning(tmp_path):
    verdicts = verdicts_of(tmp_path, RATELIMIT_STORAGE_URI="memory://", environ={"GUNICORN_CMD_ARGS": "-w 4"})
    assert levels(verdicts)["RATELIMIT_STORAGE_URI"] == "warning"
    assert "4 times the limits" in message(verdicts, "RATELIMIT_STORAGE_URI")


def test_sqlite_on_a_network_filesystem_is_an_error(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nfiler:/export {tmp_path} nfs4 rw,relatime 0 0\n")
    verdicts = verdicts_of(tmp_path, DATABASE_URL=sqlite(tmp_path), RATELIMIT_STORAGE_URI="memory://",
                           mounts=str(mounts))
    assert levels(verdicts)["DATABASE_URL"] == "error"
    assert "nfs4 network filesystem" in message(verdicts, "DATABASE_URL")
    assert filesystem_of(tmp_path / "sub" / "x", str(mounts)) == "nfs4"
    assert filesystem_of(Path("/elsewhere"), str(mounts)) == "ext4"


def test_the_database_password_is_never_shown(tmp_path):
    assert "db-password" not in message(verdicts_of(tmp_path), "DATABASE_URL")
    assert "db.internal" in message(verdicts_of(tmp_path), "DATABASE_URL")


@pytest.mark.parametrize(("environ", "argv", "expected"), [
    ({}, [], (1, "gunicorn.conf.py")),
    ({"WEB_CONCURRENCY": "8"}, [], (1, "gunicorn.conf.py")),
    ({"GUNICORN_CMD_ARGS": "--workers 3 --threads 2"}, [], (3, "GUNICORN_CMD_ARGS")),
    ({"GUNICORN_CMD_ARGS": "--workers=4"}, [], (4, "GUNICORN_CMD_ARGS")),
    ({"GUNICORN_CMD_ARGS": "-w5 --bind 0.0.0.0:80"}, [], (5, "GUNICORN_CMD_ARGS")),
    ({"GUNICORN_CMD_ARGS": "-w 2"}, ["/srv/.venv/bin/gunicorn", "-c", "gunicorn.conf.py", "-w", "6", "wsgi:app"],
     (6, "gunicorn's command line")),
])
def test_the_worker_count_is_read_as_gunicorn_reads_it(environ, argv, expected):
    assert gunicorn_workers(environ, "memory://", argv) == expected


@pytest.mark.parametrize("environ", [
    {"RATELIMIT_STORAGE_URI": "memory://"},
    {"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379"},
    {"RATELIMIT_STORAGE_URI": "memory://", "GUNICORN_CMD_ARGS": "--workers 3", "WEB_CONCURRENCY": "7"},
])
def test_the_worker_count_matches_what_gunicorn_itself_resolves(tmp_path, environ):
    env = {name: value for name, value in os.environ.items() if name not in ("GUNICORN_CMD_ARGS", "WEB_CONCURRENCY")}
    env.update(environ, APP_ENV="testing", INSTANCE_PATH=str(tmp_path), DATABASE_URL=sqlite(tmp_path),
               PROMETHEUS_MULTIPROC_DIR=str(tmp_path))  # else gunicorn.conf.py may make a folder of its own
    printed = subprocess.run([str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--print-config", "wsgi:app"],
                             cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    [resolved] = [int(line.split("=")[1]) for line in printed.stdout.splitlines() if line.split()[:1] == ["workers"]]
    assert gunicorn_workers(environ, environ["RATELIMIT_STORAGE_URI"], argv=[])[0] == resolved


# --- the web: HTTPS, the proxy, metrics, time --------------------------------------------------------------------

@pytest.mark.parametrize(("url", "level"), [
    ("https://vouchers.example.gov.cn", "ok"),
    ("http://vouchers.example.gov.cn", "warning"),
    ("http://127.0.0.1:8000", "ok"),
    ("vouchers.example.gov.cn", "error"),
    (None, "warning"),
])
def test_public_url_must_be_https_in_production_for_the_camera(tmp_path, url, level):
    verdicts = verdicts_of(tmp_path, PUBLIC_URL=url)
    assert levels(verdicts)["PUBLIC_URL"] == level
    if level == "warning":
        assert "camera" in message(verdicts, "PUBLIC_URL")


def test_public_url_outside_production_may_be_plain_http(tmp_path):
    verdicts = verdicts_of(tmp_path, APP_ENV="development", PUBLIC_URL="http://192.168.1.20:8000")
    assert levels(verdicts)["PUBLIC_URL"] == "ok"


def test_https_behind_a_proxy_without_trusting_it_is_a_warning(tmp_path):
    verdicts = verdicts_of(tmp_path, PROXY_FIX_X_FOR=0)
    assert levels(verdicts)["PROXY_FIX_X_FOR"] == "warning"
    assert "20 failed logins by anyone lock out everyone" in message(verdicts, "PROXY_FIX_X_FOR")


@pytest.mark.parametrize(("token", "level"), [(None, "warning"), ("short-token", "warning"), (METRICS, "ok")])
def test_metrics_token_in_production(tmp_path, token, level):
    verdicts = verdicts_of(tmp_path, METRICS_TOKEN=token)
    assert levels(verdicts)["METRICS_TOKEN"] == level
    assert "short-token" not in message(verdicts, "METRICS_TOKEN")


def test_metrics_token_is_also_read_from_the_environment(tmp_path):
    verdicts = verdicts_of(tmp_path, METRICS_TOKEN=None, environ={"METRICS_TOKEN": METRICS})
    assert levels(verdicts)["METRICS_TOKEN"] == "ok"


@pytest.mark.parametrize(("settings", "setting", "level"), [
    ({"LOCAL_TIMEZONE": "Asia/Beijing"}, "LOCAL_TIMEZONE", "error"),
    ({"SQLITE_SYNCHRONOUS": "NORMAL", "DATABASE_URL": "sqlite:////tmp/x.sqlite3"}, "SQLITE_SYNCHRONOUS", "warning"),
    ({"SQLITE_SYNCHRONOUS": "OFF"}, "SQLITE_SYNCHRONOUS", "error"),
    ({"IDEMPOTENCY_TTL_HOURS": 12}, "IDEMPOTENCY_TTL_HOURS", "warning"),
    ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL", "error"),
    ({"APP_ENV": "staging"}, "APP_ENV", "error"),
])
def test_other_settings_that_matter(tmp_path, settings, setting, level):
    assert levels(verdicts_of(tmp_path, **settings))[setting] == level


def test_an_unknown_time_zone_refuses_to_start(environment):
    environment.setenv("APP_ENV", "testing")
    environment.setenv("LOCAL_TIMEZONE", "Asia/Beijing")
    with pytest.raises(ConfigError, match="^LOCAL_TIMEZONE 'Asia/Beijing' is not a time zone"):
        create_app()

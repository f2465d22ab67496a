"""Configuration read from the environment.

Every setting has one name, used both as the environment variable and as the Flask config key.
`APP_ENV` is `production` unless told otherwise: a server that forgets its environment must fail
closed (refuse to start without secrets), not open.
"""

import os
import secrets
from dataclasses import dataclass, fields
from pathlib import Path

from marketplace.config_checks import (  # noqa: F401  (ConfigError, parse_token_keys: imported from here too)
    ENVIRONMENTS,
    ConfigError,
    Verdict,
    check_settings,
    parse_token_keys,
)
from marketplace.db import QueuedSQLiteConnection

LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _int(name: str, default: int) -> int | str:
    """The integer setting *name*; a value that is not one is kept as given, for the checks to name."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        return raw


@dataclass(frozen=True)
class Config:
    APP_ENV: str = "production"
    SECRET_KEY: str | None = None
    # Key of the HMAC blind index over national ID numbers; deliberately not SECRET_KEY, so rotating
    # the session key never orphans the uniqueness index of recipients.
    ID_HASH_KEY: str | None = None
    # Keys that sign presence codes and voucher cards: "kid:secret,kid:secret", the first signs and all
    # verify, so a new key can be introduced without breaking cards already printed.
    TOKEN_KEYS: str | None = None
    PRESENCE_CODE_TTL_SECONDS: int = 120
    # C in the ranking's Bayesian score (C·m + Σ scores) / (C + n): how many ratings a provider needs
    # before its own mean outweighs the mean of its peers.
    RANKING_PRIOR_WEIGHT: int = 10
    # How long an Idempotency-Key is remembered (keep at least a day: clients retry the next morning).
    IDEMPOTENCY_TTL_HOURS: int = 48
    # Where the programmes run: voucher validity and monthly periods are calendar dates there.
    LOCAL_TIMEZONE: str = "Asia/Shanghai"
    DATABASE_URL: str | None = None
    RATELIMIT_STORAGE_URI: str = "memory://"
    # Prefix of the counters' keys in Redis, so that several apps (or test runs) can share one server.
    RATELIMIT_KEY_PREFIX: str = "marketplace"
    # Failed logins allowed within LOGIN_FAILURE_WINDOW_SECONDS (marketplace.auth.service.authenticate):
    # for one username from one client address (a single guesser; the owner's own typos), from one
    # client whatever the usernames, and for one username from all clients together — the ceiling that
    # slows a guesser spread over many addresses (NIST SP 800-63B: at most 100 failures per account).
    LOGIN_FAILURES_PER_USERNAME_AND_CLIENT: int = 5
    LOGIN_FAILURES_PER_CLIENT: int = 20
    LOGIN_FAILURES_PER_USERNAME: int = 100
    LOGIN_FAILURE_WINDOW_SECONDS: int = 900
    # Wrong typed presence codes (8 digits) one provider login may send within SHORT_CODE_FAILURE_WINDOW_SECONDS
    # before 429 (vouchers.service.redemption), counted in the same store as the login failures.
    SHORT_CODE_FAILURES_PER_LOGIN: int = 10
    SHORT_CODE_FAILURE_WINDOW_SECONDS: int = 600
    TOKEN_TTL_SECONDS: int = 8 * 3600
    SESSION_TTL_SECONDS: int = 8 * 3600
    # Largest request body; JSON requests are small. The recipient CSV import has its own limit.
    MAX_CONTENT_LENGTH: int = 1024 * 1024
    IMPORT_MAX_BYTES: int = 64 * 1024 * 1024
    # Number of reverse proxies in front of the app whose X-Forwarded-For and X-Forwarded-Proto may be trusted
    # (1 behind deploy/nginx.conf).
    PROXY_FIX_X_FOR: int = 0
    # The address users open (https://vouchers.example.gov.cn): `check-config` and the start check that it
    # is HTTPS, which the scan page's camera and the Secure session cookie need.
    PUBLIC_URL: str | None = None
    SQLITE_BUSY_TIMEOUT_MS: int = 30_000
    # FULL: a committed transaction survives power loss and an OS crash (as PostgreSQL's
    # synchronous_commit=on). NORMAL in WAL mode may lose the last commits on power loss: only opt in
    # knowing an acknowledged redemption could vanish.
    SQLITE_SYNCHRONOUS: str = "FULL"
    # Logs (marketplace.logs): `json` (one object per line) or `text`; unset, JSON in production and text
    # elsewhere. LOG_LEVEL is a `logging` level name; unset, INFO (WARNING under tests, whose command output
    # is read line by line).
    LOG_FORMAT: str | None = None
    LOG_LEVEL: str | None = None
    # GET /metrics (marketplace.metrics) asks for `Authorization: Bearer <METRICS_TOKEN>`; unset, it answers
    # only callers on this host (loopback, not through a proxy).
    METRICS_TOKEN: str | None = None

    @classmethod
    def from_env(cls) -> "Config":
        values = {}
        for field in fields(cls):
            if field.type is int:
                values[field.name] = _int(field.name, field.default)
            else:
                raw = os.environ.get(field.name)
                values[field.name] = raw if raw not in (None, "") else field.default
        return cls(**values)

    def as_flask_config(self) -> dict:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def finalise(config: dict, instance_path: str) -> list[Verdict]:
    """Fill derived settings in place and refuse to run without what production needs; the verdicts.

    Outside production a missing secret is filled in (development: kept in the instance folder;
    testing: a fixed value). Then marketplace.config_checks judges every setting: warnings are
    returned (the app logs them), errors refused.

    :raises ConfigError: with the first error's message (and every verdict), e.g. an unknown environment,
        a production app without its secrets, malformed or (in production) short secrets, ID_HASH_KEY
        equal to SECRET_KEY, a throttling limit below 1.
    """
    env = config.get("APP_ENV", "production")
    sources = {}
    if env in ("development", "testing"):
        for key in ("SECRET_KEY", "ID_HASH_KEY", "TOKEN_KEYS"):
            if config.get(key):
                continue
            if env == "development":
                secret, sources[key] = _instance_secret(instance_path, key), f"instance/{key.lower()}.dev"
            else:
                secret, sources[key] = f"testing-{key}", "the fixed testing value"
            config[key] = f"1:{secret}" if key == "TOKEN_KEYS" else secret
    if not config.get("DATABASE_URL"):
        Path(instance_path).mkdir(parents=True, exist_ok=True)
        config["DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'marketplace.sqlite3'}"
    config["LOG_FORMAT"] = config.get("LOG_FORMAT") or ("json" if env == "production" else "text")
    if config["LOG_FORMAT"] not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be json or text; got {config['LOG_FORMAT']!r}")
    config["LOG_LEVEL"] = str(config.get("LOG_LEVEL") or ("WARNING" if env == "testing" else "INFO")).upper()
    if config["LOG_LEVEL"] not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}; got {config['LOG_LEVEL']!r}")

    verdicts = check_settings(config, instance_path=instance_path, secret_sources=sources,
                              integer_settings=[field.name for field in fields(Config) if field.type is int])
    errors = [verdict for verdict in verdicts if verdict.level == "error"]
    if errors:
        more = (f" ({len(errors) - 1} more problem{'s' * (len(errors) > 2)}: `flask --app wsgi check-config` "
                "lists them all)") if len(errors) > 1 else ""
        raise ConfigError(errors[0].message + more, verdicts)

    config["SQLALCHEMY_DATABASE_URI"] = config["DATABASE_URL"]
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    # A database error's message would otherwise carry the statement's values (names, phones) into the logs.
    config["SQLALCHEMY_ENGINE_OPTIONS"].setdefault("hide_parameters", True)
    if config["DATABASE_URL"].startswith("sqlite"):
        # Writers take turns instead of polling SQLite's lock (see QueuedSQLiteConnection).
        config["SQLALCHEMY_ENGINE_OPTIONS"].setdefault("connect_args", {})["factory"] = QueuedSQLiteConnection
    config["PERMANENT_SESSION_LIFETIME"] = config["SESSION_TTL_SECONDS"]
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    # Not setdefault: Flask's defaults already hold SESSION_COOKIE_SECURE=False, so it would never apply.
    config["SESSION_COOKIE_SECURE"] = bool(config.get("SESSION_COOKIE_SECURE")) or env == "production"
    # Flask-Login's remember-me cookie would outlive logout; we never issue it.
    config["REMEMBER_COOKIE_DURATION"] = 0
    return verdicts


def _instance_secret(instance_path: str, key: str) -> str:
    """Return a development secret kept in the instance folder, so every worker shares it."""
    folder = Path(instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key.lower()}.dev"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()

"""Configuration read from the environment.

Every setting has one name, used both as the environment variable and as the Flask config key.
`APP_ENV` is `production` unless told otherwise: a server that forgets its environment must fail
closed (refuse to start without secrets), not open.
"""

import functools
import os
import re
import secrets
from dataclasses import dataclass, fields
from pathlib import Path

from marketplace.db import QueuedSQLiteConnection

ENVIRONMENTS = ("production", "development", "testing")
# Shortest secret production accepts, in bytes of its UTF-8 text (`secrets.token_hex(32)` gives 64).
MIN_SECRET_BYTES = 32
TOKEN_KEY_ID_RE = re.compile(r"^[0-9]{1,3}$")
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
GENERATE = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"


class ConfigError(RuntimeError):
    """The configuration cannot run safely; the message says what to set."""


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


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
    SQLITE_BUSY_TIMEOUT_MS: int = 30_000
    # FULL: a committed transaction survives power loss and an OS crash (as PostgreSQL's
    # synchronous_commit=on). NORMAL in WAL mode may lose the last commits on power loss: only opt in
    # knowing an acknowledged redemption could vanish.
    SQLITE_SYNCHRONOUS: str = "FULL"
    # Logs (marketplace.logs): `json` (one object per line) or `text`; unset, JSON in production and text
    # elsewhere. LOG_LEVEL is a `logging` level name.
    LOG_FORMAT: str | None = None
    LOG_LEVEL: str = "INFO"
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


def finalise(config: dict, instance_path: str) -> None:
    """Fill derived settings in place and refuse to run without what production needs.

    :raises ConfigError: an unknown environment, a production app without its secrets, malformed or
        (in production) short secrets, ID_HASH_KEY equal to SECRET_KEY, a throttling limit below 1.
    """
    env = config.get("APP_ENV", "production")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}; got {env!r}")
    if config.get("SQLITE_SYNCHRONOUS", "FULL") not in ("FULL", "NORMAL"):
        raise ConfigError("SQLITE_SYNCHRONOUS must be FULL (the default) or NORMAL; "
                          f"got {config['SQLITE_SYNCHRONOUS']!r}")
    if config.get("RANKING_PRIOR_WEIGHT", 10) < 0:
        raise ConfigError("RANKING_PRIOR_WEIGHT (C in the ranking formula) cannot be negative.")
    for key in ("LOGIN_FAILURES_PER_USERNAME_AND_CLIENT", "LOGIN_FAILURES_PER_CLIENT", "LOGIN_FAILURES_PER_USERNAME",
                "LOGIN_FAILURE_WINDOW_SECONDS", "SHORT_CODE_FAILURES_PER_LOGIN", "SHORT_CODE_FAILURE_WINDOW_SECONDS"):
        if config.get(key, 1) < 1:
            raise ConfigError(f"{key} must be at least 1; got {config[key]}.")
    config["LOG_FORMAT"] = config.get("LOG_FORMAT") or ("json" if env == "production" else "text")
    if config["LOG_FORMAT"] not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be json or text; got {config['LOG_FORMAT']!r}")
    config["LOG_LEVEL"] = str(config.get("LOG_LEVEL") or "INFO").upper()
    if config["LOG_LEVEL"] not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}; got {config['LOG_LEVEL']!r}")
    for key in ("SECRET_KEY", "ID_HASH_KEY", "TOKEN_KEYS"):
        if config.get(key):
            continue
        if env == "production":
            raise ConfigError(
                f"{key} is not set. Set it in the environment to a long random value, e.g. "
                f"`export {key}=$(python -c 'import secrets; print(secrets.token_hex(32))')`, "
                "or run with APP_ENV=development for a local demo."
            )
        secret = _instance_secret(instance_path, key) if env == "development" else f"testing-{key}"
        config[key] = f"1:{secret}" if key == "TOKEN_KEYS" else secret
    check_secrets(config, production=env == "production")

    if not config.get("DATABASE_URL"):
        Path(instance_path).mkdir(parents=True, exist_ok=True)
        config["DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'marketplace.sqlite3'}"
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


def check_secrets(config: dict, *, production: bool) -> None:
    """Refuse secrets that would fail later or are too weak, naming the variable and the fix; never the secret.

    TOKEN_KEYS must parse as vouchers.tokens reads it (`kid:secret[,kid:secret…]`, key ids 0–255, each
    once, no empty secret): else the first presence code would be a 500. In production every secret has
    at least MIN_SECRET_BYTES. ID_HASH_KEY must differ from SECRET_KEY in every environment.

    :raises ConfigError:
    """
    keys = parse_token_keys(config["TOKEN_KEYS"])
    if production:
        for name in ("SECRET_KEY", "ID_HASH_KEY"):
            size = len(config[name].encode("utf-8"))
            if size < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"{name} is {size} bytes long; production needs at least {MIN_SECRET_BYTES}. "
                    f"Generate one: `export {name}={GENERATE}`."
                )
        for kid, secret in keys:
            if len(secret) < MIN_SECRET_BYTES:
                unused = next(candidate for candidate in range(256) if candidate not in dict(keys))
                raise ConfigError(
                    f"TOKEN_KEYS key {kid} is {len(secret)} bytes long; production needs at least {MIN_SECRET_BYTES} "
                    "bytes per key (a short key can be guessed, and cards forged under it). Replace it with a new "
                    f"key, e.g. `{unused}:{GENERATE}` in its place; cards printed under key {kid} must be printed "
                    "again."
                )
    if config["ID_HASH_KEY"] == config["SECRET_KEY"]:
        raise ConfigError(
            "ID_HASH_KEY equals SECRET_KEY; each needs a value of its own, so that rotating one never affects "
            "the other. Give SECRET_KEY a new value (that only ends cookie sessions): "
            f"`export SECRET_KEY={GENERATE}`; keep ID_HASH_KEY, which the blind index of recorded ID numbers "
            "depends on."
        )


@functools.lru_cache(maxsize=8)
def parse_token_keys(raw: str) -> tuple[tuple[int, bytes], ...]:
    """TOKEN_KEYS as (key id, secret) pairs, the signing key first (vouchers.tokens reads it here too).

    :raises ConfigError: naming the entry and what is wrong with it (never its secret).
    """
    fix = ("Write TOKEN_KEYS as kid:secret[,kid:secret…] with whole-number key ids from 0 to 255, each used once, "
           f"the signing key first, e.g. `export TOKEN_KEYS=1:{GENERATE}`.")
    keys: list[tuple[int, bytes]] = []
    for position, part in enumerate(raw.split(","), start=1):
        entry = part.strip()
        if not entry:
            raise ConfigError(f"TOKEN_KEYS entry {position} is empty. {fix}")
        kid_text, colon, secret = entry.partition(":")
        if not TOKEN_KEY_ID_RE.match(kid_text.strip()) or int(kid_text) > 255:
            raise ConfigError(f"TOKEN_KEYS entry {position} has key id {kid_text!r}, not a number from 0 to 255. "
                              f"{fix}")
        kid = int(kid_text)
        if not colon or not secret:
            raise ConfigError(f"TOKEN_KEYS entry {position} (key id {kid}) has no secret. {fix}")
        if any(kid == seen for seen, _secret in keys):
            raise ConfigError(f"TOKEN_KEYS lists key id {kid} twice (entry {position}). {fix}")
        keys.append((kid, secret.encode("utf-8")))
    return tuple(keys)


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

"""What a configuration must be, checked once: by the app at start and by `flask --app wsgi check-config`.

`check_settings` gives a verdict — ok, warning or error — on every setting that matters for running
the service, each with one line saying why and what to do. `marketplace.config.finalise` runs it when
the app starts: any error refuses the start (ConfigError, with the first error's message), warnings are
logged. `flask --app wsgi check-config` prints every verdict and exits 1 when there is an error; it works
even when the app itself would refuse to start (then the app only knows this one command), so that an
operator sees every problem at once, not one per attempt.

Secrets are never printed: a verdict names a secret's length, source and strength, never its value.
"""

import functools
import math
import os
import re
import shlex
import string
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from flask import Blueprint, Flask, current_app
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

ENVIRONMENTS = ("production", "development", "testing")
# Shortest secret production accepts, in bytes of its UTF-8 text (`secrets.token_hex(32)` gives 64).
MIN_SECRET_BYTES = 32
# A secret with fewer different characters is not random (`aaaa…`, `0101…`), whatever its length.
MIN_DISTINCT_CHARACTERS = 8
# Below this many bits of entropy (if it were random over the characters it uses) a secret is weak.
STRONG_SECRET_BITS = 128
TOKEN_KEY_ID_RE = re.compile(r"^[0-9]{1,3}$")
GENERATE = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
SECRETS = ("SECRET_KEY", "ID_HASH_KEY", "TOKEN_KEYS")
THROTTLES = ("LOGIN_FAILURES_PER_USERNAME_AND_CLIENT", "LOGIN_FAILURES_PER_CLIENT", "LOGIN_FAILURES_PER_USERNAME",
             "LOGIN_FAILURE_WINDOW_SECONDS", "SHORT_CODE_FAILURES_PER_LOGIN", "SHORT_CODE_FAILURE_WINDOW_SECONDS")
# Filesystems on which SQLite's locks (and our write-turn flock) cannot be trusted: several hosts, or
# none that honours POSIX locks. https://www.sqlite.org/howtocorrupt.html §2.1
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre",
                                 "fuse.sshfs", "fuse.glusterfs", "fuse.s3fs", "fuse.rclone", "davfs"})
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
LEVELS = ("ok", "warning", "error")


class ConfigError(RuntimeError):
    """The configuration cannot run safely; the message says what to set. *verdicts*: every check's verdict."""

    def __init__(self, message: str, verdicts: list["Verdict"] | None = None):
        super().__init__(message)
        self.verdicts = verdicts or [Verdict("error", "configuration", message)]


@dataclass(frozen=True)
class Verdict:
    level: str  # ok, warning or error
    setting: str
    message: str


@dataclass
class _Verdicts:
    items: list[Verdict] = field(default_factory=list)

    def ok(self, setting: str, message: str) -> None:
        self.items.append(Verdict("ok", setting, message))

    def warning(self, setting: str, message: str) -> None:
        self.items.append(Verdict("warning", setting, message))

    def error(self, setting: str, message: str) -> None:
        self.items.append(Verdict("error", setting, message))


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


# --- the checks ---------------------------------------------------------------------------------------

def check_settings(config: Mapping, *, instance_path: str, integer_settings: Iterable[str] = (),
                   secret_sources: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None,
                   mounts: str = "/proc/self/mounts") -> list[Verdict]:
    """Every verdict on *config* (the app's settings, secrets filled in where the environment allows it).

    *integer_settings* must hold whole numbers; *secret_sources* says where a filled-in secret came
    from (`instance/secret_key.dev`); *environ* is where gunicorn's settings are read
    (GUNICORN_CMD_ARGS). Errors come in the order the app has always refused them: the environment,
    the integer and throttling settings, then the secrets.
    """
    environ = os.environ if environ is None else environ
    secret_sources = secret_sources or {}
    verdicts = _Verdicts()
    env = config.get("APP_ENV", "production")
    # An unknown environment is treated as production: fail closed.
    production = env not in ("development", "testing")
    if env not in ENVIRONMENTS:
        verdicts.error("APP_ENV", f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}; got {env!r}")
    elif production:
        verdicts.ok("APP_ENV", "production: secrets required, cookies Secure")
    else:
        verdicts.ok("APP_ENV", f"{env}: never for real data")
    integers_ok = _check_integers(config, integer_settings, verdicts)
    _check_sqlite_synchronous(config, verdicts)
    if integers_ok:
        _check_limits(config, verdicts)
    for name in SECRETS:
        _check_secret(name, config, verdicts, production=production, source=secret_sources.get(name),
                      instance_path=instance_path)
    if config.get("ID_HASH_KEY") and config.get("ID_HASH_KEY") == config.get("SECRET_KEY"):
        verdicts.error("ID_HASH_KEY", (
            "ID_HASH_KEY equals SECRET_KEY; each needs a value of its own, so that rotating one never affects "
            "the other. Give SECRET_KEY a new value (that only ends cookie sessions): "
            f"`export SECRET_KEY={GENERATE}`; keep ID_HASH_KEY, which the blind index of recorded ID numbers "
            "depends on."))
    _check_timezone(config, verdicts)
    workers, workers_source = gunicorn_workers(environ, config.get("RATELIMIT_STORAGE_URI") or "memory://")
    _check_database(config, verdicts, workers=workers, workers_source=workers_source, mounts=mounts)
    _check_counters(config, verdicts, workers=workers, workers_source=workers_source)
    _check_web(config, verdicts, production=production, environ=environ)
    if integers_ok and config.get("IDEMPOTENCY_TTL_HOURS", 48) < 24:
        verdicts.warning("IDEMPOTENCY_TTL_HOURS", (
            f"{config['IDEMPOTENCY_TTL_HOURS']} hours: a scanner retrying the next morning would redeem twice; "
            "keep at least 24."))
    return verdicts.items


def _check_integers(config: Mapping, names: Iterable[str], verdicts: _Verdicts) -> bool:
    good = True
    for name in names:
        value = config.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            verdicts.error(name, f"{name} must be an integer, got {value!r}")
            good = False
    return good


def _check_sqlite_synchronous(config: Mapping, verdicts: _Verdicts) -> None:
    value = config.get("SQLITE_SYNCHRONOUS", "FULL")
    if value not in ("FULL", "NORMAL"):
        verdicts.error("SQLITE_SYNCHRONOUS",
                       f"SQLITE_SYNCHRONOUS must be FULL (the default) or NORMAL; got {value!r}")
    elif value == "NORMAL" and _is_sqlite(_database_url(config)):
        verdicts.warning("SQLITE_SYNCHRONOUS", (
            "NORMAL: on power loss the last committed transactions may vanish, acknowledged redemptions and "
            "payments among them; use FULL unless the disk has a battery-backed write cache."))


def _check_limits(config: Mapping, verdicts: _Verdicts) -> None:
    if config.get("RANKING_PRIOR_WEIGHT", 10) < 0:
        verdicts.error("RANKING_PRIOR_WEIGHT", "RANKING_PRIOR_WEIGHT (C in the ranking formula) cannot be negative.")
    short = [name for name in THROTTLES if config.get(name, 1) < 1]
    for name in short:
        verdicts.error(name, f"{name} must be at least 1; got {config[name]}.")
    if not short:
        verdicts.ok("LOGIN_FAILURES_*", (
            f"{config.get('LOGIN_FAILURES_PER_USERNAME_AND_CLIENT')} per username and client, "
            f"{config.get('LOGIN_FAILURES_PER_CLIENT')} per client, {config.get('LOGIN_FAILURES_PER_USERNAME')} per "
            f"username within {config.get('LOGIN_FAILURE_WINDOW_SECONDS')} s"))


def _check_secret(name: str, config: Mapping, verdicts: _Verdicts, *, production: bool, source: str | None,
                  instance_path: str) -> None:
    value = config.get(name)
    if not value:
        verdicts.error(name, (
            f"{name} is not set. Set it in the environment to a long random value, e.g. "
            f"`export {name}={'1:' if name == 'TOKEN_KEYS' else ''}"
            "$(python -c 'import secrets; print(secrets.token_hex(32))')`, "
            "or run with APP_ENV=development for a local demo."))
        return
    if name == "TOKEN_KEYS":
        try:
            keys = parse_token_keys(value)
        except ConfigError as error:
            verdicts.error(name, str(error))
            return
        secrets = [(f"TOKEN_KEYS key {kid}", secret.decode("utf-8")) for kid, secret in keys]
    else:
        keys = ()
        secrets = [(name, value)]
    origin = f"kept in {source}" if source else "from the environment"
    if not production:
        verdicts.ok(name, f"{origin}; production needs its own (length and strength are checked there)")
        return
    before = len(verdicts.items)
    for label, secret in secrets:
        _check_strength(name, label, secret, verdicts, keys=keys)
    if len(verdicts.items) > before:
        return
    developed = Path(instance_path) / f"{name.lower()}.dev"
    if developed.is_file() and developed.read_text().strip() in (value, value.partition(":")[2]):
        verdicts.warning(name, f"the same as the development secret in {developed}: give production its own.")
    elif name == "TOKEN_KEYS":
        ids = ", ".join(str(kid) for kid, _secret in keys)
        verdicts.ok(name, f"{len(keys)} key{'s' if len(keys) > 1 else ''} (ids {ids}); key {keys[0][0]} signs, "
                          f"every one verifies; {origin}")
    else:
        verdicts.ok(name, f"{len(value.encode('utf-8'))} bytes, {origin}")


def _check_strength(name: str, label: str, secret: str, verdicts: _Verdicts, *, keys) -> None:
    size = len(secret.encode("utf-8"))
    if size < MIN_SECRET_BYTES:
        if name == "TOKEN_KEYS":
            kid = int(label.rsplit(" ", 1)[1])
            unused = next(candidate for candidate in range(256) if candidate not in dict(keys))
            verdicts.error(name, (
                f"TOKEN_KEYS key {kid} is {size} bytes long; production needs at least {MIN_SECRET_BYTES} "
                "bytes per key (a short key can be guessed, and cards forged under it). Replace it with a new "
                f"key, e.g. `{unused}:{GENERATE}` in its place; cards printed under key {kid} must be printed "
                "again."))
        else:
            verdicts.error(name, (f"{name} is {size} bytes long; production needs at least {MIN_SECRET_BYTES}. "
                                  f"Generate one: `export {name}={GENERATE}`."))
        return
    distinct = len(set(secret))
    if distinct < MIN_DISTINCT_CHARACTERS:
        verdicts.error(name, (
            f"{label} is not random: its {size} bytes use only {distinct} different characters. "
            f"Generate one: {GENERATE}."))
        return
    bits = estimated_bits(secret)
    if bits < STRONG_SECRET_BITS:
        verdicts.warning(name, (
            f"{label} may be guessable: about {bits} bits even if every character were random (its characters "
            f"are of {alphabet_size(secret)} kinds); {STRONG_SECRET_BITS} or more wanted, e.g. {GENERATE}."))


def alphabet_size(secret: str) -> int:
    """How many characters the secret could have been drawn from, judging by those it uses."""
    characters = set(secret)
    if characters <= set("0123456789abcdef") or characters <= set("0123456789ABCDEF"):
        return 16 if not characters <= set(string.digits) else 10
    size = 0
    for kind, count in ((string.digits, 10), (string.ascii_lowercase, 26), (string.ascii_uppercase, 26),
                        (string.punctuation + " ", 33)):
        if characters & set(kind):
            size += count
    if any(ord(character) > 127 for character in characters):
        size += 100
    return size


def estimated_bits(secret: str) -> int:
    """Entropy of *secret* were it random over its alphabet: an upper bound, so a low value is a sure warning."""
    return int(len(secret) * math.log2(max(alphabet_size(secret), 2)))


def _check_timezone(config: Mapping, verdicts: _Verdicts) -> None:
    zone = config.get("LOCAL_TIMEZONE") or "Asia/Shanghai"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        verdicts.error("LOCAL_TIMEZONE", f"LOCAL_TIMEZONE {zone!r} is not a time zone (e.g. Asia/Shanghai); voucher "
                                         "months and settlement periods are reckoned there.")
    else:
        verdicts.ok("LOCAL_TIMEZONE", f"{zone}: voucher months and settlement periods are its calendar")


# --- the database and gunicorn ---------------------------------------------------------------------------

def _database_url(config: Mapping) -> str:
    return config.get("DATABASE_URL") or "sqlite:///instance/marketplace.sqlite3"


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def gunicorn_workers(environ: Mapping[str, str], ratelimit_uri: str, argv: list[str] | None = None) -> tuple[int, str]:
    """How many workers `gunicorn --config gunicorn.conf.py` runs here, and why.

    As gunicorn reads its settings: its command line (when this process is gunicorn) over
    GUNICORN_CMD_ARGS over gunicorn.conf.py, which runs two workers when the login counters are shared
    (RATELIMIT_STORAGE_URI not memory://) and one when not (tests/test_check_config.py holds this to
    the file). WEB_CONCURRENCY is gunicorn's default only, which the file's `workers` replaces.
    """
    argv = sys.argv if argv is None else argv
    if argv and Path(argv[0]).name == "gunicorn" and (count := _workers_option(argv[1:])) is not None:
        return count, "gunicorn's command line"
    try:
        count = _workers_option(shlex.split(environ.get("GUNICORN_CMD_ARGS", "")))
    except ValueError:
        count = None
    if count is not None:
        return count, "GUNICORN_CMD_ARGS"
    shared = not ratelimit_uri.startswith(("memory://", "async+memory://"))
    return (2 if shared else 1), "gunicorn.conf.py"


def _workers_option(args: list[str]) -> int | None:
    """The last `-w N` / `--workers N` / `--workers=N` / `-wN` among *args* (gunicorn takes the last)."""
    count = None
    for position, arg in enumerate(args):
        value = None
        if arg in ("-w", "--workers") and position + 1 < len(args):
            value = args[position + 1]
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        elif arg.startswith("-w") and arg[2:].isdigit():
            value = arg[2:]
        if value is not None and value.isdigit():
            count = int(value)
    return count


def filesystem_of(path: Path, mounts: str = "/proc/self/mounts") -> str | None:
    """The type of the filesystem *path* lives on (from /proc/self/mounts), or None when unknown."""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, kind = "", None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def _check_database(config: Mapping, verdicts: _Verdicts, *, workers: int, workers_source: str, mounts: str) -> None:
    url = _database_url(config)
    try:
        parsed = make_url(url)
    except ArgumentError:
        verdicts.error("DATABASE_URL", "DATABASE_URL is not a database URL; e.g. "
                                       "postgresql+psycopg://user:password@host:5432/vouchers")
        return
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        verdicts.ok("DATABASE_URL", f"PostgreSQL, {shown}; back it up with `flask backup` (pg_dump) and archive its "
                                    "WAL for point-in-time recovery")
        return
    if backend != "sqlite":
        verdicts.error("DATABASE_URL", f"{backend} is not supported: use PostgreSQL or SQLite.")
        return
    path = Path(parsed.database or "")
    folder = path.parent if parsed.database else None
    kind = filesystem_of(folder, mounts) if folder is not None and folder.exists() else None
    if kind in NETWORK_FILESYSTEMS:
        verdicts.error("DATABASE_URL", (
            f"the SQLite file {path} is on a {kind} network filesystem, where its locks do not hold: two writers "
            "can corrupt it. Keep it on a local disk of the one host that serves the app, or use PostgreSQL."))
    elif workers > 1:
        verdicts.warning("DATABASE_URL", (
            f"SQLite ({path}) with {workers} gunicorn workers ({workers_source}): they take turns at its one write "
            "lock, which holds only among processes of this host. Every worker must run here, against a local "
            "disk; to serve from more than one host, or for more write throughput, use PostgreSQL."))
    else:
        verdicts.ok("DATABASE_URL", f"SQLite, {path}, one host; back it up with `flask backup` (its online backup)")


def _check_counters(config: Mapping, verdicts: _Verdicts, *, workers: int, workers_source: str) -> None:
    uri = config.get("RATELIMIT_STORAGE_URI") or "memory://"
    if uri.startswith(("memory://", "async+memory://")):
        if workers > 1:
            verdicts.warning("RATELIMIT_STORAGE_URI", (
                f"memory:// with {workers} gunicorn workers ({workers_source}): each worker counts failed logins and "
                f"wrong short codes on its own, so a guesser gets up to {workers} times the limits. Set "
                "RATELIMIT_STORAGE_URI=redis://host:6379 (shared by every worker) or run one worker."))
        else:
            verdicts.ok("RATELIMIT_STORAGE_URI", "memory://, one gunicorn worker: the counters are that worker's")
    else:
        verdicts.ok("RATELIMIT_STORAGE_URI", f"{urlsplit(uri).scheme}:// shared by every worker ({workers})")


def _check_web(config: Mapping, verdicts: _Verdicts, *, production: bool, environ: Mapping[str, str]) -> None:
    if production:
        verdicts.ok("SESSION_COOKIE_SECURE", "on: cookies travel over HTTPS only (always in production)")
    elif config.get("SESSION_COOKIE_SECURE"):
        verdicts.ok("SESSION_COOKIE_SECURE", "on")
    else:
        verdicts.ok("SESSION_COOKIE_SECURE", "off outside production, so http://127.0.0.1 works; on in production")

    public_url = config.get("PUBLIC_URL")
    https = False
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            verdicts.error("PUBLIC_URL", "PUBLIC_URL must be the address users open, like "
                                         f"https://vouchers.example.gov.cn; got {public_url!r}")
            return
        https = parts.scheme == "https"
        if https:
            verdicts.ok("PUBLIC_URL", f"{public_url}: the scan page's camera works (HTTPS)")
        elif parts.hostname in LOCAL_HOSTS:
            verdicts.ok("PUBLIC_URL", f"{public_url}: this host only (browsers treat it as secure)")
        elif production:
            verdicts.warning("PUBLIC_URL", (
                f"{public_url} is not HTTPS: browsers open the camera of the scan page only on https:// pages, and in "
                "production the session cookie is Secure, so console logins fail over plain HTTP. Serve it through "
                "nginx with TLS (an internal CA on a closed network)."))
        else:
            verdicts.ok("PUBLIC_URL", f"{public_url}: plain HTTP, fine outside production")
    elif production:
        verdicts.warning("PUBLIC_URL", (
            "not set, so it cannot be checked that users reach the console over HTTPS, which the scan page's camera "
            "needs (and the Secure session cookie). Set PUBLIC_URL=https://… to the address users open."))
    else:
        verdicts.ok("PUBLIC_URL", "not set (only production needs HTTPS)")

    if production and https and config.get("PROXY_FIX_X_FOR", 0) == 0:
        verdicts.warning("PROXY_FIX_X_FOR", (
            "0, yet PUBLIC_URL is HTTPS, so a TLS proxy stands in front of gunicorn: set PROXY_FIX_X_FOR=1 to take "
            "clients' addresses from its X-Forwarded-For. Else every client has the proxy's address and "
            f"{config.get('LOGIN_FAILURES_PER_CLIENT')} failed logins by anyone lock out everyone."))
    else:
        verdicts.ok("PROXY_FIX_X_FOR", f"{config.get('PROXY_FIX_X_FOR', 0)} trusted proxies")

    token = config.get("METRICS_TOKEN") or environ.get("METRICS_TOKEN")
    if token and production and len(token.encode("utf-8")) < MIN_SECRET_BYTES:
        verdicts.warning("METRICS_TOKEN", f"{len(token.encode('utf-8'))} bytes; use at least {MIN_SECRET_BYTES}, "
                                          f"e.g. {GENERATE}.")
    elif token:
        verdicts.ok("METRICS_TOKEN", "set: /metrics answers its bearer")
    elif production:
        verdicts.warning("METRICS_TOKEN", (
            "not set: /metrics answers only callers on this host. Set METRICS_TOKEN for a Prometheus server "
            "elsewhere to scrape it."))
    else:
        verdicts.ok("METRICS_TOKEN", "not set: /metrics answers callers on this host")


# --- the command ------------------------------------------------------------------------------------------

cli = Blueprint("config_checks_cli", __name__, cli_group=None)


def flask_command(argv: list[str] | None = None) -> str | None:
    """The command of `flask [options] COMMAND …` when this process is the flask CLI; None otherwise."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return None
    program = Path(argv[0])
    if program.name != "flask" and not (program.name == "__main__.py" and program.parent.name == "flask"):
        return None
    words = iter(argv[1:])
    for word in words:
        if word in ("--app", "-A", "--env-file", "-e"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def report_only_app(app: Flask, verdicts: list[Verdict]) -> Flask:
    """*app*, refused its configuration, knowing only `check-config` (for `flask check-config` to report why)."""
    app.extensions["config_verdicts"] = verdicts
    app.register_blueprint(cli)
    return app


def render(verdicts: list[Verdict]) -> list[str]:
    """One line per verdict, then the count."""
    width = max((len(verdict.setting) for verdict in verdicts), default=0)
    lines = [f"{verdict.level:<8} {verdict.setting:<{width}}  {verdict.message}" for verdict in verdicts]
    errors = sum(verdict.level == "error" for verdict in verdicts)
    warnings = sum(verdict.level == "warning" for verdict in verdicts)
    summary = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    if errors:
        summary += ": the app refuses to start until the errors are fixed."
    elif warnings:
        summary += ": the app starts; read the warnings."
    else:
        summary += "."
    return [*lines, summary]


@cli.cli.command("check-config")
def check_config_command():
    """Print a verdict on every setting that matters (ok / warning / error); exit 1 when there is an error."""
    verdicts = current_app.extensions["config_verdicts"]
    for line in render(verdicts):
        click.echo(line)
    if any(verdict.level == "error" for verdict in verdicts):
        raise SystemExit(1)

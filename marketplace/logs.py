"""Logs: one line per request and every other line tagged with its request id; JSON in production.

Two formats, chosen by LOG_FORMAT (marketplace.config: `json` by default when APP_ENV=production, else
`text`):

- json: one object per line — `time` (UTC, ISO 8601), `level`, `logger`, `message`, then the line's
  context: `request_id` inside a request; `run_id` and `command` inside a CLI command (one run id per
  invocation, so a cron job's lines can be found together); and for the access line of a request
  `method`, `route`, `status`, `duration_ms`, `user_id`, `role`. An exception adds `exc_info`.
- text: `time LEVEL [request id | run id] logger: message`, for reading in a terminal.

No personal data: the access line names the URL rule (`/api/v1/recipients/<int:recipient_id>`), never
the path or its query string (tokens, short codes and searched-for names travel there) and never a body.
A traceback through a database error keeps its frames and statement but not its message, which may quote a
row's values; the statement's parameters are hidden anyway (marketplace.config sets `hide_parameters`).

Logging is configured for the process (`logging` is global): the last app created decides the format.
Our three packages log through one handler each, to the stderr of the moment (gunicorn collects it).
"""

import contextlib
import functools
import logging
import re
import secrets
import sys
import time
import traceback
from datetime import UTC, datetime

import click
from flask import Flask, g, has_request_context, request
from pythonjsonlogger.core import RESERVED_ATTRS, merge_record_extra
from pythonjsonlogger.json import JsonFormatter

PACKAGES = ("marketplace", "providers", "vouchers")
FORMATS = ("json", "text")
ACCESS_LOGGER = "marketplace.access"
# The caller's X-Request-ID is kept when it is 8–64 of these characters (API.md "Operations"); else a new one.
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
REQUEST_ID_HEADER = "X-Request-ID"
# Probes and scrapes come every few seconds: their access lines are DEBUG unless they fail.
QUIET_ENDPOINTS = frozenset({"system.health", "system.readiness", "metrics.scrape"})
_SKIPPED = (*RESERVED_ATTRS, "taskName", "color_message")
_RUN_ID_KEY = "marketplace.run_id"

access_log = logging.getLogger(ACCESS_LOGGER)


# --- the lines' context -------------------------------------------------------------------------------

class ContextFilter(logging.Filter):
    """Tag a record with its request id (inside a request) or its run id and command (inside a CLI command)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            if not hasattr(record, "request_id"):
                record.request_id = g.get("request_id")
            return True
        context = click.get_current_context(silent=True)
        if context is not None and not hasattr(record, "run_id"):
            record.run_id = context.find_root().meta.setdefault(_RUN_ID_KEY, secrets.token_hex(8))
            record.command = context.command.name
        return True


# A database's error message may quote the values of a row (PostgreSQL: `DETAIL: Key (phone)=(139…) already
# exists`): a traceback through one of these keeps its frames, types and statement, never the message.
DATABASE_ERROR_MODULES = ("sqlalchemy.exc", "psycopg", "sqlite3")
WITHHELD = "(message withheld: a database error may quote the values of a row)"


def _chain(error: BaseException | None):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def format_exception(exc_info) -> str:
    """A traceback as logging writes it, except that a database error's message is withheld."""
    kind, error, trace = exc_info
    if not any(type(each).__module__.startswith(DATABASE_ERROR_MODULES) for each in _chain(error)):
        return logging.Formatter().formatException(exc_info)
    described = f"{kind.__module__}.{kind.__qualname__}: {WITHHELD}"
    if original := getattr(error, "orig", None):
        described += f" from {type(original).__module__}.{type(original).__qualname__}"
    if statement := getattr(error, "statement", None):
        described += f"\n[SQL: {statement}]"
    return "".join(["Traceback (most recent call last):\n", *traceback.format_tb(trace), described])


def _tag(record: logging.LogRecord) -> str:
    if getattr(record, "request_id", None):
        return record.request_id
    if getattr(record, "run_id", None):
        return f"run {record.run_id}"
    return "-"


class TextFormatter(logging.Formatter):
    """`2026-01-05 09:30:00,123 INFO [3f2a…] marketplace.access: GET /api/v1/health 200 2ms`."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s [%(tag)s] %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return self._fmt % {**record.__dict__, "tag": _tag(record)}

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return format_exception(ei)


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message first, then the record's context."""

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        for name in ("request_id", "run_id", "command"):
            if getattr(record, name, None) is not None:
                log_data[name] = getattr(record, name)
        log_data.update(message_dict)
        merge_record_extra(record, log_data, reserved=_SKIPPED)

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return format_exception(ei)


def formatter(kind: str) -> logging.Formatter:
    """The formatter of LOG_FORMAT *kind* (`json` or `text`)."""
    if kind not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}; got {kind!r}")
    return JsonLineFormatter() if kind == "json" else TextFormatter()


class StderrHandler(logging.StreamHandler):
    """Write to whatever sys.stderr is when the line is written (as logging's last resort does)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def handler(kind: str) -> logging.Handler:
    """A handler writing lines of *kind* with their context to the current stderr."""
    made = StderrHandler()
    made.setFormatter(formatter(kind))
    made.addFilter(ContextFilter())
    made._marketplace = True
    return made


def configure(kind: str, level: str = "INFO") -> None:
    """Send our packages' logs to stderr as *kind* at *level* and up; replaces what an earlier call set."""
    for name in PACKAGES:
        logger = logging.getLogger(name)
        for old in [each for each in logger.handlers if getattr(each, "_marketplace", False)]:
            logger.removeHandler(old)
        logger.addHandler(handler(kind))
        logger.setLevel(level)


def configured_format() -> str | None:
    """The format our packages log in now (`json`, `text`), or None before configure()."""
    for each in logging.getLogger(PACKAGES[0]).handlers:
        if getattr(each, "_marketplace", False):
            return "json" if isinstance(each.formatter, JsonLineFormatter) else "text"
    return None


# --- requests -----------------------------------------------------------------------------------------

NO_ROUTE = "(no route)"


def route() -> str:
    """The URL rule of the current request (`/api/v1/recipients/<int:recipient_id>`), never its path;
    NO_ROUTE when no rule matched (a 404)."""
    return request.url_rule.rule if request.url_rule is not None else NO_ROUTE


def _actor() -> tuple[int | None, str | None]:
    """Who the request was made by, when the request has already looked (never a lookup of its own)."""
    user = g.get("_login_user")  # Flask-Login's per-request cache
    if user is None or not getattr(user, "is_authenticated", False):
        return None, None
    return user.id, user.role


def _start_request() -> None:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = given if REQUEST_ID_RE.match(given) else secrets.token_hex(8)
    g.request_started = time.perf_counter()


def _finish_request(response):
    """The request id on the response, and the access line. A streamed body (an export) is still to be sent:
    its duration is the time to the first byte."""
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    started = g.get("request_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
    user_id, role = _actor()
    rule = route()
    level = logging.DEBUG if request.endpoint in QUIET_ENDPOINTS and response.status_code < 400 else logging.INFO
    access_log.log(level, "%s %s %s %sms", request.method, rule, response.status_code, duration_ms,
                   extra={"method": request.method, "route": rule, "status": response.status_code,
                          "duration_ms": duration_ms, "user_id": user_id, "role": role})
    return response


def init_app(app: Flask) -> None:
    """Configure the process's logging from LOG_FORMAT and LOG_LEVEL; a request id and an access line for
    every request. Call it before anything else registers request hooks, so the duration covers them."""
    configure(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    app.before_request(_start_request)
    app.after_request(_finish_request)


# --- CLI commands -------------------------------------------------------------------------------------

def log_commands(app: Flask) -> None:
    """Log the start and the end of each of the app's commands (outcome, exit code, duration) in the
    configured format, with the run's id; never their arguments or output, which may name people."""
    for command in app.cli.commands.values():
        callback = command.callback
        if callback is None or getattr(callback, "_logged", False):
            continue
        command.callback = _logged(command.name, callback)


def _logged(name: str, callback):
    @functools.wraps(callback)
    def run(*args, **kwargs):
        commands_log = logging.getLogger("marketplace.commands")
        commands_log.info("command %s started", name)
        started = time.perf_counter()
        outcome, exit_code = "failed", 1
        try:
            result = callback(*args, **kwargs)
            outcome, exit_code = "ok", 0
            return result
        except SystemExit as stop:
            exit_code = stop.code if isinstance(stop.code, int) else 1
            outcome = "ok" if exit_code == 0 else "failed"
            raise
        except click.ClickException as refused:
            exit_code = refused.exit_code
            raise
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            with contextlib.suppress(Exception):  # logging must never change a command's outcome
                commands_log.log(logging.INFO if outcome == "ok" else logging.ERROR,
                                 "command %s %s (exit %s) in %sms", name, outcome, exit_code, duration_ms,
                                 extra={"outcome": outcome, "exit_code": exit_code, "duration_ms": duration_ms})

    run._logged = True
    return run

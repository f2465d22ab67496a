"""The error envelope (docs/domain.md#api-conventions, docs/errors.md) and the exceptions that map to it.

Every error the API returns is `{"error": {"code", "message", "details"}}`. Domain rules raise a
`DomainError` subclass (status and code are class attributes); HTTP-level failures raised by Flask,
werkzeug or webargs are translated here, once. A 500 reveals nothing but a request id.

`error_catalogue()` lists every (status, code) the API can answer with: the `DomainError` subclasses
of every domain plus the codes the handlers below produce themselves (`FRAMEWORK_ERRORS`). It feeds
docs/errors.md (`flask --app wsgi errors-doc`) and the `enum` of `error.code` in the OpenAPI document.
"""

import logging
import re
import secrets
from dataclasses import dataclass

from flask import Flask, current_app, g, has_request_context, jsonify, request
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, default_exceptions

from marketplace.api import MAX_JSON_DEPTH
from marketplace.logs import route as route_of_request

log = logging.getLogger(__name__)


class DomainError(Exception):
    status = 400
    code = "bad_request"
    message = "The request cannot be carried out."

    def __init__(self, message: str | None = None, **details):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class ValidationFailed(DomainError):
    """Field-level validation found in the service layer (beyond what the schema checks)."""

    status, code, message = 422, "validation_error", "The request has invalid fields."

    def __init__(self, fields: dict[str, list[str] | str], message: str | None = None):
        normalised = {name: [msgs] if isinstance(msgs, str) else list(msgs) for name, msgs in fields.items()}
        super().__init__(message, fields=normalised)


class Unauthenticated(DomainError):
    status, code, message = 401, "unauthenticated", "Authentication is required."


class Forbidden(DomainError):
    status, code, message = 403, "forbidden", "You may not do this."


class NotFound(DomainError):
    status, code, message = 404, "not_found", "No such resource."


class CsrfFailed(DomainError):
    status, code = 403, "csrf_failed"
    message = "Cookie-authenticated changes need the X-CSRF-Token header from login."


class InvalidTransition(DomainError):
    status, code, message = 409, "invalid_transition", "This status change is not allowed."


@dataclass(frozen=True)
class FrameworkError:
    """A code the handlers of this module produce themselves, for errors that are not a `DomainError`.

    `status` None stands for "any other 4xx"; `meaning` is what the registry says when the message
    alone does not tell (it defaults to the message).
    """

    status: int | None
    code: str
    message: str
    source: str
    meaning: str = ""


def _werkzeug(status: int, code: str, message: str) -> FrameworkError:
    return FrameworkError(status, code, message, f"werkzeug.exceptions.{default_exceptions[status].__name__}")


# Codes for errors raised by Flask/werkzeug/webargs rather than by our rules, by status.
HTTP_CODES: dict[int, FrameworkError] = {error.status: error for error in (
    _werkzeug(400, "bad_request", "The request is malformed."),
    _werkzeug(401, "unauthenticated", "Authentication is required."),
    _werkzeug(403, "forbidden", "You may not do this."),
    _werkzeug(404, "not_found", "No such resource."),
    _werkzeug(405, "method_not_allowed", "This method is not allowed on this resource."),
    _werkzeug(409, "conflict", "The request conflicts with the current state."),
    _werkzeug(413, "payload_too_large", "The request body is too large."),
    _werkzeug(415, "unsupported_media_type", "Send JSON with Content-Type: application/json."),
    _werkzeug(422, "validation_error", "The request has invalid fields."),
    _werkzeug(429, "rate_limited", "Too many requests; slow down."),
)}
MALFORMED_JSON = FrameworkError(400, "malformed_json", "The request body is not valid JSON.",
                                "marketplace.api.load_json_body: a JSON body that does not parse",
                                meaning="The request body is not valid JSON: it does not parse, is not UTF-8, or "
                                        f"nests lists and objects more than {MAX_JSON_DEPTH} levels deep.")
OTHER_HTTP_ERROR = FrameworkError(
    None, "http_error", "HTTP error.", "werkzeug.exceptions: any other 4xx",
    meaning="Any other client error Flask or werkzeug raises (e.g. 416 for an unsatisfiable Range header on a "
            "docs asset); the status is that error's and the message is werkzeug's description of it.")
INTERNAL_ERROR = FrameworkError(500, "internal_error", "Something went wrong on our side; it has been logged.",
                                "any unhandled exception or werkzeug 5xx",
                                meaning="Something went wrong on our side; it has been logged. `details.request_id` "
                                        "names it in the logs.")
DATABASE_UNAVAILABLE = FrameworkError(503, "database_unavailable", "The database does not answer; try again shortly.",
                                      "sqlalchemy OperationalError/InterfaceError (a lost connection)")
FRAMEWORK_ERRORS: tuple[FrameworkError, ...] = (*HTTP_CODES.values(), MALFORMED_JSON, OTHER_HTTP_ERROR,
                                                 INTERNAL_ERROR, DATABASE_UNAVAILABLE)


def envelope(status: int, code: str, message: str, details: dict | None = None):
    """The API's error body; outside /api/ a browser gets the console's error page instead (when installed)."""
    html_page = current_app.extensions.get("html_error_page")
    if html_page is not None and has_request_context() and not request.path.startswith("/api/"):
        return html_page(status, code, message, details or {})
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def domain_error_response(error: DomainError):
    return envelope(error.status, error.code, error.message, error.details)


def http_error_response(error: HTTPException):
    status = error.code or 500
    if status >= 500:
        return internal_error_response(error)
    known = HTTP_CODES.get(status)
    if known is not None:
        code, message = known.code, known.message
    else:
        code, message = OTHER_HTTP_ERROR.code, error.description or OTHER_HTTP_ERROR.message
    details = {}
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if status == 400 and messages and "json" in messages:
        code, message = MALFORMED_JSON.code, MALFORMED_JSON.message
    elif status == 422 and messages:
        details["fields"] = _flatten_locations(messages)
    if status == 405 and error.valid_methods:
        details["allowed"] = sorted(error.valid_methods)
    response = envelope(status, code, message, details)
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    return response


def _flatten_locations(messages: dict) -> dict:
    """webargs groups messages by location (json, query, files…); clients want them by field."""
    fields: dict = {}
    for location, per_field in messages.items():
        if isinstance(per_field, dict):
            fields.update(per_field)
        else:
            fields[location] = per_field
    return fields


def internal_error_response(error: BaseException):
    request_id = getattr(g, "request_id", None) or secrets.token_hex(8)
    log.error("unhandled error on %s %s [request %s]", request.method, route_of_request(), request_id,
              exc_info=getattr(error, "original_exception", None) or error)
    return envelope(INTERNAL_ERROR.status, INTERNAL_ERROR.code, INTERNAL_ERROR.message, {"request_id": request_id})


def handle_any_exception(error: Exception):
    if isinstance(error, DomainError):
        return domain_error_response(error)
    if isinstance(error, HTTPException):
        return http_error_response(error)
    if isinstance(error, OperationalError | InterfaceError) or getattr(error, "connection_invalidated", False):
        # The database is down or restarting: a temporary condition, not a bug. Nothing was committed.
        log.warning("database unavailable on %s %s: %s", request.method, route_of_request(), type(error).__name__)
        return envelope(DATABASE_UNAVAILABLE.status, DATABASE_UNAVAILABLE.code, DATABASE_UNAVAILABLE.message,
                        {"request_id": getattr(g, "request_id", None)})
    return internal_error_response(error)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(DomainError, domain_error_response)
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(Exception, handle_any_exception)


# --- the registry of codes ---------------------------------------------------------------------------

# The packages whose DomainError subclasses the API raises (a class a test defines is not part of the API).
APPLICATION_PACKAGES = ("marketplace", "providers", "vouchers")
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")


@dataclass(frozen=True)
class ErrorEntry:
    """One (status, code) the API can answer with, every meaning it has, and where each comes from."""

    status: int | None  # None: any other 4xx (OTHER_HTTP_ERROR)
    code: str
    meanings: tuple[str, ...]
    sources: tuple[str, ...]

    @property
    def status_label(self) -> str:
        return "4xx" if self.status is None else str(self.status)

    @property
    def meaning(self) -> str:
        return " / ".join(self.meanings)


def domain_error_classes() -> list[type[DomainError]]:
    """Every `DomainError` subclass the application defines, found by walking the class tree.

    Only classes already imported exist: call it after `create_app()`, which imports every domain.
    """
    found: dict[str, type[DomainError]] = {}
    pending = list(DomainError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.partition(".")[0] in APPLICATION_PACKAGES:
            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    # By class name first: the page must not change when a class merely moves to another module.
    return sorted(found.values(), key=lambda cls: (cls.__name__, cls.__module__))


def _status_order(status: int | None) -> int:
    return 499 if status is None else status  # "any other 4xx" after the named 4xx, before the 5xx


def error_catalogue() -> list[ErrorEntry]:
    """Every (status, code) the API can return, once, with all its meanings; by status, then code."""
    meanings: dict[tuple[int | None, str], list[str]] = {}
    sources: dict[tuple[int | None, str], list[str]] = {}

    def add(status: int | None, code: str, meaning: str, source: str) -> None:
        said = meanings.setdefault((status, code), [])
        if meaning not in said:
            said.append(meaning)
        sources.setdefault((status, code), []).append(source)

    for error in FRAMEWORK_ERRORS:
        add(error.status, error.code, error.meaning or error.message, error.source)
    for cls in domain_error_classes():
        add(cls.status, cls.code, cls.message, f"{cls.__module__}.{cls.__qualname__}")
    return [ErrorEntry(status, code, tuple(meanings[status, code]), tuple(sources[status, code]))
            for status, code in sorted(meanings, key=lambda key: (_status_order(key[0]), key[1]))]


def error_codes(catalogue: list[ErrorEntry] | None = None) -> list[str]:
    """The distinct codes of the catalogue, sorted (a code may come with more than one status)."""
    return sorted({entry.code for entry in catalogue or error_catalogue()})

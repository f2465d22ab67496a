"""The error envelope of API.md and the exceptions that map to it.

Every error the API returns is `{"error": {"code", "message", "details"}}`. Domain rules raise a
`DomainError` subclass (status and code are class attributes); HTTP-level failures raised by Flask,
werkzeug or webargs are translated here, once. A 500 reveals nothing but a request id.
"""

import logging
import secrets

from flask import Flask, g, jsonify, request
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

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


# Codes for errors raised by Flask/werkzeug rather than by our rules.
HTTP_CODES = {
    400: ("bad_request", "The request is malformed."),
    401: ("unauthenticated", "Authentication is required."),
    403: ("forbidden", "You may not do this."),
    404: ("not_found", "No such resource."),
    405: ("method_not_allowed", "This method is not allowed on this resource."),
    409: ("conflict", "The request conflicts with the current state."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send JSON with Content-Type: application/json."),
    422: ("validation_error", "The request has invalid fields."),
    429: ("rate_limited", "Too many requests; slow down."),
}


def envelope(status: int, code: str, message: str, details: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def domain_error_response(error: DomainError):
    return envelope(error.status, error.code, error.message, error.details)


def http_error_response(error: HTTPException):
    status = error.code or 500
    if status >= 500:
        return internal_error_response(error)
    code, message = HTTP_CODES.get(status, ("http_error", error.description or "HTTP error."))
    details = {}
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if status == 400 and messages and "json" in messages:
        code, message = "malformed_json", "The request body is not valid JSON."
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
    log.error("unhandled error on %s %s [request %s]", request.method, request.path, request_id,
              exc_info=getattr(error, "original_exception", None) or error)
    return envelope(500, "internal_error", "Something went wrong on our side; it has been logged.",
                    {"request_id": request_id})


def handle_any_exception(error: Exception):
    if isinstance(error, DomainError):
        return domain_error_response(error)
    if isinstance(error, HTTPException):
        return http_error_response(error)
    if isinstance(error, OperationalError | InterfaceError) or getattr(error, "connection_invalidated", False):
        # The database is down or restarting: a temporary condition, not a bug. Nothing was committed.
        log.warning("database unavailable on %s %s: %s", request.method, request.path, type(error).__name__)
        return envelope(503, "database_unavailable", "The database does not answer; try again shortly.",
                        {"request_id": getattr(g, "request_id", None)})
    return internal_error_response(error)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(DomainError, domain_error_response)
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(Exception, handle_any_exception)

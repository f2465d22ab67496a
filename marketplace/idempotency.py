"""`Idempotency-Key` for the POSTs that create or move money (docs/domain.md#api-conventions).

A client that is not sure its request arrived (a scanner on a weak mobile link) repeats it with the
same key. The first request stores its response in the same transaction as the change it made; a
repeat with the same key and body gets that response again (header `Idempotent-Replayed: true`)
and changes nothing; the same key with another body is 422 `idempotency_key_reused`; a repeat that
arrives while the first is still running is 409 `idempotency_key_in_flight` on PostgreSQL (SQLite's
single writer makes the repeat wait and then replay). Keys are scoped to the user and kept
IDEMPOTENCY_TTL_HOURS (at least 24); `flask --app wsgi purge-expired` removes older ones.

Use it directly under the route decorator, above `@blp.arguments`, so it wraps the whole response:

    @blp.post("/redemptions")
    @idempotent
    @blp.arguments(RedemptionInput())
    ...
"""

import hashlib
import json
import re
import secrets
from datetime import datetime, timedelta
from functools import wraps

from flask import Response, current_app, request
from sqlalchemy import Integer, String, Text, delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.auth.access import require_actor
from marketplace.db import UTCDateTime, db, transaction, utcnow
from marketplace.errors import CsrfFailed, DomainError, ValidationFailed

HEADER = "Idempotency-Key"
KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")


class IdempotencyKeyReused(DomainError):
    status, code = 422, "idempotency_key_reused"
    message = "This Idempotency-Key was used for a different request."


class IdempotencyKeyInFlight(DomainError):
    status, code = 409, "idempotency_key_in_flight"
    message = "A request with this Idempotency-Key is still being processed; retry shortly."


class IdempotencyRecord(db.Model):
    __tablename__ = "idempotency_record"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


def request_fingerprint() -> str:
    """Method, path and body; a JSON body is canonicalised so key order and spacing do not matter."""
    body = request.get_json(silent=True)
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")) if body is not None else request.get_data(
        as_text=True)
    return hashlib.sha256(f"{request.method} {request.path}\n{payload}".encode()).hexdigest()


def _lock_in_flight(user_id: int, key: str) -> None:
    """On PostgreSQL, refuse a second concurrent request with the same key instead of queueing it."""
    if db.session.get_bind().dialect.name != "postgresql":
        return
    lock_id = int.from_bytes(hashlib.sha256(f"{user_id}:{key}".encode()).digest()[:8], "big", signed=True)
    if not db.session.scalar(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": lock_id}):
        raise IdempotencyKeyInFlight()


def idempotent(view):
    """Make a money-moving POST safe to repeat with the same Idempotency-Key."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        if not KEY_RE.match(key):
            raise ValidationFailed({HEADER: "1 to 200 visible ASCII characters."})
        actor = require_actor()
        fingerprint = request_fingerprint()
        with transaction():
            _lock_in_flight(actor.id, key)
            record = IdempotencyRecord(user_id=actor.id, key=key, request_hash=fingerprint, created_at=utcnow())
            try:
                with db.session.begin_nested():
                    db.session.add(record)
            except IntegrityError:
                return _replay(actor.id, key, fingerprint)
            response = view(*args, **kwargs)
            record.status_code = response.status_code
            record.response_body = response.get_data(as_text=True)
        return response

    return wrapper


def _replay(user_id: int, key: str, fingerprint: str) -> Response:
    stored = db.session.scalar(select(IdempotencyRecord).where(IdempotencyRecord.user_id == user_id,
                                                                 IdempotencyRecord.key == key))
    if stored.request_hash != fingerprint:
        raise IdempotencyKeyReused()
    if stored.status_code is None:
        raise IdempotencyKeyInFlight()
    response = current_app.response_class(stored.response_body, status=stored.status_code,
                                          mimetype="application/json")
    response.headers["Idempotent-Replayed"] = "true"
    return response


def purge(*, now: datetime) -> int:
    """Delete records older than IDEMPOTENCY_TTL_HOURS; return how many."""
    cutoff = now - timedelta(hours=current_app.config["IDEMPOTENCY_TTL_HOURS"])
    return db.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)).rowcount


# --- console forms ------------------------------------------------------------------------------------
# A console form carries a key of its own in a hidden field, made when the page is drawn. Posting it
# twice (a double tap, a reload of the answer, a second tab) does the change once: the second post is
# sent where the first one went. Same table, same rules as the API's Idempotency-Key, with the key
# namespaced so the two never meet.

FORM_KEY_FIELD = "form_key"
FORM_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def new_form_key() -> str:
    """A fresh key for one form as drawn on one page."""
    return secrets.token_urlsafe(18)


def _form_fingerprint() -> str:
    """Path and fields of the posted form, without the CSRF token (masked afresh on every page)."""
    fields = sorted((name, value) for name, values in request.form.lists() if name != "csrf_token"
                    for value in values)
    return hashlib.sha256(f"{request.method} {request.path}\n{json.dumps(fields)}".encode()).hexdigest()


def once_per_form(change) -> str:
    """Run *change()* — a console form's change, returning the address to show next — once per form key.

    Call it inside the request's transaction: the key is recorded with the change, so a refused change
    leaves the form usable. A repeat of the same form gets the first answer's address and changes
    nothing; on PostgreSQL a repeat that arrives while the first runs waits for it, then does the same.

    :raises CsrfFailed: the form has no key (a page from before keys, or forged): like a form without its
        CSRF token, it is refused with "this form is out of date, open the page again".
    :raises IdempotencyKeyReused: the same key with other fields (a tampered or mixed-up form).
    """
    key = request.form.get(FORM_KEY_FIELD, "")
    if not FORM_KEY_RE.match(key):
        raise CsrfFailed("This form is out of date: open the page again.")
    actor = require_actor()
    fingerprint = _form_fingerprint()
    record = IdempotencyRecord(user_id=actor.id, key=f"form:{key}", request_hash=fingerprint, created_at=utcnow())
    try:
        with db.session.begin_nested():
            db.session.add(record)
    except IntegrityError:
        stored = db.session.scalar(select(IdempotencyRecord).where(IdempotencyRecord.user_id == actor.id,
                                                                     IdempotencyRecord.key == f"form:{key}"))
        if stored.request_hash != fingerprint:
            raise IdempotencyKeyReused() from None
        return stored.response_body
    address = change()
    record.status_code, record.response_body = 303, address
    return address

"""Users, passwords, tokens and sessions.

Passwords are hashed with argon2id at OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).
Bearer tokens and session secrets are 256-bit random strings; only their sha256 is stored, so a
copy of the database grants no logins. Failed logins are counted in the rate limiter's storage
(memory with one server process, Redis when several serve the app): per username from one client,
per client, and per username from all clients (see `authenticate`).
"""

import functools
import hashlib
import math
import re
import secrets
import time
from datetime import datetime, timedelta
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.strategies import RateLimiter
from sqlalchemy import bindparam, column, select, table, update
from sqlalchemy.exc import IntegrityError

from marketplace import audit, scope
from marketplace.auth.models import ROLES, AuthToken, User
from marketplace.db import UTCDateTime, db, utcnow
from marketplace.errors import DomainError, InvalidTransition, ValidationFailed
from marketplace.extensions import rate_limiter

PASSWORD_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16,
                                 type=Type.ID)
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.@-]{2,63}$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
MIN_DISTINCT_CHARACTERS = 4


class InvalidCredentials(DomainError):
    status, code, message = 401, "invalid_credentials", "Unknown username or wrong password."


class TooManyAttempts(DomainError):
    status, code = 429, "too_many_attempts"
    message = "Too many failed attempts (logins, or typed presence codes); wait and try again."


class DuplicateUsername(DomainError):
    status, code, message = 409, "duplicate_username", "This username is taken."


def normalise_username(username: str) -> str:
    return username.strip().lower()


def hash_password(password: str) -> str:
    return PASSWORD_HASHER.hash(password)


def check_password_policy(*, username: str, password: str) -> None:
    """Refuse passwords that are easy to guess, saying why.

    NIST SP 800-63B (5.1.1.2): a minimum length and a check against known-weak values, no composition
    rules (no "one digit, one capital"). Refused: fewer than MIN_PASSWORD_LENGTH or more than
    MAX_PASSWORD_LENGTH characters, only whitespace, fewer than MIN_DISTINCT_CHARACTERS different
    characters (`aaaaaaaaaa`, `ababababab`), the username itself, and any password on the list of
    common passwords (compared lower-cased, without surrounding whitespace).

    :raises ValidationFailed: naming the `password` field.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed({"password": f"Use at least {MIN_PASSWORD_LENGTH} characters."})
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed({"password": f"Use at most {MAX_PASSWORD_LENGTH} characters."})
    if not password.strip():
        raise ValidationFailed({"password": "A password of only whitespace is easy to guess; use words or characters."})
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        raise ValidationFailed({"password": f"Use at least {MIN_DISTINCT_CHARACTERS} different characters: a few "
                                            "characters repeated are easy to guess."})
    if normalise_username(password) == normalise_username(username):
        raise ValidationFailed({"password": "The password must differ from the username."})
    if password.strip().lower() in common_passwords():
        raise ValidationFailed({"password": "This is one of the most common passwords, which attackers try first; "
                                            "choose another (a few unrelated words make a good one)."})


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (common_passwords.txt: its header says where it comes from)."""
    text = resources.files(__package__).joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def _row_exists(table_name: str, row_id: int) -> bool:
    # By table name, not by model: auth sits below the recipients and providers that logins belong to.
    if table_name not in db.metadata.tables:
        return False
    target = table(table_name, column("id"))
    return db.session.scalar(select(target.c.id).where(target.c.id == row_id)) is not None


def create_user(*, username: str, password: str, role: str, region_code: str | None = None,
                provider_id: int | None = None, recipient_id: int | None = None, actor: User | None,
                now: datetime, scope_checked: bool = False, home_region: str | None = None) -> User:
    """Create a login with one role; the links must fit the role and the actor's region scope.

    :raises ValidationFailed: a malformed username, a weak password, links that do not fit the role.
    :raises Forbidden: a region-scoped admin creating a login outside or above their scope.
    :raises DuplicateUsername: the username is taken (case-insensitively).

    *scope_checked*: the caller has already checked the actor's region scope for the thing the login
    belongs to (marketplace.accounts for POST /users, a recipient's or provider's own service); without
    it a region-scoped admin is refused. *home_region*: where the recipient or provider the login
    belongs to lives (for the audit event's region; an admin's is their scope).
    """
    username = normalise_username(username)
    if not USERNAME_RE.match(username):
        raise ValidationFailed({"username": "3–64 characters: letters, digits, '_', '.', '@', '-'."})
    if role not in ROLES:
        raise ValidationFailed({"role": f"One of: {', '.join(ROLES)}."})
    check_password_policy(username=username, password=password)
    _check_links(role=role, region_code=region_code, provider_id=provider_id, recipient_id=recipient_id)
    if not scope_checked:
        scope.require_unlimited(actor, "A region-scoped admin creates logins only for what lies inside their region.")

    user = User(username=username, password_hash=hash_password(password), role=role, region_code=region_code,
                provider_id=provider_id, recipient_id=recipient_id, active=True, created_at=now,
                created_by=getattr(actor, "id", None),
                provider_manager=role == "provider" and not _provider_has_login(provider_id))
    try:
        with db.session.begin_nested():
            db.session.add(user)
    except IntegrityError as exc:
        raise DuplicateUsername() from exc
    audit.record(action="user.created", entity="user", entity_id=user.id, actor=actor, now=now,
                 region_code=region_code or home_region,
                 data={"username": username, "role": role, "region_code": region_code,
                       "provider_id": provider_id, "recipient_id": recipient_id,
                       "provider_manager": user.provider_manager})
    return user


def _provider_has_login(provider_id: int) -> bool:
    """Whether the provider has a login already (its first login becomes its manager)."""
    return db.session.scalar(select(User.id).where(User.role == "provider", User.provider_id == provider_id)
                             .limit(1)) is not None


def _check_links(*, role: str, region_code: str | None, provider_id: int | None, recipient_id: int | None) -> None:
    problems = {}
    if region_code is not None and role != "admin":
        problems["region_code"] = "Only admins have a region scope."
    if role == "provider":
        if provider_id is None:
            problems["provider_id"] = "A provider login names its provider."
        elif not _row_exists("provider", provider_id):
            problems["provider_id"] = "No such provider."
    elif provider_id is not None:
        problems["provider_id"] = "Only provider logins name a provider."
    if role == "recipient":
        if recipient_id is None:
            problems["recipient_id"] = "A recipient login names its recipient."
        elif not _row_exists("recipient", recipient_id):
            problems["recipient_id"] = "No such recipient."
    elif recipient_id is not None:
        problems["recipient_id"] = "Only recipient logins name a recipient."
    if problems:
        raise ValidationFailed(problems)


# --- logins ---------------------------------------------------------------------------------------

def _login_counters(username: str, client: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
    """The counters a login attempt for *username* from *client* is counted in, as (limit, identifiers).

    The username goes into the keys as a digest: a password typed into the username field is not kept.
    """
    config = current_app.config
    window = config["LOGIN_FAILURE_WINDOW_SECONDS"]
    name = hashlib.sha256(username.encode("utf-8")).hexdigest()[:32]
    return [
        (RateLimitItemPerSecond(config["LOGIN_FAILURES_PER_USERNAME_AND_CLIENT"], window),
         ("login-username-client", name, client)),
        (RateLimitItemPerSecond(config["LOGIN_FAILURES_PER_CLIENT"], window), ("login-client", client)),
        (RateLimitItemPerSecond(config["LOGIN_FAILURES_PER_USERNAME"], window), ("login-username", name)),
    ]


def authenticate(*, username: str, password: str, client: str, now: datetime | None = None) -> User:
    """Return the active user with these credentials, and record the login.

    Every attempt first takes a place in three counters of failures within
    LOGIN_FAILURE_WINDOW_SECONDS — for this username from this client, from this client, for this
    username from all clients — with the limiter's `hit`, which counts and compares in one atomic step
    (one Redis script, or under a lock in memory). So racing attempts, in one process or in many
    sharing Redis, can never verify more passwords than the limits allow. An attempt over a limit
    gives back the places it took and is refused unverified, even with the right password (else it
    would tell the guesser). A failure keeps its places. A success gives them back and ends the run of
    failures for this username from this client, so the owner's own typos do not add up.

    A success sets `last_login_at` to *now* (default: the current time) and keeps its previous value on
    the returned user as `previous_login_at` (None at the first login), so the pages can tell what
    changed since (a provider's approval, rejection or suspension is shown once, at the first login
    after it).

    :raises TooManyAttempts: a limit is reached; `retry_after_seconds` says when that counter resets.
    :raises InvalidCredentials: unknown user, inactive user or wrong password (indistinguishably).
    """
    username = normalise_username(username)
    limiter = rate_limiter()
    counters = _login_counters(username, client)
    for taken, (item, identifiers) in enumerate(counters, start=1):
        if not limiter.hit(item, *identifiers):
            _give_back(limiter, counters[:taken])
            raise TooManyAttempts("Too many failed logins; wait and try again.",
                                  retry_after_seconds=_seconds_until_reset(limiter, item, identifiers))
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        # Hash anyway so that response time does not tell whether the username exists.
        _verify(_dummy_hash(), password)
        verified = False
    else:
        verified = _verify(user.password_hash, password)
    if not verified:
        raise InvalidCredentials()
    (pair, pair_identifiers), *others = counters
    limiter.clear(pair, *pair_identifiers)
    _give_back(limiter, others)
    if PASSWORD_HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.previous_login_at, user.last_login_at = user.last_login_at, now or utcnow()
    return user


def take_attempt(item: RateLimitItem, *identifiers: str, message: str) -> None:
    """Take a place in a counter of failures before checking an attempt (as `authenticate` does for logins).

    The limiter's `hit` counts and compares in one atomic step, so racing attempts can never check
    more than the limit's number; the caller gives the place back (`give_back_attempt`) unless the
    attempt failed. Counted in the rate limiter's store (RATELIMIT_STORAGE_URI), shared by every process.

    :raises TooManyAttempts: the limit is reached (*message*, and `retry_after_seconds`).
    """
    limiter = rate_limiter()
    if not limiter.hit(item, *identifiers):
        _give_back(limiter, [(item, identifiers)])
        raise TooManyAttempts(message, retry_after_seconds=_seconds_until_reset(limiter, item, identifiers))


def give_back_attempt(item: RateLimitItem, *identifiers: str) -> None:
    """Give back the place `take_attempt` took: the attempt did not fail."""
    _give_back(rate_limiter(), [(item, identifiers)])


def _give_back(limiter: RateLimiter, counters: list[tuple[RateLimitItem, tuple[str, ...]]]) -> None:
    # `limits` has no decrement for every storage; an increment by -1 is one (the same atomic script in Redis).
    for item, identifiers in counters:
        limiter.storage.incr(item.key_for(*identifiers), item.get_expiry(), amount=-1)


def _seconds_until_reset(limiter: RateLimiter, item: RateLimitItem, identifiers: tuple[str, ...]) -> int:
    reset_at = limiter.get_window_stats(item, *identifiers).reset_time
    return min(item.get_expiry(), max(1, math.ceil(reset_at - time.time())))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return PASSWORD_HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password(secrets.token_hex(16)))
    return _DUMMY_HASH[0]


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def issue_token(*, user: User, kind: str, now: datetime) -> tuple[str, AuthToken]:
    """Create a bearer token or a session secret for *user*; return the secret (shown once) and its row."""
    ttl = current_app.config["TOKEN_TTL_SECONDS" if kind == "bearer" else "SESSION_TTL_SECONDS"]
    raw = secrets.token_urlsafe(32)
    row = AuthToken(user_id=user.id, kind=kind, token_hash=token_digest(raw), created_at=now,
                    expires_at=now + timedelta(seconds=ttl))
    db.session.add(row)
    db.session.flush()
    audit.record(action="auth.login", entity="user", entity_id=user.id, actor=user, now=now,
                 region_code=user.region_code,
                 data={"kind": kind, "token_id": row.id})
    return raw, row


def user_for_token(raw: str, *, kind: str, now: datetime) -> User | None:
    """Return the active user holding this unexpired, unrevoked secret, or None."""
    if not raw or len(raw) > 256:
        return None
    user = db.session.execute(_USER_FOR_TOKEN, {"token_hash": token_digest(raw), "kind": kind, "now": now}).scalar()
    if user is not None:
        user.auth_token = raw
    return user


# Built once: every authenticated request runs it.
_USER_FOR_TOKEN = (select(User).join(AuthToken, AuthToken.user_id == User.id)
                   .where(AuthToken.token_hash == bindparam("token_hash"), AuthToken.kind == bindparam("kind"),
                          AuthToken.revoked_at.is_(None), AuthToken.expires_at > bindparam("now", type_=UTCDateTime()),
                          User.active.is_(True)))


def revoke_token(*, raw: str, actor: User, now: datetime) -> bool:
    """Revoke one secret (logout); return whether it was live."""
    revoked = db.session.execute(
        update(AuthToken).where(AuthToken.token_hash == token_digest(raw), AuthToken.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    if revoked:
        audit.record(action="auth.logout", entity="user", entity_id=actor.id, actor=actor, now=now,
                     region_code=actor.region_code)
    return bool(revoked)


# --- deactivating and reactivating a login ---------------------------------------------------------
# (Who may do it is decided above auth, in marketplace.accounts.service.)

class CannotDeactivateSelf(DomainError):
    status, code = 409, "cannot_deactivate_self"
    message = "A login cannot deactivate itself; ask the provider's manager or an admin."


def set_active(*, user: User, active: bool, reason: str, actor: User, now: datetime,
               region_code: str | None) -> User:
    """Turn a login off, or on again; turning it off revokes every bearer token and session it holds.

    One conditional update flips the flag (two racing requests: one wins, the other is refused), and the
    tokens are revoked in the same transaction, so a request with one of them right after gets 401. A
    login turned on again starts with no live token: its owner logs in anew. Audited as
    `user.deactivated` / `user.reactivated` with the reason, in *region_code* (where the provider or
    recipient the login belongs to is).

    :raises CannotDeactivateSelf: *actor* is *user*.
    :raises InvalidTransition: the login is already in that state.
    """
    if actor.id == user.id:
        raise CannotDeactivateSelf()
    changed = db.session.execute(update(User).where(User.id == user.id, User.active.is_(not active))
                                 .values(active=active).execution_options(synchronize_session=False)).rowcount
    if not changed:
        raise InvalidTransition("This login is already active." if active else "This login is already deactivated.")
    revoked = 0
    if not active:
        revoked = db.session.execute(update(AuthToken).where(AuthToken.user_id == user.id,
                                                             AuthToken.revoked_at.is_(None))
                                     .values(revoked_at=now).execution_options(synchronize_session=False)).rowcount
    db.session.refresh(user)
    audit.record(action="user.reactivated" if active else "user.deactivated", entity="user", entity_id=user.id,
                 actor=actor, now=now, region_code=region_code,
                 data={"username": user.username, "role": user.role, "provider_id": user.provider_id,
                       "recipient_id": user.recipient_id, "reason": reason, "tokens_revoked": revoked})
    return user

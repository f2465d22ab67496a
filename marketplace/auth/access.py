"""Who is asking: Flask-Login loaders, the role guard for views, and CSRF for cookie sessions.

A request is authenticated by exactly one of:
- `Authorization: Bearer <token>` (scripts, apps, scanners): never needs CSRF protection, and when
  the header is present any session cookie is ignored;
- the cookie session from POST /auth/login or the console's /login (browsers): every state-changing
  request to the API must carry the session's CSRF token in `X-CSRF-Token`.

Every form the console posts (any POST outside /api/, logged in or not: the login form too) carries the
same token, masked afresh on every page so that compressed pages do not leak it, in the `csrf_token` field.
"""

import hmac
import secrets
from functools import wraps

from flask import Flask, current_app, g, request, session
from flask_login import current_user, login_user, logout_user

from marketplace.auth import service
from marketplace.auth.models import User
from marketplace.db import transaction, utcnow
from marketplace.errors import CsrfFailed, Forbidden, Unauthenticated
from marketplace.extensions import login_manager

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
API_PREFIX = "/api/"
# Endpoints that start a session may be called with an old cookie and no CSRF token.
CSRF_EXEMPT_ENDPOINTS = frozenset({"auth.login", "auth.create_token"})


@login_manager.user_loader
def _load_session_user(session_secret: str) -> User | None:
    if request.headers.get("Authorization"):
        return None  # the bearer token decides; see _load_bearer_user
    user = service.user_for_token(session_secret, kind="session", now=utcnow())
    if user is not None:
        g.auth_kind = "session"
    return user


@login_manager.request_loader
def _load_bearer_user(req) -> User | None:
    scheme, _, raw = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    user = service.user_for_token(raw.strip(), kind="bearer", now=utcnow())
    if user is not None:
        g.auth_kind = "bearer"
    return user


@login_manager.unauthorized_handler
def _unauthorized():
    raise Unauthenticated()


def current_actor() -> User | None:
    """The authenticated user, or None for anonymous requests."""
    return current_user._get_current_object() if current_user.is_authenticated else None


def require_actor() -> User:
    actor = current_actor()
    if actor is None:
        raise Unauthenticated()
    return actor


def role_required(*roles: str):
    """Let only authenticated users with one of *roles* into the view (401, then 403)."""

    def decorator(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            actor = require_actor()
            if actor.role not in roles:
                raise Forbidden()
            return view(*args, **kwargs)

        # Read by _enforce_roles; functools.wraps in the decorators above copies it onto the view.
        guarded._required_roles = frozenset(roles)
        guarded._apidoc = {**getattr(view, "_apidoc", {})}
        guarded._apidoc["manual_doc"] = {
            **guarded._apidoc.get("manual_doc", {}),
            "security": [{"bearerAuth": []}, {"sessionCookie": []}],
            "x-roles": list(roles),
        }
        return guarded

    return decorator


def require_provider_manager(actor: User, provider_id: int) -> None:
    """Only the provider's manager (its first login) manages its logins, answers complaints and applies to
    programmes for it; its scanning staff scan and see the work. The one home of that policy.

    :raises Forbidden: *actor* is not the manager of provider *provider_id*.
    """
    if actor.role != "provider" or actor.provider_id != provider_id or not actor.provider_manager:
        raise Forbidden("Only the provider's manager may do this.")


def begin_session(*, username: str, password: str):
    """Log in with a cookie session: a new session id on every login, and the old session dies.

    :returns: (user, token). :raises InvalidCredentials, TooManyAttempts: as `service.authenticate`.
    """
    now = utcnow()
    replaced = current_actor() if not request.headers.get("Authorization") else None
    replaced_secret = replaced.auth_token if replaced is not None else None
    with transaction():
        user = service.authenticate(username=username, password=password, client=request.remote_addr or "unknown",
                                     now=now)
        if replaced_secret:
            # Rotation: a copy of the previous cookie must not outlive the session that replaced it.
            service.revoke_token(raw=replaced_secret, actor=replaced, now=now)
        raw, token = service.issue_token(user=user, kind="session", now=now)
    session.clear()
    user.auth_token = raw
    login_user(user)
    session.permanent = True
    session["csrf_token"] = secrets.token_urlsafe(32)
    return user, token


def end_session() -> None:
    """Log out: the session (or the bearer token) of this request is revoked; a captured cookie dies with it."""
    actor = current_actor()
    if actor is not None:
        with transaction():
            service.revoke_token(raw=actor.auth_token, actor=actor, now=utcnow())
    logout_user()
    session.clear()


def form_csrf_token() -> str:
    """The session's CSRF token for a form's hidden field, masked with a fresh pad each time it is shown.

    A visitor with no session yet (the login form) gets one: the form is then bound to this browser.
    """
    token = session.get("csrf_token")
    if not token:
        token = session["csrf_token"] = secrets.token_urlsafe(32)
    raw = token.encode()
    pad = secrets.token_bytes(len(raw))
    return pad.hex() + bytes(a ^ b for a, b in zip(raw, pad, strict=True)).hex()


def _form_token_matches(given: str, expected: str) -> bool:
    try:
        both = bytes.fromhex(given)
    except ValueError:
        return False
    half = len(both) // 2
    if not expected or len(both) != 2 * len(expected.encode()):
        return False
    unmasked = bytes(a ^ b for a, b in zip(both[half:], both[:half], strict=True))
    return hmac.compare_digest(unmasked, expected.encode())


def _csrf_protect() -> None:
    if request.method in SAFE_METHODS or request.endpoint in CSRF_EXEMPT_ENDPOINTS:
        return
    if not request.path.startswith(API_PREFIX):
        # A console form: always checked, logged in or not (login CSRF is real too).
        if not _form_token_matches(request.form.get(CSRF_FIELD, ""), session.get("csrf_token", "")):
            raise CsrfFailed()
        return
    if request.headers.get("Authorization") or "_user_id" not in session:
        return
    if not current_user.is_authenticated or g.get("auth_kind") != "session":
        return  # a dead cookie authenticates nobody, so there is nothing to forge
    expected = session.get("csrf_token", "")
    given = request.headers.get(CSRF_HEADER, "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise CsrfFailed()


def _enforce_roles() -> None:
    """Refuse strangers (401) and wrong roles (403) before the view parses its arguments.

    `role_required` sits below `@blp.arguments`, so on its own it would answer an anonymous request
    with a bad body 422 (and describe the schema to it) instead of 401.
    """
    if request.method == "OPTIONS" or request.endpoint is None:
        return
    roles = getattr(current_app.view_functions.get(request.endpoint), "_required_roles", None)
    if roles is not None and require_actor().role not in roles:
        raise Forbidden()


def init_app(app: Flask) -> None:
    app.before_request(_csrf_protect)
    app.before_request(_enforce_roles)

"""Who is asking: Flask-Login loaders, the role guard for views, and CSRF for cookie sessions.

A request is authenticated by exactly one of:
- `Authorization: Bearer <token>` (scripts, apps, scanners): never needs CSRF protection, and when
  the header is present any session cookie is ignored;
- the cookie session from POST /auth/login (browsers): every state-changing request must carry the
  session's CSRF token in `X-CSRF-Token`.
"""

import hmac
from functools import wraps

from flask import Flask, current_app, g, request, session
from flask_login import current_user

from marketplace.auth import service
from marketplace.auth.models import User
from marketplace.db import utcnow
from marketplace.errors import CsrfFailed, Forbidden, Unauthenticated
from marketplace.extensions import login_manager

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
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


def _csrf_protect() -> None:
    if request.method in SAFE_METHODS or request.endpoint in CSRF_EXEMPT_ENDPOINTS:
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

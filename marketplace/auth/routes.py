from flask import request, session

from marketplace.api import Blueprint
from marketplace.auth import service
from marketplace.auth.access import begin_session, end_session, require_actor, role_required
from marketplace.auth.schemas import (
    CredentialsSchema,
    SessionSchema,
    TokenSchema,
    UserSchema,
)
from marketplace.db import transaction, utcnow

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="Logins, tokens, sessions and users")


@blp.post("/auth/token")
@blp.arguments(CredentialsSchema())
@blp.response(200, TokenSchema)
def create_token(credentials):
    """Exchange a username and password for a bearer token.

    Repeated failures for one username from one client, from one client, or for one username from all
    clients together are refused with 429 `too_many_attempts`, even with the right password.
    """
    now = utcnow()
    with transaction():
        user = service.authenticate(**credentials, client=request.remote_addr or "unknown", now=now)
        raw, token = service.issue_token(user=user, kind="bearer", now=now)
    return {"token": raw, "token_type": "Bearer", "expires_at": token.expires_at, "user": user}


@blp.delete("/auth/token")
@blp.response(204)
@role_required("admin", "auditor", "provider", "recipient")
def revoke_token():
    """Revoke the bearer token (or session) this request is authenticated with."""
    actor = require_actor()
    with transaction():
        service.revoke_token(raw=actor.auth_token, actor=actor, now=utcnow())


@blp.post("/auth/login")
@blp.arguments(CredentialsSchema())
@blp.response(200, SessionSchema)
def login(credentials):
    """Start a cookie session (browsers); the session id is new on every login and the old one dies."""
    user, token = begin_session(**credentials)
    return {"csrf_token": session["csrf_token"], "expires_at": token.expires_at, "user": user}


@blp.post("/auth/logout")
@blp.response(204)
def logout():
    """End the session (or revoke the bearer token) of this request; a captured cookie dies with it."""
    end_session()


@blp.get("/me")
@blp.response(200, UserSchema)
@role_required("admin", "auditor", "provider", "recipient")
def me():
    """Who am I: role and the provider, recipient or region I belong to."""
    return require_actor()

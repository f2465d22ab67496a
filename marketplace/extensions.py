"""The extensions, bound to an app by `init_extensions`.

Flask-SQLAlchemy, Flask-Migrate and Flask-Login keep no per-app state, so one object serves every
app. The API (its OpenAPI document) and the rate limiter (its counters) do, so each app gets its own,
kept in `app.extensions`: two apps in one process — as in the tests — never share counters or specs.
"""

import inspect
import urllib.parse

from flask import Flask, current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_smorest import Api
from limits.storage import SCHEMES, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from marshmallow import Schema, fields

from marketplace.api import Blueprint
from marketplace.db import configure_engine, db
from marketplace.errors import error_catalogue, error_codes, http_error_response
from marketplace.schemas import ErrorBodySchema, ErrorSchema

migrate = Migrate()
login_manager = LoginManager()


def error_schema() -> type[Schema]:
    """The envelope as the OpenAPI document shows it: `error.code` enumerates the codes of the registry.

    Built for each app when create_app() has imported every domain, so every DomainError subclass exists.
    """
    catalogue = error_catalogue()
    by_status: dict[str, list[str]] = {}
    for entry in catalogue:
        by_status.setdefault(entry.status_label, []).append(f"`{entry.code}`")
    listing = "\n".join(f"- {status}: {', '.join(codes)}" for status, codes in by_status.items())
    code = fields.String(required=True, metadata={
        "enum": error_codes(catalogue),
        "description": "Stable snake_case error code. The codes by HTTP status (docs/errors.md says what each "
                       f"means; 4xx is any other client error):\n\n{listing}",
    })
    body = type("ErrorBodySchema", (ErrorBodySchema,), {"code": code})
    return type("ErrorSchema", (ErrorSchema,), {"error": fields.Nested(body, required=True)})


class MarketplaceApi(Api):
    """flask-smorest, with its errors in our envelope and documented as such (the default error response)."""

    ERROR_SCHEMA = ErrorSchema  # replaced for each app by error_schema(), which carries the codes

    def __init__(self, app: Flask | None = None, **kwargs):
        # Before Api.__init__, which registers the default error responses with ERROR_SCHEMA.
        self.ERROR_SCHEMA = error_schema()
        super().__init__(app, **kwargs)

    def handle_http_exception(self, error):
        return http_error_response(error)

    def register_blueprint(self, blp, *, parameters=None, **options):
        # Only marketplace.api.Blueprint reads JSON bodies with the app's limits (no 500 on hostile bodies).
        if not isinstance(blp, Blueprint):
            raise TypeError(f"{blp.name}: API routes use marketplace.api.Blueprint, not {type(blp).__module__}."
                            f"{type(blp).__qualname__}")
        super().register_blueprint(blp, parameters=parameters, **options)


def init_extensions(app: Flask) -> MarketplaceApi:
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine, busy_timeout_ms=app.config["SQLITE_BUSY_TIMEOUT_MS"],
                         synchronous=app.config["SQLITE_SYNCHRONOUS"])
    migrate.init_app(app, db, directory=str(app.config["MIGRATIONS_DIRECTORY"]), compare_type=True)
    login_manager.init_app(app)
    # The login-failure counters of marketplace.auth.service, in memory or in Redis (RATELIMIT_STORAGE_URI)
    # when several processes serve the app. `limits` directly rather than Flask-Limiter, which is built
    # on it: with no route limits to apply, Flask-Limiter's per-request hooks cost ~4% of a redemption.
    app.extensions["rate_limiter"] = FixedWindowRateLimiter(
        counter_storage(app.config["RATELIMIT_STORAGE_URI"], app.config["RATELIMIT_KEY_PREFIX"]))
    api = MarketplaceApi(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "Token from POST /api/v1/auth/token"}
    )
    api.spec.components.security_scheme(
        "sessionCookie",
        {"type": "apiKey", "in": "cookie", "name": "session",
         "description": "Cookie from POST /api/v1/auth/login; state changes need the X-CSRF-Token header"},
    )
    return api


def counter_storage(uri: str, key_prefix: str):
    """The `limits` storage at *uri*; in Redis (and Valkey) its keys start with *key_prefix*."""
    storage_class = SCHEMES.get(urllib.parse.urlparse(uri).scheme)
    accepts_prefix = storage_class is not None and "key_prefix" in inspect.signature(storage_class).parameters
    return storage_from_string(uri, key_prefix=key_prefix) if accepts_prefix else storage_from_string(uri)


def rate_limiter() -> FixedWindowRateLimiter:
    return current_app.extensions["rate_limiter"]

"""The extensions, bound to an app by `init_extensions`.

Flask-SQLAlchemy, Flask-Migrate and Flask-Login keep no per-app state, so one object serves every
app. The API (its OpenAPI document) and the rate limiter (its counters) do, so each app gets its own,
kept in `app.extensions`: two apps in one process — as in the tests — never share counters or specs.
"""

from flask import Flask, current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_smorest import Api
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from marketplace.db import configure_engine, db
from marketplace.errors import http_error_response
from marketplace.schemas import ErrorSchema

migrate = Migrate()
login_manager = LoginManager()


class MarketplaceApi(Api):
    """flask-smorest, with its errors in our envelope and documented as such."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        return http_error_response(error)


def init_extensions(app: Flask) -> MarketplaceApi:
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine, busy_timeout_ms=app.config["SQLITE_BUSY_TIMEOUT_MS"])
    migrate.init_app(app, db, directory=str(app.config["MIGRATIONS_DIRECTORY"]), compare_type=True)
    login_manager.init_app(app)
    # The login-failure counters of marketplace.auth.service, in memory or in Redis (RATELIMIT_STORAGE_URI)
    # when several processes serve the app. `limits` directly rather than Flask-Limiter, which is built
    # on it: with no route limits to apply, Flask-Limiter's per-request hooks cost ~4% of a redemption.
    app.extensions["rate_limiter"] = FixedWindowRateLimiter(storage_from_string(app.config["RATELIMIT_STORAGE_URI"]))
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


def rate_limiter() -> FixedWindowRateLimiter:
    return current_app.extensions["rate_limiter"]

"""The extensions, bound to an app by `init_extensions`.

Flask-SQLAlchemy, Flask-Migrate and Flask-Login keep no per-app state, so one object serves every
app. The API (its OpenAPI document) and the rate limiter (its counters) do, so each app gets its own,
kept in `app.extensions`: two apps in one process — as in the tests — never share counters or specs.
"""

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_smorest import Api

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
    # No limits are applied by decorators; the limiter's storage (memory or Redis) backs the login
    # failure counters in marketplace.auth.service.
    app.extensions["rate_limiter"] = Limiter(get_remote_address, app=app, default_limits=[])
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


def rate_limiter() -> Limiter:
    return current_app.extensions["rate_limiter"]

"""Liveness and readiness, and the self-hosted API docs page (county networks are often closed: no CDN)."""

import logging
from pathlib import Path

from alembic.script import ScriptDirectory
from flask import Blueprint as FlaskBlueprint
from flask import current_app, make_response, render_template, send_from_directory, url_for
from marshmallow import Schema, fields
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from swagger_ui_bundle import swagger_ui_path

from marketplace.api import DOCS_CSP, Blueprint
from marketplace.db import db
from marketplace.errors import DomainError
from marketplace.extensions import rate_limiter

DOCS_URL = "/api/v1/docs"
DOCS_ASSETS_URL = "/api/v1/docs/assets/"
# The docs page's own files: its template and the script that starts Swagger UI (served beside Swagger UI's).
API_DOCS_DIR = Path(__file__).resolve().parent / "api_docs"
START_SCRIPT = "api-docs.js"
# Swagger UI would otherwise have every reader's browser send the spec's URL to validator.swagger.io:
# a call out of a closed network, naming an internal host.
SWAGGER_UI_CONFIG = {"validatorUrl": None}

log = logging.getLogger(__name__)
blp = Blueprint("system", __name__, url_prefix="/api/v1", description="Service health")
docs_assets = FlaskBlueprint("docs_assets", __name__, template_folder=str(API_DOCS_DIR))


class DatabaseUnavailable(DomainError):
    status, code, message = 503, "database_unavailable", "The database does not answer."


class HealthSchema(Schema):
    status = fields.String(required=True)
    database = fields.String(required=True)


@blp.get("/health")
@blp.response(200, HealthSchema)
def health():
    """Report whether the service and its database answer (503 `database_unavailable` when not)."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        raise DatabaseUnavailable() from error
    finally:
        db.session.rollback()
    return {"status": "ok", "database": "ok"}


class ReadinessCheckSchema(Schema):
    name = fields.String(required=True, metadata={"description": "`database`, `schema` or `redis`"})
    ok = fields.Boolean(required=True)


class ReadinessSchema(Schema):
    status = fields.String(required=True, metadata={"description": "`ready` or `not_ready`"})
    checks = fields.List(fields.Nested(ReadinessCheckSchema), required=True)


def _database_answers() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False
    finally:
        db.session.rollback()


def migration_heads() -> frozenset[str]:
    """The head revisions of the app's migrations (read from the files once per app)."""
    heads = current_app.extensions.get("migration_heads")
    if heads is None:
        script = ScriptDirectory(str(current_app.config["MIGRATIONS_DIRECTORY"]))
        heads = current_app.extensions["migration_heads"] = frozenset(script.get_heads())
    return heads


def _schema_is_current() -> bool:
    try:
        applied = set(db.session.scalars(text("SELECT version_num FROM alembic_version")))
    except SQLAlchemyError:
        return False
    finally:
        db.session.rollback()
    if applied != migration_heads():
        log.warning("schema at %s, the migrations' head is %s: run `flask --app wsgi db upgrade`",
                    ", ".join(sorted(applied)) or "nothing", ", ".join(sorted(migration_heads())))
        return False
    return True


def _counter_store_answers() -> bool:
    try:
        return bool(rate_limiter().storage.check())
    except Exception:  # any failure of the store means "not ready", never a 500
        return False


@blp.get("/health/ready")
@blp.response(200, ReadinessSchema)
@blp.alt_response(503, schema=ReadinessSchema, description="Not ready: the checks say what is not")
def readiness():
    """Ready to serve: the database answers, its schema is at the migrations' head, and the login-failure
    counters' store answers when it is Redis (RATELIMIT_STORAGE_URI); else 503, with the same checks."""
    checks = [{"name": "database", "ok": _database_answers()}]
    checks.append({"name": "schema", "ok": checks[0]["ok"] and _schema_is_current()})
    if not current_app.config["RATELIMIT_STORAGE_URI"].startswith(("memory://", "async+memory://")):
        checks.append({"name": "redis", "ok": _counter_store_answers()})
    ready = all(check["ok"] for check in checks)
    if not ready:
        log.warning("not ready: %s", ", ".join(check["name"] for check in checks if not check["ok"]))
    return {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503


@docs_assets.get(DOCS_URL)
def docs_page():
    """Swagger UI over /api/v1/openapi.json, with no inline script (its CSP is DOCS_CSP)."""
    page = render_template("api_docs.html", title=current_app.config["API_TITLE"], assets_url=DOCS_ASSETS_URL,
                           spec_url=url_for("api-docs.openapi_json"), config=SWAGGER_UI_CONFIG,
                           start_script=START_SCRIPT)
    response = make_response(page)
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


@docs_assets.get(DOCS_ASSETS_URL + "<path:filename>")
def docs_asset(filename):
    if filename == START_SCRIPT:
        return send_from_directory(API_DOCS_DIR, filename, max_age=86400)
    return send_from_directory(swagger_ui_path, filename, max_age=86400)

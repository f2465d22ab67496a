"""Health check and the self-hosted API docs page (county networks are often closed: no CDN)."""

from pathlib import Path

from flask import Blueprint as FlaskBlueprint
from flask import current_app, make_response, render_template, send_from_directory, url_for
from marshmallow import Schema, fields
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from swagger_ui_bundle import swagger_ui_path

from marketplace.api import DOCS_CSP, Blueprint
from marketplace.db import db
from marketplace.errors import DomainError

DOCS_URL = "/api/v1/docs"
DOCS_ASSETS_URL = "/api/v1/docs/assets/"
# The docs page's own files: its template and the script that starts Swagger UI (served beside Swagger UI's).
API_DOCS_DIR = Path(__file__).resolve().parent / "api_docs"
START_SCRIPT = "api-docs.js"
# Swagger UI would otherwise have every reader's browser send the spec's URL to validator.swagger.io:
# a call out of a closed network, naming an internal host.
SWAGGER_UI_CONFIG = {"validatorUrl": None}

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

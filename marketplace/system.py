"""Health check and the self-hosted API docs assets (county networks are often closed: no CDN)."""

from flask import Blueprint as FlaskBlueprint
from flask import send_from_directory
from marshmallow import Schema, fields
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from swagger_ui_bundle import swagger_ui_path

from marketplace.api import Blueprint
from marketplace.db import db
from marketplace.errors import DomainError

DOCS_ASSETS_URL = "/api/v1/docs/assets/"

blp = Blueprint("system", __name__, url_prefix="/api/v1", description="Service health")
docs_assets = FlaskBlueprint("docs_assets", __name__)


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


@docs_assets.record_once
def _no_online_validator(state) -> None:
    # Swagger UI would otherwise have every reader's browser send the spec's URL to
    # validator.swagger.io: a call out of a closed network, naming an internal host.
    config = state.app.config
    config["OPENAPI_SWAGGER_UI_CONFIG"] = {"validatorUrl": None, **config.get("OPENAPI_SWAGGER_UI_CONFIG", {})}


@docs_assets.get(DOCS_ASSETS_URL + "<path:filename>")
def docs_asset(filename):
    return send_from_directory(swagger_ui_path, filename, max_age=86400)

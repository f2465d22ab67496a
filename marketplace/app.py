"""The application factory: configuration → extensions → blueprints → error handlers → CLI."""

import logging
import os
from pathlib import Path

from flask import Flask, g, request
from werkzeug.exceptions import UnsupportedMediaType
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from marketplace import (  # noqa: F401  (models: complete metadata)
    backup,
    config_checks,
    demo,
    errors_cli,
    logs,
    metrics,
    models,
    system,
)
from marketplace.accounts import pages as account_pages
from marketplace.accounts import routes as account_routes
from marketplace.api import JSONProvider, add_security_headers
from marketplace.audit import cli as audit_cli
from marketplace.audit import pages as audit_pages
from marketplace.audit import routes as audit_routes
from marketplace.auth import access
from marketplace.auth import cli as auth_cli
from marketplace.auth import routes as auth_routes
from marketplace.catalogue import routes as catalogue_routes
from marketplace.config import Config, ConfigError, finalise
from marketplace.db import reset_write_intent, set_write_intent
from marketplace.errors import register_error_handlers
from marketplace.extensions import init_extensions
from marketplace.programmes import cli as programmes_cli
from marketplace.programmes import pages as programme_form_pages
from marketplace.programmes import routes as programme_routes
from marketplace.recipients import cli as recipients_cli
from marketplace.recipients import pages as recipient_pages
from marketplace.recipients import routes as recipient_routes
from marketplace.reports import pages as report_pages
from marketplace.reports import programme_pages as staff_programme_pages
from marketplace.reports import routes as report_routes
from marketplace.reports import staff_pages
from marketplace.web.setup import init_web
from providers import feedback_pages, programme_pages
from providers import models as provider_models  # noqa: F401  (complete metadata)
from providers import registration_pages as provider_registration_pages
from providers import routes as provider_routes
from providers import staff_complaint_pages as complaint_pages
from providers import staff_pages as provider_staff_pages
from vouchers import (
    anomaly_pages,
    provider_pages,
    receivers,  # noqa: F401  (connects the vouchers domain to the kernel's signals)
    settlement_pages,
)
from vouchers import anomaly_routes as anomaly_detection_routes
from vouchers import cli as vouchers_cli
from vouchers import flag_routes as anomaly_flag_routes
from vouchers import models as voucher_models  # noqa: F401  (complete metadata)
from vouchers import pages as voucher_pages
from vouchers import routes as voucher_routes
from vouchers import scan_pages as provider_scan_pages
from vouchers import staff_pages as voucher_staff_pages

PROJECT_ROOT = Path(__file__).resolve().parent.parent
API_TITLE = "Service-voucher marketplace API"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
FORM_MIMETYPE = "application/x-www-form-urlencoded"  # the console's forms; the API takes JSON


class IdConverter(IntegerConverter):
    """`<int:…>` in our paths: a database id from 1 to 2^31−1, so no path can overflow a column (404 else)."""

    def __init__(self, url_map, min=1, max=2**31 - 1, **kwargs):  # noqa: A002 - werkzeug's argument names
        super().__init__(url_map, min=min, max=max, **kwargs)


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__, static_folder=None,  # the console serves its own (marketplace/web/static.py)
                instance_path=os.environ.get("INSTANCE_PATH") or str(PROJECT_ROOT / "instance"),
                instance_relative_config=True)
    app.config.update(Config.from_env().as_flask_config())
    app.config.update(config or {})
    app.config.update(
        API_TITLE=API_TITLE,
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        MIGRATIONS_DIRECTORY=PROJECT_ROOT / "migrations",
    )
    try:
        verdicts = finalise(app.config, app.instance_path)
    except ConfigError as refused:
        if config_checks.flask_command() != "check-config":
            raise
        return config_checks.report_only_app(app, refused.verdicts)  # `flask check-config` lists every problem
    app.json = JSONProvider(app)  # bodies read with the app's limits; 助餐, not \u52a9\u9910
    app.url_map.converters["int"] = IdConverter
    if app.config["PROXY_FIX_X_FOR"]:
        # The same proxies say which address called (the login throttle's client) and whether the browser's
        # connection was HTTPS (the scan page's secure context, Secure cookies).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"],
                                x_proto=app.config["PROXY_FIX_X_FOR"])
    logs.init_app(app)  # first: its request id and timing wrap every other hook
    metrics.init_app(app)
    app.extensions["config_verdicts"] = verdicts
    if config_checks.flask_command() in (None, "run"):  # a server; a cron job's mail would repeat them daily
        for verdict in verdicts:
            if verdict.level == "warning":
                logging.getLogger("marketplace.config").warning("%s: %s", verdict.setting, verdict.message)

    api = init_extensions(app)
    register_request_hooks(app)
    access.init_app(app)
    for blueprint in (system.blp, auth_routes.blp, account_routes.blp, audit_routes.blp, catalogue_routes.blp,
                      programme_routes.blp, recipient_routes.blp, provider_routes.blp, voucher_routes.blp,
                      anomaly_flag_routes.blp, report_routes.blp, anomaly_detection_routes.blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(system.docs_assets)
    init_web(app)
    for pages in (report_pages.portal, staff_pages.staff_home, recipient_pages.staff_recipients,
                  voucher_pages.recipient_pages, voucher_pages.staff_acting, provider_pages.provider_pages,
                  programme_pages.provider_programmes,
                  provider_registration_pages.provider_registration,
                  provider_scan_pages.provider_scan,
                  account_pages.provider_logins,
                  feedback_pages.provider_feedback_pages,
                  settlement_pages.provider_settlements,
                  complaint_pages.staff_complaints,
                  audit_pages.staff_audit,
                  staff_programme_pages.staff_programmes,
                  programme_form_pages.staff_programme_forms,
                  voucher_staff_pages.staff_cycle,
                  voucher_staff_pages.staff_settlements,
                  provider_staff_pages.staff_providers,
                  anomaly_pages.staff_anomalies):
        app.register_blueprint(pages)
    register_error_handlers(app)
    for commands in (auth_cli.cli, audit_cli.cli, recipients_cli.cli, vouchers_cli.cli, demo.cli, errors_cli.cli,
                     programmes_cli.cli, backup.cli, config_checks.cli):
        app.register_blueprint(commands)
    logs.log_commands(app)
    return app


def register_request_hooks(app: Flask) -> None:
    @app.before_request
    def _start_request():
        # GET and HEAD never write, so on SQLite they need not take the write lock — except the few GET views
        # marked `writes` (an admin printing a voucher card is audited).
        view = app.view_functions.get(request.endpoint)
        g.write_intent_token = set_write_intent(request.method not in ("GET", "HEAD", "OPTIONS")
                                                or getattr(view, "may_write", False))
        if request.method in BODY_METHODS and request.content_length and not (
            request.is_json or request.mimetype == "multipart/form-data"
            or (request.mimetype == FORM_MIMETYPE and not request.path.startswith("/api/"))
        ):
            raise UnsupportedMediaType()

    @app.after_request
    def _tag_response(response):
        add_security_headers(response)
        if request.path.startswith("/api/v1/") and not request.path.startswith("/api/v1/docs"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.teardown_request
    def _end_request(_error):
        token = g.pop("write_intent_token", None)
        if token is not None:
            reset_write_intent(token)

"""`init_web(app)`: translations, the console's template context, static files, headers, error pages."""

from pathlib import Path

from flask import Flask, request, session
from flask_babel import Babel
from markupsafe import Markup

from marketplace.auth.access import current_actor, form_csrf_token
from marketplace.web.errors import html_error_page
from marketplace.web.format import FILTERS
from marketplace.web.navigation import ROLE_NAMES, home_for, navigation_for
from marketplace.web.pages import LANGUAGES, web
from marketplace.web.static import compress_html, load_static_files, static_files, static_url

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
# CONSOLE.md: default-src 'self', no inline script, no framing. Inline SVG attributes are not styles.
CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def select_locale() -> str:
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES, default="zh_CN") if request else "zh_CN"


def csrf_field():
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(form_csrf_token())


def _context() -> dict:
    actor = current_actor()
    role = actor.role if actor is not None else None
    lang = select_locale()
    return {
        "actor": actor, "role_name": ROLE_NAMES.get(role, "") if role else "",
        "navigation": navigation_for(actor), "home_url": home_for(role),
        "html_lang": "zh-CN" if lang == "zh_CN" else "en", "large_text": bool(session.get("large_text")),
    }


def _console_headers(response):
    if response.mimetype == "text/html" and not request.path.startswith("/api/"):
        response.headers["Content-Security-Policy"] = CONSOLE_CSP
        response.headers.setdefault("Cache-Control", "no-store" if current_actor() else "no-cache")
        response = compress_html(response)
    return response


def init_web(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "zh_CN")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    Babel(app, locale_selector=select_locale)
    app.extensions["static_files"] = load_static_files()
    app.extensions["html_error_page"] = html_error_page
    app.jinja_env.filters.update(FILTERS)
    app.jinja_env.globals.update(static_url=static_url, csrf_field=csrf_field)
    app.context_processor(_context)
    app.after_request(_console_headers)
    app.register_blueprint(static_files)
    app.register_blueprint(web)

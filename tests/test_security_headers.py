"""Security headers on every response (marketplace/api.py): the API, the docs page and its assets, and every
error — 400, 401, 404, 405, 413, 415, 422, 500 — carry `X-Content-Type-Options: nosniff`,
`Referrer-Policy: same-origin` and a Content-Security-Policy with `frame-ancestors 'none'`.

The docs page (Swagger UI, served by the app itself) gets a policy of its own: scripts and styles from
this origin only, no inline script, no eval. HSTS is the reverse proxy's (README, Configuration).
"""

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from marketplace import system
from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.db import db, transaction, utcnow

API = "/api/v1"
DOCS_URL = "/api/v1/docs"
PLACEHOLDERS = {"int": "1", "path": "swagger-ui.css", "default": "x"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def assert_security_headers(response, what):
    headers = response.headers
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("Referrer-Policy") == "same-origin", what
    policy = directives(headers.get("Content-Security-Policy", ""))
    assert policy.get("frame-ancestors") == ["'none'"], what
    assert "default-src" in policy, what
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"], what
    assert "'unsafe-eval'" not in headers["Content-Security-Policy"], what


def url_for_rule(rule) -> str:
    def fill(match):
        converter = match.group(1) or "default"
        return PLACEHOLDERS.get(converter, PLACEHOLDERS["default"])

    return re.sub(r"<(?:([a-z]+)(?:\([^)]*\))?:)?[^<>]+>", fill, rule.rule)


def every_route(app):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - IGNORED_METHODS):
            yield method, rule


def test_the_walk_finds_every_kind_of_route(app):
    routes = {(method, rule.rule) for method, rule in every_route(app)}
    assert ("GET", "/api/v1/health") in routes
    assert ("GET", "/api/v1/docs") in routes
    assert ("GET", "/api/v1/docs/assets/<path:filename>") in routes
    assert ("POST", "/api/v1/redemptions") in routes
    assert ("GET", "/api/v1/openapi.json") in routes
    assert len(routes) > 60


def fresh_headers(app, user_id) -> dict:
    """A new bearer token for each call (a walk that logs out must not lock itself out)."""
    with app.app_context(), transaction():
        raw, _token = auth_service.issue_token(user=db.session.get(User, user_id), kind="bearer", now=utcnow())
    return {"Authorization": f"Bearer {raw}"}


def test_every_route_in_the_url_map_answers_with_the_security_headers(app, client, make_user):
    admin_id = make_user(role="admin").id
    statuses = set()
    for method, rule in every_route(app):
        url = url_for_rule(rule)
        for headers in ({}, fresh_headers(app, admin_id)):
            with client.open(url, method=method, headers=headers,
                             json={} if method in ("POST", "PUT", "PATCH") else None) as response:
                statuses.add(response.status_code)
                assert response.status_code < 500, (method, url, response.get_data(as_text=True)[:300])
                assert_security_headers(response, f"{method} {url} → {response.status_code}")
    assert {200, 401, 404, 422} <= statuses  # successes and refusals alike were checked


@pytest.mark.parametrize(("method", "url", "kwargs", "status"), [
    ("GET", "/api/v1/no-such-thing", {}, 404),
    ("GET", "/no-such-page", {}, 404),
    ("GET", "/api/v1/docs/assets/no-such-file.js", {}, 404),
    ("DELETE", "/api/v1/health", {}, 405),
    ("POST", "/api/v1/auth/token", {"data": "{not json", "content_type": "application/json"}, 400),
    ("POST", "/api/v1/auth/token", {"data": "x=1", "content_type": "text/plain"}, 415),
    ("POST", "/api/v1/auth/token", {"data": b"{" + b" " * (2 * 1024 * 1024) + b"}",
                                    "content_type": "application/json"}, 413),
    ("POST", "/api/v1/auth/token", {"json": {"username": "nobody", "password": "wrong password"}}, 401),
    ("POST", "/api/v1/auth/token", {"json": {}}, 422),
])
def test_error_responses_carry_the_security_headers(client, method, url, kwargs, status):
    with client.open(url, method=method, **kwargs) as response:
        assert response.status_code == status
        assert_security_headers(response, f"{method} {url}")


def test_a_500_carries_the_security_headers(client, monkeypatch):
    def explode():
        raise RuntimeError("boom")

    monkeypatch.setattr(system.db.session, "execute", lambda *_args, **_kwargs: explode())
    response = client.get(f"{API}/health")
    assert response.status_code == 500
    assert_security_headers(response, "500")


def test_the_api_loads_nothing_and_may_not_be_framed(client):
    policy = directives(client.get(f"{API}/health").headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


# --- the docs page --------------------------------------------------------------------------------

class PageParts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts: list[tuple[dict, str]] = []
        self.assets: list[str] = []
        self.inline: list[str] = []
        self._in_script: dict | None = None
        self._script_text = ""

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if any(name.startswith("on") for name in attributes):
            self.inline.append(f"event handler on <{tag}>")
        if "style" in attributes:
            self.inline.append(f"style attribute on <{tag}>")
        if tag == "style":
            self.inline.append("<style> element")
        if tag == "script":
            self._in_script, self._script_text = attributes, ""
        for name in ("src", "href"):
            if attributes.get(name) and tag in ("script", "link", "img"):
                self.assets.append(attributes[name])

    def handle_data(self, data):
        if self._in_script is not None:
            self._script_text += data

    def handle_endtag(self, tag):
        if tag == "script" and self._in_script is not None:
            self.scripts.append((self._in_script, self._script_text))
            self._in_script = None


def docs_page(client):
    response = client.get(DOCS_URL)
    assert response.status_code == 200
    parts = PageParts()
    parts.feed(response.get_data(as_text=True))
    return response, parts


def test_the_docs_page_has_a_policy_of_its_own(client):
    response, _parts = docs_page(client)
    assert_security_headers(response, DOCS_URL)
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]  # the spec, and "Try it out"
    assert set(policy["img-src"]) == {"'self'", "data:"}  # Swagger UI's stylesheet draws its icons as data: SVG


def test_the_docs_page_has_no_inline_script_or_style(client):
    _response, parts = docs_page(client)
    assert parts.scripts, "the page loads Swagger UI"
    for attributes, text in parts.scripts:
        assert attributes.get("src"), attributes
        assert text.strip() == "", text[:200]
    assert parts.inline == []


def test_everything_the_docs_page_loads_comes_from_the_app_with_the_right_type(client):
    _response, parts = docs_page(client)
    expected = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    seen = set()
    for asset in parts.assets:
        url = urljoin("http://localhost" + DOCS_URL, asset)
        assert urlsplit(url).netloc == "localhost", asset
        suffix = "." + asset.rsplit(".", 1)[1]
        with client.get(urlsplit(url).path) as response:
            assert response.status_code == 200, asset
            assert response.mimetype == expected[suffix], asset  # nosniff: a script must be served as one
            assert_security_headers(response, asset)
        seen.add(suffix)
    assert seen == set(expected)


def test_the_docs_page_starts_swagger_ui_from_a_script_of_its_own(client):
    _response, parts = docs_page(client)
    [start] = [attributes["src"] for attributes, _ in parts.scripts if attributes["src"].endswith("/api-docs.js")]
    with client.get(start) as response:
        script = response.get_data(as_text=True)
    assert "SwaggerUIBundle(" in script
    assert 'getAttribute("data-config")' in script
    assert 'getAttribute("data-spec-url")' in script

"""The OpenAPI document covers every route, and the docs page works on a closed network."""

import html
import json
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

DOCS_URL = "/api/v1/docs"
UNDOCUMENTED_ENDPOINT_PREFIXES = ("api-docs.", "docs_assets.")
IGNORED_METHODS = {"HEAD", "OPTIONS"}


class AssetCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.assets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.assets.append(attributes["src"])
        if tag == "link" and attributes.get("href"):
            self.assets.append(attributes["href"])
        if tag == "img" and attributes.get("src"):
            self.assets.append(attributes["src"])


def openapi_path(rule: str) -> str:
    """`/api/v1/things/<int:id>` → `/api/v1/things/{id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def api_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and not rule.endpoint.startswith(UNDOCUMENTED_ENDPOINT_PREFIXES):
            for method in sorted(rule.methods - IGNORED_METHODS):
                yield openapi_path(rule.rule), method.lower()


def test_openapi_document_is_openapi_3(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"]
    assert spec["info"]["version"] == "v1"


def test_openapi_document_describes_every_api_route(app, client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    routes = list(api_routes(app))
    assert ("/api/v1/auth/token", "post") in routes  # the walk over the URL map really finds routes
    missing = [(path, method) for path, method in routes if method not in paths.get(path, {})]
    assert missing == []


def test_openapi_document_describes_request_and_response_schemas(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    token = paths["/api/v1/auth/token"]["post"]
    assert "application/json" in token["requestBody"]["content"]
    assert "200" in token["responses"]
    users = paths["/api/v1/users"]["post"]
    assert "201" in users["responses"]
    assert "application/json" in users["requestBody"]["content"]


def test_openapi_document_describes_both_ways_to_authenticate(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["sessionCookie"]["in"] == "cookie"
    assert spec["paths"]["/api/v1/users"]["post"]["security"]


def test_docs_page_is_html(client):
    response = client.get(DOCS_URL)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "/api/v1/openapi.json" in response.get_data(as_text=True)


def test_docs_page_assets_are_served_by_the_app_itself(client):
    collector = AssetCollector()
    collector.feed(client.get(DOCS_URL).get_data(as_text=True))
    assert any(asset.endswith(".js") for asset in collector.assets)
    assert any(asset.endswith(".css") for asset in collector.assets)
    for asset in collector.assets:
        url = urljoin("http://localhost" + DOCS_URL, asset)
        assert urlsplit(url).netloc == "localhost", asset
        with client.get(urlsplit(url).path) as response:
            assert response.status_code == 200, asset
            assert len(response.get_data()) > 100, asset


def test_docs_page_links_to_no_external_host(client):
    page = client.get(DOCS_URL).get_data(as_text=True)
    hosts = {urlsplit(url).hostname for url in re.findall(r"(?:https?:)?//[^\s\"'<>)]+", page)}
    assert hosts <= {None, "localhost", "127.0.0.1"}


def test_docs_page_turns_off_the_online_validator(client):
    """Swagger UI otherwise sends the spec URL to validator.swagger.io: an outside call from a closed network.

    The page's settings travel in the data-config attribute that its start script reads (no inline script)."""
    page = client.get(DOCS_URL).get_data(as_text=True)
    config = re.search(r"data-config='([^']*)'", page)
    assert config is not None
    settings = json.loads(html.unescape(config.group(1)))
    assert "validatorUrl" in settings
    assert settings["validatorUrl"] is None


def test_missing_docs_asset_is_a_not_found_envelope(client):
    response = client.get("/api/v1/docs/assets/no-such-file.js")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"

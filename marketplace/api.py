"""What every API route shares at the HTTP edge: how a JSON body is read, and the security headers.

**JSON bodies.** Every body is read by `load_json_body`, whether a route parses it through its
schema (`Blueprint.arguments`, webargs) or code calls `request.get_json()` (the app's JSON provider):
one parser, one set of limits. Python's own `json.loads` fails with a 500 on hostile but short bodies —
nesting 2,000 deep raises RecursionError, an integer of more than 4,300 digits ValueError — so:

- a body nested deeper than `MAX_JSON_DEPTH` is unparseable: 400 `malformed_json`, the same
  answer as for any other body that is not JSON (no schema of ours nests past a few levels);
- an integer too long for Python to convert becomes what a too-large number written with an
  exponent (`1e999`) already becomes, infinity: a float, which every integer field refuses with
  422 `validation_error` naming the field.

Every route blueprint is a `Blueprint` of this module (`MarketplaceApi.register_blueprint` refuses
any other), so no route can fall back to webargs' plain parser.

**Security headers.** `add_security_headers` gives every response — the API, the docs page and its
assets, and every error, 404, 405 and 500 included — `X-Content-Type-Options: nosniff`,
`Referrer-Policy: same-origin` and a Content-Security-Policy with `frame-ancestors 'none'`: the
JSON, images and files of the API load nothing (`default-src 'none'`); the docs page, whose view
sets `DOCS_CSP` itself, runs only the scripts and styles it loads from this origin. HSTS is the
TLS-terminating reverse proxy's to send.
"""

import json
import sys
from typing import Any

import flask_smorest
from flask import Response
from flask.json.provider import DefaultJSONProvider
from webargs import core
from webargs.flaskparser import FlaskParser

MAX_JSON_DEPTH = 64

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI: its scripts and stylesheet come from this origin; its stylesheet draws icons as data: images;
# "Try it out" fetches from this origin. No inline script, no eval.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": API_CSP,
}


def _parse_int(text: str) -> int | float:
    limit = sys.get_int_max_str_digits()
    if limit and len(text.lstrip("-")) > limit:
        return float(text)  # ±inf, as for 1e999: no integer field takes it
    return int(text)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether *value* nests lists and objects more than *limit* levels deep (without recursing)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def load_json_body(data: str | bytes) -> Any:
    """Parse a request body as JSON.

    :raises json.JSONDecodeError: not JSON (an empty document's `doc` is ""), or nested deeper than
        MAX_JSON_DEPTH. :raises UnicodeDecodeError: bytes that are not UTF-8.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        value = json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise json.JSONDecodeError(f"Nested more than {MAX_JSON_DEPTH} levels deep", text, 0) from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise json.JSONDecodeError(f"Nested more than {MAX_JSON_DEPTH} levels deep", text, 0)
    return value


class JSONProvider(DefaultJSONProvider):
    """The app's JSON: `request.get_json()` reads bodies with `load_json_body`; output keeps 助餐 as is."""

    ensure_ascii = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return load_json_body(s)


class ArgumentsParser(FlaskParser):
    """webargs, reading JSON bodies with `load_json_body` (its errors become 400 `malformed_json`)."""

    def _raw_load_json(self, req) -> Any:
        if not core.is_json(req.mimetype):
            return core.missing
        return load_json_body(req.get_data(cache=True))


class Blueprint(flask_smorest.Blueprint):
    """The blueprint of every API route module."""

    ARGUMENTS_PARSER = ArgumentsParser()


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response

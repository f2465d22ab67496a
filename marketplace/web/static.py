"""The console's static files: fingerprinted addresses, long caching, gzip made once at start.

`static_url("console.css")` gives `/static/console.css?v=<hash>`. With the current hash the answer may
be cached for a year (`immutable`); with any other (an old page after a deploy) it is revalidated. Every
file is read and compressed once, when the app starts: no build step, and nothing to forget.
"""

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, request, url_for

STATIC_DIR = Path(__file__).resolve().parent / "static"
COMPRESSIBLE = (".css", ".js", ".svg", ".txt", ".json", ".map", ".wasm")
YEAR = 365 * 24 * 3600

static_files = Blueprint("static_files", __name__)


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    gzipped: bytes | None
    version: str
    mimetype: str


def load_static_files(root: Path = STATIC_DIR) -> dict[str, StaticFile]:
    files: dict[str, StaticFile] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        body = path.read_bytes()
        name = path.relative_to(root).as_posix()
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if name.endswith(".wasm"):
            mimetype = "application/wasm"
        squeezed = gzip.compress(body, compresslevel=9, mtime=0) if name.endswith(COMPRESSIBLE) else None
        files[name] = StaticFile(body=body, gzipped=squeezed if squeezed and len(squeezed) < len(body) else None,
                                 version=hashlib.sha256(body).hexdigest()[:12], mimetype=mimetype)
    return files


def _files() -> dict[str, StaticFile]:
    return current_app.extensions["static_files"]


def static_url(name: str) -> str:
    """The address of a static file with its fingerprint (a KeyError names a file that does not exist)."""
    return url_for("static_files.serve", filename=name, v=_files()[name].version)


def accepts_gzip() -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "").lower()


@static_files.get("/static/<path:filename>")
def serve(filename: str):
    found = _files().get(filename)
    if found is None:
        abort(404)
    etag = found.version
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    elif found.gzipped is not None and accepts_gzip():
        response = Response(found.gzipped, mimetype=found.mimetype)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = Response(found.body, mimetype=found.mimetype)
    response.set_etag(etag)
    if found.gzipped is not None:
        response.vary.add("Accept-Encoding")
    fresh = request.args.get("v") == found.version
    response.headers["Cache-Control"] = f"public, max-age={YEAR}, immutable" if fresh else "no-cache"
    return response


def compress_html(response: Response) -> Response:
    """Gzip console pages for clients that accept it (the budgets count bytes on the wire)."""
    if (response.direct_passthrough or response.status_code < 200 or response.status_code >= 300
            or response.mimetype != "text/html" or "Content-Encoding" in response.headers or not accepts_gzip()):
        return response
    body = response.get_data()
    if len(body) < 1024:
        return response
    response.set_data(gzip.compress(body, compresslevel=6, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    response.vary.add("Accept-Encoding")
    return response

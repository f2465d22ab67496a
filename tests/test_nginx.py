"""deploy/nginx.conf as shipped, in front of a real gunicorn: Debian's nginx serves the app over TLS with a
throwaway certificate (the file's placeholders replaced, nothing else changed), and

- plain HTTP is redirected to HTTPS;
- the login throttle counts the real client: two clients on different loopback addresses (127.0.0.2 and
  127.0.0.3) — the first, even writing a new X-Forwarded-For on every try, is stopped after
  LOGIN_FAILURES_PER_USERNAME_AND_CLIENT failures, while the second still gets its own 401s;
- static files arrive compressed and cacheable for a year through the proxy, byte for byte;
- the API's JSON is compressed by nginx; the caller's X-Request-ID comes back.

Skipped with the reason where nginx or openssl is missing; REQUIRE_NGINX=1 (.ci/run) makes that a failure.
"""

import gzip
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from marketplace.auth import service as auth_service
from marketplace.db import transaction, utcnow
from tests.support.databases import fresh_database
from tests.support.servers import PROJECT_ROOT, Server, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PER_PAIR = 5
SETTINGS = {"LOGIN_FAILURES_PER_USERNAME_AND_CLIENT": PER_PAIR, "LOGIN_FAILURES_PER_USERNAME": 100,
            "LOGIN_FAILURES_PER_CLIENT": 100, "PROXY_FIX_X_FOR": 1}
PASSWORD = "correct horse battery"
STATIC = PROJECT_ROOT / "marketplace" / "web" / "static"


def _missing() -> str | None:
    if not Path(NGINX).exists():
        return "nginx is not installed (apt-get install nginx-light; .ci/run installs it)"
    if shutil.which("openssl") is None:
        return "openssl is not installed"
    return None


def _site(gunicorn_port: int, http_port: int, https_port: int, folder: Path) -> str:
    """deploy/nginx.conf with its placeholders replaced for this machine (and IPv6 listens dropped)."""
    site = (PROJECT_ROOT / "deploy" / "nginx.conf").read_text()
    site = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", site)
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "/etc/ssl/voucher/fullchain.pem": str(folder / "cert.pem"),
        "/etc/ssl/voucher/privkey.pem": str(folder / "key.pem"),
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{gunicorn_port};",
        "/etc/nginx/voucher-proxy.conf": str(folder / "voucher-proxy.conf"),
    }
    for placeholder, value in replacements.items():
        assert placeholder in site, f"deploy/nginx.conf no longer has {placeholder!r}"
        site = site.replace(placeholder, value)
    return site


def _main_conf(folder: Path) -> str:
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (f"{user}worker_processes 1;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n  include /etc/nginx/mime.types;\n  default_type application/octet-stream;\n"
            f"  access_log {folder / 'access.log'};\n  client_body_temp_path {temp['body']};\n"
            f"  proxy_temp_path {temp['proxy']};\n  fastcgi_temp_path {temp['fastcgi']};\n"
            f"  uwsgi_temp_path {temp['uwsgi']};\n  scgi_temp_path {temp['scgi']};\n"
            f"  include {folder / 'site.conf'};\n}}\n")


class Proxy:
    def __init__(self, http_port: int, https_port: int):
        self.http_port, self.https_port = http_port, https_port
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE

    def call(self, method: str, path: str, *, source: str = "127.0.0.2", headers: dict | None = None,
             body: dict | None = None, https: bool = True):
        if https:
            connection = http.client.HTTPSConnection("127.0.0.1", self.https_port, context=self.tls, timeout=30,
                                                     source_address=(source, 0))
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30,
                                                    source_address=(source, 0))
        sent = dict(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=payload, headers=sent)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    if (reason := _missing()) is not None:
        if os.environ.get("REQUIRE_NGINX") == "1":
            pytest.fail(f"REQUIRE_NGINX=1 but {reason}")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("nginx")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=voucher.example.gov.cn", "-keyout", str(folder / "key.pem"), "-out",
                    str(folder / "cert.pem")], check=True, capture_output=True, timeout=60)
    shutil.copy(PROJECT_ROOT / "deploy" / "nginx-proxy.conf", folder / "voucher-proxy.conf")
    with fresh_database("sqlite", folder, prefix="vm_nginx") as url:
        server = Server(url, folder, settings=SETTINGS)
        server.start()
        nginx = None
        try:
            http_port, https_port = free_port(), free_port()
            (folder / "site.conf").write_text(_site(server.port, http_port, https_port, folder))
            (folder / "nginx.conf").write_text(_main_conf(folder))
            checked = subprocess.run([NGINX, "-t", "-c", str(folder / "nginx.conf")], capture_output=True,
                                     text=True, timeout=30)
            assert checked.returncode == 0, checked.stderr
            nginx = subprocess.Popen([NGINX, "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            front = Proxy(http_port, https_port)
            for _ in range(100):
                try:
                    if front.call("GET", "/api/v1/health")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            else:
                pytest.fail(f"nginx did not answer: {(folder / 'error.log').read_text()}")
            front.server = server
            yield front
        finally:
            if nginx is not None:
                os.killpg(nginx.pid, signal.SIGTERM)
                nginx.wait(timeout=30)
            server.stop()


def test_plain_http_is_redirected_to_https(proxy):
    status, headers, _body = proxy.call("GET", "/login", https=False)
    assert status == 301
    assert headers["location"].startswith("https://")
    assert headers["location"].endswith("/login")


def test_the_login_throttle_counts_the_real_client_not_what_it_writes(proxy):
    username = f"clerk-{secrets.token_hex(4)}"
    with proxy.server.local_app().app_context(), transaction():
        auth_service.create_user(username=username, password=PASSWORD, role="auditor", actor=None, now=utcnow())
    wrong = {"username": username, "password": "not the password"}
    answers = [proxy.call("POST", "/api/v1/auth/token", body=wrong, source="127.0.0.2",
                          headers={"X-Forwarded-For": f"198.51.100.{n}"})[0] for n in range(PER_PAIR + 2)]
    assert answers == [401] * PER_PAIR + [429, 429]
    # Another client (another address reaching nginx) has its own count for the same username.
    assert proxy.call("POST", "/api/v1/auth/token", body=wrong, source="127.0.0.3")[0] == 401
    right = {"username": username, "password": PASSWORD}
    assert proxy.call("POST", "/api/v1/auth/token", body=right, source="127.0.0.3")[0] == 200


def test_static_files_arrive_compressed_and_cacheable_through_the_proxy(proxy):
    status, _headers, page = proxy.call("GET", "/login", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    html = gzip.decompress(page).decode() if page[:2] == b"\x1f\x8b" else page.decode()
    address = re.search(r'href="(/static/console\.css\?v=[0-9a-f]+)"', html).group(1)
    status, headers, body = proxy.call("GET", address, headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert "immutable" in headers["cache-control"]
    assert gzip.decompress(body) == (STATIC / "console.css").read_bytes()


def test_the_api_json_is_compressed_and_the_request_id_comes_back(proxy):
    status, headers, body = proxy.call("GET", "/api/v1/openapi.json",
                                       headers={"Accept-Encoding": "gzip", "X-Request-ID": "nginx-test-0001"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(body))["info"]
    assert headers["x-request-id"] == "nginx-test-0001"

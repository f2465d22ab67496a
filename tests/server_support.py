"""A real gunicorn serving the app, for the race and crash tests.

The tests elsewhere call the service layer or Flask's test client inside one process. Here the app
runs the way it is deployed — `gunicorn --config gunicorn.conf.py -w 2 --threads 8 wsgi:app` — in
its own process group, against a database of its own: a fresh PostgreSQL database (created through
the `postgres` maintenance database and dropped afterwards) or a fresh SQLite file. Data is prepared
through the service layer by a second app in the test process (`Server.local_app()`, same database,
same secrets, so voucher cards signed here verify there), and the server is exercised over HTTP
with http.client from plain threads, with bounded timeouts everywhere.

    with fresh_database("postgresql") as url:
        server = Server(url, workdir)
        server.start()
        try:
            ...
        finally:
            server.stop()

Ports come from 18100–18199, one free port per server.
"""

import contextlib
import http.client
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import make_url

from marketplace.app import create_app
from marketplace.db import db
from tests.conftest import pg_url, postgres_unavailable_reason, psycopg_dsn

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The checkout's own .venv, or (a git worktree without one) the virtualenv running the tests.
VENV_BIN = PROJECT_ROOT / ".venv" / "bin" if (PROJECT_ROOT / ".venv" / "bin").is_dir() else Path(sys.executable).parent
PORTS = range(18100, 18200)
WORKERS = 2
THREADS = 8
# gunicorn's access log line (gunicorn.conf.py): host [time] "METHOD /path" status bytes Nms
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+)" (?P<status>\d{3}) ')


# --- databases ------------------------------------------------------------------------------------

def postgres_reason() -> str | None:
    """Why the PostgreSQL half cannot run here, or None."""
    return postgres_unavailable_reason()


def _maintenance_dsn() -> str:
    return psycopg_dsn(make_url(pg_url()).set(database="postgres").render_as_string(hide_password=False))


def create_pg_database(prefix: str = "vm_server") -> str:
    """Create a fresh, empty PostgreSQL database on the test server; return its SQLAlchemy URL."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    with psycopg.connect(_maintenance_dsn(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(pg_url()).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(_maintenance_dsn(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A database nobody else uses, removed afterwards: a new PostgreSQL database or a new SQLite file."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'server-{secrets.token_hex(4)}.sqlite3'}"
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


# --- the server -----------------------------------------------------------------------------------

def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port in 18100–18199 that nothing listens on (tried in random order: other suites share the range)."""
    candidates = list(PORTS)
    random.shuffle(candidates)
    for port in candidates:
        if port_is_free(port):
            return port
    raise RuntimeError("no free port in 18100-18199")


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is *parent* (from /proc: no psutil needed)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..." — comm may hold spaces or parentheses, so split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return sorted(children)


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def error_code(self) -> str | None:
        data = self.json
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            return data["error"].get("code")
        return None


@dataclass
class Server:
    """One gunicorn (WORKERS × THREADS) serving *database_url* from *workdir* (logs, instance folder).

    workers or threads None: what gunicorn.conf.py decides. *settings*: more of the app's settings, for
    the server and local_app() alike.
    """

    database_url: str
    workdir: Path
    workers: int | None = WORKERS
    threads: int | None = THREADS
    ratelimit_uri: str = "memory://"
    settings: dict = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None
    secrets_: dict = field(default_factory=lambda: {
        "SECRET_KEY": secrets.token_hex(32),
        "ID_HASH_KEY": secrets.token_hex(32),
        "TOKEN_KEYS": f"1:{secrets.token_hex(32)}",
    })
    _apps: list = field(default_factory=list)
    _log_files: list = field(default_factory=list)
    _replies_lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: list = field(default_factory=list)  # (status, method, path) of every reply seen by call()

    # --- configuration shared by the server and the test process ----------------------------------

    @property
    def instance_path(self) -> Path:
        return self.workdir / "instance"

    def config(self) -> dict:
        return {"APP_ENV": "production", "DATABASE_URL": self.database_url,
                "RATELIMIT_STORAGE_URI": self.ratelimit_uri, **self.secrets_, **self.settings}

    def environment(self) -> dict:
        env = {name: value for name, value in os.environ.items()
               if name not in ("GUNICORN_CMD_ARGS", "FLASK_APP", "FLASK_DEBUG")}
        env.update({name: str(value) for name, value in self.config().items()})
        env["INSTANCE_PATH"] = str(self.instance_path)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def local_app(self):
        """An app in the test process on the same database with the same secrets (for the service layer)."""
        application = create_app(self.config())
        self._apps.append(application)
        return application

    # --- lifecycle ----------------------------------------------------------------------------------

    def migrate(self) -> None:
        self.instance_path.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=PROJECT_ROOT,
                       env=self.environment(), check=True, timeout=180, capture_output=True)

    @property
    def access_log(self) -> Path:
        return self.workdir / "gunicorn-access.log"

    @property
    def error_log(self) -> Path:
        return self.workdir / "gunicorn-error.log"

    def start(self, *, migrate: bool = True, timeout: float = 60.0) -> None:
        """Upgrade the schema, start gunicorn in its own process group and wait until /health answers 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if migrate:
            self.migrate()
        for _attempt in range(5):
            self.port = free_port()
            access = open(self.access_log, "ab")  # noqa: SIM115 - closed in stop()
            errors = open(self.error_log, "ab")  # noqa: SIM115 - closed in stop()
            self._log_files += [access, errors]
            sizes = ([] if self.workers is None else ["-w", str(self.workers)]) + (
                [] if self.threads is None else ["--threads", str(self.threads)])
            self.process = subprocess.Popen(
                [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}",
                 *sizes, "wsgi:app"],
                cwd=PROJECT_ROOT, env=self.environment(), stdout=access, stderr=errors, stdin=subprocess.DEVNULL,
                start_new_session=True)
            if self.wait_healthy(timeout=timeout):
                return
            lost_port_race = self.process.poll() is not None and "Address already in use" in self.error_text()
            self.stop()
            if not lost_port_race:
                break
        raise RuntimeError(f"gunicorn did not become healthy on port {self.port}:\n{self.error_text()[-4000:]}")

    def wait_healthy(self, *, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            try:
                if self.call("GET", "/api/v1/health", timeout=5, record=False).status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def worker_pids(self) -> list[int]:
        return child_pids(self.process.pid) if self.process else []

    def wait_for_workers(self, count: int | None = None, *, timeout: float = 30.0) -> list[int]:
        count = count or self.workers or 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) >= count:
                return pids
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn has {len(self.worker_pids())} workers, expected {count}")

    def stop(self) -> None:
        """Stop gunicorn and every process of its group; close the logs; dispose the test-process engines."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=20)
            # Whatever is left of the group (a worker that ignored TERM, the master after a timeout).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        for handle in self._log_files:
            handle.close()
        self._log_files.clear()
        for application in self._apps:
            with application.app_context():
                db.session.remove()
                db.engine.dispose()
        self._apps.clear()

    # --- HTTP -----------------------------------------------------------------------------------------

    def call(self, method: str, path: str, *, json_body=None, headers: dict | None = None, timeout: float = 30.0,
             record: bool = True) -> Reply:
        """One request on a new connection. Raises OSError (incl. timeouts) when no response arrives."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            body = None
            all_headers = {"Connection": "close", **(headers or {})}
            if json_body is not None:
                body = json.dumps(json_body).encode()
                all_headers["Content-Type"] = "application/json"
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            reply = Reply(status=response.status, headers={k.lower(): v for k, v in response.getheaders()},
                          body=response.read())
        except http.client.HTTPException as error:  # a torn response counts as no response
            raise ConnectionError(f"{type(error).__name__}: {error}") from error
        finally:
            connection.close()
        if record:
            with self._replies_lock:
                self.statuses.append((reply.status, method, path))
        return reply

    def get_json(self, path: str, headers: dict) -> dict:
        reply = self.call("GET", path, headers=headers)
        assert reply.status == 200, (path, reply.status, reply.body[:500])
        return reply.json

    # --- what the server itself logged ------------------------------------------------------------------

    def error_text(self) -> str:
        for handle in self._log_files:
            handle.flush()
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def server_side_5xx(self) -> list[str]:
        """Access-log lines with a 5xx status: what the server answered, whether or not a client read it."""
        for handle in self._log_files:
            handle.flush()
        if not self.access_log.exists():
            return []
        return [line for line in self.access_log.read_text(errors="replace").splitlines()
                if (match := ACCESS_LINE.search(line)) and match["status"].startswith("5")]

    def client_side_5xx(self) -> list[tuple[int, str, str]]:
        with self._replies_lock:
            return [entry for entry in self.statuses if entry[0] >= 500]


def race(count: int, work, *, timeout: float = 60.0) -> list:
    """Run work(index) in *count* threads released together by a barrier; return results in index order.

    A result is whatever work returned, or the exception it raised (as an object, never swallowed).
    """
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def runner(index):
        try:
            barrier.wait(timeout=timeout)
            results[index] = work(index)
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            results[index] = error

    threads = [threading.Thread(target=runner, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
    hung = sum(thread.is_alive() for thread in threads)
    assert hung == 0, f"{hung} of {count} racers hung past {timeout}s"
    return results

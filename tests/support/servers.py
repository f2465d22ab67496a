"""Real HTTP servers: gunicorn serving the app (the server race tests, the crash test, the benchmarks), and
`LiveServer`, an app of this process served by werkzeug in a thread (the browser tests).

The tests elsewhere call the service layer or Flask's test client inside one process. `Server` runs
an app the way it is deployed — `gunicorn --config gunicorn.conf.py … wsgi:app`, production settings
with secrets of its own — in its own process group, against a database of its own (see
databases.fresh_database), with its access and error logs in its work folder. Data is prepared
through the service layer by a second app in this process (`Server.local_app()`: same database, same
secrets, so voucher cards signed here verify there) or in bulk, and the server is exercised over HTTP
(`call`, with bounded timeouts) or by a load generator on `server.port`.

    with fresh_database("postgresql", workdir, prefix="vm_server") as url:
        server = Server(url, workdir)
        server.start()            # migrates first (flask db upgrade), then waits for /health
        try:
            ...
        finally:
            server.stop()         # the whole process group; closes the logs, disposes local apps

`LiveServer` serves an app that already exists in this process — the session's `app` fixture — so the
browser tests seed data with the scenario Builder or the service layer on the very app that answers
the browser, and the cleaning between tests (databases.empty_database) also resets its login
counters. It listens on a port the kernel picks; its threads give each request its own app context.

    server = LiveServer(app)
    server.start()                # http://127.0.0.1:<port>, ready when start() returns
    ...
    server.stop()

Each gunicorn suite listens in a range of its own so that they can run side by side: the tests in
18100–18199 (TEST_PORTS, the default), the benchmarks in 18200–18299 (bench/common.py). A port is picked
at random among the free ones of the range; a start that loses the port to someone else tries another.
"""

import contextlib
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.support.apps import app_config, dispose, make_app, new_secrets

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The checkout's own .venv, or (a git worktree without one) the virtualenv running this process.
VENV_BIN = PROJECT_ROOT / ".venv" / "bin" if (PROJECT_ROOT / ".venv" / "bin").is_dir() else Path(sys.executable).parent
TEST_PORTS = range(18100, 18200)
# gunicorn's access log line (gunicorn.conf.py): host [time] "METHOD /path" status bytes Nms
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+)" (?P<status>\d{3}) ')
# Settings of the calling environment that would change how gunicorn or Flask start.
FOREIGN_SETTINGS = ("GUNICORN_CMD_ARGS", "FLASK_APP", "FLASK_DEBUG")


# --- ports and processes --------------------------------------------------------------------------

def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(ports: range = TEST_PORTS) -> int:
    """A port of *ports* that nothing listens on (tried in random order: other runs share the range)."""
    candidates = list(ports)
    random.shuffle(candidates)
    for port in candidates:
        if port_is_free(port):
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name. :raises OSError: no such process."""
    # "pid (comm) state ppid ..." — comm may hold spaces or parentheses, so split after the last ')'.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is *parent*, in pid order (from /proc: no psutil needed)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(entry.name)
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return sorted(children)


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process *pid* has used so far; 0 when it is gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the server -----------------------------------------------------------------------------------

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
    """One gunicorn serving *target* on *database_url* from *workdir* (instance folder, logs).

    *workers* and *threads* become `-w` and `--threads`; None leaves them to gunicorn.conf.py (one
    worker with memory:// login counters, two with a shared store; 4 threads each on PostgreSQL, 1 on
    SQLite). The logs are `<name>-access.log` and `<name>-error.log` in *workdir*. *settings*: more of
    the app's settings, for the server and local_app() alike.
    """

    database_url: str
    workdir: Path
    target: str = "wsgi:app"
    name: str = "gunicorn"
    workers: int | None = 2
    threads: int | None = 8
    ports: range = TEST_PORTS
    ratelimit_uri: str = "memory://"
    settings: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=new_secrets)
    port: int = 0
    process: subprocess.Popen | None = None
    _apps: list = field(default_factory=list)
    _log_files: list = field(default_factory=list)
    _replies_lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: list = field(default_factory=list)  # (status, method, path) of every reply seen by call()

    # --- configuration shared by the server and this process ----------------------------------------

    @property
    def instance_path(self) -> Path:
        return self.workdir / "instance"

    def environment(self) -> dict:
        """The server's environment: ours without FOREIGN_SETTINGS, plus the app's production settings."""
        env = {name: value for name, value in os.environ.items() if name not in FOREIGN_SETTINGS}
        env.update({key: str(value) for key, value in app_config(
            self.database_url, secrets=self.secrets, instance_path=self.instance_path,
            RATELIMIT_STORAGE_URI=self.ratelimit_uri, **self.settings).items()})
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def local_app(self):
        """An app in this process on the same database with the same secrets (for the service layer)."""
        application = make_app(self.database_url, secrets=self.secrets, instance_path=self.instance_path,
                               RATELIMIT_STORAGE_URI=self.ratelimit_uri, **self.settings)
        self._apps.append(application)
        return application

    # --- lifecycle ----------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Upgrade the schema with the project's CLI (`flask db upgrade`), in the server's environment."""
        self.instance_path.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=PROJECT_ROOT,
                       env=self.environment(), check=True, timeout=180, capture_output=True)

    @property
    def access_log(self) -> Path:
        return self.workdir / f"{self.name}-access.log"

    @property
    def error_log(self) -> Path:
        return self.workdir / f"{self.name}-error.log"

    def command(self) -> list[str]:
        command = [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}"]
        if self.workers is not None:
            command += ["-w", str(self.workers)]
        if self.threads is not None:
            command += ["--threads", str(self.threads)]
        return [*command, self.target]

    def start(self, *, migrate: bool = True, timeout: float = 60.0) -> None:
        """Upgrade the schema (unless not *migrate*), start gunicorn in its own process group and wait
        until /health answers 200. :raises RuntimeError: it did not, with the end of its error log."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if migrate:
            self.migrate()
        for _attempt in range(5):
            self.port = free_port(self.ports)
            access = open(self.access_log, "ab")  # noqa: SIM115 - closed in stop()
            errors = open(self.error_log, "ab")  # noqa: SIM115 - closed in stop()
            self._log_files += [access, errors]
            self.process = subprocess.Popen(self.command(), cwd=PROJECT_ROOT, env=self.environment(), stdout=access,
                                            stderr=errors, stdin=subprocess.DEVNULL, start_new_session=True)
            if self.wait_healthy(timeout=timeout):
                return
            lost_port_race = self.process.poll() is not None and "Address already in use" in self.error_text()
            self.stop()
            if not lost_port_race:
                break
        raise RuntimeError(f"{self.name} ({self.target}) did not become healthy on port {self.port}:\n"
                           f"{self.error_text()[-4000:]}")

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

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the master and its workers, from /proc."""
        if self.process is None:
            return 0.0
        return sum(process_cpu_seconds(pid) for pid in [self.process.pid, *self.worker_pids()])

    def stop(self) -> None:
        """Stop gunicorn and every process of its group; close the logs; dispose the local apps."""
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
            dispose(application)
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

    def _flush_logs(self) -> None:
        for handle in self._log_files:
            handle.flush()

    def error_text(self) -> str:
        self._flush_logs()
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def server_side_5xx(self) -> list[str]:
        """Access-log lines with a 5xx status: what the server answered, whether or not a client read it."""
        self._flush_logs()
        if not self.access_log.exists():
            return []
        return [line for line in self.access_log.read_text(errors="replace").splitlines()
                if (match := ACCESS_LINE.search(line)) and match["status"].startswith("5")]

    def client_side_5xx(self) -> list[tuple[int, str, str]]:
        with self._replies_lock:
            return [entry for entry in self.statuses if entry[0] >= 500]


# --- an app of this process, served in a thread ---------------------------------------------------------

class _RecordingHandler(WSGIRequestHandler):
    """Werkzeug's handler, recording each reply on its LiveServer instead of logging it."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.live.record(int(code) if str(code).isdigit() else 0, self.command, getattr(self, "path", "?"))


@dataclass
class LiveServer:
    """*app* (already built in this process) served over HTTP by werkzeug's threaded server.

    Every reply is recorded as (status, method, path); `forget()` clears them, `replies_5xx()` lists the
    server errors since (their tracebacks go to the `werkzeug` logger, which pytest shows on failure).
    """

    app: object
    host: str = "127.0.0.1"
    port: int = 0
    replies: list = field(default_factory=list)
    _server: BaseWSGIServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Listen on a port the kernel picks and serve in a daemon thread; ready when this returns."""
        self._server = make_server(self.host, 0, self.app, threaded=True, request_handler=_RecordingHandler)
        self._server.live = self
        self._server.daemon_threads = True
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"live-server-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the socket and wait for the serving thread."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def record(self, status: int, method: str, path: str) -> None:
        with self._lock:
            self.replies.append((status, method, path))

    def forget(self) -> None:
        with self._lock:
            self.replies.clear()

    def replies_5xx(self) -> list[tuple[int, str, str]]:
        with self._lock:
            return [reply for reply in self.replies if reply[0] >= 500]

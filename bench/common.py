"""Shared plumbing of the benchmarks: options and sizes, databases of their own, apps, results, tables.

Sizes
    `SIZES["full"]` are the sizes of issue 9; `SIZES["smoke"]` are tiny ones that run every code path
    in seconds (`python -m bench --smoke`, part of `make test`). Every size can be overridden with
    `--set name=value`.

Databases
    Every benchmark works in a database of its own: on PostgreSQL a fresh `vm_bench_<name>_<hex>`
    created through the `postgres` maintenance database of the server named by `--pg-url` (default:
    the server of TEST_DATABASE_URL, else 127.0.0.1:5432) and dropped afterwards; on SQLite a new file
    in a temporary folder. The database named `test` is never touched.

Results
    `write_result` stores one JSON document per benchmark and backend under `--results-dir`
    (default bench/results/, git-ignored), with the machine description and the options of the run.
"""

import contextlib
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = PROJECT_ROOT / ".venv" / "bin"
DEFAULT_RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
PORTS = range(18200, 18300)
DEFAULT_PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")

SIZES = {
    "full": {
        # 1. redemption over HTTP
        "redeem_duration": 15.0, "redeem_warmup": 2.0, "redeem_connections": 16, "redeem_rounds": 3,
        "redeem_max_rate": 2500,  # vouchers prepared per second of run and server (never run out)
        # 2. issuance
        "issue_recipients": 100_000, "issue_items": 5,
        # 3. settlement
        "settle_redemptions": 1_000_000, "settle_providers": 500,
        # 4. rankings
        "rank_providers": 2_000, "rank_ratings": 1_000_000, "rank_iterations": 200,
        # 5. import and statements
        "import_rows": 100_000, "statement_lines": 100_000,
    },
    "smoke": {
        "redeem_duration": 1.5, "redeem_warmup": 0.5, "redeem_connections": 16, "redeem_rounds": 1,
        "redeem_max_rate": 1500,
        "issue_recipients": 300, "issue_items": 5,
        "settle_redemptions": 3_000, "settle_providers": 10,
        "rank_providers": 40, "rank_ratings": 3_000, "rank_iterations": 20,
        "import_rows": 500, "statement_lines": 2_000,
    },
}

# Targets of issue 9.
TARGETS = {
    "redemption_ratio_min": 0.6, "redemption_p99_ms_max": 100.0,
    "issuance_ratio_max": 2.0, "settlement_ratio_max": 2.0,
    "rankings_p95_ms_max": 20.0,
    "import_seconds_max": 30.0, "statement_memory_mb_max": 50.0,
}


@dataclass
class Options:
    mode: str = "full"
    backends: tuple[str, ...] = BACKENDS
    pg_url: str = ""
    results_dir: Path = DEFAULT_RESULTS_DIR
    sizes: dict = field(default_factory=dict)
    only: tuple[str, ...] = ()
    pg_database_url: str = ""  # the run's own database (run_database), once created

    @property
    def smoke(self) -> bool:
        return self.mode == "smoke"

    def size(self, name: str):
        return self.sizes[name]


def out(text: str = "") -> None:
    """Print a line (the project's lint forbids print())."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    out(f"  · {text}")


# --- tables and numbers ---------------------------------------------------------------------------

def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(header)), *(len(row[i]) for row in cells)) if cells else len(str(header))
              for i, header in enumerate(headers)]
    line = "  ".join(str(header).ljust(width) for header, width in zip(headers, widths, strict=True))
    rule = "  ".join("-" * width for width in widths)
    body = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, rule, *body])


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of *values* (not necessarily sorted)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


# --- the machine ------------------------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info(pg_url: str | None = None) -> dict:
    cpu_model = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                      if line.startswith("model name")), platform.processor())
    mem_kb = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                   if line.startswith("MemTotal:")), 0)
    info = {
        "nproc": os.cpu_count(), "cpu": cpu_model, "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "loadavg": _read("/proc/loadavg").split()[:3], "kernel": platform.release(),
        "python": platform.python_version(), "sqlite": __import__("sqlite3").sqlite_version,
        "packages": {},
    }
    from importlib import metadata
    for package in ("flask", "sqlalchemy", "psycopg", "gunicorn", "werkzeug", "marshmallow", "flask-smorest"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info["packages"][package] = metadata.version(package)
    if pg_url:
        with contextlib.suppress(Exception):
            import psycopg
            with psycopg.connect(psycopg_dsn(pg_url), connect_timeout=5) as conn:
                info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    return info


# --- results ------------------------------------------------------------------------------------------

def write_result(options: Options, name: str, backend: str | None, payload: dict) -> Path:
    options.results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{backend}" if backend else name
    path = options.results_dir / f"{stem}-{options.mode}.json"
    document = {"benchmark": name, "backend": backend, "mode": options.mode,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine_info(options.pg_url if backend == "postgresql" else None),
                "sizes": options.sizes, **payload}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    note(f"results: {path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path}")
    return path


# --- databases ----------------------------------------------------------------------------------------

def psycopg_dsn(url: str) -> str:
    from sqlalchemy import make_url
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def default_pg_server() -> str:
    """The server of TEST_DATABASE_URL (its `postgres` maintenance database), else 127.0.0.1:5432."""
    from sqlalchemy import make_url
    given = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if not given:
        return DEFAULT_PG_SERVER
    return make_url(given).set(database="postgres").render_as_string(hide_password=False)


def postgres_reason(server_url: str) -> str | None:
    """Why PostgreSQL cannot be used, or None."""
    try:
        import psycopg
        psycopg.connect(psycopg_dsn(server_url), connect_timeout=3).close()
    except Exception as error:  # noqa: BLE001 - any failure means "not here"
        return f"PostgreSQL at {server_url.split('@')[-1]} is not reachable: {error}".strip()
    return None


@contextlib.contextmanager
def run_database(options: Options) -> Iterator[None]:
    """One PostgreSQL database for the whole run (`vm_bench_run_<hex>`), dropped at the end.

    Benchmarks get a schema each inside it (see fresh_database): creating and dropping a schema is
    instant, while every DROP DATABASE forces a checkpoint of the whole cluster, which takes seconds
    on a busy machine.
    """
    import psycopg
    from psycopg import sql
    from sqlalchemy import make_url

    database = f"vm_bench_run_{secrets.token_hex(4)}"
    maintenance = psycopg_dsn(options.pg_url)
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    options.pg_database_url = make_url(options.pg_url).set(database=database).render_as_string(hide_password=False)
    try:
        yield
    finally:
        options.pg_database_url = ""
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


@contextlib.contextmanager
def fresh_database(options: Options, backend: str, name: str, folder: Path) -> Iterator[str]:
    """A database nobody else uses, removed afterwards; yields its SQLAlchemy URL.

    SQLite: a new file in *folder*. PostgreSQL: a new schema `bench_<name>_<hex>` in the run's
    database, made the connection's search_path through the URL (`?options=-csearch_path=…`), so the
    migrations, the app, gunicorn, the reference app and the bulk loaders all work inside it.
    """
    if backend == "sqlite":
        path = folder / f"{name}-{secrets.token_hex(4)}.sqlite3"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm", "-writer"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{path}{suffix}").unlink()
        return
    import psycopg
    from psycopg import sql
    from sqlalchemy import make_url

    if not options.pg_database_url:
        with run_database(options), fresh_database(options, backend, name, folder) as url:
            yield url
        return
    schema = f"bench_{name}_{secrets.token_hex(4)}"
    base = psycopg_dsn(options.pg_database_url)
    with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield make_url(options.pg_database_url).update_query_dict(
            {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix=f"vm-bench-{name}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- apps -----------------------------------------------------------------------------------------------

def new_secrets() -> dict:
    return {"SECRET_KEY": secrets.token_hex(32), "ID_HASH_KEY": secrets.token_hex(32),
            "TOKEN_KEYS": f"1:{secrets.token_hex(32)}"}


def app_config(database_url: str, app_secrets: dict, instance: Path) -> dict:
    """Production settings (as deployed) with the given secrets."""
    return {"APP_ENV": "production", "DATABASE_URL": database_url, "RATELIMIT_STORAGE_URI": "memory://",
            "INSTANCE_PATH": str(instance), **app_secrets}


def make_app(database_url: str, app_secrets: dict, instance: Path, *, migrate: bool = True):
    """An app in this process on *database_url*; runs the migrations when *migrate*."""
    import logging

    from flask_migrate import upgrade

    from marketplace.app import create_app

    instance.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("INSTANCE_PATH", str(instance))
    app = create_app(app_config(database_url, app_secrets, instance))
    if migrate:
        # Alembic's logging set-up prints every migration at INFO; benchmarks only want their tables.
        logging.disable(logging.INFO)
        try:
            with app.app_context():
                upgrade()
        finally:
            logging.disable(logging.NOTSET)
    return app


def dispose(app) -> None:
    from marketplace.db import db
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def system_admin(app):
    """An admin login (created once per database) to act as in the service layer."""
    from sqlalchemy import select

    from marketplace.auth import service as auth_service
    from marketplace.auth.models import User
    from marketplace.db import db, transaction, utcnow

    with app.app_context():
        existing = db.session.scalar(select(User).where(User.username == "bench-admin"))
        if existing is not None:
            return existing
        with transaction():
            return auth_service.create_user(username="bench-admin", password="bench-admin-password", role="admin",
                                            actor=None, now=utcnow())


# --- servers ----------------------------------------------------------------------------------------------

def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    import random
    candidates = list(PORTS)
    random.shuffle(candidates)
    for port in candidates:
        if port_is_free(port):
            return port
    raise RuntimeError("no free port in 18200-18299")


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is *parent* (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


def process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Gunicorn:
    """gunicorn with the project's gunicorn.conf.py (2 workers; 4 threads each on PostgreSQL, 1 on SQLite)."""

    def __init__(self, target: str, env: dict, logdir: Path, name: str):
        self.target, self.env, self.logdir, self.name = target, env, logdir, name
        self.process: subprocess.Popen | None = None
        self.port = 0
        self._logs = []

    def start(self, timeout: float = 60.0) -> None:
        for _attempt in range(5):
            self.port = free_port()
            access = open(self.logdir / f"{self.name}-access.log", "ab")  # noqa: SIM115 - closed in stop()
            errors = open(self.logdir / f"{self.name}-error.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs += [access, errors]
            # Two workers as measured in docs/performance.md: gunicorn.conf.py runs one when the login
            # counters are in memory://, as here (the benchmarks do not log in; it warns, harmlessly).
            self.process = subprocess.Popen(
                [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}",
                 "--workers", "2", self.target], cwd=PROJECT_ROOT, env=self.env, stdout=access, stderr=errors,
                stdin=subprocess.DEVNULL, start_new_session=True)
            if self._wait_healthy(timeout):
                return
            lost_race = self.process.poll() is not None and "Address already in use" in self.error_text()
            self.stop()
            if not lost_race:
                break
        raise RuntimeError(f"{self.name}: gunicorn did not start:\n{self.error_text()[-3000:]}")

    def _wait_healthy(self, timeout: float) -> bool:
        import http.client
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/api/v1/health")
                status = connection.getresponse().status
                connection.close()
                if status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the master and its workers, from /proc."""
        if self.process is None:
            return 0.0
        pids = [self.process.pid, *child_pids(self.process.pid)]
        return sum(process_cpu_seconds(pid) for pid in pids)

    def error_text(self) -> str:
        path = self.logdir / f"{self.name}-error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        import signal
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        for handle in self._logs:
            handle.close()
        self._logs.clear()


def server_env(database_url: str, app_secrets: dict, instance: Path) -> dict:
    env = {name: value for name, value in os.environ.items()
           if name not in ("GUNICORN_CMD_ARGS", "FLASK_APP", "FLASK_DEBUG")}
    env.update({key: str(value) for key, value in app_config(database_url, app_secrets, instance).items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def as_dict(obj) -> dict:
    return asdict(obj)

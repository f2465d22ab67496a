"""Shared plumbing of the benchmarks: options and sizes, the stage each one works on, results, tables.

The databases, apps and gunicorn servers are the tests' own (tests/support/: databases.py, apps.py,
servers.py); this module only picks the benchmarks' settings for them.

Sizes
    `SIZES["full"]` are the sizes of issue 9; `SIZES["smoke"]` are tiny ones that run every code path
    in seconds (`python -m bench --smoke`, part of `make test`). Every size can be overridden with
    `--set name=value`.

Databases
    Every benchmark works in a database of its own. PostgreSQL: a run creates one database
    `vm_bench_run_<hex>` through the `postgres` maintenance database of the server named by `--pg-url`
    (default: the server of BENCH_DATABASE_URL or TEST_DATABASE_URL, else 127.0.0.1:5432) and drops it
    at the end; each benchmark gets a schema `bench_<name>_<hex>` of its own in it. SQLite: a new file
    in a temporary folder. The database named `test` is never touched.

Stage
    `stage(options, backend, name)` gives a benchmark its folder, its database, a migrated app in this
    process (production settings with new secrets) and an admin to act as; `Stage.server(…)` a gunicorn
    on that database with the same secrets, listening on a free port in 18200–18299 (PORTS).

Results
    `write_result` stores one JSON document per benchmark and backend under `--results-dir`
    (default bench/results/, git-ignored), with the machine description and the options of the run.
"""

import contextlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.support import databases
from tests.support.apps import dispose, make_app, new_secrets
from tests.support.databases import psycopg_dsn
from tests.support.servers import Server

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
PORTS = range(18200, 18300)  # the tests' servers use 18100–18199 (tests/support/servers.py)
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
        # 6. console budgets: a county (50,000 recipients, a year of redemptions), every page
        "console_recipients": 50_000, "console_providers": 60, "console_months": 12,
        "console_redemptions_per_month": 200_000, "console_requests": 200, "console_warmup": 20,
        "console_seconds": 30.0,
        # 7. market-integrity detection (issue 18)
        "anomaly_redemptions": 1_000_000, "anomaly_providers": 500, "anomaly_rounds": 2,
    },
    "smoke": {
        "redeem_duration": 1.5, "redeem_warmup": 0.5, "redeem_connections": 16, "redeem_rounds": 1,
        "redeem_max_rate": 1500,
        "issue_recipients": 300, "issue_items": 5,
        "settle_redemptions": 3_000, "settle_providers": 10,
        "rank_providers": 40, "rank_ratings": 3_000, "rank_iterations": 20,
        "import_rows": 500, "statement_lines": 2_000,
        "console_recipients": 200, "console_providers": 20, "console_months": 3,
        "console_redemptions_per_month": 300, "console_requests": 10, "console_warmup": 2, "console_seconds": 5.0,
        "anomaly_redemptions": 3_000, "anomaly_providers": 10, "anomaly_rounds": 1,
    },
}

# Targets of issue 9.
TARGETS = {
    "redemption_ratio_min": 0.6, "redemption_p99_ms_max": 100.0,
    "issuance_ratio_max": 2.0, "settlement_ratio_max": 2.0,
    "rankings_p95_ms_max": 20.0,
    "import_seconds_max": 30.0, "statement_memory_mb_max": 50.0,
    # Issue 15 (CONSOLE.md, "Budgets"): per page, in kB of 1,000 bytes transferred and ms.
    "console_first_load_kb_max": 100, "console_later_kb_max": 30, "console_p95_ms_max": 50.0,
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

def default_pg_server() -> str:
    """The server of BENCH_DATABASE_URL or TEST_DATABASE_URL (its `postgres` maintenance database), else
    127.0.0.1:5432."""
    return databases.maintenance_url(os.environ.get("BENCH_DATABASE_URL") or databases.pg_url())


@contextlib.contextmanager
def run_database(options: Options) -> Iterator[None]:
    """One PostgreSQL database for the whole run (`vm_bench_run_<hex>`), dropped at the end.

    Benchmarks get a schema each inside it (see fresh_database): creating and dropping a schema is
    instant, while every DROP DATABASE forces a checkpoint of the whole cluster, which takes seconds
    on a busy machine.
    """
    with databases.temporary_database("vm_bench_run", server=options.pg_url) as url:
        options.pg_database_url = url
        try:
            yield
        finally:
            options.pg_database_url = ""


@contextlib.contextmanager
def fresh_database(options: Options, backend: str, name: str, folder: Path) -> Iterator[str]:
    """A database nobody else uses, removed afterwards; yields its SQLAlchemy URL.

    SQLite: a new file in *folder*. PostgreSQL: a new schema `bench_<name>_<hex>` in the run's
    database (its URL carries `options=-csearch_path=…`), so the migrations, the app, gunicorn, the
    reference app and the bulk loaders all work inside it.
    """
    if backend == "postgresql" and not options.pg_database_url:
        with run_database(options), fresh_database(options, backend, name, folder) as url:
            yield url
        return
    with databases.fresh_database(backend, folder, prefix=f"bench_{name}", within=options.pg_database_url) as url:
        yield url


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix=f"vm-bench-{name}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- the stage of a benchmark ---------------------------------------------------------------------------

@dataclass
class Stage:
    """Where a benchmark works: a folder, a database of its own, a migrated app on it and an admin."""

    folder: Path
    url: str
    secrets: dict  # the app's (production) secrets: servers and subprocesses on this database share them
    app: object
    admin: object
    now: datetime  # when the stage was built: the clock of the benchmark's data

    @property
    def instance(self) -> Path:
        return self.folder / "instance"

    def server(self, name: str, target: str = "wsgi:app") -> Server:
        """gunicorn serving *target* on this database with these secrets, as gunicorn.conf.py sets it up
        (4 threads per worker on PostgreSQL, 1 on SQLite), on a port in 18200–18299, with 2 workers as
        measured in docs/performance.md (gunicorn.conf.py alone would run one with the memory:// login
        counters; the benchmarks never log in)."""
        return Server(self.url, self.folder, target=target, name=name, workers=2, threads=None, ports=PORTS,
                      secrets=self.secrets)


@contextlib.contextmanager
def stage(options: Options, backend: str, name: str) -> Iterator[Stage]:
    """A work folder and a fresh database (both removed afterwards), with an app in this process on it
    (production settings, new secrets, migrated; disposed afterwards) and the admin to act as."""
    from marketplace.db import utcnow

    with workdir(name) as folder, fresh_database(options, backend, name, folder) as url:
        app_secrets = new_secrets()
        app = make_app(url, secrets=app_secrets, instance_path=folder / "instance", migrate=True)
        try:
            admin = system_admin(app)
            yield Stage(folder=folder, url=url, secrets=app_secrets, app=app, admin=admin, now=utcnow())
        finally:
            dispose(app)


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


def as_dict(obj) -> dict:
    return asdict(obj)

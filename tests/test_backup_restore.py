"""The restore drill: a backup taken while gunicorn redeems, restored into a fresh database, is whole.

On a fresh SQLite file and on a fresh PostgreSQL database, `gunicorn wsgi:app` (2 workers, as
gunicorn.conf.py sets them up otherwise) serves a programme with hundreds of vouchers, and client
threads scan voucher cards (`POST /api/v1/redemptions`), about 40 a second. Once some have
been acknowledged, `flask --app wsgi backup PATH` runs in its own process, as cron would run it, while
the scans go on. The backup is then restored the documented way into a database nobody used before —
SQLite: the file copied; PostgreSQL: `pg_restore` into a new database — and there:

- `flask --app wsgi audit-verify` verifies the audit chain (exit 0, the head hash printed);
- the programme's reconciliation is ok (every journal total matches the vouchers and redemptions);
- every redemption acknowledged with 201 before the backup began is there, completed, for its voucher,
  and its voucher is `redeemed`; nothing is there that the clients did not scan.

Only the PostgreSQL half needs pg_dump and pg_restore; without them it is skipped with the reason
shown, unless REQUIRE_POSTGRES=1, where that is a failure.
"""

import contextlib
import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select, text

from marketplace.db import db
from tests.support.apps import dispose, make_app
from tests.support.databases import fresh_database, postgres_unavailable_reason, psycopg_dsn, temporary_database
from tests.support.scenario import Builder
from tests.support.servers import PROJECT_ROOT, VENV_BIN, Server
from vouchers.models import Redemption, Voucher

RECIPIENTS = 6
VOUCHERS_EACH = 100  # supplementary issues give at most 100 at a time
CLIENTS = 4
RATE = 40  # scans per second, all clients together: the vouchers last the whole drill
ACKNOWLEDGED_BEFORE_BACKUP = 25
LOAD_AFTER_BACKUP_SECONDS = 0.5
REQUEST_TIMEOUT = 30.0


def pg_tools_missing() -> str | None:
    missing = [tool for tool in ("pg_dump", "pg_restore") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not installed (Debian: apt-get install postgresql-client)" if missing else None


@pytest.fixture(params=["sqlite", "postgresql"])
def drill_backend(request):
    if request.param == "postgresql":
        reason = postgres_unavailable_reason() or pg_tools_missing()
        if reason:
            if os.environ.get("REQUIRE_POSTGRES") == "1":
                pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}")
            pytest.skip(reason)
    return request.param


@dataclass
class Scans:
    """Client threads scanning voucher cards; every 201 is recorded the moment its answer is read."""

    server: Server
    headers: dict
    tokens: dict  # voucher id → card token
    fresh: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acknowledged: dict = field(default_factory=dict)  # voucher id → redemption id
    acknowledged_at: dict = field(default_factory=dict)  # voucher id → time.monotonic() of the answer
    scanned: set = field(default_factory=set)
    failures: list = field(default_factory=list)  # anything but a 201
    threads: list = field(default_factory=list)

    def __post_init__(self):
        for voucher_id in self.tokens:
            self.fresh.put(voucher_id)

    def client(self) -> None:
        pause = CLIENTS / RATE
        while not self.stop.wait(pause):
            try:
                voucher_id = self.fresh.get_nowait()
            except queue.Empty:
                return
            with self.lock:
                self.scanned.add(voucher_id)
            try:
                reply = self.server.call("POST", "/api/v1/redemptions", json_body={"voucher_token": self.tokens[
                    voucher_id]}, headers={**self.headers, "Idempotency-Key": f"drill-{voucher_id}"},
                    timeout=REQUEST_TIMEOUT)
            except OSError as error:
                with self.lock:
                    self.failures.append((voucher_id, repr(error)))
                continue
            with self.lock:
                if reply.status == 201:
                    self.acknowledged[voucher_id] = reply.json["id"]
                    self.acknowledged_at[voucher_id] = time.monotonic()
                else:
                    self.failures.append((voucher_id, reply.status, reply.body[:200]))

    def start(self) -> None:
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.acknowledged) >= count:
                    return
            time.sleep(0.02)
        raise AssertionError(f"only {len(self.acknowledged)} scans acknowledged in {timeout} s: {self.failures[:5]}")

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.acknowledged)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=REQUEST_TIMEOUT + 10)
        assert not any(thread.is_alive() for thread in self.threads), "a scanning client hung"


def prepare(server: Server):
    build = Builder(server.local_app())
    world = build.world(budget_fen=100_000_000)
    tokens = {}
    for _ in range(RECIPIENTS):
        recipient = build.recipient()
        build.choose(recipient.id, world.programme, world.meal, world.p1.id)
        for voucher_id in build.supplementary(world.programme, recipient.id, world.meal, VOUCHERS_EACH):
            tokens[voucher_id] = build.voucher_token(voucher_id)
    return world, tokens, build.headers(world.p1.user)


def flask(*args: str, environment: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "flask"), "--app", "wsgi", *args], cwd=PROJECT_ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout, check=False)


def restore(backend: str, backup: Path, folder: Path, stack) -> str:
    """Restore *backup* the documented way into a database nobody used before; its URL."""
    if backend == "sqlite":
        restored = folder / "restored.sqlite3"
        shutil.copyfile(backup, restored)
        return f"sqlite:///{restored}"
    url = stack.enter_context(temporary_database("test_backup_restored"))
    finished = subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "--dbname", psycopg_dsn(url),
                               str(backup)], capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr
    return url


def test_a_backup_taken_while_redemptions_run_restores_whole(drill_backend, tmp_path):
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_database(drill_backend, tmp_path, prefix="test_backup_drill"))
        server = Server(url, tmp_path, name="drill", workers=2, threads=None)
        stack.callback(server.stop)
        server.start()
        world, tokens, scanner = prepare(server)
        scans = Scans(server, scanner, tokens)
        scans.start()
        stack.callback(scans.finish)

        # 1. The backup, in its own process, while the scans go on.
        scans.wait_for(ACKNOWLEDGED_BEFORE_BACKUP)
        before = scans.snapshot()  # acknowledged before the backup began
        began = time.monotonic()
        backup_dir = tmp_path / "backups"
        backup_dir.mkdir()
        made = flask("backup", str(backup_dir), environment=server.environment())
        ended = time.monotonic()
        time.sleep(LOAD_AFTER_BACKUP_SECONDS)
        scans.finish()

        assert made.returncode == 0, made.stderr
        [backup] = list(backup_dir.iterdir())
        assert f"wrote {backup} (" in made.stdout
        during = [v for v, at in scans.acknowledged_at.items() if began < at < ended]
        assert during, "no scan was acknowledged while the backup ran: the drill proved nothing"
        assert scans.failures == [], scans.failures[:5]
        assert server.server_side_5xx() == []
        assert len(scans.acknowledged) < len(tokens), "the scans ran out of vouchers"

        # 2. Restored into a fresh database: the chain verifies, the books reconcile, nothing acknowledged is lost.
        restored_url = restore(drill_backend, backup, tmp_path, stack)
        verified = flask("audit-verify", environment={**server.environment(), "DATABASE_URL": restored_url},
                         timeout=120)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "audit chain ok" in verified.stdout
        assert " head " in verified.stdout

        restored = make_app(restored_url, secrets=server.secrets, instance_path=tmp_path / "restored-instance")
        stack.callback(dispose, restored)
        build = Builder(restored)
        reconciliation = build.reconciliation(world.programme)
        assert reconciliation["ok"], [check for check in reconciliation["checks"] if not check["ok"]]

        with restored.app_context():
            rows = {row.voucher_id: row for row in db.session.scalars(select(Redemption))}
            redeemed = set(db.session.scalars(select(Voucher.id).where(Voucher.status == "redeemed")))
            schema = db.session.scalar(text("SELECT version_num FROM alembic_version"))
        lost = {voucher_id: redemption_id for voucher_id, redemption_id in before.items()
                if voucher_id not in rows or rows[voucher_id].id != redemption_id
                or rows[voucher_id].status != "completed"}
        assert lost == {}, f"acknowledged before the backup began but not in the restored database: {lost}"
        assert set(before) <= redeemed
        assert set(rows) <= scans.scanned, "the restored database holds a redemption nobody asked for"
        assert redeemed == set(rows)
        with server.local_app().app_context():
            assert schema == db.session.scalar(text("SELECT version_num FROM alembic_version"))

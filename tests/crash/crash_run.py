"""Crash test: redemption load against gunicorn and PostgreSQL, a worker killed and the database crashed.

    RUN_CRASH=1 .venv/bin/pytest tests/crash -q      (what `make crash` runs)
    .venv/bin/python -m tests.crash.crash_run         (the same, as a script; exit status 1 on failure)

**This stops the local PostgreSQL server** (`pg_ctlcluster … stop -m immediate`, an unclean stop that
needs crash recovery on start, as a power cut would) and starts it again; every other database on
that server is cut off for a few seconds. It always leaves PostgreSQL running, even on failure.

What happens:
1. a fresh database `vm_crash_<random>`, migrated; gunicorn (2 workers × 8 threads) on a free port in
   18100–18199; one programme with thousands of vouchers, prepared through the service layer;
2. load: client threads scan voucher cards (`POST /redemptions`), each voucher with its own
   Idempotency-Key, as a scanner app would; an answer that never came (connection reset, timeout)
   or a 5xx is "unknown" and the client retries with the same key, as docs/domain.md#api-conventions tells clients to;
   every eighth voucher's first scan hangs up before the answer (a scanner losing its signal), so there are
   always redemptions that were committed but never acknowledged, to be recovered by replay;
3. mid-load, `kill -9` one gunicorn worker (gunicorn replaces it); a few seconds later, PostgreSQL
   `stop -m immediate`, a pause, `start`; the load goes on across both and for a while afterwards.

What must hold afterwards (checked in the database with plain SQL, and over HTTP):
- every redemption the client saw acknowledged with 201 exists, completed, for that voucher;
- nothing is half-written: a voucher is `redeemed` exactly when it has a completed redemption, no
  voucher has two, every redemption has its journal entry (committed → redeemed), its audit event and
  its Idempotency-Key record holding the 201 it answered; every redemption belongs to a voucher the
  client scanned, and one the client never saw acknowledged is one whose answer was lost;
- retrying every unknown outcome with its key gives a 201 — a replay of the stored answer when the
  redemption had been committed, a fresh redemption when it had not — and then every scanned voucher
  is redeemed exactly once;
- reconciliation is ok and the audit chain verifies (over HTTP, after the restart);
- no 5xx before the first fault, nor later than RECOVERY_GRACE after PostgreSQL answers again (the
  load goes on for LOAD_AFTER_DB_START), nor in the retries; those during the faults are counted and
  must be the JSON error envelope (500 `internal_error` / 503 `database_unavailable`), never a torn or
  HTML answer.

Settings (environment): CRASH_PG_VERSION (default: the only folder in /etc/postgresql),
CRASH_PG_CLUSTER (main), CRASH_CLIENTS (8), CRASH_RATE (total scans per second, 80).
"""

import contextlib
import http.client
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psycopg  # noqa: E402

from tests.support.databases import (  # noqa: E402
    create_database,
    drop_database,
    maintenance_url,
    postgres_unavailable_reason,
    psycopg_dsn,
)
from tests.support.scenario import Builder  # noqa: E402
from tests.support.servers import Server  # noqa: E402

VOUCHERS_PER_RECIPIENT = 100  # supplementary issues are at most 100 at a time
RECIPIENTS = 30  # 3,000 vouchers: more than the load can use
REQUEST_TIMEOUT = 10.0
LOAD_BEFORE_KILL = 3.0
KILL_TO_DB_STOP = 3.0
DB_DOWN = 2.0
LOAD_AFTER_DB_START = 6.0
RETRY_ROUNDS = 20
RECOVERY_GRACE = 2.0  # seconds after PostgreSQL answers again in which a request begun before may still fail
HANG_UP_EVERY = 8  # every eighth voucher's first scan hangs up before the answer: a lost acknowledgement


# --- PostgreSQL control ----------------------------------------------------------------------------

def cluster() -> tuple[str, str]:
    version = os.environ.get("CRASH_PG_VERSION")
    if not version:
        versions = sorted(os.listdir("/etc/postgresql"))
        if len(versions) != 1:
            raise RuntimeError(f"set CRASH_PG_VERSION: /etc/postgresql holds {versions}")
        version = versions[0]
    return version, os.environ.get("CRASH_PG_CLUSTER", "main")


def pg_ctl(action: str, *extra: str) -> None:
    version, name = cluster()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action, *extra], check=True,
                   timeout=120, capture_output=True)


def postgres_answers(dsn: str) -> bool:
    try:
        psycopg.connect(dsn, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def wait_for_postgres(dsn: str, timeout: float = 90.0) -> float:
    """Seconds until PostgreSQL accepts connections again. :raises RuntimeError: it did not."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if postgres_answers(dsn):
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not answer within {timeout}s")


def ensure_postgres_running(dsn: str) -> None:
    """Whatever happened, leave the server running."""
    if postgres_answers(dsn):
        return
    with contextlib.suppress(subprocess.SubprocessError):
        pg_ctl("start")
    wait_for_postgres(dsn)


# --- the load --------------------------------------------------------------------------------------

@dataclass
class Attempt:
    at: float
    outcome: str  # "201", "201-replayed", "409:idempotency_key_in_flight", "500:internal_error", "TimeoutError"…


@dataclass
class Load:
    server: Server
    headers: dict
    tokens: dict  # voucher id → voucher card token
    clients: int
    rate: float
    stop: threading.Event = field(default_factory=threading.Event)
    fresh: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    retry: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: dict = field(default_factory=dict)  # voucher id → [Attempt]
    acknowledged: dict = field(default_factory=dict)  # voucher id → the 201 body (parsed)
    five_xx: list = field(default_factory=list)  # (time, status, body)
    threads: list = field(default_factory=list)

    def __post_init__(self):
        for voucher_id in self.tokens:
            self.fresh.put(voucher_id)

    @staticmethod
    def key(voucher_id: int) -> str:
        return f"crash-scan-{voucher_id}"

    def hang_up(self, voucher_id: int) -> None:
        """Send the scan and hang up before the answer, as a scanner losing its signal: the server goes on."""
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=REQUEST_TIMEOUT)
        try:
            connection.request("POST", "/api/v1/redemptions", body=json.dumps(
                {"voucher_token": self.tokens[voucher_id]}).encode(), headers={
                **self.headers, "Idempotency-Key": self.key(voucher_id), "Content-Type": "application/json"})
        finally:
            connection.close()

    def scan(self, voucher_id: int, *, hang_up: bool = False) -> str:
        """One attempt; returns its outcome and records it. Unknown outcomes go back on the retry queue."""
        try:
            if hang_up:
                self.hang_up(voucher_id)
                raise ConnectionAbortedError("hung up before the answer")
            reply = self.server.call("POST", "/api/v1/redemptions",
                                     json_body={"voucher_token": self.tokens[voucher_id]},
                                     headers={**self.headers, "Idempotency-Key": self.key(voucher_id)},
                                     timeout=REQUEST_TIMEOUT)
        except OSError as error:
            outcome = type(error).__name__
            known = False
        else:
            if reply.status == 201:
                outcome = "201-replayed" if reply.headers.get("idempotent-replayed") == "true" else "201"
                body = reply.json
                with self.lock:
                    first = self.acknowledged.setdefault(voucher_id, body)
                if first != body:
                    outcome = "201-DIFFERENT-BODY"
                known = True
            else:
                outcome = f"{reply.status}:{reply.error_code}"
                if reply.status >= 500:
                    with self.lock:
                        self.five_xx.append((time.monotonic(), reply.status, reply.body[:300]))
                # 409 in flight: a copy of this very request still runs (its first send was cut off).
                known = reply.status < 500 and reply.error_code != "idempotency_key_in_flight"
        with self.lock:
            self.attempts.setdefault(voucher_id, []).append(Attempt(time.monotonic(), outcome))
        if not known:
            self.retry.put(voucher_id)
        return outcome

    def client(self) -> None:
        pause = self.clients / self.rate
        while not self.stop.is_set():
            started = time.monotonic()
            hang_up = False
            try:
                voucher_id = self.retry.get_nowait()
            except queue.Empty:
                try:
                    voucher_id = self.fresh.get_nowait()
                except queue.Empty:
                    return
                hang_up = voucher_id % HANG_UP_EVERY == 0
            self.scan(voucher_id, hang_up=hang_up)
            self.stop.wait(max(0.0, pause - (time.monotonic() - started)))

    def start(self) -> None:
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(self.clients)]
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=REQUEST_TIMEOUT + 20)
        hung = [thread for thread in self.threads if thread.is_alive()]
        assert not hung, f"{len(hung)} load clients hung"

    def unknown(self) -> set[int]:
        """Vouchers whose last attempt gave no definite answer."""
        pending = set()
        while True:
            try:
                pending.add(self.retry.get_nowait())
            except queue.Empty:
                return pending - set(self.acknowledged)


# --- checks in the database ------------------------------------------------------------------------

def database_state(dsn: str, programme_id: int) -> dict:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        vouchers = dict(conn.execute("SELECT id, status FROM voucher WHERE programme_id = %s",
                                     (programme_id,)).fetchall())
        redemptions = conn.execute(
            "SELECT id, voucher_id, status FROM redemption WHERE programme_id = %s", (programme_id,)).fetchall()
        journal = Counter(int(ref) for (ref,) in conn.execute(
            "SELECT reference_id FROM journal_entry WHERE programme_id = %s AND kind = 'redemption' "
            "AND reference_type = 'redemption'", (programme_id,)))
        audited = Counter(json.loads(data)["redemption_id"] for (data,) in conn.execute(
            "SELECT data FROM audit_event WHERE action = 'voucher.redeemed'"))
        keys = {key: (status, body) for key, status, body in conn.execute(
            "SELECT key, status_code, response_body FROM idempotency_record WHERE key LIKE 'crash-scan-%%'")}
    return {"vouchers": vouchers, "redemptions": redemptions, "journal": journal, "audited": audited,
            "keys": keys}


def half_written(state: dict) -> list[str]:
    """Everything that betrays a partial write; empty when the database is whole."""
    problems = []
    completed = Counter(voucher_id for _id, voucher_id, status in state["redemptions"] if status == "completed")
    problems += [f"voucher {v} has {n} completed redemptions" for v, n in completed.items() if n > 1]
    for voucher_id, status in state["vouchers"].items():
        if (status == "redeemed") != (voucher_id in completed):
            problems.append(f"voucher {voucher_id} is {status} with {completed[voucher_id]} completed redemptions")
    for redemption_id, voucher_id, _status in state["redemptions"]:
        if state["journal"][redemption_id] != 1:
            problems.append(f"redemption {redemption_id} has {state['journal'][redemption_id]} journal entries")
        if state["audited"][redemption_id] != 1:
            problems.append(f"redemption {redemption_id} has {state['audited'][redemption_id]} audit events")
        status_code, body = state["keys"].get(Load.key(voucher_id), (None, None))
        if status_code != 201 or json.loads(body)["id"] != redemption_id:
            problems.append(f"redemption {redemption_id}: its Idempotency-Key record is {status_code} {body!r:.80}")
    redemption_ids = {redemption_id for redemption_id, _v, _s in state["redemptions"]}
    problems += [f"a stored 201 names redemption {json.loads(body)['id']}, which does not exist ({key})"
                 for key, (status, body) in state["keys"].items()
                 if status == 201 and json.loads(body)["id"] not in redemption_ids]
    problems += [f"key {key} stored status {status}" for key, (status, _b) in state["keys"].items() if status != 201]
    return problems


# --- the run ---------------------------------------------------------------------------------------

def prepare(server: Server) -> tuple[Builder, object, dict, dict, dict]:
    build = Builder(server.local_app())
    world = build.world(budget_fen=100_000_000)
    tokens = {}
    for _ in range(RECIPIENTS):
        recipient = build.recipient()
        build.choose(recipient.id, world.programme, world.meal, world.p1.id)
        for voucher_id in build.supplementary(world.programme, recipient.id, world.meal, VOUCHERS_PER_RECIPIENT):
            tokens[voucher_id] = build.voucher_token(voucher_id)
    return build, world, tokens, build.headers(world.p1.user), build.headers(world.admin)


def error_code(body: bytes) -> str | None:
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def say(message: str) -> None:
    sys.stderr.write(message + "\n")


def run(workdir: Path | None = None, *, log=say) -> dict:
    """Run the crash scenario; return a report. :raises AssertionError: an invariant broke."""
    if (reason := postgres_unavailable_reason()) is not None:
        raise RuntimeError(reason)
    if shutil.which("pg_ctlcluster") is None:
        raise RuntimeError("pg_ctlcluster is not installed: the crash test needs a Debian PostgreSQL cluster")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="crash-"))
    url = create_database("vm_crash")
    dsn = psycopg_dsn(url)
    maintenance = psycopg_dsn(maintenance_url(url))
    server = Server(url, workdir)
    report: dict = {"database": url.rsplit("/", 1)[1], "workdir": str(workdir)}
    load = None
    try:
        server.start()
        started = time.monotonic()
        build, world, tokens, scanner, admin = prepare(server)
        face_value = build.vouchers()[0].face_value_fen
        report["prepare_seconds"] = round(time.monotonic() - started, 1)
        load = Load(server, scanner, tokens, clients=int(os.environ.get("CRASH_CLIENTS", "8")),
                    rate=float(os.environ.get("CRASH_RATE", "80")))
        workers_before = server.wait_for_workers()

        load.start()
        time.sleep(LOAD_BEFORE_KILL)
        victim = random.choice(server.worker_pids())
        first_fault = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        log(f"crash: killed worker {victim} after {len(load.attempts)} scans")
        time.sleep(KILL_TO_DB_STOP)
        try:
            pg_ctl("stop", "-m", "immediate")
            assert not postgres_answers(maintenance), "PostgreSQL still answers after stop -m immediate"
            log(f"crash: PostgreSQL stopped (immediate) after {len(load.attempts)} scans")
            time.sleep(DB_DOWN)
        finally:
            restarting = time.monotonic()
            ensure_postgres_running(maintenance)  # starts it (and waits) unless it never went down
            report["postgres_restart_seconds"] = round(time.monotonic() - restarting, 2)
        database_back = time.monotonic()
        log("crash: PostgreSQL started again")
        time.sleep(LOAD_AFTER_DB_START)
        load.finish()
        assert load.fresh.qsize() > 0, "the load ran out of vouchers: raise RECIPIENTS"
        workers_after = server.wait_for_workers()
        assert victim not in workers_after, "the killed worker is still there"
        assert len(workers_after) == len(workers_before), (workers_before, workers_after)
        assert server.wait_healthy(timeout=60), "the server did not recover"

        # 1. Before anyone retries: what the client saw acknowledged exists, and nothing is half-written.
        state = database_state(dsn, world.programme.id)
        redemption_of = {voucher_id: redemption_id for redemption_id, voucher_id, status in state["redemptions"]
                         if status == "completed"}
        lost = {voucher_id: body["id"] for voucher_id, body in load.acknowledged.items()
                if redemption_of.get(voucher_id) != body["id"]}
        assert lost == {}, f"acknowledged with 201 but not in the database: {lost}"
        assert half_written(state) == [], half_written(state)[:20]
        scanned = set(load.attempts)
        assert set(redemption_of) <= scanned, "a redemption of a voucher nobody scanned"
        unknown = load.unknown()
        committed_unacknowledged = set(redemption_of) - set(load.acknowledged)
        assert committed_unacknowledged <= unknown, committed_unacknowledged - unknown
        definite = ("201", "201-replayed")
        report.update(scans=sum(len(a) for a in load.attempts.values()), vouchers_scanned=len(scanned),
                      unknown_outcomes=sum(a.outcome not in definite for at in load.attempts.values() for a in at),
                      acknowledged=len(load.acknowledged), unknown_after_load=len(unknown),
                      recovered_by_replay=sum(
                          next(a.outcome for a in at if a.outcome.startswith("201")) == "201-replayed"
                          for voucher_id, at in load.attempts.items() if voucher_id in load.acknowledged),
                      committed_but_unacknowledged=len(committed_unacknowledged),
                      outcomes=dict(Counter(a.outcome for attempts in load.attempts.values() for a in attempts)))

        # 2. Retry every unknown outcome with its key: a committed one replays, the others redeem now.
        retried = Counter()
        for _round in range(RETRY_ROUNDS):
            pending = sorted(set(scanned) - set(load.acknowledged))
            if not pending:
                break
            for voucher_id in pending:
                retried[load.scan(voucher_id)] += 1
            time.sleep(0.5)
        report["retries"] = dict(retried)
        assert set(load.acknowledged) == scanned, f"never acknowledged: {sorted(scanned - set(load.acknowledged))}"
        assert not any(a.outcome == "201-DIFFERENT-BODY" for at in load.attempts.values() for a in at)
        for voucher_id in committed_unacknowledged:
            assert load.acknowledged[voucher_id]["id"] == redemption_of[voucher_id], voucher_id
            assert load.attempts[voucher_id][-1].outcome == "201-replayed", load.attempts[voucher_id]

        # 3. Afterwards: every scanned voucher redeemed exactly once, the books and the chain whole.
        state = database_state(dsn, world.programme.id)
        assert half_written(state) == [], half_written(state)[:20]
        final = {voucher_id: redemption_id for redemption_id, voucher_id, _s in state["redemptions"]}
        assert len(state["redemptions"]) == len(scanned) == len(final)
        assert final == {voucher_id: body["id"] for voucher_id, body in load.acknowledged.items()}
        reconciliation = server.get_json(f"/api/v1/programmes/{world.programme.id}/reconciliation", admin)
        assert reconciliation["ok"], [check for check in reconciliation["checks"] if not check["ok"]]
        ledger = server.get_json(f"/api/v1/programmes/{world.programme.id}/ledger", admin)
        assert ledger["redeemed_fen"] == face_value * len(scanned)
        verified = server.get_json("/api/v1/audit/verify", admin)
        assert verified["ok"], verified
        assert verified["first_broken_id"] is None, verified

        # 4. 5xx: only while the faults lasted (the database down, or just coming back), only as our JSON
        #    envelope; once PostgreSQL answers again the server recovers by itself (no stale pool).
        early = [entry for entry in load.five_xx if entry[0] < first_fault]
        late = [entry for entry in load.five_xx if entry[0] > database_back + RECOVERY_GRACE]
        assert early == [], early
        assert late == [], late
        assert all(error_code(body) in ("internal_error", "database_unavailable")
                   for _at, _status, body in load.five_xx), load.five_xx
        report["five_xx_during_faults"] = dict(Counter(status for _at, status, _body in load.five_xx))
        report["last_5xx_after_database_back_seconds"] = (
            round(max(at for at, _s, _b in load.five_xx) - database_back, 2) if load.five_xx else None)
        report["server_logged_5xx"] = len(server.server_side_5xx())
        report["ok"] = True
        return report
    finally:
        if load is not None:
            load.stop.set()
        try:
            ensure_postgres_running(maintenance)
        finally:
            server.stop()
            with contextlib.suppress(psycopg.Error):
                drop_database(url)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="crash-"))
    try:
        report = run(workdir)
    except AssertionError as failure:
        say(f"crash test FAILED: {failure}\n(gunicorn logs kept in {workdir})")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

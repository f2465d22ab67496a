"""Benchmark 1: redemption throughput and latency over HTTP, against a raw-SQL reference app.

Both servers run under the same gunicorn settings (the project's gunicorn.conf.py: 2 workers, access
log on; 4 threads per worker on PostgreSQL, and on SQLite 1, which makes gunicorn use its sync worker,
closing each connection after its answer) against the same database, one at a time:

- the app: `gunicorn wsgi:app`, the real `POST /api/v1/redemptions` with a voucher card token
  (vouchers.tokens.voucher_token) and a provider's bearer token;
- the reference: `gunicorn bench.reference_app:app`, a minimal Flask app doing the same database work
  in raw SQL (see reference_app.py).

The data is built through the service layer: a catalogue item, an active programme requiring a
choice, an approved and enrolled provider with its login, recipients through the CSV import, each
recipient's choice of that provider (one INSERT … SELECT), the month's vouchers through
`issue_monthly`, a bearer token through `issue_token`. Each server gets its own distinct vouchers
(enough for `redeem_max_rate` requests per second), so every request redeems a different voucher.

The load generator (loadgen.py, standard library) keeps `redeem_connections` keep-alive connections
busy for `redeem_warmup` seconds (not counted) and then `redeem_duration` seconds. Each of
`redeem_rounds` rounds runs the reference first, then the app (any table growth works against the
app, never for it); the figures are the medians over the rounds, so a burst of background load on a
shared machine moves one round, not the result. Afterwards the database must hold exactly as many
completed redemptions as 2xx answers, the audit chain must verify and the budget must reconcile (the
reference writes the same journal and audit rows as the app).

Reported: req/s, p50, p99 (client-side, ms) of each server, ratio = app req/s ÷ reference req/s, and
the CPU time the server processes (gunicorn master and workers, from /proc) spent per answered
request, which tells a CPU-bound server from one waiting on the database.
Targets: ratio ≥ 0.6, app p99 ≤ 100 ms.
"""

import math
import statistics
import time

from bench.common import TARGETS, Options, fmt, note, out, stage, table, verdict, write_result
from bench.datagen import REGION, current_period, recipient_csv, setup_programme
from bench.loadgen import build_request, load
from providers.service import enrolment, qualification, registry
from tests.support.apps import dispose
from tests.support.servers import Server
from vouchers.service import issuance

ITEM = ("BM-MEAL", 1200, 30)  # code, unit price (fen), monthly quota


def build_world(app, admin, *, recipients: int, now) -> dict:
    """The programme, provider, recipients, choices and vouchers; returns the bearer token and voucher ids."""
    from sqlalchemy import insert, literal, select

    from marketplace.auth import service as auth_service
    from marketplace.auth.models import User
    from marketplace.db import UTCDateTime, db, transaction
    from marketplace.demo import demo_credit_code
    from marketplace.programmes.models import Programme
    from marketplace.recipients import service as recipient_service
    from marketplace.recipients.models import Recipient
    from vouchers import tokens
    from vouchers.models import Choice, Voucher

    code, price, quota = ITEM
    programme_id = setup_programme(app, items=[ITEM], choice_required=True,
                                   budget_fen=recipients * quota * price * 2, now=now)
    with app.app_context():
        with transaction():
            programme = db.session.get(Programme, programme_id)
            provider = registry.register_provider(
                name="蒲江县鹤山街道社区养老服务中心", kind="social_organisation",
                credit_code=demo_credit_code("52", "MA6C2D1B"), legal_representative="张建华", phone="028-88550000",
                address="四川省成都市蒲江县鹤山街道", region_codes=[REGION], item_codes=[code], capacity=100_000,
                account={"username": "bench-provider", "password": "bench-provider-password"},
                actor=None, now=now).provider
            qualification.change_status(provider_id=provider.id, action="approve", reason="资质审核通过", actor=admin,
                                           now=now)
            enrolment.enrol(programme=programme, provider_id=provider.id, actor=admin, now=now)
            provider_id = provider.id
        with transaction():
            imported = recipient_service.import_recipients(text=recipient_csv(recipients), actor=admin, now=now)
        with transaction():
            db.session.execute(insert(Choice).from_select(
                ["recipient_id", "programme_id", "item_code", "provider_id", "chosen_at", "chosen_by"],
                select(Recipient.id, literal(programme_id), literal(code), literal(provider_id),
                       literal(now, UTCDateTime()), literal(admin.id))))
        with transaction():
            programme = db.session.get(Programme, programme_id)
            issued = issuance.issue_monthly(programme=programme, period=current_period(now), actor=admin,
                                                   now=now)
        with transaction():
            user = db.session.scalar(select(User).where(User.provider_id == provider_id))
            bearer, _row = auth_service.issue_token(user=user, kind="bearer", now=now)
        voucher_ids = db.session.scalars(select(Voucher.id).where(Voucher.status == "issued")
                                         .order_by(Voucher.id)).all()
        card_tokens = [tokens.voucher_token(voucher_id) for voucher_id in voucher_ids]
        db.session.remove()
    return {"programme_id": programme_id, "provider_id": provider_id, "bearer": bearer, "tokens": card_tokens,
            "recipients": imported.created, "vouchers": issued.vouchers}


def measure(server: Server, requests: list[bytes], start: int, *, connections: int, warmup: float,
            duration: float) -> tuple[dict, int, int]:
    """Start *server* (on the migrated database), warm it up, measure; returns (summary, next request index,
    2xx answers in all)."""
    server.start(migrate=False)
    try:
        warm, start = load(server.port, requests, connections=connections, duration=warmup, start=start)
        server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
        result, start = load(server.port, requests, connections=connections, duration=duration, start=start)
        server_cpu, client_cpu = server.cpu_seconds() - server_cpu, time.process_time() - client_cpu
    finally:
        server.stop()
    summary = result.summary()
    summary["warmup_ok"] = warm.ok
    # Where the time goes: the server's own CPU per answered request (the rest of a request's latency
    # is waiting: for the database, for locks, for a core), and the load generator's.
    summary["server_cpu_ms_per_request"] = round(1000 * server_cpu / result.ok, 3) if result.ok else None
    summary["loadgen_cpu_ms_per_request"] = round(1000 * client_cpu / result.ok, 3) if result.ok else None
    return summary, start, warm.ok + result.ok


def post_checks(app, programme_id: int) -> dict:
    from sqlalchemy import func, select

    from marketplace.audit.service import verify_chain
    from marketplace.db import db
    from marketplace.programmes import ledger
    from vouchers.models import Redemption

    with app.app_context():
        redemptions = db.session.scalar(select(func.count()).select_from(Redemption)
                                        .where(Redemption.status == "completed"))
        chain = verify_chain()
        reconciliation = ledger.reconcile(programme_id)
        db.session.remove()
    return {"redemptions_in_database": redemptions, "audit_chain_ok": chain.ok, "audit_events": chain.events,
            "reconciliation_ok": reconciliation["ok"],
            "failed_checks": [check["name"] for check in reconciliation["checks"] if not check["ok"]]}


def failed(summary: dict) -> int:
    """Requests without a 2xx answer: other statuses and broken connections."""
    return summary["errors"] + sum(count for status, count in summary["statuses"].items() if not status.startswith("2"))


def run(options: Options, backend: str) -> dict:
    duration, warmup = float(options.size("redeem_duration")), float(options.size("redeem_warmup"))
    connections, rounds = int(options.size("redeem_connections")), int(options.size("redeem_rounds"))
    per_server = math.ceil(options.size("redeem_max_rate") * (duration + warmup)) * rounds
    code, _price, quota = ITEM
    recipients = math.ceil(2 * per_server / quota)
    out(f"\n== 1. redemption over HTTP ({backend}): {connections} connections, {warmup:g}s warm-up + "
        f"{duration:g}s, {rounds} round(s)")
    with stage(options, backend, "redeem") as staged:
        world = build_world(staged.app, staged.admin, recipients=recipients, now=staged.now)
        dispose(staged.app)  # the servers have the database to themselves
        note(f"built {world['recipients']:,} recipients (CSV import), {world['vouchers']:,} vouchers (issue_monthly)")
        headers = {"Authorization": f"Bearer {world['bearer']}"}
        requests = [build_request("POST", "/api/v1/redemptions", {"voucher_token": token}, headers)
                    for token in world["tokens"]]
        half = len(requests) // 2
        pools = {"reference": requests[:half], "app": requests[half:]}
        cursors = {"reference": 0, "app": 0}
        answered = 0
        runs: dict[str, list[dict]] = {"reference": [], "app": []}
        for _round in range(rounds):
            for name, target in (("reference", "bench.reference_app:app"), ("app", "wsgi:app")):
                server = staged.server(name, target)
                summary, cursors[name], ok = measure(server, pools[name], cursors[name], connections=connections,
                                                     warmup=warmup, duration=duration)
                answered += ok
                runs[name].append(summary)
                note(f"{name:<9} {summary['req_per_s']:>8.1f} req/s  p50 {fmt(summary['p50_ms'])} ms  "
                     f"p99 {fmt(summary['p99_ms'])} ms  server CPU {fmt(summary['server_cpu_ms_per_request'], 2)} "
                     f"ms/request  failed {failed(summary)}")
                if summary["sample_failures"]:
                    note(f"{name}: sample failures {summary['sample_failures']}")
        checks = post_checks(staged.app, world["programme_id"])
        checks["answered_2xx"] = answered
        checks["consistent"] = (checks["redemptions_in_database"] == answered and checks["audit_chain_ok"]
                                and checks["reconciliation_ok"])

    def median(name, key):
        return statistics.median(run_[key] for run_ in runs[name] if run_[key] is not None)

    ref_rps, app_rps = median("reference", "req_per_s"), median("app", "req_per_s")
    ratio = app_rps / ref_rps if ref_rps else None
    app_p99 = median("app", "p99_ms")
    targets = {"ratio_min": TARGETS["redemption_ratio_min"], "p99_ms_max": TARGETS["redemption_p99_ms_max"]}
    met = {"ratio": ratio is not None and ratio >= targets["ratio_min"], "p99": app_p99 <= targets["p99_ms_max"]}
    rows = []
    for name in ("reference", "app"):
        rows.append([backend, name, fmt(median(name, "req_per_s")), fmt(median(name, "p50_ms")),
                     fmt(median(name, "p99_ms")), fmt(median(name, "server_cpu_ms_per_request"), 2),
                     sum(r["ok"] for r in runs[name]), sum(failed(r) for r in runs[name])])
    out(table(["backend", "server", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "2xx", "failed"], rows))
    out(f"ratio app/reference = {fmt(ratio, 2)} (target ≥ {targets['ratio_min']}: {verdict(met['ratio'])}); "
        f"app p99 = {fmt(app_p99)} ms (target ≤ {targets['p99_ms_max']:g}: {verdict(met['p99'])}); "
        f"consistency {verdict(checks['consistent'])}")
    if not checks["consistent"]:
        note(f"checks: {checks}")
    payload = {"runs": runs, "reference_req_per_s": ref_rps, "app_req_per_s": app_rps, "ratio": ratio,
               "app_p50_ms": median("app", "p50_ms"), "app_p99_ms": app_p99,
               "reference_p50_ms": median("reference", "p50_ms"), "reference_p99_ms": median("reference", "p99_ms"),
               "app_server_cpu_ms_per_request": median("app", "server_cpu_ms_per_request"),
               "reference_server_cpu_ms_per_request": median("reference", "server_cpu_ms_per_request"),
               "targets": targets, "met": met, "checks": checks,
               "world": {k: v for k, v in world.items() if k not in ("tokens", "bearer")}}
    write_result(options, "redemption", backend, payload)
    return {"benchmark": "1. redemption", "backend": backend,
            "figure": f"{fmt(app_rps)} vs {fmt(ref_rps)} req/s = {fmt(ratio, 2)}×; p99 {fmt(app_p99)} ms",
            "ok": met["ratio"] and met["p99"] and checks["consistent"]}

"""The benchmarks' smoke run (`python -m bench --smoke`) completes and writes its JSON results.

Runs every benchmark at tiny sizes on SQLite, and on PostgreSQL when the server of TEST_DATABASE_URL
answers (REQUIRE_POSTGRES=1 makes its absence a failure, as for the rest of the suite). The
benchmarks create their own `vm_bench_run_*` database on that server through the `postgres`
maintenance database and drop it afterwards; the `test` database is never touched, and their
servers listen on ports 18200–18299 only.

Missed targets do not fail this test (tiny sizes measure nothing): it checks that each benchmark
still runs end to end against the current code, that its consistency checks hold (the reference and
the app produce the same rows, settlements and rankings; every 2xx redemption is in the database and
the audit chain verifies), and that its results are written.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.databases import maintenance_url, postgres_unavailable_reason

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ("redemption", "issuance", "settlement", "rankings", "import", "statements", "console", "anomalies")


@pytest.mark.slow
def test_bench_smoke_runs_every_benchmark_and_writes_results(tmp_path):
    backends = ["sqlite"]
    reason = postgres_unavailable_reason()
    if reason is None:
        backends.append("postgresql")
    elif os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(reason)
    server = maintenance_url()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--backends", ",".join(backends), "--pg-url", server,
         "--results-dir", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-6000:]}"

    summary = json.loads((tmp_path / "summary-smoke.json").read_text())
    assert summary["failures"] == []
    assert {(row["benchmark"].split(" ", 1)[-1], row["backend"]) for row in summary["rows"]} >= {
        (label, backend) for label in ("redemption", "issuance", "settlement", "rankings", "import", "statements",
                                       "anomalies")
        for backend in backends}

    def result(name, backend):
        path = tmp_path / f"{name}-{backend}-smoke.json"
        assert path.exists(), f"{path.name} was not written"
        data = json.loads(path.read_text())
        assert data["mode"] == "smoke"
        assert data["backend"] == backend
        assert data["machine"]["nproc"] >= 1
        return data

    for backend in backends:
        redemption = result("redemption", backend)
        assert redemption["app_req_per_s"] > 0
        assert redemption["reference_req_per_s"] > 0
        assert redemption["ratio"] is not None
        assert redemption["app_p99_ms"] is not None
        assert redemption["checks"]["consistent"], redemption["checks"]

        issuance = result("issuance", backend)
        assert issuance["same_rows"]
        assert issuance["app_vouchers"] > 0

        settlement = result("settlement", backend)
        assert settlement["same"], settlement["mismatched_providers"]
        assert settlement["settled_redemptions"] > 0

        rankings = result("rankings", backend)
        assert rankings["aggregates_consistent"]
        assert rankings["same_order"]
        assert all(scope["api_p95_ms"] > 0 for scope in rankings["scopes"].values())

        imported = result("import", backend)
        assert imported["counts_ok"]

        statements = result("statements", backend)
        assert set(statements["exports"]) == {"reference", "csv", "xlsx"}
        assert all(export["rows"] == statements["lines"] for export in statements["exports"].values())

        anomalies = result("anomalies", backend)
        assert anomalies["same"], (anomalies["missing"], anomalies["extra"], anomalies["differing"])
        assert anomalies["flags"] > 0
        assert anomalies["linked_redemptions"] > 0

        console = result("console", backend)
        assert console["world"]["audit_chain_ok"]
        assert console["clean"], (console["server_5xx"], [(p["page"], p["statuses"], p["problems"])
                                                           for p in console["pages"]])
        assert console_pages(tmp_path) == {page["page"] for page in console["pages"] + console["skipped"]}
        assert all(entry["reason"] for entry in console["skipped"])
        for page in console["pages"]:
            assert page["requests"] > 0
            assert page["p95_ms"] > 0
            assert page["first_load_bytes"] >= page["later_bytes"] >= page["html_bytes"] > 0


def console_pages(folder: Path) -> set[str]:
    """Every console page the app has (bench/console.py must measure each one or say why not)."""
    from bench.console import console_rules
    from tests.support.apps import dispose, make_app

    app = make_app(f"sqlite:///{folder / 'routes.sqlite3'}", instance_path=folder / "instance")
    try:
        return {rule.rule for rule in console_rules(app)}
    finally:
        dispose(app)

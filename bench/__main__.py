"""`python -m bench`: run the benchmarks of issue 9, the console budgets of issue 15 and the detection of issue 18.

Each benchmark of issues 9 and 18 is compared with its reference; the console's (bench/console.py) with the
budgets of CONSOLE.md.

    .venv/bin/python -m bench                  # full sizes, SQLite and PostgreSQL (make bench)
    .venv/bin/python -m bench --smoke          # tiny sizes, well under a minute (make test runs it)
    .venv/bin/python -m bench --only redemption,rankings --backends postgresql
    .venv/bin/python -m bench --set redeem_duration=30 --set redeem_rounds=3

Options:
    --smoke              tiny sizes (SIZES["smoke"] in common.py)
    --backends LIST      sqlite,postgresql (default both; PostgreSQL is skipped with the reason
                         printed when its server does not answer, unless --require-postgres)
    --only LIST          redemption, issuance, settlement, rankings, import, statements, console, anomalies
    --pg-url URL         a PostgreSQL server (any database on it; benchmarks create and drop their own
                         `vm_bench_*` databases through `postgres`). Default: TEST_DATABASE_URL's
                         server, else postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    --results-dir DIR    where the JSON results go (default bench/results/)
    --set NAME=VALUE     override one size
    --strict             exit 1 when a target is missed (by default only errors fail the run)

Every benchmark prints its table; a summary table closes the run and is written to
`summary-<mode>.json`. The exit status is 1 when a benchmark raised (or, with --strict, missed).
"""

import argparse
import contextlib
import json
import sys
import time
import traceback
from pathlib import Path

from bench.common import (
    BACKENDS,
    SIZES,
    Options,
    default_pg_server,
    machine_info,
    out,
    run_database,
    table,
    verdict,
)
from tests.support.databases import postgres_unavailable_reason

BENCHMARKS = ("redemption", "issuance", "settlement", "rankings", "import", "statements", "console", "anomalies")


def _runner(name: str):
    if name == "redemption":
        from bench import redemption
        return redemption.run
    if name == "issuance":
        from bench import issuance
        return issuance.run
    if name == "settlement":
        from bench import settlement
        return settlement.run
    if name == "rankings":
        from bench import rankings
        return rankings.run
    if name == "import":
        from bench import imports
        return imports.run_import
    if name == "console":
        from bench import console
        return console.run
    if name == "anomalies":
        from bench import anomalies
        return anomalies.run
    from bench import imports
    return imports.run_statements


def _value(raw: str):
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def parse(argv: list[str]) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--require-postgres", action="store_true")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "full"
    sizes = dict(SIZES[mode])
    for assignment in args.set:
        name, _, raw = assignment.partition("=")
        if name not in sizes:
            parser.error(f"unknown size {name!r}; known: {', '.join(sizes)}")
        sizes[name] = _value(raw)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    only = tuple(b.strip() for b in args.only.split(",") if b.strip())
    for name in backends:
        if name not in BACKENDS:
            parser.error(f"unknown backend {name!r}")
    for name in only:
        if name not in BENCHMARKS:
            parser.error(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    options = Options(mode=mode, backends=backends, pg_url=args.pg_url or default_pg_server(), sizes=sizes,
                      only=only)
    if args.results_dir:
        options.results_dir = Path(args.results_dir).resolve()
    return options, args


def run_all(options: Options, backends: list[str], summary: list, failures: list) -> None:
    for name in options.only:
        for backend in backends:
            began = time.monotonic()
            try:
                row = _runner(name)(options, backend)
            except Exception as error:  # noqa: BLE001 - reported, and the run goes on
                traceback.print_exc()
                failures.append(f"{name}/{backend}: {type(error).__name__}: {error}")
                row = {"benchmark": name, "backend": backend, "figure": f"ERROR {type(error).__name__}", "ok": None,
                       "error": str(error)}
            row["seconds"] = round(time.monotonic() - began, 1)
            summary.append(row)


def main(argv: list[str] | None = None) -> int:
    options, args = parse(sys.argv[1:] if argv is None else argv)
    backends = list(options.backends)
    if "postgresql" in backends:
        reason = postgres_unavailable_reason(options.pg_url)
        if reason:
            if args.require_postgres:
                out(f"PostgreSQL required: {reason}")
                return 1
            out(f"skipping PostgreSQL: {reason}")
            backends.remove("postgresql")
    info = machine_info(options.pg_url if "postgresql" in backends else None)
    out(f"bench ({options.mode}): {info['nproc']} cores, {info['memory_gib']} GiB, Python {info['python']}, "
        f"SQLite {info['sqlite']}" + (f", PostgreSQL {info['postgresql']}" if "postgresql" in info else "")
        + f"; load average {' '.join(info['loadavg'])}")
    started = time.monotonic()
    summary, failures = [], []
    with contextlib.ExitStack() as stack:
        if "postgresql" in backends:
            stack.enter_context(run_database(options))  # one database per run, a schema per benchmark
        run_all(options, backends, summary, failures)
    out("\n== summary")
    out(table(["benchmark", "backend", "result", "target", "took s"],
              [[row["benchmark"], row["backend"], row["figure"], verdict(row["ok"]) if "error" not in row else "ERROR",
                row["seconds"]] for row in summary]))
    out(f"total {time.monotonic() - started:.0f}s")
    options.results_dir.mkdir(parents=True, exist_ok=True)
    (options.results_dir / f"summary-{options.mode}.json").write_text(json.dumps(
        {"mode": options.mode, "machine": info, "sizes": options.sizes, "rows": summary, "failures": failures},
        indent=2, ensure_ascii=False, default=str) + "\n")
    if failures:
        out("errors: " + "; ".join(failures))
        return 1
    if args.strict and any(row["ok"] is False for row in summary):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

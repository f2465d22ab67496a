"""gunicorn settings for `make run` and deployments; override any of them with GUNICORN_CMD_ARGS."""

import glob
import os
import shutil
import tempfile

COUNTERS_URI = os.environ.get("RATELIMIT_STORAGE_URI") or "memory://"
# The login-failure counters (marketplace.auth.service) hold only if every worker sees the same ones.
# memory:// (the default, and what `make run` uses) lives inside one process, so then there is one
# worker; with a shared store such as Redis (RATELIMIT_STORAGE_URI=redis://…) there are two.
COUNTERS_SHARED = not COUNTERS_URI.startswith(("memory://", "async+memory://"))

# GET /metrics adds up every worker's samples from files in PROMETHEUS_MULTIPROC_DIR (marketplace.metrics).
# Set it to a folder of your own (e.g. /run/marketplace/metrics, emptied here at every start) to let
# cron's CLI commands (issuance and settlement durations, audit verifications) add theirs; unset, each
# start makes a temporary folder and removes it at exit. It must be in the environment before a worker
# imports prometheus_client: this file is read by the master, before it loads the app.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
OWNED_METRICS_DIR_ENV = "MARKETPLACE_OWNED_METRICS_DIR"  # survives a configuration reload (HUP)
if not os.environ.get(METRICS_DIR_ENV):
    os.environ[METRICS_DIR_ENV] = os.environ[OWNED_METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="marketplace-metrics-")

bind = "127.0.0.1:8000"
workers = 2 if COUNTERS_SHARED else 1
# PostgreSQL: threads overlap each request's round trips to the database. SQLite has one writer per
# database file: extra threads would only queue on its lock (polling in its busy handler, which
# sleeps up to 100 ms at a time) and fight over the GIL while holding it, so each worker takes one
# request at a time. docs/performance.md has the measurements.
threads = 4 if os.environ.get("DATABASE_URL", "").startswith("postgresql") else 1
timeout = 60
# Paths only, never query strings: some carry short-lived tokens.
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


def on_starting(server):
    """Start the metrics afresh; warn when several workers would each keep their own login-failure counters."""
    metrics_dir = os.environ[METRICS_DIR_ENV]
    os.makedirs(metrics_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(metrics_dir, "*.db")):  # a previous run's samples
        os.remove(stale)
    if server.cfg.workers > 1 and not COUNTERS_SHARED:
        server.log.warning(
            "%s workers with RATELIMIT_STORAGE_URI=memory://: each worker counts failed logins on its own, "
            "so a guesser gets up to %s times the configured limits. Set RATELIMIT_STORAGE_URI to a store every "
            "worker shares (redis://host:6379) or run one worker.", server.cfg.workers, server.cfg.workers)


def child_exit(server, worker):
    """A worker died or was replaced: drop its live gauges (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics folder this file made (never one given in the environment)."""
    owned = os.environ.get(OWNED_METRICS_DIR_ENV)
    if owned and owned == os.environ.get(METRICS_DIR_ENV):
        shutil.rmtree(owned, ignore_errors=True)

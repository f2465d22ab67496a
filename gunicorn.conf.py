"""gunicorn settings for `make run` and deployments; override any of them with GUNICORN_CMD_ARGS."""

import os

bind = "127.0.0.1:8000"
workers = 2
# PostgreSQL: threads overlap each request's round trips to the database. SQLite has one writer per
# database file: extra threads would only queue on its lock (polling in its busy handler, which
# sleeps up to 100 ms at a time) and fight over the GIL while holding it, so each worker takes one
# request at a time. docs/performance.md has the measurements.
threads = 4 if os.environ.get("DATABASE_URL", "").startswith("postgresql") else 1
timeout = 60
# Paths only, never query strings: some carry short-lived tokens.
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'

"""Benchmarks of the voucher marketplace: `python -m bench [--smoke]` (see bench/README.md).

Each benchmark measures the application against a reference measured in the same run on the same
machine (raw SQL, a COPY, a minimal Flask app), prints a table and writes JSON under bench/results/.
Ratios are the figures that count: the machines these run on are small and noisy.

Modules:

    common.py         options, sizes (smoke and full), each benchmark's stage (its database, app and
                      servers, built with tests/support/), results, tables
    datagen.py        bulk data (COPY on PostgreSQL, executemany on SQLite) for the large benchmarks
    loadgen.py        a standard-library asyncio HTTP/1.1 keep-alive load generator
    reference_app.py  the minimal Flask app redeeming in raw SQL (the reference of benchmark 1)
    redemption.py     1. redemption throughput and latency over HTTP (gunicorn, 2 workers)
    issuance.py       2. monthly issuance vs COPY of the same rows
    settlement.py     3. monthly settlement vs raw SQL aggregation and update
    rankings.py       4. rankings latency with 2,000 providers and 1,000,000 ratings
    imports.py        5. recipient CSV import, and statement export memory (statement_worker.py)
"""

"""The one support package of the tests and the benchmarks (`python -m bench` imports it too).

Modules (import the one you need; this package imports none of them by itself):

    databases.py  the PostgreSQL URL of the tests (TEST_DATABASE_URL) and its psycopg DSN, whether
                  PostgreSQL answers (and why not), resetting a schema, emptying the tables between
                  tests, fresh databases of one's own: a PostgreSQL database created and dropped
                  through the `postgres` maintenance database, a schema inside a database, an
                  SQLite file
    apps.py       app settings (testing, or production with given secrets), new secrets, building an
                  app in this process (optionally migrated) and disposing of it
    servers.py    free ports in a given range, child processes and their CPU time, `Server`: a
                  real gunicorn serving the app in its own process group (start, health, logs,
                  HTTP calls, stop), and `LiveServer`: an app of this process served by werkzeug
                  in a thread, recording its replies (the browser tests' server)
    browsers.py   the system's Chromium for the browser tests: where it is, whether it can run
                  (and why not), its version
    races.py      threads released together by a barrier: `race` for plain callables (HTTP calls,
                  or work of your own), `race_transactions` for service calls, each in its own app
                  context and transaction
    scenario.py   the scenario builder (`Builder`, behind the `build` fixture): every object made
                  through the service layer, one vocabulary for every test
    dates.py      calendar arithmetic: months as `YYYY-MM` periods, their first and last days

Nothing here is a fixture: tests/conftest.py holds the fixtures and builds them from these.
"""

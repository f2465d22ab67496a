"""Databases for tests and benchmarks: the test server, its reachability, and databases of one's own.

The tests' PostgreSQL is TEST_DATABASE_URL (default: the local `test` database). Whatever needs a
database nobody else uses creates one and removes it afterwards:

- `temporary_database(prefix)`: a new PostgreSQL database `<prefix>_<hex>` on the same server,
  created and dropped (WITH FORCE) through the `postgres` maintenance database;
- `temporary_schema(database_url, prefix)`: a new schema inside an existing database, made the
  connection's search_path through the URL (`?options=-csearch_path=…`); creating and dropping a
  schema is instant, while every DROP DATABASE forces a checkpoint of the whole cluster;
- `temporary_sqlite(folder, prefix)`: a new SQLite file (and its -wal, -shm and -writer files);
- `fresh_database(backend, folder, …)`: one of those for the backend.

    with fresh_database("postgresql", tmp_path, prefix="vm_server") as url:
        ...
"""

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import make_url, text

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# Tables whose rows are reference data seeded by the migrations: never emptied between tests.
REFERENCE_TABLES = {"alembic_version", "audit_head", "service_category", "negative_list_rule"}
CONNECT_TIMEOUT = 10


def pg_url() -> str:
    """The tests' PostgreSQL database (SQLAlchemy URL): TEST_DATABASE_URL, else the local `test`."""
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)


def psycopg_dsn(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://…`) as psycopg takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def maintenance_url(url: str | None = None) -> str:
    """The `postgres` maintenance database on the server of *url* (default: the tests' server)."""
    return make_url(url or pg_url()).set(database="postgres").render_as_string(hide_password=False)


def postgres_unavailable_reason(url: str | None = None) -> str | None:
    """Why PostgreSQL at *url* (default: the tests' database) cannot be used, or None when it answers."""
    url = url or pg_url()
    try:
        psycopg.connect(psycopg_dsn(url), connect_timeout=3).close()
    except psycopg.Error as error:
        return f"PostgreSQL at {make_url(url).render_as_string()} is not reachable: {error}".strip()
    return None


def reset_postgres_schema(url: str) -> None:
    """Drop the `public` schema of *url* with everything in it and create it again, empty."""
    with psycopg.connect(psycopg_dsn(url), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def empty_database(application) -> None:
    """Empty every table of *application*'s database but the reference data; reset the login counters."""
    from marketplace.audit.models import GENESIS_HASH
    from marketplace.db import db

    with application.app_context():
        db.session.remove()
        tables = [t for t in reversed(db.metadata.sorted_tables) if t.name not in REFERENCE_TABLES]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"TRUNCATE {', '.join(t.name for t in tables)} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    conn.execute(table.delete())
            conn.execute(text("UPDATE audit_head SET last_id = 0, last_hash = :genesis"), {"genesis": GENESIS_HASH})
        application.extensions["rate_limiter"].storage.reset()


# --- databases of one's own ------------------------------------------------------------------------

def _unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


def create_database(prefix: str, *, server: str | None = None) -> str:
    """Create an empty database `<prefix>_<hex>` on the server of *server* (default: the tests' server).

    Returns its SQLAlchemy URL. Drop it with drop_database().
    """
    name = _unique(prefix)
    with psycopg.connect(psycopg_dsn(maintenance_url(server)), autocommit=True,
                         connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(server or pg_url()).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop the database of *url*, cutting off whoever is still connected."""
    with psycopg.connect(psycopg_dsn(maintenance_url(url)), autocommit=True,
                         connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(make_url(url).database)))


@contextlib.contextmanager
def temporary_database(prefix: str, *, server: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database for the block (see create_database); dropped afterwards."""
    url = create_database(prefix, server=server)
    try:
        yield url
    finally:
        drop_database(url)


@contextlib.contextmanager
def temporary_schema(database_url: str, prefix: str) -> Iterator[str]:
    """A new schema `<prefix>_<hex>` in *database_url* for the block; yields a URL whose search_path is it.

    Migrations, apps, gunicorn and raw psycopg connections given that URL all work inside the schema.
    """
    schema = _unique(prefix)
    dsn = psycopg_dsn(database_url)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield make_url(database_url).update_query_dict(
            {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextlib.contextmanager
def temporary_sqlite(folder: Path, prefix: str) -> Iterator[str]:
    """A new SQLite file `<prefix>-<hex>.sqlite3` in *folder*; removed afterwards with its companions."""
    path = Path(folder) / f"{prefix}-{secrets.token_hex(4)}.sqlite3"
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm", "-writer"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{path}{suffix}").unlink()


@contextlib.contextmanager
def fresh_database(backend: str, folder: Path, *, prefix: str, server: str | None = None,
                   within: str | None = None) -> Iterator[str]:
    """A database nobody else uses, removed afterwards; yields its SQLAlchemy URL.

    SQLite: a new file in *folder*. PostgreSQL: a new schema in the database *within* when given,
    else a new database on the server of *server* (default: the tests' server).
    """
    if backend == "sqlite":
        context = temporary_sqlite(folder, prefix)
    elif within:
        context = temporary_schema(within, prefix)
    else:
        context = temporary_database(prefix, server=server)
    with context as url:
        yield url


# --- Redis ------------------------------------------------------------------------------------------

# Login-failure counters in Redis: tests give them a key prefix of their own (RATELIMIT_KEY_PREFIX), so
# suites sharing the server never reset or read each other's counters.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_unavailable_reason() -> str | None:
    """Why Redis cannot be used here, or None."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        return f"Redis at {REDIS_URL} is not reachable: {error}"
    return None

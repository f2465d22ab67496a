"""Database plumbing: the declarative base, UTC timestamps, the one transaction boundary, SQLite set-up.

Concurrency model (both backends):
- PostgreSQL runs READ COMMITTED; every state change that could race is a guarded UPDATE
  (`... WHERE status = 'issued'`, `... WHERE available >= :amount`) or is protected by a unique
  constraint, so correctness never depends on SELECT ... FOR UPDATE alone.
- SQLite ignores FOR UPDATE. It has one writer at a time. A transaction that may write (requests
  other than GET/HEAD/OPTIONS, CLI commands) takes the write lock with BEGIN IMMEDIATE just before
  its first statement that writes, in turn with the other writers (QueuedSQLiteConnection). Until
  then each read sees the latest commit, as under PostgreSQL's READ COMMITTED; from then on the
  transaction is alone, so two writers never both read-then-upgrade and deadlock, and the lock is
  held only while there is writing to do. The same guarded UPDATEs give the same answers as on
  PostgreSQL. A transaction that only reads (GET) sees one snapshot (plain BEGIN).
"""

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Engine, MetaData, event, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# expire_on_commit=False: a route serialises what its service returned after the commit without
# re-reading every row (and, on SQLite, without opening another write transaction to do so).
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


class UTCDateTime(TypeDecorator):
    """An instant stored in UTC; always returned timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC instant is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_date(instant: datetime) -> date:
    """The calendar date of *instant* where the programmes run (LOCAL_TIMEZONE, Asia/Shanghai by default).

    Instants are stored in UTC, but a voucher valid "until 31 March" is valid until midnight in 蒲江县,
    not in Greenwich.
    """
    return instant.astimezone(ZoneInfo(current_app.config["LOCAL_TIMEZONE"])).date()


@contextmanager
def transaction() -> Iterator[None]:
    """Run the block as one database transaction: commit when it ends, roll back when it raises.

    This is the only place that commits. Nested uses join the outermost transaction, so a service
    called from inside another service's transaction just works.
    """
    session = db.session
    depth = session.info.get("transaction_depth", 0)
    session.info["transaction_depth"] = depth + 1
    try:
        yield
        if depth == 0:
            session.commit()
    except BaseException:
        if depth == 0:
            session.rollback()
        raise
    finally:
        session.info["transaction_depth"] = depth


_INSERTS_IGNORING_CONFLICTS: dict = {}


def insert_ignoring_conflicts(table, *returning):
    """`INSERT … ON CONFLICT DO NOTHING [RETURNING *returning*]` into *table* for the current backend.

    A row that collides with a unique index is skipped instead of failing (which on PostgreSQL would
    abort the transaction); the rows RETURNING gives back are the ones inserted. (Count those: the
    psycopg driver reports no rowcount for it.) Built once per table, columns and backend, so hot
    paths may use it freely.
    """
    dialect = db.session.get_bind().dialect.name
    key = (table, returning, dialect)
    if key not in _INSERTS_IGNORING_CONFLICTS:
        dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = dialect_insert(table).on_conflict_do_nothing()
        _INSERTS_IGNORING_CONFLICTS[key] = statement.returning(*returning) if returning else statement
    return _INSERTS_IGNORING_CONFLICTS[key]


def insert_from_select(statement, rows):
    """`INSERT … SELECT` whose target columns are the labels of *rows*' columns, so each value sits
    beside its name instead of in a list of names kept in step by position."""
    return statement.from_select(list(rows.selected_columns.keys()), rows)


def whole_page(items: list) -> dict:
    """The list envelope around *items* that are all there is (one page holding everything)."""
    return {"items": items, "page": 1, "per_page": len(items), "total": len(items)}


def paginate(statement, *, page: int, per_page: int) -> dict:
    """Return one page of *statement*'s rows in the list envelope (docs/domain.md#api-conventions)."""
    total = db.session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    items = db.session.scalars(statement.limit(per_page).offset((page - 1) * per_page)).all()
    return {"items": items, "page": page, "per_page": per_page, "total": total}


# Whether transactions started now may write. Set per request from its HTTP method (GET and HEAD
# never write); CLI commands and services called directly keep the default, which is to write.
_write_intent: ContextVar[bool] = ContextVar("write_intent", default=True)


def writes(view):
    """Mark a GET view that may write (it records an audit event): its request's transactions take SQLite's
    write lock at their first write, as those of POSTs do, instead of reading one snapshot they cannot upgrade."""
    view.may_write = True
    return view


def set_write_intent(may_write: bool):
    return _write_intent.set(may_write)


def reset_write_intent(token) -> None:
    _write_intent.reset(token)


@contextmanager
def read_only() -> Iterator[None]:
    """Transactions begun in the block only read: on SQLite they take no write lock (plain BEGIN).

    For CLI commands that only read, which would otherwise block every writer while they run.
    """
    token = _write_intent.set(False)
    try:
        yield
    finally:
        _write_intent.reset(token)


def configure_engine(engine: Engine, *, busy_timeout_ms: int, synchronous: str = "FULL") -> None:
    """Give SQLite WAL, foreign keys, a busy timeout, durable commits (*synchronous*: FULL or NORMAL)
    and a write lock taken in turn at the first write."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take transaction control away from the sqlite3 module; the "begin" hook below opens them.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute(f"PRAGMA synchronous={'NORMAL' if synchronous == 'NORMAL' else 'FULL'}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # A transaction that only reads sees one snapshot. One that may write takes the write lock
        # only at its first write (below): until then each read sees the latest commit.
        if not _write_intent.get():
            connection.exec_driver_sql("BEGIN")

    @event.listens_for(engine, "before_cursor_execute")
    def _lock_before_first_write(connection, cursor, statement, _parameters, _context, _executemany):
        if not _write_intent.get() or statement.lstrip()[:6].upper() in READ_PREFIXES:
            return
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection.in_transaction:
            return
        queued = isinstance(dbapi_connection, QueuedSQLiteConnection)
        if queued:
            dbapi_connection.wait_for_write_turn(timeout=busy_timeout_ms / 1000)
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except BaseException:
            if queued:
                dbapi_connection.end_write_turn()
            raise


# Statements that never write; anything else (INSERT, UPDATE, DELETE, SAVEPOINT, WITH …, DDL) takes
# SQLite's write lock first.
READ_PREFIXES = frozenset({"SELECT", "PRAGMA"})


class QueuedSQLiteConnection(sqlite3.Connection):
    """A sqlite3 connection whose write transactions take turns through a lock file beside the database.

    SQLite lets one writer in at a time and makes the others poll: its busy handler sleeps 1, 2, 5,
    10 … 100 ms between tries, so under load a writer often sleeps long after the lock came free
    (docs/performance.md: +31% redemptions per second and a p99 of 26 ms instead of 147 ms). Before
    BEGIN IMMEDIATE, the writers of every thread and process take an exclusive flock on
    `<database>-writer`, polled every 0.2 ms, and hand it back the moment their transaction ends. The
    flock only orders the writers; SQLite's own lock still guarantees one writer, so a program that
    writes without it (the sqlite3 shell, say) is merely not queued. After the busy timeout without a
    turn, the transaction begins anyway and SQLite's locking decides (waiting that long again at most).
    Set as the connection factory of every file database in `config.finalise`.
    """

    POLL_SECONDS = 0.0002

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self._turn_fd: int | None = None
        self._has_turn = False
        name = str(database)
        if name and name != ":memory:" and not name.startswith("file:"):
            self._turn_fd = os.open(f"{name}-writer", os.O_RDWR | os.O_CREAT, 0o600)

    def wait_for_write_turn(self, *, timeout: float) -> None:
        if self._turn_fd is None or self._has_turn:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._turn_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(self.POLL_SECONDS)
            else:
                self._has_turn = True
                return

    def end_write_turn(self) -> None:
        if self._has_turn:
            self._has_turn = False
            fcntl.flock(self._turn_fd, fcntl.LOCK_UN)

    def commit(self):
        try:
            super().commit()
        finally:
            self.end_write_turn()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self.end_write_turn()

    def close(self):
        try:
            super().close()
        finally:
            self.end_write_turn()
            if self._turn_fd is not None:
                os.close(self._turn_fd)
                self._turn_fd = None

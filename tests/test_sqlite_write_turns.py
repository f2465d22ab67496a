"""SQLite writers take turns through a lock file (marketplace.db.QueuedSQLiteConnection).

SQLite only, by nature: PostgreSQL has no database-wide write lock to queue for. What matters: a
second writer waits for the first to end and then proceeds (no "database is locked"), the turn is
given back by commit, rollback and close, readers never queue, a stuck turn cannot block anyone for
longer than the busy timeout, and the app's SQLite engine uses it — taking the write lock at a
transaction's first write, not at its first read.
"""

import fcntl
import os
import sqlite3
import threading
import time

import pytest
from flask_migrate import upgrade
from sqlalchemy import text

from marketplace.app import create_app
from marketplace.db import QueuedSQLiteConnection, db, reset_write_intent, set_write_intent, transaction
from tests.support.apps import app_config


def connect(path, *, busy_timeout: float = 5.0) -> QueuedSQLiteConnection:
    connection = sqlite3.connect(path, factory=QueuedSQLiteConnection, isolation_level=None,
                                 check_same_thread=False, timeout=busy_timeout)
    connection.execute("PRAGMA journal_mode=WAL")
    return connection


def begin_write(connection: QueuedSQLiteConnection, timeout: float = 5.0) -> None:
    """What the engine's begin hook does for a writing transaction."""
    connection.wait_for_write_turn(timeout=timeout)
    connection.execute("BEGIN IMMEDIATE")


def turn_is_free(path) -> bool:
    fd = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "turns.sqlite3"
    setup = connect(path)
    setup.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER)")
    setup.execute("INSERT INTO counter VALUES (1, 0)")
    setup.close()
    return path


def test_a_second_writer_waits_for_the_first_to_end_and_then_proceeds(database):
    # No busy handler on the second: without its turn it would fail at once with "database is locked".
    first, second = connect(database), connect(database, busy_timeout=0)
    begin_write(first)
    first.execute("UPDATE counter SET value = value + 1")
    events = []

    def write():
        begin_write(second)
        events.append("second began")
        second.execute("UPDATE counter SET value = value + 1")
        second.commit()

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.2)
    events.append("first commits")
    first.commit()
    thread.join(timeout=10)

    assert events == ["first commits", "second began"]
    assert first.execute("SELECT value FROM counter").fetchone() == (2,)


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
def test_the_turn_is_given_back_when_the_transaction_ends(database, end):
    connection = connect(database)
    begin_write(connection)
    assert not turn_is_free(database)

    getattr(connection, end)()

    assert turn_is_free(database)


def test_readers_never_wait_for_a_turn(database):
    writer, reader = connect(database), connect(database)
    begin_write(writer)
    writer.execute("UPDATE counter SET value = 41")

    reader.execute("BEGIN")
    assert reader.execute("SELECT value FROM counter").fetchone() == (0,)  # WAL: the last committed value
    reader.commit()
    writer.commit()


def test_a_stuck_turn_holds_nobody_longer_than_the_timeout(database):
    stuck = os.open(f"{database}-writer", os.O_RDWR)
    fcntl.flock(stuck, fcntl.LOCK_EX)
    connection = connect(database)
    try:
        began = time.monotonic()
        begin_write(connection, timeout=0.2)  # no turn comes: SQLite's own lock (free) decides
        waited = time.monotonic() - began
        connection.execute("UPDATE counter SET value = 7")
        connection.commit()
    finally:
        os.close(stuck)
    assert 0.2 <= waited < 2


def test_a_memory_database_has_no_lock_file(tmp_path):
    connection = sqlite3.connect(":memory:", factory=QueuedSQLiteConnection)
    connection.wait_for_write_turn(timeout=1)  # nothing to queue for
    connection.close()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def sqlite_app(tmp_path):
    application = create_app(app_config(f"sqlite:///{tmp_path / 'app.sqlite3'}",
                                        INSTANCE_PATH=str(tmp_path / "instance")))
    with application.app_context():
        upgrade()
    yield application, tmp_path / "app.sqlite3"
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_writing_transaction_takes_the_turn_at_its_first_write_and_a_reading_one_never(sqlite_app):
    application, path = sqlite_app
    bump = text("UPDATE audit_head SET last_id = last_id WHERE id = 1")
    with application.app_context():
        intent = set_write_intent(False)
        try:
            with transaction():
                db.session.execute(text("SELECT 1"))
                assert isinstance(db.session.connection().connection.dbapi_connection, QueuedSQLiteConnection)
                assert turn_is_free(path)
        finally:
            reset_write_intent(intent)
        with transaction():
            db.session.execute(text("SELECT last_id FROM audit_head"))
            assert turn_is_free(path)  # reading first: no lock yet
            db.session.execute(bump)
            assert not turn_is_free(path)  # the first write took SQLite's write lock, in turn
        assert turn_is_free(path)


def test_reads_before_the_first_write_see_the_latest_commit_and_the_rest_is_one_transaction(sqlite_app):
    application, path = sqlite_app
    head = text("SELECT last_id FROM audit_head WHERE id = 1")
    other, blocked = connect(path), connect(path, busy_timeout=0)
    try:
        with application.app_context():
            with transaction():
                before = db.session.execute(head).scalar()
                begin_write(other)  # another writer commits between our read and our first write
                other.execute("UPDATE audit_head SET last_id = last_id + 10 WHERE id = 1")
                other.commit()
                assert db.session.execute(head).scalar() == before + 10  # as under READ COMMITTED
                db.session.execute(text("UPDATE audit_head SET last_id = last_id + 1 WHERE id = 1"))
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    blocked.execute("BEGIN IMMEDIATE")  # from the first write on, nobody else writes
            with transaction():
                assert db.session.execute(head).scalar() == before + 11
                db.session.execute(text("UPDATE audit_head SET last_id = :n WHERE id = 1"), {"n": before})
    finally:
        other.close()
        blocked.close()

"""`flask --app wsgi backup PATH`: what it writes, what it refuses, and why SQLite's online backup.

The restore drill under load (a real gunicorn redeeming while the backup runs, then the backup restored
into a fresh database and checked) is tests/test_backup_restore.py.
"""

import shutil
import sqlite3
import stat
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from marketplace.backup import BackupFailed, backup_database, human_size
from tests.support.commands import said

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def only_on(backend, wanted):
    if backend != wanted:
        pytest.skip(f"{wanted} only")


def test_backup_into_a_folder_writes_a_new_file_named_for_the_instant_readable_by_its_owner(app, backend, runner,
                                                                                            make_user, tmp_path):
    make_user(role="admin", username="kept.admin")

    result = runner.invoke(args=["backup", str(tmp_path)])

    assert result.exit_code == 0, result.output
    [written] = list(tmp_path.iterdir())
    assert written.name.startswith("marketplace-")
    assert written.suffix == (".sqlite3" if backend == "sqlite" else ".dump")
    assert f"wrote {written} (" in result.output
    assert f"{written.stat().st_size} bytes" in result.output
    assert "restore:" in result.output
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    if backend == "sqlite":
        with sqlite3.connect(written) as copy:
            assert copy.execute("SELECT username FROM user_account").fetchall() == [("kept.admin",)]
            assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one self-contained file
        assert not Path(f"{written}-wal").exists()
    else:
        listing = subprocess.run(["pg_restore", "--list", str(written)], capture_output=True, text=True, check=True)
        assert " TABLE DATA public redemption " in listing.stdout
        users = subprocess.run(["pg_restore", "--data-only", "--table", "user_account", "--file", "-", str(written)],
                               capture_output=True, text=True, check=True)
        assert "\tkept.admin\t" in users.stdout


def test_backup_to_a_file_name_writes_that_file(app, runner, tmp_path):
    target = tmp_path / "nightly.bak"
    result = runner.invoke(args=["backup", str(target)])
    assert result.exit_code == 0, result.output
    assert target.is_file()
    assert [path.name for path in tmp_path.iterdir()] == ["nightly.bak"]  # no partial file left beside it


def test_backup_never_overwrites_a_file(app, runner, tmp_path):
    target = tmp_path / "nightly.bak"
    target.write_text("last night's")
    result = runner.invoke(args=["backup", str(target)])
    assert result.exit_code == 1
    assert len(said(result.output)) == 1
    assert "already exists" in result.output
    assert target.read_text() == "last night's"


def test_backup_into_a_missing_folder_is_refused_in_one_line(app, runner, tmp_path):
    result = runner.invoke(args=["backup", str(tmp_path / "nowhere" / "x.bak")])
    assert result.exit_code == 1
    assert said(result.output) == [f"Error: backup failed: the folder {tmp_path / 'nowhere'} does not exist."]


def test_without_pg_dump_the_backup_says_so_in_one_line(app, backend, runner, tmp_path, monkeypatch):
    only_on(backend, "postgresql")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    result = runner.invoke(args=["backup", str(tmp_path)])
    assert result.exit_code == 1
    assert len(said(result.output)) == 1
    assert "pg_dump is not installed" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_failing_pg_dump_is_reported_in_one_line_without_the_password(backend, tmp_path):
    only_on(backend, "postgresql")
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    url = "postgresql+psycopg://postgres:s3cret-pass@127.0.0.1:5432/no_such_database_for_backup"
    with pytest.raises(BackupFailed) as refused:
        backup_database(url, tmp_path, now=NOW)
    message = str(refused.value)
    assert message.startswith("pg_dump failed: ")
    assert "no_such_database_for_backup" in message
    assert "s3cret-pass" not in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_missing_sqlite_file_is_refused_and_not_created(tmp_path):
    missing = tmp_path / "gone.sqlite3"
    with pytest.raises(BackupFailed, match="there is no SQLite database at"):
        backup_database(f"sqlite:///{missing}", tmp_path / "out", now=NOW)
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


# --- SQLite's online backup --------------------------------------------------------------------------

def wal_database(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")  # commits stay in the -wal file, as between checkpoints
    connection.execute("CREATE TABLE IF NOT EXISTS movement (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)")
    return connection


def test_the_backup_holds_commits_still_in_the_wal_file_which_a_file_copy_misses(tmp_path):
    source = tmp_path / "live.sqlite3"
    live = wal_database(source)  # stays open, like the app's pool: nothing checkpoints the -wal into the file
    live.execute("INSERT INTO movement (amount) VALUES (1), (2), (3)")
    assert Path(f"{source}-wal").stat().st_size > 0

    made = backup_database(f"sqlite:///{source}", tmp_path / "backup.sqlite3", now=NOW)
    shutil.copyfile(source, tmp_path / "naive-copy.sqlite3")

    with sqlite3.connect(made.path) as copy:
        assert copy.execute("SELECT sum(amount) FROM movement").fetchone() == (6,)
    with sqlite3.connect(tmp_path / "naive-copy.sqlite3") as naive:
        assert naive.execute("SELECT count(*) FROM sqlite_master WHERE name = 'movement'").fetchone() == (0,)
    live.close()


def test_the_backup_is_one_consistent_state_while_another_process_writes(tmp_path):
    """Each transaction moves +5 and −5: any consistent state sums to zero; a torn copy would not."""
    source = tmp_path / "busy.sqlite3"
    setup = wal_database(source)
    setup.execute("BEGIN")
    setup.executemany("INSERT INTO movement (amount) VALUES (?)", [(n,) for n in range(-20_000, 20_001)])
    setup.execute("COMMIT")
    setup.close()
    stop = threading.Event()
    written = []

    def writer():
        connection = sqlite3.connect(source, isolation_level=None, timeout=30)
        while not stop.is_set():
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO movement (amount) VALUES (5)")
            connection.execute("INSERT INTO movement (amount) VALUES (-5)")
            connection.execute("COMMIT")
            written.append(1)
        connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 50:
            stop.wait(0.01)
        before = len(written)
        copies = [backup_database(f"sqlite:///{source}", tmp_path / f"copy-{n}.sqlite3", now=NOW) for n in range(5)]
        during = len(written) - before
    finally:
        stop.set()
        thread.join()

    assert during > 0, "the writer was held up by the backups"
    for made in copies:
        with sqlite3.connect(made.path) as copy:
            total, count = copy.execute("SELECT sum(amount), count(*) FROM movement").fetchone()
        assert total == 0
        assert count % 2 == 1  # 40,001 rows, then pairs


@pytest.mark.parametrize(("size", "shown"), [(0, "0 bytes"), (999, "999 bytes"), (1000, "1.0 kB"),
                                             (499_712, "499.7 kB"), (12_345_678, "12.3 MB"),
                                             (3_200_000_000, "3.2 GB"), (7_000_000_000_000, "7000.0 GB")])
def test_sizes_are_shown_in_decimal_units(size, shown):
    assert human_size(size) == shown


def test_a_folder_it_cannot_write_in_fails_in_one_line(app, runner):
    result = runner.invoke(args=["backup", "/proc"])  # a folder even root cannot create files in
    assert result.exit_code == 1
    [line] = said(result.output)
    assert line.startswith("Error: backup failed: ")
    assert "/proc/.marketplace-" in line

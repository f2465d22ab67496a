"""`flask --app wsgi backup PATH`: a consistent copy of the live database, taken while the app serves.

SQLite: the online backup API (`sqlite3.Connection.backup`) copies every page of the database inside
one read transaction. In WAL mode (marketplace.db) a reader never blocks the writers, so the app goes on
redeeming while the copy sees exactly the state of one commit. The copy is done in a single step on
purpose: done in several, every commit of the app in between would restart it. The copy is then made
a self-contained rollback-journal file (no -wal or -shm beside it) and checked with `PRAGMA quick_check`.
Restoring is copying the file to where DATABASE_URL points, with the app stopped.

PostgreSQL: `pg_dump --format=custom` of DATABASE_URL, the documented tool, which reads one snapshot
of the database while the app writes. Restore it with `pg_restore --no-owner --dbname NEW PATH` into
a new, empty database. (Point-in-time recovery needs WAL archiving on the server besides: see
docs/deployment.md.)

The copy is written beside PATH under a temporary name, flushed to disk and only then renamed to PATH,
so a failed or interrupted backup never leaves a file that looks complete. An existing file is never
overwritten; a folder as PATH gets a new file named for the instant (`marketplace-20260102T030000Z.sqlite3`
or `.dump`), which suits a nightly job. Failures are one line, and the command then exits 1.
"""

import contextlib
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import click
from flask import Blueprint, current_app
from sqlalchemy import make_url

from marketplace.db import utcnow

cli = Blueprint("backup_cli", __name__, cli_group=None)

PG_DUMP_TIMEOUT_SECONDS = 6 * 3600


class BackupFailed(RuntimeError):
    """The backup could not be taken; the message is one line saying why (never a password)."""


@dataclass(frozen=True)
class Backup:
    path: Path
    size_bytes: int
    method: str
    restore_hint: str


def target_path(path: Path, *, database_url: str, now: datetime) -> Path:
    """Where to write: PATH itself, or a new file named for *now* when PATH is a folder.

    :raises BackupFailed: PATH exists as a file, or its folder does not exist.
    """
    if path.is_dir():
        suffix = "sqlite3" if _is_sqlite(database_url) else "dump"
        stem = f"marketplace-{now.strftime('%Y%m%dT%H%M%SZ')}"
        path = path / f"{stem}.{suffix}"
        for again in range(2, 100):  # a second backup within the same second
            if not path.exists():
                break
            path = path.with_name(f"{stem}-{again}.{suffix}")
    if path.exists():
        raise BackupFailed(f"{path} already exists; a backup never overwrites a file: give a new name or a folder.")
    if not path.parent.is_dir():
        raise BackupFailed(f"the folder {path.parent} does not exist.")
    return path


def backup_database(database_url: str, path: Path, *, now: datetime, busy_timeout_ms: int = 30_000) -> Backup:
    """Write a consistent copy of the database at *database_url* to *path* (a file, or a folder).

    :raises BackupFailed: naming the reason in one line.
    """
    target = target_path(path, database_url=database_url, now=now)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    # Readable by its owner only, from the first byte: it holds everything the database holds.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        if _is_sqlite(database_url):
            method, hint = _backup_sqlite(database_url, partial, busy_timeout_ms=busy_timeout_ms)
        elif make_url(database_url).get_backend_name() == "postgresql":
            method, hint = _backup_postgresql(database_url, partial)
        else:
            raise BackupFailed(f"cannot back up a {make_url(database_url).get_backend_name()} database; "
                               "only SQLite and PostgreSQL.")
        _fsync(partial)
        partial.rename(target)
        _fsync(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return Backup(path=target, size_bytes=target.stat().st_size, method=method, restore_hint=hint.format(path=target))


def _is_sqlite(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "sqlite"


def _backup_sqlite(database_url: str, partial: Path, *, busy_timeout_ms: int) -> tuple[str, str]:
    source_path = make_url(database_url).database
    if not source_path or source_path == ":memory:":
        raise BackupFailed("DATABASE_URL names an in-memory SQLite database: there is no file to back up.")
    if not Path(source_path).is_file():
        raise BackupFailed(f"there is no SQLite database at {source_path} (DATABASE_URL); nothing to back up.")
    try:
        # A plain connection (not the app's queued writer): it only reads. The URI keeps sqlite3 from
        # creating an empty database should the file vanish in between.
        source = sqlite3.connect(f"file:{quote(source_path)}?mode=rw", uri=True, timeout=busy_timeout_ms / 1000)
        try:
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy)  # one step: one read transaction, one consistent state
                copy.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
                verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                copy.close()
        finally:
            source.close()
    except sqlite3.Error as error:
        raise BackupFailed(f"SQLite backup of {source_path} failed: {error}") from error
    if verdict != "ok":
        raise BackupFailed(f"the copy of {source_path} fails PRAGMA quick_check: {verdict}")
    return ("SQLite online backup, quick_check ok",
            "restore: stop the app, copy {path} to the file DATABASE_URL names, remove that file's -wal and -shm, "
            "start the app")


def _backup_postgresql(database_url: str, partial: Path) -> tuple[str, str]:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupFailed("pg_dump is not installed (Debian: apt-get install postgresql-client, of the server's "
                           "major version or newer).")
    url = make_url(database_url)
    environment = dict(os.environ)
    if url.password is not None:
        environment["PGPASSWORD"] = str(url.password)  # not on the command line, where `ps` shows it
    conninfo = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    try:
        finished = subprocess.run([pg_dump, "--format=custom", "--file", str(partial), "--dbname", conninfo],
                                  env=environment, capture_output=True, text=True, timeout=PG_DUMP_TIMEOUT_SECONDS,
                                  check=False)
    except subprocess.TimeoutExpired as error:
        raise BackupFailed(f"pg_dump did not finish within {PG_DUMP_TIMEOUT_SECONDS} s.") from error
    if finished.returncode != 0:
        lines = [line.strip() for line in finished.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {finished.returncode}"
        raise BackupFailed(f"pg_dump failed: {reason}")
    return ("pg_dump custom format",
            "restore: createdb NEW && pg_restore --no-owner --exit-on-error --dbname NEW {path}")


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def human_size(size_bytes: int) -> str:
    """`12.3 MB`: decimal units, as `ls -lh --si` and disk vendors count."""
    if size_bytes < 1000:
        return f"{size_bytes} bytes"
    size, units = size_bytes / 1000, ["kB", "MB", "GB"]
    while size >= 1000 and len(units) > 1:
        size, units = size / 1000, units[1:]
    return f"{size:.1f} {units[0]}"


@cli.cli.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
def backup_command(path: Path):
    """Write a consistent copy of the database to PATH (a new file, or a folder to put one in), while the
    app serves: SQLite's online backup, or pg_dump's custom format for PostgreSQL."""
    try:
        made = backup_database(current_app.config["DATABASE_URL"], path, now=utcnow(),
                               busy_timeout_ms=current_app.config["SQLITE_BUSY_TIMEOUT_MS"])
    except BackupFailed as error:
        raise click.ClickException(f"backup failed: {error}") from error
    except OSError as error:  # a folder it may not write in, a full disk
        raise click.ClickException(f"backup failed: {error.strerror or error}: {error.filename or path}") from error
    size = human_size(made.size_bytes)
    if made.size_bytes >= 1000:
        size += f" = {made.size_bytes} bytes"
    click.echo(f"wrote {made.path} ({size}; {made.method})")
    click.echo(made.restore_hint)

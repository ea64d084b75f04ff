"""Opening a store file: path checks, the connection and its migrations. No lock keeps a second
process off the file: the runs each process drives are leased to it (leases.py)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from ..errors import StoreError
from .rows import iso_text
from .schema import MIGRATIONS_DIR, Migration, load_migrations, newer_schema, waiting_for_upgrade

BUSY_TIMEOUT_MS = 5000  # a viewer's read or a second connection's write waits this long, then fails


def _cannot_create(path: Path, error: OSError) -> StoreError:
    if isinstance(error, PermissionError):
        reason = "permission denied"
    elif isinstance(error, NotADirectoryError | FileExistsError):
        reason = "a parent of it is a file, not a directory"
    else:
        reason = (error.strerror or str(error)).lower()
    return StoreError(f"cannot create {path}: {reason}; set BACKROOMS_DB to a writable path")


DB_FILE_MODE = 0o600  # the database holds Discord webhook tokens: its owner alone reads it


def prepare_directory(path: Path) -> None:
    """Check the path, create its folder, and create a new database file readable by its owner
    only. SQLite gives the -wal and -shm files beside it the same mode. A file that already
    exists keeps the mode its owner gave it."""
    try:
        if path.is_dir():
            raise StoreError(
                f"cannot use {path}: it is a directory; set BACKROOMS_DB to a file path"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        # sqlite3 would only say "unable to open database file"; say why while we still know.
        if not path.exists() and not os.access(path.parent, os.W_OK):
            raise PermissionError(path)
        _create_private(path)
    except OSError as error:
        raise _cannot_create(path, error) from error


def _create_private(path: Path) -> None:
    # An empty file is a new database to SQLite, which would otherwise create it 0644.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE)
    except FileExistsError:
        return  # there already, or another process just made it
    os.close(fd)


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements; sqlite3 knows where one ends (even a CREATE TRIGGER)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if any(ln.strip() and not ln.strip().startswith("--") for ln in pending.splitlines()):
        yield pending  # unterminated: let SQLite report it


async def _schema_version(db: aiosqlite.Connection, path: Path) -> int:
    rows = await db.execute_fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    tables = sorted(row[0] for row in rows)
    if "schema_migrations" in tables:
        rows = await db.execute_fetchall("SELECT MAX(version) FROM schema_migrations")
        return int(next(iter(rows))[0] or 0)
    if tables:
        raise StoreError(
            f"{path} is a SQLite database but not a backrooms one (tables: {', '.join(tables)}); "
            "set BACKROOMS_DB to another file"
        )
    return 0


async def rollback(db: aiosqlite.Connection) -> None:
    if db.in_transaction:
        await db.execute("ROLLBACK")


async def _apply(db: aiosqlite.Connection, path: Path, migration: Migration) -> None:
    await db.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have applied it while we waited for the write lock.
        if await _schema_version(db, path) < migration.version:
            for statement in _statements(migration.sql):
                await db.execute(statement)
            await db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, iso_text(datetime.now(UTC))),
            )
        await db.execute("COMMIT")
    except sqlite3.Error as error:
        await rollback(db)
        raise StoreError(f"{path}: migration {migration.name} failed: {error}") from error
    except BaseException:
        await rollback(db)
        raise


async def _migrate(db: aiosqlite.Connection, path: Path, *, upgrade: bool) -> None:
    migrations = load_migrations(MIGRATIONS_DIR, "sqlite")
    current, latest = await _schema_version(db, path), len(migrations)
    if current > latest:
        raise newer_schema(str(path), current, latest, "BACKROOMS_DB")
    if 0 < current < latest and not upgrade:
        raise waiting_for_upgrade(str(path), current, latest)
    for migration in migrations[current:]:
        await _apply(db, path, migration)


async def connect(path: Path) -> aiosqlite.Connection:
    try:
        # Autocommit: every statement outside an explicit BEGIN is its own committed transaction.
        db = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as error:
        raise StoreError(f"cannot open {path}: {error}") from error
    db.row_factory = aiosqlite.Row
    return db


async def connect_read_only(path: Path) -> aiosqlite.Connection:
    """A connection that can never write (`mode=ro`): the archive reads through one. The file is
    in WAL mode, so it reads committed data while another connection writes. `path` is absolute."""
    uri = f"{path.as_uri()}?mode=ro"
    try:
        db = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error as error:
        raise StoreError(f"cannot read {path}: {error}") from error
    db.row_factory = aiosqlite.Row
    return db


WAL_TRIES = 100  # x WAL_PAUSE: a few seconds, as long as busy_timeout lets a write wait
WAL_PAUSE = 0.05


async def _to_wal(db: aiosqlite.Connection) -> None:
    """Switch the file to WAL. Two processes opening a new file together may find it locked:
    SQLite answers the journal-mode change with SQLITE_BUSY at once, without its busy handler
    (measured: 7 of 60 tries of three processes opening one new file), so it is tried again,
    for a bounded time; on a file already in WAL mode the first try succeeds."""
    for attempt in range(WAL_TRIES):
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            busy = (error.sqlite_errorname or "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
            if not busy or attempt == WAL_TRIES - 1:
                raise
        await asyncio.sleep(WAL_PAUSE)


async def configure(db: aiosqlite.Connection, path: Path, *, upgrade: bool) -> None:
    try:
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # first: WAL switch waits too
        await _to_wal(db)  # viewers read while the owner writes
        # NORMAL in WAL mode: a committed reply survives the process being killed (the benchmark
        # showed FULL's fsync per commit queueing hundreds of runs behind the store); only a power
        # cut may lose the last commits, which the model would then be asked for again.
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        await _migrate(db, path, upgrade=upgrade)
    except sqlite3.DatabaseError as error:
        if error.sqlite_errorname == "SQLITE_NOTADB":
            raise StoreError(
                f"{path} is not a backrooms database (not SQLite): {error}; "
                "set BACKROOMS_DB to another file"
            ) from error
        if (error.sqlite_errorname or "").startswith("SQLITE_READONLY"):
            # WAL needs to write beside the file even to read it (the -wal and -shm files).
            raise StoreError(
                f"cannot open {path}: the file or its folder is read-only; make them writable "
                "or set BACKROOMS_DB to a writable path"
            ) from error
        raise StoreError(f"cannot open {path}: {error}") from error

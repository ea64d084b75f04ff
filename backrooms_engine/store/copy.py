"""`backrooms db copy --to URL`: a SQLite archive moved into an empty PostgreSQL store.

Every row of every table both stores have (copy_tables.py says which) goes across with its ids
and every column both have: runs, participants, replies with their costs, delivery cursors,
posts, chat metadata, space settings, leases as they were. Both stores are first brought to the
same schema version (this backrooms's), so a later process on PostgreSQL finds what it would
have found on SQLite. Then each sequence is moved past the copied ids, so new runs continue
after them.

The rules:
- The source is SQLite, the target PostgreSQL; anything else is refused in one line.
- The source is read in one snapshot (a read transaction; writers elsewhere go on) and the target
  written in one transaction: a copy that fails leaves the target as it was.
- The target must be empty, or already hold exactly this copy: then nothing changes, and the
  copy says so (comparing each table's rows, in any order, by a digest). A target with other
  rows is refused, whether other runs or these runs gone on differently: a copy never
  overwrites what a store has that the archive has not.
- A run with a live lease is being driven right now, and what its driver writes after the
  snapshot would be missing from the copy: the copy refuses until every process driving runs
  on the archive has stopped (its leases lapse or are released). The leases copied are lapsed
  ones, so processes on PostgreSQL claim those runs at once.
- URLs are printed as StoreLocation.shown: never with their password.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import StoreError
from . import copy_tables
from .connection import Database
from .copy_tables import Table
from .leases import NOW, dead_here
from .location import StoreLocation, parse_url
from .opening import configure, connect, rollback
from .postgres.connection import PgDatabase
from .postgres.opening import connect as pg_connect
from .postgres.opening import migrate as pg_migrate
from .rows import inserts
from .sql import Session

PAGE = 1000  # rows read at a time


@dataclass(frozen=True)
class Copied:
    """What a copy did: rows per table (in the order copied), and whether the target already
    held them all (nothing changed)."""

    source: str
    target: str
    rows: dict[str, int]
    already: bool
    next_run_id: int | None

    @property
    def summary(self) -> str:
        counts = ", ".join(f"{n} {table}" for table, n in self.rows.items() if n)
        if self.already:
            return (
                f"{self.target} already holds this copy of {self.source} ({counts or 'no rows'}); "
                "nothing changed"
            )
        after = f"; new runs there start at id {self.next_run_id}" if self.next_run_id else ""
        return f"copied {self.source} to {self.target}: {counts or 'no rows'}{after}"


def target_location(url: str) -> StoreLocation:
    """The store `--to` names; it must be PostgreSQL."""
    location = parse_url(url.strip(), "--to")
    if location.dialect != "postgres":
        raise StoreError(
            f"--to {location.shown}: the copy goes into PostgreSQL; "
            "give a postgresql://user@host/database URL"
        )
    return location


async def copy_store(source: StoreLocation, target: StoreLocation) -> Copied:
    """Copy the SQLite store at `source` into the PostgreSQL store at `target` (module docstring)."""
    _check_dialects(source, target)
    reader = await _open_sqlite(source)
    try:
        writer = await _open_postgres(target)
        try:
            async with _snapshot(reader) as src, writer.transaction() as dst:
                await _refuse_live_leases(src, source)
                tables = copy_tables.common(
                    await copy_tables.sqlite_shape(src), await copy_tables.postgres_columns(dst)
                )
                return await _copy(src, dst, tables, source, target)
        finally:
            await writer.close()
    finally:
        await reader.close()


def _check_dialects(source: StoreLocation, target: StoreLocation) -> None:
    if source.dialect != "sqlite":
        raise StoreError(
            f"{source.setting} names {source.shown}, a PostgreSQL store; the copy reads a SQLite "
            "one: set BACKROOMS_DB (or BACKROOMS_DATABASE_URL=sqlite:///path) to the archive"
        )
    if target.dialect != "postgres":
        raise StoreError(f"{target.shown} is not a PostgreSQL store; the copy goes into one")
    if not source.path.is_file():
        raise StoreError(f"no SQLite store at {source.shown} ({source.setting}): nothing to copy")


async def _open_sqlite(source: StoreLocation) -> Database:
    db = await connect(source.path)
    database = Database.of(source.path, db)
    try:
        await configure(db, source.path, upgrade=True)  # to this backrooms's schema version
    except BaseException:
        await database.close()
        raise
    return database


async def _open_postgres(target: StoreLocation) -> PgDatabase:
    database = PgDatabase(target, lambda: pg_connect(target))
    try:
        async with database.using() as session:
            await pg_migrate(session, target, upgrade=True)
    except BaseException:
        await database.close()
        raise
    return database


@asynccontextmanager
async def _snapshot(database: Database) -> AsyncIterator[Session]:
    """One read transaction: every table as of one moment, while other processes still write
    (WAL). Deferred, so it takes no write lock."""
    async with database.using() as db:
        await db.execute("BEGIN")
        try:
            yield db
        finally:
            await rollback(db)  # it wrote nothing


async def _refuse_live_leases(db: Session, source: StoreLocation) -> None:
    found = await db.execute_fetchall(
        f"SELECT id, owner, lease_until - {NOW} FROM runs WHERE status <> 'ended' "
        f"AND owner IS NOT NULL AND lease_until > {NOW} ORDER BY id"
    )
    live = [(int(r[0]), str(r[1]), float(r[2])) for r in found if not dead_here(r[1])]
    if not live:
        return
    ids = ", ".join(str(run_id) for run_id, _, _ in live)
    host, _, rest = live[0][1].partition(":")
    raise StoreError(
        f"run {ids} {'is' if len(live) == 1 else 'are'} being driven (pid "
        f"{rest.partition(':')[0]} on {host}; its lease runs out in {max(live[0][2], 0):.0f} s); "
        f"stop every process that drives runs on {source.shown} (backrooms bot, run, worker), "
        "then copy"
    )


async def _copy(
    src: Session,
    dst: Session,
    tables: Sequence[Table],
    source: StoreLocation,
    target: StoreLocation,
) -> Copied:
    held = {t.name: await _count(dst, t) for t in tables}
    if any(held.values()):
        rows = await _same_or_refuse(src, dst, tables, held, target)
        return Copied(source.shown, target.shown, rows, True, None)
    rows = {t.name: await _copy_table(src, dst, t) for t in tables}
    next_id = None
    for table, column in await copy_tables.identity_columns(dst, tables):
        following = await copy_tables.continue_numbering(dst, table, column)
        next_id = following if (table, column) == ("runs", "id") else next_id
    return Copied(source.shown, target.shown, rows, False, next_id)


async def _count(db: Session, table: Table) -> int:
    found = await db.execute_fetchall(f"SELECT COUNT(*) FROM {table.quoted}")
    return int(next(iter(found))[0])


async def _pages(db: Session, table: Table) -> AsyncIterator[list[tuple[Any, ...]]]:
    offset, width = 0, range(len(table.columns))
    while True:
        found = await db.execute_fetchall(table.select(), (PAGE, offset))
        page = [tuple(row[i] for i in width) for row in found]
        if not page:
            return
        yield page
        offset += len(page)


async def _copy_table(src: Session, dst: Session, table: Table) -> int:
    copied = 0
    async for page in _pages(src, table):
        for statement, values, count in inserts(table.insert(), page):
            await dst.execute(statement, values)
            copied += count
    return copied


async def _digest(db: Session, table: Table) -> tuple[int, int]:
    """(rows, a digest of them that does not depend on their order): the two stores sort text
    by different collations, so pages in key order need not line up row for row."""
    rows = total = 0
    async for page in _pages(db, table):
        for row in page:
            digest = hashlib.blake2b(repr(row).encode(), digest_size=16).digest()
            total = (total + int.from_bytes(digest, "big")) % 2**128
        rows += len(page)
    return rows, total


async def _same_or_refuse(
    src: Session, dst: Session, tables: Sequence[Table], held: dict[str, int], at: StoreLocation
) -> dict[str, int]:
    """The rows per table, when the target holds exactly the source's; otherwise a refusal that
    says how the target differs."""
    for table in tables:
        ours = await _digest(src, table)
        if ours != await _digest(dst, table):
            raise StoreError(_refusal(at, await _other_runs(src, dst), table, held))
    return held


async def _other_runs(src: Session, dst: Session) -> list[int]:
    """Runs of the target that the source does not have (by id and creation time)."""
    query = "SELECT id, created_at FROM runs ORDER BY id"
    ours = {(int(r[0]), str(r[1])) for r in await src.execute_fetchall(query)}
    return [
        i
        for i, made in [(int(r[0]), str(r[1])) for r in await dst.execute_fetchall(query)]
        if (i, made) not in ours
    ]


def _refusal(at: StoreLocation, others: list[int], table: Table, held: dict[str, int]) -> str:
    empty = (
        "copy into an empty store (a new database, or a schema of its own: "
        "?options=-csearch_path%3Dname)"
    )
    if others:
        shown = ", ".join(str(i) for i in others[:5]) + (", ..." if len(others) > 5 else "")
        return f"{at.shown} already holds other runs (run {shown}); {empty}"
    if not held.get("runs"):
        busy, rows = next((name, n) for name, n in held.items() if n)
        return f"{at.shown} is not empty ({busy} holds {rows} rows); {empty}"
    return (
        f"{at.shown} holds these runs, but not as they are here ({table.name} differs: the archive "
        f"changed since it was copied, or the runs went on there); {empty}"
    )

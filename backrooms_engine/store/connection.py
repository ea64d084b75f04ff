"""One SQLite connection as the store's modules use it: one task at a time, errors translated."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from ..errors import StoreError
from .opening import BUSY_TIMEOUT_MS, connect_read_only, rollback
from .rows import refused
from .rules import unknown_run

Opener = Callable[[], Awaitable[aiosqlite.Connection]]
Trace = Callable[[str], None]  # called with each SQL statement the connection runs


class Database:
    """An aiosqlite connection behind an asyncio lock, so one task's transaction never takes in
    another task's statements, with sqlite3's errors turned into StoreError naming the file.

    The connection is given at once (`of`) or opened on first use (`read_only`): the archive's
    connection opens once the owner's has applied the migrations. Once closed, it refuses calls.
    """

    def __init__(self, path: Path, opener: Opener, db: aiosqlite.Connection | None = None):
        self.path = path
        self._opener = opener
        self._db = db
        self._closed = False
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, path: Path, db: aiosqlite.Connection) -> Database:
        async def reopened() -> aiosqlite.Connection:
            raise StoreError(f"the store {path} lost its connection")

        return cls(path, reopened, db)

    @classmethod
    def read_only(cls, path: Path, trace: Trace | None = None) -> Database:
        """`trace` hears every statement (to count what a page costs, or to debug)."""
        where = path.absolute()

        async def opened() -> aiosqlite.Connection:
            db = await connect_read_only(where)
            if trace is not None:
                await db.set_trace_callback(trace)
            return db

        return cls(path, opened)

    async def close(self) -> None:
        # Under the lock: a transaction another task has begun finishes before the connection goes.
        async with self._lock:
            db, self._db, self._closed = self._db, None, True
            if db is not None:
                with self.translated():
                    await db.close()

    @contextmanager
    def translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as error:
            if error.sqlite_errorname == "SQLITE_BUSY":
                raise StoreError(
                    f"{self.path} stayed locked by another process for {BUSY_TIMEOUT_MS} ms"
                ) from error
            raise StoreError(f"{self.path}: {error}") from error
        except sqlite3.Error as error:
            raise StoreError(f"{self.path}: {error}") from error

    @asynccontextmanager
    async def using(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.path} is closed")
            with self.translated():
                if self._db is None:
                    self._db = await self._opener()
                yield self._db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self.using() as db:
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                await db.execute("COMMIT")
            except BaseException:
                await rollback(db)
                raise

    async def fetch(self, query: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self.using() as db:
            return list(await db.execute_fetchall(query, params))

    async def write(self, run_id: int, statement: str, values: Sequence[Any]) -> int:
        """One statement about run `run_id` in its own transaction: how many rows it changed."""
        async with self.using() as db:
            try:
                cursor = await db.execute(statement, values)
            except sqlite3.IntegrityError as error:
                raise refused(error, run_id) from error
            return cursor.rowcount

    async def read_for(self, run_id: int, query: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        """Rows about one run; none at all for a run that does not exist is an UnknownRunError."""
        async with self.using() as db:
            rows = list(await db.execute_fetchall(query, params))
            if not rows:
                found = await db.execute_fetchall("SELECT 1 FROM runs WHERE id = ?", (run_id,))
                if not list(found):
                    raise unknown_run(run_id)
        return rows

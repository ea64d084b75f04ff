"""PgDatabase: a psycopg connection as the store's portable modules use it (sql.SqlDatabase)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, LiteralString

import psycopg
from psycopg import errors as pg_errors

from ...errors import LeaseLost, StoreError, UnknownRunError
from ..location import StoreLocation
from ..rules import unknown_run

Opener = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


def dialect_sql(statement: str) -> LiteralString:
    """A portable statement (`?` placeholders) in psycopg's spelling (`%s`). The store's
    statements hold no `%` and no `?` but placeholders, which this checks.

    LiteralString is what psycopg asks for: these are the store's own statements, never user text.
    mypy (the project's checker) reads LiteralString as str (it does not implement PEP 675), so
    no cast is needed; a checker that does implement it would want one here."""
    if "%" in statement:
        raise StoreError(f"a store statement may not hold '%': {statement[:60]}")
    return statement.replace("?", "%s")


class PgRow:
    """A result row read by column name or by position, like sqlite3.Row."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index, self._values = index, values

    def __getitem__(self, key: str | int, /) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def keys(self) -> list[str]:
        return list(self._index)


def pg_row(cursor: psycopg.AsyncCursor[Any]) -> Callable[[Sequence[Any]], PgRow]:
    """psycopg's row factory for PgRow."""
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: PgRow(index, values)


class PgSession:
    """The connection, held by one task (sql.Session)."""

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self.connection = connection

    async def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> int:
        """How many rows the statement changed."""
        cursor = await self.connection.execute(dialect_sql(sql), parameters)
        return cursor.rowcount

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] = (), /) -> list[PgRow]:
        async with self.connection.cursor(row_factory=pg_row) as cursor:
            await cursor.execute(dialect_sql(sql), parameters)
            return await cursor.fetchall()


def said(location: StoreLocation, error: psycopg.Error) -> str:
    """The driver's message on one line (libpq adds hints on lines of their own), password masked."""
    return " ".join(location.masked(str(error)).split())


LEASE_LOST = "23L01"  # the SQLSTATE the fence raises (010_pg_fence.postgres.sql)


def refused(error: psycopg.IntegrityError, run_id: int) -> StoreError | UnknownRunError:
    if isinstance(error, pg_errors.ForeignKeyViolation):
        return unknown_run(run_id)
    if error.sqlstate == LEASE_LOST:
        return LeaseLost(run_id)
    return StoreError(f"run {run_id}: refused by the store: {error.diag.message_primary}")


class PgDatabase:
    """A psycopg connection (autocommit: a statement outside `transaction()` commits at once)
    behind an asyncio lock, so one task's transaction never takes in another task's statements,
    with psycopg's errors turned into StoreError naming the store (password masked). A
    connection the server dropped is opened again on the next call. Once closed, it refuses."""

    def __init__(self, location: StoreLocation, opener: Opener) -> None:
        self.location = location
        self._opener = opener
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._closed = False
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        async with self._lock:
            connection, self._connection, self._closed = self._connection, None, True
            if connection is not None:
                with self.translated():
                    await connection.close()

    @contextmanager
    def translated(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as error:
            raise StoreError(f"{self.location.shown}: {said(self.location, error)}") from None

    @asynccontextmanager
    async def using(self) -> AsyncIterator[PgSession]:
        async with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.location.shown} is closed")
            with self.translated():
                if self._connection is None or self._connection.closed:
                    self._connection = await self._opener()
                yield PgSession(self._connection)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgSession]:
        async with self.using() as session, session.connection.transaction():
            yield session

    async def fetch(self, query: str, params: Sequence[Any] = ()) -> list[PgRow]:
        async with self.using() as session:
            return await session.execute_fetchall(query, params)

    async def write(self, run_id: int, statement: str, values: Sequence[Any]) -> int:
        async with self.using() as session:
            try:
                return await session.execute(statement, values)
            except psycopg.IntegrityError as error:
                raise refused(error, run_id) from None

    async def read_for(self, run_id: int, query: str, params: Sequence[Any]) -> list[PgRow]:
        async with self.using() as session:
            rows = await session.execute_fetchall(query, params)
            if not rows and not await session.execute_fetchall(
                "SELECT 1 FROM runs WHERE id = ?", (run_id,)
            ):
                raise unknown_run(run_id)
        return rows

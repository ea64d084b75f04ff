"""What the store's SQL modules need of a database, whichever dialect it speaks.

Statements are written once, with `?` placeholders and portable SQL (ON CONFLICT upserts,
RETURNING); the SQLite connection (connection.py) runs them as they are and the PostgreSQL one
(postgres/connection.py) turns each `?` into its driver's `%s`. The modules that use only these
names (reading.py, surface_state.py, most of transcript.py and archive.py) serve both stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol


class Row(Protocol):
    """A result row, read by column name or by position (sqlite3.Row, postgres/rows.py)."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Session(Protocol):
    """A connection held by one task: inside `using()` or `transaction()`."""

    async def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    async def execute_fetchall(
        self, sql: str, parameters: Sequence[Any] = ..., /
    ) -> Iterable[Row]: ...


class SqlDatabase(Protocol):
    """One connection, one task at a time, errors as StoreError (connection.py tells the rules)."""

    def using(self) -> AbstractAsyncContextManager[Session]: ...

    def transaction(self) -> AbstractAsyncContextManager[Session]: ...

    # Sequence, not list: a list is invariant, so each driver's list of its own row type
    # (sqlite3.Row, PgRow) would not be a list[Row]; callers only iterate, index and test it.
    async def fetch(self, query: str, params: Sequence[Any] = ()) -> Sequence[Row]: ...

    async def write(self, run_id: int, statement: str, values: Sequence[Any]) -> int:
        """One statement about run `run_id` in its own transaction: how many rows it changed.
        A missing run is an UnknownRunError."""
        ...

    async def read_for(self, run_id: int, query: str, params: Sequence[Any]) -> Sequence[Row]:
        """Rows about one run; none at all for a run that does not exist is an UnknownRunError."""
        ...

    async def close(self) -> None: ...

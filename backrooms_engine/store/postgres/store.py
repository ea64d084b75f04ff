"""PostgresStore: the three store ports on one PostgreSQL database (or one schema of it).

The transcript and the surface state write through one connection, the archive reads through a
read-only one of its own, as on SQLite; a reader never waits for a writer (MVCC). There is no
owner lock: the leases (ARCHITECTURE.md) coordinate processes on a shared store. `owner` only
decides whether this open may upgrade an existing schema, as on SQLite.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from ...errors import StoreError
from ...records import Reply
from ..bundle import AllPorts
from ..leases import Owner
from ..live_text import SqlLiveText
from ..location import StoreLocation
from ..processes import SqlProcesses
from ..rules import duplicate_reply
from ..surface_state import SqliteSurfaceState
from ..transcript import SqlTranscript
from .connection import PgDatabase, refused
from .opening import connect, migrate
from .search import PgArchive

# Seconds since 1970 by the server's clock (clock_timestamp: the moment of the statement).
PG_NOW = "EXTRACT(EPOCH FROM clock_timestamp())"


class PgTranscript(SqlTranscript):
    refusal = psycopg.IntegrityError

    def refused(self, error: Exception, reply: Reply) -> BaseException:
        if isinstance(error, pg_errors.UniqueViolation):
            return duplicate_reply(reply)
        assert isinstance(error, psycopg.IntegrityError)
        return refused(error, reply.run_id)


class PostgresStore(AllPorts):
    """TranscriptStore, SurfaceState and Archive (backrooms_engine/ports.py) on PostgreSQL."""

    def __init__(
        self, location: StoreLocation, driver: Owner | None = None, lease_seconds: float = 10.0
    ) -> None:
        self.location = location
        self._writer = PgDatabase(location, lambda: connect(location))
        self._reader = PgDatabase(location, lambda: connect(location, read_only=True))
        self.transcript = PgTranscript(self._writer)
        self.surface_state = SqliteSurfaceState(self._writer)
        self.archive = PgArchive(self._reader)
        # Live text across processes works as on SQLite. Leases are not built on PostgreSQL yet
        # (issue 15): `leases` stays None, so a process here drives its runs unfenced, as one
        # process per store did before leases.
        self.live_text = SqlLiveText(self._writer, self._reader, now=PG_NOW)
        owner = None if driver is None else driver.text
        self.processes = SqlProcesses(self._writer, self._reader, owner, lease_seconds, PG_NOW)

    @classmethod
    async def open(
        cls, location: StoreLocation, *, owner: bool = True, lease_seconds: float = 10.0
    ) -> PostgresStore:
        """`owner`: may upgrade the schema, and is a driving process (registered in Processes)."""
        if location.dialect != "postgres":
            raise StoreError(f"{location.shown} is not a PostgreSQL URL")
        store = cls(location, Owner.here() if owner else None, lease_seconds)
        try:
            async with store._writer.using() as session:
                await migrate(session, location, upgrade=owner)
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def shown(self) -> str:
        return self.location.shown

    async def close(self) -> None:
        await self.transcript.idle()  # what was already handed over is written first
        try:
            await self._reader.close()
        finally:
            await self._writer.close()

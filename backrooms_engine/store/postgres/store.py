"""PostgresStore: the three store ports on one PostgreSQL database (or one schema of it).

The transcript and the surface state write through one connection, the archive reads through a
read-only one of its own, as on SQLite; a reader never waits for a writer (MVCC). There is no
owner lock: leases (leases.py) coordinate the processes sharing a store. A store opened by a
process that drives runs has the Leases port, and its write connection names the process to the
fence (010_pg_fence.postgres.sql), so every write it makes for a run it does not hold is
refused with LeaseLost, and it hears stop requests as they are made (`notices`: LISTEN on a
connection of its own, notices.py). A store that drives nothing (a viewer, `serve`) writes
unfenced.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from ...errors import StoreError
from ...records import Reply
from ..bundle import AllPorts
from ..desired import PG_ANNOUNCE
from ..leases import Owner
from ..live_text import SqlLiveText
from ..location import StoreLocation
from ..processes import SqlProcesses
from ..rules import duplicate_reply
from ..sql import Session
from ..surface_state import SqliteSurfaceState
from ..transcript import SqlTranscript
from .connection import PgDatabase, refused
from .leases import PG_NOW, PgLeases, session_settings
from .notices import PgNotices
from .opening import connect, migrate
from .search import PgArchive

# Held by a transaction that counts the caps and stores a run (transcript.py): two processes
# creating runs at once count one after the other. ("backruns"; the migrations' key differs.)
CAPS_LOCK = 0x6261636B72756E73


class PgTranscript(SqlTranscript):
    refusal = psycopg.IntegrityError
    announce = PG_ANNOUNCE  # a stop request is also a NOTIFY

    async def lock_for_caps(self, db: Session) -> None:
        # A transaction-level lock, let go at commit or rollback; under READ COMMITTED the count
        # that follows sees every run the previous holder committed.
        await db.execute("SELECT pg_advisory_xact_lock(?)", (CAPS_LOCK,))

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
        session = None if driver is None else session_settings(driver, lease_seconds)
        # Every connection the writer opens (again after a lost one) names the driver first.
        self._writer = PgDatabase(location, lambda: connect(location, session=session))
        self._reader = PgDatabase(location, lambda: connect(location, read_only=True))
        self.transcript = PgTranscript(self._writer)
        self.surface_state = SqliteSurfaceState(self._writer)
        self.archive = PgArchive(self._reader)
        self.live_text = SqlLiveText(self._writer, self._reader, now=PG_NOW)
        # None for a store that drives no run (a viewer, `serve`): its writes are not fenced.
        self.leases: PgLeases | None = None
        self.notices: PgNotices | None = None
        if driver is not None:
            self.leases = PgLeases(self._writer, driver, lease_seconds)
            self.transcript.created = self.leases.adopt
            self.notices = PgNotices(location)  # on a connection of its own, once listened to
        owner = None if driver is None else driver.text
        self.processes = SqlProcesses(self._writer, self._reader, owner, lease_seconds, PG_NOW)

    @classmethod
    async def open(
        cls,
        location: StoreLocation,
        *,
        owner: bool = True,
        drives: bool | None = None,
        lease_seconds: float = 10.0,
    ) -> PostgresStore:
        """`owner`: may upgrade the schema (a viewer never does). `drives` (default: `owner`):
        this process drives runs, so it gets the Leases port and its writes are fenced."""
        if location.dialect != "postgres":
            raise StoreError(f"{location.shown} is not a PostgreSQL URL")
        driver = Owner.here() if (owner if drives is None else drives) else None
        store = cls(location, driver, lease_seconds)
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
        if self.leases is not None:
            await self.leases.close()
        await self.transcript.idle()  # what was already handed over is written first
        try:
            await self._reader.close()
        finally:
            await self._writer.close()

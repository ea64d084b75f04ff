"""SqliteStore: the three store ports on one SQLite file (the package's docstring tells its rules).

It opens the file, and hands each port's calls (bundle.py) to the module that implements it:
transcript.py and surface_state.py on the write connection, archive.py on a read-only one of its
own, and, for a driving process, leases.py (claims, and the fence on every write) and live_text.py.

Any number of processes open the same file (WAL): no lock keeps a second one off.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from .archive import SqliteArchive
from .bundle import AllPorts
from .connection import Database
from .leases import Owner, SqliteLeases
from .live_text import SqlLiveText
from .opening import configure, connect, prepare_directory
from .processes import SqlProcesses
from .surface_state import SqliteSurfaceState
from .transcript import SqliteTranscript


class SqliteStore(AllPorts):
    """TranscriptStore, SurfaceState and Archive (backrooms_engine/ports.py) on one file."""

    def __init__(
        self, path: Path, db: aiosqlite.Connection, driver: Owner | None, lease_seconds: float
    ) -> None:
        self.path = path
        self._writer = Database.of(path, db)
        self._reader = Database.read_only(path)
        self.transcript = SqliteTranscript(self._writer)
        self.surface_state = SqliteSurfaceState(self._writer)
        self.archive = SqliteArchive(self._reader)
        self.live_text = SqlLiveText(self._writer, self._reader)
        # None for a store that drives no run (a viewer, `serve`): its writes are not fenced.
        self.leases: SqliteLeases | None = (
            None if driver is None else SqliteLeases(self._writer, driver, lease_seconds)
        )
        self.processes = SqlProcesses(
            self._writer, self._reader, None if driver is None else driver.text, lease_seconds
        )

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        owner: bool = True,
        drives: bool | None = None,
        lease_seconds: float = 10.0,
    ) -> SqliteStore:
        """`owner`: may upgrade the schema (a viewer never does). `drives` (default: `owner`):
        this process drives runs, so it gets the Leases port and its writes are fenced."""
        path = Path(path)
        prepare_directory(path)
        db = await connect(path)
        driver = Owner.here() if (owner if drives is None else drives) else None
        store = cls(path, db, driver, lease_seconds)
        try:
            await configure(db, path, upgrade=owner)
            if store.leases is not None:
                await store.leases.install()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self.transcript.idle()  # what was already handed over is written first
        try:
            await self._reader.close()
        finally:
            await self._writer.close()

    @property
    def shown(self) -> str:
        return str(self.path)

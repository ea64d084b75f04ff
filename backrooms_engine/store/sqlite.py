"""SqliteStore: the three store ports on one SQLite file (the package's docstring tells its rules).

It opens the file, and hands each port's calls (bundle.py) to the module that implements it:
transcript.py and surface_state.py on the owner's connection, archive.py on a read-only one.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from .archive import SqliteArchive
from .bundle import AllPorts
from .connection import Database
from .opening import configure, connect, prepare_directory, release_lock, take_owner_lock
from .surface_state import SqliteSurfaceState
from .transcript import SqliteTranscript


class SqliteStore(AllPorts):
    """TranscriptStore, SurfaceState and Archive (backrooms_engine/ports.py) on one file."""

    def __init__(self, path: Path, db: aiosqlite.Connection, lock_fd: int | None) -> None:
        self.path = path
        self._lock_fd = lock_fd
        self._writer = Database.of(path, db)
        self._reader = Database.read_only(path)
        self.transcript = SqliteTranscript(self._writer)
        self.surface_state = SqliteSurfaceState(self._writer)
        self.archive = SqliteArchive(self._reader)

    @classmethod
    async def open(cls, path: Path, *, owner: bool = True) -> SqliteStore:
        path = Path(path)
        prepare_directory(path)
        lock_fd = take_owner_lock(path) if owner else None
        try:
            db = await connect(path)
        except BaseException:
            release_lock(lock_fd)
            raise
        store = cls(path, db, lock_fd)
        try:
            await configure(db, path, upgrade=owner)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self.transcript.idle()  # what was already handed over is written first
        try:
            await self._reader.close()
            await self._writer.close()
        finally:
            release_lock(self._lock_fd)
            self._lock_fd = None

    @property
    def shown(self) -> str:
        return str(self.path)

"""SqliteStore: the three store ports on one SQLite file (the package's docstring tells its rules).

It opens the file, and hands each port's calls to the module that implements it: transcript.py
and surface_state.py on the write connection, archive.py on a read-only one of its own, and, for
a driving process, leases.py (claims, and the fence on every write) and live_text.py.

Any number of processes open the same file (WAL): no lock keeps a second one off.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import aiosqlite

from ..lifecycle import ClosesOnExit
from ..ports import PAGE_SIZE, Hit, RunFilter
from ..records import ParticipantInfo, Reply, RunEnd, RunRecord, RunSpec
from .archive import SqliteArchive
from .connection import Database
from .leases import Owner, SqliteLeases
from .live_text import SqliteLiveText
from .opening import configure, connect, prepare_directory
from .surface_state import SqliteSurfaceState
from .transcript import SqliteTranscript


class SqliteStore(ClosesOnExit):
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
        self.live_text = SqliteLiveText(self._writer, self._reader)
        # None for a store that drives no run (a viewer, `serve`): its writes are not fenced.
        self.leases = None if driver is None else SqliteLeases(self._writer, driver, lease_seconds)

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

    # -- TranscriptStore

    async def create_run(
        self,
        spec: RunSpec,
        participants: Sequence[ParticipantInfo],
        log_path: str,
        created_at: datetime,
    ) -> RunRecord:
        return await self.transcript.create_run(spec, participants, log_path, created_at)

    async def append_reply(self, reply: Reply) -> None:
        await self.transcript.append_reply(reply)

    async def finish_run(self, run_id: int, end: RunEnd, ended_at: datetime) -> None:
        await self.transcript.finish_run(run_id, end, ended_at)

    async def reopen_run(self, run_id: int, *, max_turns: int | None) -> None:
        await self.transcript.reopen_run(run_id, max_turns=max_turns)

    async def running_runs(self) -> list[RunRecord]:
        return await self.transcript.running_runs()

    async def delivered(self, run_id: int, observer: str) -> int:
        return await self.transcript.delivered(run_id, observer)

    async def mark_delivered(self, run_id: int, observer: str, count: int) -> None:
        await self.transcript.mark_delivered(run_id, observer, count)

    # -- TranscriptStore and Archive: as a viewer reads them, on the archive's connection

    async def get_run(self, run_id: int) -> RunRecord:
        return await self.archive.get_run(run_id)

    async def replies(self, run_id: int) -> list[Reply]:
        return await self.archive.replies(run_id)

    # -- Archive

    async def list_runs(
        self, *, status: str | None = None, space: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        return await self.archive.list_runs(status=status, space=space, limit=limit)

    async def run_ids(self, f: RunFilter, limit: int = PAGE_SIZE) -> list[int]:
        return await self.archive.run_ids(f, limit)

    async def hits(self, words: str, run_ids: Sequence[int]) -> dict[int, Hit]:
        return await self.archive.hits(words, run_ids)

    async def choices(self) -> tuple[list[str], list[str]]:
        return await self.archive.choices()

    # -- SurfaceState

    async def record_post(
        self, run_id: int, seq: int, part: int, surface: str, external_id: str
    ) -> None:
        await self.surface_state.record_post(run_id, seq, part, surface, external_id)

    async def posts(self, run_id: int, surface: str) -> dict[tuple[int, int], str]:
        return await self.surface_state.posts(run_id, surface)

    async def set_meta(self, run_id: int, key: str, value: str) -> None:
        await self.surface_state.set_meta(run_id, key, value)

    async def get_meta(self, run_id: int, key: str) -> str | None:
        return await self.surface_state.get_meta(run_id, key)

    async def set_space_setting(self, space: str, key: str, value: str) -> None:
        await self.surface_state.set_space_setting(space, key, value)

    async def space_setting(self, space: str, key: str) -> str | None:
        return await self.surface_state.space_setting(space, key)

"""AllPorts: one object offering the three store ports (backrooms_engine/ports.py) by handing each
call to the part that implements it. SqliteStore and PostgresStore are both one.

A subclass sets `transcript`, `surface_state` and `archive`, and defines `close`. Reads of a run
(`get_run`, `replies`) go to the archive, as a viewer reads them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import datetime
from typing import Protocol

from ..caps import Caps
from ..lifecycle import ClosesOnExit
from ..ports import (
    PAGE_SIZE,
    Archive,
    DesiredNotices,
    Hit,
    Leases,
    LiveText,
    Processes,
    RunFilter,
    SurfaceState,
    TranscriptStore,
)
from ..records import Blueprint, ParticipantInfo, Reply, RunEnd, RunRecord, RunSpec


class QueuedTranscript(TranscriptStore, Protocol):
    """The transcript port as a store holds it: writes queue up and share a transaction
    (batching.py), so `close` first waits for what was already handed over."""

    async def idle(self) -> None: ...


class AllPorts(ClosesOnExit):
    transcript: QueuedTranscript
    surface_state: SurfaceState
    archive: Archive
    live_text: LiveText
    processes: Processes  # the live driving processes (a viewer's store only reads it)
    leases: Leases | None = None  # set on a store opened by a process that drives runs
    # Stop requests heard as they are made (PostgreSQL's LISTEN); None: the driver only polls.
    notices: DesiredNotices | None = None

    async def close(self) -> None:
        raise NotImplementedError

    @property
    def shown(self) -> str:
        """Where the store is, fit to print (a URL without its password)."""
        raise NotImplementedError

    # -- TranscriptStore

    async def create_run(
        self,
        spec: RunSpec,
        participants: Sequence[ParticipantInfo],
        log_path: str,
        created_at: datetime,
        *,
        caps: Caps | None = None,
        blueprint: Blueprint | None = None,
        queued: bool = False,
    ) -> RunRecord:
        return await self.transcript.create_run(
            spec,
            participants,
            log_path,
            created_at,
            caps=caps,
            blueprint=blueprint,
            queued=queued,
        )

    async def claimed(self, run_id: int) -> None:
        await self.transcript.claimed(run_id)

    async def blueprint(self, run_id: int) -> Blueprint | None:
        return await self.transcript.blueprint(run_id)

    async def append_reply(self, reply: Reply) -> None:
        await self.transcript.append_reply(reply)

    async def finish_run(self, run_id: int, end: RunEnd, ended_at: datetime) -> None:
        await self.transcript.finish_run(run_id, end, ended_at)

    async def reopen_run(self, run_id: int, *, max_turns: int | None) -> None:
        await self.transcript.reopen_run(run_id, max_turns=max_turns)

    async def pause_run(self, run_id: int, paused_at: datetime) -> None:
        await self.transcript.pause_run(run_id, paused_at)

    async def request_stop(self, run_id: int, by: str, at: datetime) -> bool:
        return await self.transcript.request_stop(run_id, by, at)

    async def stop_requests(self, run_ids: Sequence[int]) -> dict[int, str]:
        return await self.transcript.stop_requests(run_ids)

    async def running_runs(self) -> list[RunRecord]:
        return await self.transcript.running_runs()

    async def recent_ended(self, limit: int) -> list[RunRecord]:
        return await self.transcript.recent_ended(limit)

    async def space_spend(self, space: str, start: datetime, end: datetime) -> float:
        return await self.transcript.space_spend(space, start, end)

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

    async def find_runs(self, f: RunFilter, limit: int = PAGE_SIZE) -> list[RunRecord]:
        return await self.archive.find_runs(f, limit)

    async def hits(self, words: str, run_ids: Sequence[int]) -> dict[int, Hit]:
        return await self.archive.hits(words, run_ids)

    async def choices(self) -> tuple[list[str], list[str]]:
        return await self.archive.choices()

    async def version(self) -> Hashable | None:
        return await self.archive.version()

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

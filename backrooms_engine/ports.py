"""The engine's ports: each a small Protocol, each with an in-memory fake in tests/fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol

from .conversation import ModelRequest
from .events import Event
from .records import ParticipantInfo, Reply, RunEnd, RunRecord, RunSpec, Usage


class Provider(Protocol):
    """Streams one reply. Yields text deltas (str) and, once, the token usage the API reported.

    Raises TransientProviderError or PermanentProviderError; never retries by itself (the engine is
    the one retry layer).
    """

    def stream(self, request: ModelRequest) -> AsyncIterator[str | Usage]: ...

    async def aclose(self) -> None: ...


class Observer(Protocol):
    """Reacts to a run's events (prints them, writes the log file, posts to a chat thread)."""

    name: str  # stable across restarts: the delivery cursor is kept under this name
    # An observer may set `wants_deltas = False` to receive no ReplyDelta (the log file writer).

    async def handle(self, event: Event) -> None: ...


class Store(Protocol):
    """Where transcripts live. A reply is committed here before any observer sees it finished."""

    async def create_run(
        self,
        spec: RunSpec,
        participants: Sequence[ParticipantInfo],
        log_path: str,
        created_at: datetime,
    ) -> RunRecord: ...

    async def append_reply(self, reply: Reply) -> None: ...

    async def finish_run(self, run_id: int, end: RunEnd, ended_at: datetime) -> None: ...

    async def reopen_run(self, run_id: int, *, max_turns: int | None) -> None:
        """Mark an ended run running again with a new turn limit (`backrooms continue`)."""
        ...

    async def pause_run(self, run_id: int, paused_at: datetime) -> None:
        """Mark a running run paused (resumable, claimed by nobody); `reopen_run` clears it."""
        ...

    async def get_run(self, run_id: int) -> RunRecord:
        """Raises UnknownRunError (a ConfigError) naming the id."""
        ...

    async def list_runs(
        self, *, status: str | None = None, space: str | None = None, limit: int = 50
    ) -> list[RunRecord]: ...

    async def replies(self, run_id: int) -> list[Reply]: ...

    async def delivered(self, run_id: int, observer: str) -> int:
        """How many replies (by seq) this observer has fully received: its delivery cursor."""
        ...

    async def mark_delivered(self, run_id: int, observer: str, count: int) -> None: ...

    async def running_runs(self) -> list[RunRecord]:
        """Runs still marked running (left by a crash or a shutdown), oldest first."""
        ...

    async def close(self) -> None: ...

"""The engine's ports: each a small Protocol, each with an in-memory fake in tests/fakes.

The store is three ports, split by who needs it (ARCHITECTURE.md, "The store's ports"):
`TranscriptStore` for whoever drives runs, `SurfaceState` for the chat surfaces, `Archive` for
viewers. One implementation usually provides all three (backrooms_engine/store/); each caller is
handed only the port it needs. tests/engine/test_store_contract.py states their behaviour and runs
it over every implementation.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .caps import Caps
from .conversation import ModelRequest
from .events import Event
from .records import Blueprint, ParticipantInfo, Reply, RunEnd, RunRecord, RunSpec, Usage


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


class TranscriptStore(Protocol):
    """The transcript, for whoever drives runs: runs, their replies, delivery cursors and ends.
    A reply is committed here before any observer sees it finished.

    On a store opened by a driving process, every write for a run is fenced by the epoch of the
    lease held on it (see `Leases`): a refused write raises LeaseLost.
    """

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
        """Store a new run with what rebuilds it anywhere (`blueprint`). A driving process's
        store makes the run its own at once (Leases); `queued`: nobody drives it until a driving
        process claims it (a start from a process that drives nothing).

        With `caps`, refused with LimitError when the runs going in the store (running or
        queued, not paused), in all and in the run's space, are already at a cap: counted in the
        transaction that stores the run, so processes sharing the store share the caps."""
        ...

    async def claimed(self, run_id: int) -> None:
        """The caller has taken the run to drive it: a queued run is running from now on (no-op
        for a run that is not queued)."""
        ...

    async def blueprint(self, run_id: int) -> Blueprint | None:
        """What `create_run` stored to rebuild the run; None for runs stored before there was
        one (rebuilt from the templates folder and the registry)."""
        ...

    async def append_reply(self, reply: Reply) -> None: ...

    async def finish_run(self, run_id: int, end: RunEnd, ended_at: datetime) -> None: ...

    async def reopen_run(self, run_id: int, *, max_turns: int | None) -> None:
        """Mark an ended run running again with a new turn limit (`backrooms continue`)."""
        ...

    async def pause_run(self, run_id: int, paused_at: datetime) -> None:
        """Mark a running run paused (resumable, claimed by nobody); `reopen_run` clears it."""
        ...

    async def request_stop(self, run_id: int, by: str, at: datetime) -> bool:
        """Ask whoever drives the run to stop it (desired state: any process may ask, so this
        write is never fenced). False when the run has ended already; a second request keeps
        the first asker; `reopen_run` clears the request. UnknownRunError for a bad id."""
        ...

    async def stop_requests(self, run_ids: Sequence[int]) -> dict[int, str]:
        """{run id: who asked} for those of `run_ids` whose stop was requested: one query."""
        ...

    async def get_run(self, run_id: int) -> RunRecord:
        """Raises UnknownRunError (a ConfigError) naming the id."""
        ...

    async def replies(self, run_id: int) -> list[Reply]:
        """In seq order."""
        ...

    async def delivered(self, run_id: int, observer: str) -> int:
        """How many replies (by seq) this observer has fully received: its delivery cursor."""
        ...

    async def mark_delivered(self, run_id: int, observer: str, count: int) -> None: ...

    async def running_runs(self) -> list[RunRecord]:
        """Runs to drive: queued, or still marked running (left by a crash or a shutdown), not
        paused, oldest first."""
        ...

    async def recent_ended(self, limit: int) -> list[RunRecord]:
        """The newest `limit` ended runs, newest first: where a chat may still owe an ending."""
        ...

    async def space_spend(self, space: str, start: datetime, end: datetime) -> float:
        """What the replies of `space`'s runs that finished in [start, end) cost, in USD; a
        reply whose cost is unknown counts nothing (the daily cap: budgets.py)."""
        ...


class Leases(Protocol):
    """Which process drives which run (ARCHITECTURE.md, "Runs owned by leases"). Times are the
    store's clock. A run the caller creates through its TranscriptStore is already its own.

    Every write the caller's store makes for a run (a reply, a delivery cursor, a post, live text,
    the end) is fenced: refused with LeaseLost unless the run's epoch is still the one claimed
    here. Desired state (stop requests as rows) is the transcript's: asking is never fenced."""

    seconds: float  # how long a claim or a renewal lasts

    async def claim(self, run_id: int) -> int:
        """Take a run nobody holds, whose lease lapsed, or already ours: its new epoch. A queued
        run is running from then on (the manager also says so, TranscriptStore.claimed).
        Raises LeaseHeld (naming the live holder) or UnknownRunError."""
        ...

    async def renew(self) -> set[int]:
        """Extend every lease held here: the ids of those lost instead (claimed elsewhere)."""
        ...

    async def release(self, run_id: int) -> None:
        """Let a run go, so that another process may claim it at once; no-op if not held."""
        ...

    async def waiting(self, surfaces: frozenset[str]) -> list[int]:
        """Runs of these surfaces that are running but driven by nobody (queued, released, or
        lease lapsed), not paused, oldest first."""
        ...


class DesiredNotices(Protocol):
    """Word that a run's desired state changed (a stop was asked), from whichever process asked:
    PostgreSQL's LISTEN/NOTIFY. Best effort: a notice can be lost (while the listener reconnects,
    through a transaction-mode pooler), so a driver still polls the rows, and a notice is only a
    hint to read the row (TranscriptStore.stop_requests). SQLite and the in-memory fake have none."""

    def notices(self) -> AsyncGenerator[int, None]:
        """The ids of this store's runs whose desired state changed, as the asks commit, for as
        long as it is iterated (a dropped connection is opened again, with a backoff); the
        connection it listens on is closed when the generator is closed (or cancelled)."""
        ...


@dataclass(frozen=True)
class ProcessInfo:
    """A live driving process, as `backrooms workers` lists it."""

    owner: str  # as leases name it: "host:pid:random"
    role: str  # the command it runs: bot, worker, discord, slack, serve, run, ...
    since: datetime  # when it registered (UTC)
    runs: int  # the runs it holds a live lease on


class Processes(Protocol):
    """The registry of live driving processes (issue 15). A driving process `beat`s when it opens
    the store and every third of `seconds` after, whether or not it holds runs, and `leave`s on a
    clean exit; one whose heartbeat lapsed (it died or froze) is not alive. Times are the store's
    clock. A store opened by a process that drives nothing may only read (`alive`, `holders`)."""

    seconds: float  # how long one beat keeps the process alive

    async def beat(self, role: str) -> None:
        """Register this process as `role`, or keep it registered for `seconds` more."""
        ...

    async def leave(self) -> None:
        """Remove this process (a clean exit); no-op if it is not registered."""
        ...

    async def alive(self) -> list[ProcessInfo]:
        """The processes whose heartbeat has not lapsed, oldest first."""
        ...

    async def holders(self, run_ids: Sequence[int]) -> dict[int, str]:
        """Those of `run_ids` that a live lease holds, each with its holder (the owner text)."""
        ...


@dataclass(frozen=True)
class LiveLine:
    """The reply being streamed in a run, as its driver last wrote it."""

    seq: int
    actor: str
    text: str


class LiveText(Protocol):
    """Live text across processes: the driver overwrites one small row per run (at most about
    once a second); viewers elsewhere poll it. Stale once `seq` is below the finished replies."""

    async def write_live(self, run_id: int, seq: int, actor: str, text: str) -> None: ...

    async def live(self, run_id: int) -> LiveLine | None: ...

    async def driven(self, run_ids: Sequence[int]) -> set[int]:
        """Those of `run_ids` that some process drives right now (a live lease)."""
        ...


class SurfaceState(Protocol):
    """What chat surfaces remember: per-run metadata (a thread id, a webhook), the message that
    shows each part of each reply, and settings a community changes for itself (per space).

    A second write of the same key replaces the first. Every per-run call raises UnknownRunError
    for a run that does not exist.
    """

    async def set_meta(self, run_id: int, key: str, value: str) -> None: ...

    async def get_meta(self, run_id: int, key: str) -> str | None: ...

    async def record_post(
        self, run_id: int, seq: int, part: int, surface: str, external_id: str
    ) -> None:
        """Remember the message that shows part `part` of reply `seq` on `surface`."""
        ...

    async def posts(self, run_id: int, surface: str) -> dict[tuple[int, int], str]:
        """{(seq, part): external id} of one surface, in (seq, part) order."""
        ...

    async def set_space_setting(self, space: str, key: str, value: str) -> None: ...

    async def space_setting(self, space: str, key: str) -> str | None: ...


PAGE_SIZE = 50  # runs on one page of the archive


@dataclass(frozen=True)
class RunFilter:
    """Which runs a viewer asks the archive for. Empty fields do not filter.

    `q` is searched in reply text by these rules, the same on every store: a run matches when one
    of its replies holds every word of `q` (split at white space). Text is compared as words, runs
    of letters and digits, without case or accents (`cafe` finds `Café`, `caf` does not); `word*`
    matches any word that begins with `word`; a word with punctuation inside (`don't`) matches its
    pieces in a row; punctuation alone matches nothing.
    """

    model: str | None = None  # a participant's alias
    template: str | None = None
    status: str | None = None  # queued | running | paused | ended
    q: str | None = None  # words to find in reply text
    before: int | None = None  # run ids below this one (the next page)

    @property
    def active(self) -> bool:
        return any(v for v in (self.model, self.template, self.status, self.q))


@dataclass(frozen=True)
class Hit:
    """Where a search matched in one run: a reply and a short excerpt around the match."""

    run_id: int
    seq: int
    parts: tuple[tuple[str, bool], ...]  # (text, is the matched word), to be escaped when shown


class Archive(Protocol):
    """What viewers read (the web archive, `backrooms runs`, `show` and `export`, a chat surface
    answering about a run): runs listed, filtered, searched and loaded. It never writes."""

    async def get_run(self, run_id: int) -> RunRecord:
        """Raises UnknownRunError (a ConfigError) naming the id."""
        ...

    async def replies(self, run_id: int) -> list[Reply]:
        """In seq order."""
        ...

    async def list_runs(
        self, *, status: str | None = None, space: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Newest first."""
        ...

    async def find_runs(self, f: RunFilter, limit: int = PAGE_SIZE) -> list[RunRecord]:
        """The runs that pass the filter, newest first, each with its cast and totals as
        `get_run` gives them. A page costs the same few queries however many runs it holds."""
        ...

    async def hits(self, words: str, run_ids: Sequence[int]) -> dict[int, Hit]:
        """For each of `run_ids` where `words` match: the best-matching reply, with an excerpt."""
        ...

    async def choices(self) -> tuple[list[str], list[str]]:
        """The model aliases and the templates that stored runs used (for filter menus), sorted."""
        ...

    async def version(self) -> Hashable | None:
        """A value that changes whenever a commit, by any connection or process, may have changed
        what the archive reads, so a viewer may keep what it made from an unchanged store. None
        when the store cannot tell: then nothing may be kept."""
        ...

"""Stopping a run from any process (ARCHITECTURE.md, "Runs owned by leases": stop requests are
rows, the run's desired state, so any process can make them).

The driving side: `StopRequests` reads, only while this process drives runs, the stop requests
of all of them in one query, and sets the StopSignal of each run asked for. The run then ends
exactly as a local stop ends it: reason "stopped", by the asker, the chat shows its cut-off mark
and closing line. Where the store announces requests (DesiredNotices: PostgreSQL's NOTIFY), the
driver also listens, and reads a run's request as soon as it is announced: the notice is only a
hint, the row is the truth. NOTIFY is best effort, so the poll stays, about once a second
(`LISTENING_POLL_SECONDS`); without notices (SQLite) it is all there is, twice a second.

The asking side: `ask_and_wait` writes the request and waits, bounded, for the run's end in the
store. A run nobody drives would wait forever (running but waiting to be claimed, queued, paused,
or its driver dead), so the asker tries to end it itself: `try_here` claims it (a live lease
elsewhere refuses the claim), ends it with the stop's end (`end_here`), and lets it go. It tries
at once, again once the driver has had time to answer (`TAKE_AFTER`: a driver that has not may be
gone), and at the end of the wait.

A paused run is ended by a stop too: nobody drives it, so the asker ends it; it is no longer
resumable, and its end says who stopped it (`continue` can still extend it, as any ended run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

from .engine import StopSignal
from .errors import LeaseHeld, StoreError
from .leasing import LeaseKeeper
from .logfile import LogFileWriter
from .ports import DesiredNotices, TranscriptStore
from .records import Reply, RunEnd, RunRecord, now

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often a driver reads the requests: a stop lands within about a second
LISTENING_POLL_SECONDS = 1.0  # the same, as the fallback of a driver that hears notices
WAIT_SECONDS = 5.0  # how long the asker waits for the run's end
TAKE_AFTER = 1.5  # a driver answers within about a second; one that has not may be gone
TICK = 0.1  # how often the asker reads the run while it waits

# Ends the run here if nobody drives it, else None; told whether this is the first look.
TryHere = Callable[[RunRecord, bool], Awaitable[RunEnd | None]]


@dataclass(frozen=True)
class Asked:
    """What became of a stop request: the run as last read, and whether it was still going."""

    record: RunRecord
    was_going: bool  # False: it had ended before the request

    @property
    def ended(self) -> bool:
        return self.was_going and self.record.end is not None

    @property
    def message(self) -> str:
        run_id, end = self.record.id, self.record.end
        if not self.was_going:
            return f"run {run_id} is not running: {end.summary if end else self.record.status}"
        if end is not None:
            return f"run {run_id}: {end.summary}"
        return (
            f"run {run_id}: asked to stop, but the process driving it has not ended it within "
            f"{WAIT_SECONDS:g} s; it will once it reads the request"
        )


async def ask_and_wait(
    store: TranscriptStore,
    run_id: int,
    by: str,
    try_here: TryHere,
    *,
    seconds: float = WAIT_SECONDS,
) -> Asked:
    """Ask for the run's stop, then wait up to `seconds` for its end (module docstring).
    UnknownRunError for a bad id."""
    record = await store.get_run(run_id)
    if record.end is not None:
        return Asked(record, was_going=False)
    if not await store.request_stop(run_id, by, now()):  # it ended in between
        return Asked(await store.get_run(run_id), was_going=False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    attempts = [0.0, TAKE_AFTER, seconds]
    while True:
        record = await store.get_run(run_id)
        if record.end is not None:
            return Asked(record, was_going=True)
        elapsed = loop.time() - started
        if attempts and elapsed >= attempts[0]:
            first = attempts[0] == 0.0
            attempts = [at for at in attempts if at > elapsed]
            if await try_here(record, first) is not None:
                continue  # ended here: read it back
        if elapsed >= seconds:
            return Asked(record, was_going=True)
        await asyncio.sleep(TICK)


async def end_here(store: TranscriptStore, run_id: int, by: str) -> RunEnd:
    """End a run that this process has just claimed and nobody drives, as a stop would: the end
    stored, and the log file closed when it is on this machine (where workers share no disk,
    `export --format txt` is the complete log). A chat that showed the run still owes its
    closing line (its delivery cursor says so): a chat surface shows it (`deliver_ended`)."""
    record = await store.get_run(run_id)
    if record.end is not None:
        return record.end
    end = RunEnd("stopped", by=by, turns=record.turns)
    await store.finish_run(run_id, end, now())
    _close_log(record, await store.replies(run_id), end)
    log.info("run %s: stopped by %s, here, as nobody drove it", run_id, by)
    return end


def _close_log(record: RunRecord, replies: Sequence[Reply], end: RunEnd) -> None:
    path = Path(record.log_path)
    if not path.exists():
        return
    writer = LogFileWriter(path)
    try:
        writer.rebuild(replies)  # what its driver had not appended yet, if anything
        writer.append(end.closing_line())
    except (StoreError, OSError) as exc:
        log.warning("run %s: cannot close its log file: %s", record.id, exc)


class StopRequests:
    """The driving side (module docstring): polls while `held()` names runs, sets their signals;
    with `notices`, also reads a run's request as soon as it is announced. `period`: seconds
    between two polls (default: `LISTENING_POLL_SECONDS` with notices, else `POLL_SECONDS`)."""

    def __init__(
        self,
        store: TranscriptStore,
        held: Callable[[], Mapping[int, StopSignal]],
        period: float | None = None,
        notices: DesiredNotices | None = None,
    ) -> None:
        self._store = store
        self._held = held
        default = POLL_SECONDS if notices is None else LISTENING_POLL_SECONDS
        self._period = default if period is None else period
        self._notices = notices
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None

    def watch(self) -> None:
        """Make sure the poll runs (a run was launched); it ends by itself once no run is held.
        The listener, once started, stays until `close` (one connection, not one a run)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="stop requests")
        if self._notices is not None and (self._listener is None or self._listener.done()):
            self._listener = asyncio.create_task(self._listen(self._notices), name="stop notices")

    async def _poll(self) -> None:
        # At once first: a run claimed with a request standing stops before its first reply.
        while held := list(self._held()):
            await self._read(held)
            await asyncio.sleep(self._period)

    async def _listen(self, notices: DesiredNotices) -> None:
        async with aclosing(notices.notices()) as heard:
            async for run_id in heard:
                if run_id in self._held():
                    await self._read([run_id])

    async def _read(self, run_ids: Sequence[int]) -> None:
        try:
            asked = await self._store.stop_requests(run_ids)
        except StoreError as exc:  # the next poll tries again; local stops still work
            log.warning("cannot read stop requests: %s", exc)
            return
        for run_id, by in asked.items():
            signal = self._held().get(run_id)
            if signal is not None and not signal.is_set():
                log.info("run %s: stop asked by %s from the store", run_id, by)
                signal.set(by)

    async def close(self) -> None:
        """Stop polling and listening (the listener's connection is closed)."""
        tasks = [t for t in (self._task, self._listener) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Stopper:
    """The manager's side of stop requests: the poll for the runs it drives, and stops asked
    here of runs it does not drive. `busy(run_id)`: the run is going or starting here."""

    def __init__(
        self,
        store: TranscriptStore,
        keeper: LeaseKeeper,
        held: Callable[[], Mapping[int, StopSignal]],
        busy: Callable[[int], bool],
        *,
        notices: DesiredNotices | None = None,
        poll: float | None = None,
    ) -> None:
        self.requests = StopRequests(store, held, poll, notices)
        self._store = store
        self._keeper = keeper
        self._busy = busy

    async def elsewhere(self, run_id: int, by: str) -> Asked:
        async def try_here(record: RunRecord, first: bool) -> RunEnd | None:
            return await self._end_undriven(record, by, first)

        return await ask_and_wait(self._store, run_id, by, try_here)

    async def _end_undriven(self, record: RunRecord, by: str, first: bool) -> RunEnd | None:
        """End the run here if nobody drives it; None when some process does. Without a Leases
        port (PostgreSQL until its leases come) nobody can tell who drives a run: a driver
        elsewhere gets `TAKE_AFTER` to answer, then the run is taken for nobody's."""
        if self._busy(record.id):
            return None  # starting here: the poll stops it once it goes
        if first and self._keeper.leases is None:
            return None
        try:
            await self._keeper.take(record.id)
        except LeaseHeld:
            return None  # another process drives it: it reads the request
        try:
            return await end_here(self._store, record.id, by)
        finally:
            await self._keeper.let_go(record.id)

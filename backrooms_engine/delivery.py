"""Durable delivery of one run to one chat poster: driven by the committed replies and the poster's
delivery cursor in the store, never by a queue that a timeout may cancel.

A chat poster (an observer with `durable = True`) is shown, in order: the run's start, then every
committed reply from its cursor on (one store write per reply shown), then the closing line. The
text of the reply being produced right now (deltas) is shown only once the poster has caught up
with everything committed before it, and only until the run ends: after a stop, no message for
the cut reply is begun that had not been begun already.

Two cursors per poster live in the store: `name` counts the replies fully shown (a reply counts
as shown when its last part is posted); `name:closing` is 1 while the closing line is owed and 2
once it is shown, so a restart finishes the delivery of runs that ended before it, and runs that
never had a chat poster are never mistaken for owing one.

The run waits for its chat (backpressure): `caught_up(seq, lag)` returns once the poster is at
most `lag` replies behind reply `seq`, and the engine asks for reply `seq` only then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from .errors import StoreError
from .events import (
    Event,
    ReplyDelta,
    ReplyFinished,
    ReplyRetrying,
    ReplyStarted,
    RunEnded,
    RunStarted,
)
from .ports import Observer, TranscriptStore
from .pricing import RunUsage, run_usage
from .records import Reply, RunEnd

log = logging.getLogger(__name__)

CLOSING_OWED, CLOSING_SHOWN = 1, 2


def closing_cursor(observer_name: str) -> str:
    """The name under which an observer's closing-line state is kept."""
    return f"{observer_name}:closing"


def is_durable(observer: Observer) -> bool:
    return bool(getattr(observer, "durable", False))


class Delivery:
    """One chat poster's view of one run, and the task that brings it up to date."""

    def __init__(
        self,
        run_id: int,
        observer: Observer,
        store: TranscriptStore,
        *,
        history: Sequence[Reply] = (),
        cursor: int = 0,
        end: RunEnd | None = None,
    ):
        self.run_id = run_id
        self.observer = observer
        self._store = store
        self._committed: list[Reply] = list(history)
        self.cursor = min(cursor, len(self._committed))
        self._start: RunStarted | None = None
        self._live: list[Event] = []  # the reply being produced (seq == len(committed))
        self._told_started: int | None = None  # the seq whose ReplyStarted the poster has
        self._end: RunEnd | None = end
        self._usage: RunUsage | None = None  # the run's totals, as its RunEnded carried them
        self._changed = asyncio.Event()
        self._advanced = asyncio.Event()
        self._wants_deltas = getattr(observer, "wants_deltas", True)
        self.task = asyncio.create_task(
            self._run(owe=end is None), name=f"delivery {observer.name} run {run_id}"
        )

    # -- what the run tells it ------------------------------------------------------------------

    def put(self, event: Event) -> None:
        match event:
            case RunStarted():
                self._start = event
            case ReplyFinished(reply=reply):
                if reply.seq == len(self._committed):
                    self._committed.append(reply)
                    self._live = []
            case RunEnded(end=end, usage=usage):
                self._end = end
                self._usage = usage
                self._live = []  # nothing new is begun for a reply the end cut short
            case ReplyStarted() | ReplyDelta() | ReplyRetrying():
                self._put_live(event)
        self._changed.set()

    def _put_live(self, event: ReplyStarted | ReplyDelta | ReplyRetrying) -> None:
        if self._end is not None or event.seq != len(self._committed):
            return
        if isinstance(event, ReplyDelta):
            if not self._wants_deltas:
                return
            tail = self._live[-1] if self._live else None
            if isinstance(tail, ReplyDelta):  # a poster needs only the latest text
                self._live[-1] = event
                return
        self._live.append(event)

    # -- backpressure ---------------------------------------------------------------------------

    async def caught_up(self, seq: int, lag: int) -> None:
        """Return once at most `lag` replies before reply `seq` are not shown yet (or the
        delivery is over: a poster that gave up never holds a run back)."""
        while seq - self.cursor > lag and not self.task.done():
            self._advanced.clear()
            waiter = asyncio.ensure_future(self._advanced.wait())
            try:
                await asyncio.wait({waiter, self.task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    # -- the delivery itself --------------------------------------------------------------------

    async def _run(self, *, owe: bool) -> None:
        if owe:
            await self._mark(closing_cursor(self.observer.name), CLOSING_OWED)
        started = False
        while True:
            if self._start is not None and not started:
                started = True
                await self._tell(self._start)
            elif self.cursor < len(self._committed):
                await self._show(self._committed[self.cursor])
            elif self._live:
                event = self._live.pop(0)
                if isinstance(event, ReplyStarted):
                    self._told_started = event.seq
                await self._tell(event)
            elif self._end is not None:
                await self._finish(self._end)
                return
            else:
                self._changed.clear()
                await self._changed.wait()

    async def _show(self, reply: Reply) -> None:
        if self._told_started != reply.seq:
            self._told_started = reply.seq
            await self._tell(
                ReplyStarted(self.run_id, reply.seq, reply.turn, reply.position, reply.actor)
            )
        await self._tell(ReplyFinished(reply))
        self.cursor = reply.seq + 1
        self._advanced.set()
        await self._mark(self.observer.name, self.cursor)

    async def _finish(self, end: RunEnd) -> None:
        # An ended run shown after a restart has no RunEnded of its engine: its totals are
        # summed from the stored replies, which this delivery holds all of then.
        usage = self._usage or run_usage(r.usage for r in self._committed)
        await self._tell(RunEnded(self.run_id, end, usage=usage))
        if end.reason != "shutdown":  # a pause: the run goes on after the restart
            await self._mark(closing_cursor(self.observer.name), CLOSING_SHOWN)

    async def _tell(self, event: Event) -> None:
        try:
            await self.observer.handle(event)
        except asyncio.CancelledError:
            raise
        except Exception:  # the one supervisor of a poster: record, go on with the next event
            log.exception(
                "run %s: %s failed on %s", self.run_id, self.observer.name, type(event).__name__
            )

    async def _mark(self, name: str, count: int) -> None:
        try:
            await self._store.mark_delivered(self.run_id, name, count)
        except StoreError:  # the cursor only saves a replay after a restart; delivery goes on
            log.exception("run %s: cannot record delivery to %s", self.run_id, name)

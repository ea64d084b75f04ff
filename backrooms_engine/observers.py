"""Fan a run's events out to its observers without letting one slow or failing observer hold up the
turn loop or another observer.

Each observer gets its own queue and task. The queue is bounded for text deltas: when it is full, a
delta is merged into the delta waiting at its tail (the latest text wins, the delta pieces are joined),
so a slow observer sees fewer, larger deltas. Structural events (reply started and finished, run
started and ended) are never dropped or merged.

A chat poster (`durable = True`) gets no queue: its `Delivery` (delivery.py) is driven by the
committed replies and its cursor, is never cancelled by a grace timer, and outlives the run's task
(the manager keeps it until it is done or the shutdown deadline passes).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping, Sequence

from .delivery import Delivery, is_durable
from .errors import StoreError
from .events import Event, ReplyDelta, ReplyFinished
from .ports import Observer, TranscriptStore
from .records import Reply

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 256


class _Feed:
    """One observer's queue and the task that drains it."""

    def __init__(
        self, run_id: int, observer: Observer, store: TranscriptStore | None, maxsize: int
    ):
        self.run_id = run_id
        self.observer = observer
        self._store = store
        self._maxsize = maxsize
        self._items: collections.deque[Event] = collections.deque()
        self._ready = asyncio.Event()
        self._closed = False
        self.merged = 0  # deltas folded into another because the queue was full
        self._wants_deltas = getattr(observer, "wants_deltas", True)
        self.task = asyncio.create_task(
            self._drain(), name=f"observer {observer.name} run {run_id}"
        )

    def put(self, event: Event) -> None:
        if isinstance(event, ReplyDelta) and not self._wants_deltas:
            return  # no wake-up per streamed chunk for an observer that only needs whole replies
        tail = self._items[-1] if self._items else None
        if (
            isinstance(event, ReplyDelta)
            and len(self._items) >= self._maxsize
            and isinstance(tail, ReplyDelta)
            and tail.seq == event.seq
        ):
            self._items[-1] = ReplyDelta(
                event.run_id,
                event.seq,
                event.position,
                event.actor,
                tail.delta + event.delta,
                event.text,
            )
            self.merged += 1
        else:
            self._items.append(event)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def _drain(self) -> None:
        while True:
            while not self._items:
                if self._closed:
                    return
                self._ready.clear()
                await self._ready.wait()
            event = self._items.popleft()
            await self._deliver(event)

    async def _deliver(self, event: Event) -> None:
        try:
            await self.observer.handle(event)
        except asyncio.CancelledError:
            raise
        except Exception:  # the one supervisor of an observer: record, carry on with the run
            log.exception(
                "run %s: observer %s failed on %s",
                self.run_id,
                self.observer.name,
                type(event).__name__,
            )
            return
        if isinstance(event, ReplyFinished) and self._store is not None:
            try:
                await self._store.mark_delivered(
                    self.run_id, self.observer.name, event.reply.seq + 1
                )
            except StoreError:  # the cursor only saves a replay after a restart; the run goes on
                log.exception(
                    "run %s: cannot record delivery to %s", self.run_id, self.observer.name
                )


class ObserverHub:
    """The `emit` of one run: never blocks, never raises."""

    def __init__(
        self,
        run_id: int,
        observers: list[Observer],
        *,
        store: TranscriptStore | None = None,
        tracked: Sequence[Observer] = (),
        maxsize: int = DEFAULT_QUEUE_SIZE,
        history: Sequence[Reply] = (),
        cursors: Mapping[str, int] | None = None,
    ):
        """Observers in `tracked` get a delivery cursor in `store` (one write per reply each),
        so that what they missed can be replayed after a restart. The log file is rebuilt from
        the store instead, and a live web feed catches up from it, so they need none. Durable
        tracked observers (chat posters) get a Delivery from `history` on, after `cursors`."""
        self.run_id = run_id
        durable = [o for o in tracked if is_durable(o)] if store is not None else []
        self._feeds = [
            _Feed(run_id, o, store if o in tracked else None, maxsize)
            for o in observers
            if o not in durable
        ]
        self.deliveries = [
            Delivery(run_id, o, store, history=history, cursor=(cursors or {}).get(o.name, 0))
            for o in durable
            if store is not None
        ]

    def emit(self, event: Event) -> None:
        for feed in self._feeds:
            feed.put(event)
        for delivery in self.deliveries:
            delivery.put(event)

    async def caught_up(self, seq: int, lag: int) -> None:
        """Backpressure: return once every chat poster is at most `lag` replies behind `seq`."""
        for delivery in self.deliveries:
            await delivery.caught_up(seq, lag)

    def emit_to(self, observer: Observer, event: Event) -> None:
        """Deliver to one observer only (replaying what it missed before a restart)."""
        for feed in self._feeds:
            if feed.observer is observer:
                feed.put(event)

    async def close(self, grace: float | None = None) -> None:
        """Let every queued observer finish (up to `grace` seconds), then stop their tasks. Chat
        deliveries are not waited for here: they go on until done (see `deliveries`)."""
        for feed in self._feeds:
            feed.close()
        tasks = [feed.task for feed in self._feeds]
        if not tasks:
            return
        pending = set(tasks)
        try:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                log.warning("run %s: %s did not finish in time", self.run_id, task.get_name())
        finally:  # also when the close itself is cancelled (a shutdown past its deadline)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

"""The live feed: what each running run is saying right now, fanned out to the browsers watching it.

`RunManager.add_tap` gives every launched run a `_Tap` observer (see `LiveBroker.observer_for`).
The broker keeps, per running run, only what a newcomer needs to catch up: how many replies have
finished, the text of the reply in progress, and the end. Finished replies are read back from the
store, which commits a reply before anyone hears it finished.

Each watching browser is a `Subscriber` with its own bounded queue. A slow browser never holds up a
run or another browser: when its queue is full, text deltas of the same reply are merged (the pieces
are joined, so nothing is lost); structural events (a reply starting, finishing, a retry, the end)
are always kept. A subscriber that falls so far behind that even those pile up is cut off; its
browser reconnects and catches up from the store (the stream's event ids say where it was).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from backrooms_engine.events import (
    Event,
    ReplyDelta,
    ReplyFinished,
    ReplyRetrying,
    ReplyStarted,
    RunEnded,
    RunStarted,
)
from backrooms_engine.pricing import RunUsage, added
from backrooms_engine.records import Reply, RunEnd, RunRecord

from .. import costs
from .render import end_label, reply_payload

log = logging.getLogger(__name__)

QUEUE_SIZE = 64  # events per browser before deltas are merged
HARD_LIMIT = 1024  # structural events per browser before it is cut off (it reconnects)


@dataclass
class LiveEvent:
    """One server-sent event: `kind` is the SSE event name, `data` its JSON payload."""

    kind: str
    data: dict[str, Any]
    id: int | None = None  # replies finished so far, for a reconnecting browser's Last-Event-ID


def end_payload(end: RunEnd, totals: dict[str, Any]) -> dict[str, Any]:
    return {
        "reason": end.reason,
        "label": end_label(end),
        "summary": end.summary,
        "turns": end.turns,
        "totals": totals,
    }


def totals_of(record: RunRecord) -> dict[str, Any]:
    """The counts the run page shows beside the transcript, so it can keep them current."""
    return {
        "replies": record.replies,
        "turns": record.turns,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cache_read_tokens": record.cache_read_tokens,
        "cache_write_tokens": record.cache_write_tokens,
        "cost": costs.cost_text(record),
    }


class Subscriber:
    """One browser's queue. `put` never blocks and never raises."""

    def __init__(self, after: int, maxsize: int = QUEUE_SIZE, hard_limit: int = HARD_LIMIT):
        self.after = after  # replies the browser already shows: older events are not sent
        self._items: collections.deque[LiveEvent | None] = collections.deque()
        self._ready = asyncio.Event()
        self._maxsize = maxsize
        self._hard_limit = hard_limit
        self.merged = 0
        self.cut_off = False

    def put(self, event: LiveEvent) -> None:
        if self.cut_off or self._stale(event):
            return
        tail = self._items[-1] if self._items else None
        if (
            event.kind == "delta"
            and len(self._items) >= self._maxsize
            and tail is not None
            and tail.kind == "delta"
            and tail.data["seq"] == event.data["seq"]
        ):
            tail.data = {**tail.data, "text": tail.data["text"] + event.data["text"]}
            self.merged += 1
        elif len(self._items) >= self._hard_limit:
            self.close(cut_off=True)
            return
        else:
            self._items.append(event)
        self._ready.set()

    def _stale(self, event: LiveEvent) -> bool:
        seq = event.data.get("seq")
        return isinstance(seq, int) and seq < self.after

    def close(self, *, cut_off: bool = False) -> None:
        """End the stream after what is queued (or at once, dropping it, when cut off)."""
        if cut_off:
            self.cut_off = True
            self._items.clear()
        self._items.append(None)
        self._ready.set()

    @property
    def queued(self) -> tuple[LiveEvent | None, ...]:
        """What waits to be sent, oldest first; None is the end of the stream."""
        return tuple(self._items)

    async def get(self) -> LiveEvent | None:
        """The next event; None when the stream is over."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def take_queued(self) -> list[LiveEvent | None]:
        """Everything queued now, oldest first, without waiting (None: the stream is over)."""
        items = list(self._items)
        self._items.clear()
        return items


@dataclass
class _LiveRun:
    record: RunRecord  # its reply and token counts kept current as replies finish
    current: tuple[int, str, str] | None = None  # (seq, actor, text so far) of the reply going
    subscribers: set[Subscriber] = field(default_factory=set)

    @property
    def finished(self) -> int:
        """Replies finished, as heard from the engine."""
        return self.record.replies

    def count(self, reply: Reply) -> None:
        record = self.record
        so_far = RunUsage(
            record.input_tokens,
            record.output_tokens,
            record.cache_read_tokens,
            record.cache_write_tokens,
            record.cost_usd,
            complete=record.usage_complete,
        )
        total = added(so_far, reply.usage)
        self.record = dataclasses.replace(
            record,
            replies=max(record.replies, reply.seq + 1),
            input_tokens=total.input_tokens,
            output_tokens=total.output_tokens,
            cache_read_tokens=total.cache_read_tokens,
            cache_write_tokens=total.cache_write_tokens,
            cost_usd=total.cost_usd,
            usage_complete=total.complete,
        )


@dataclass(frozen=True)
class Progress:
    """A live run as the broker holds it at one moment."""

    finished: int  # replies finished, as heard from the engine
    current: tuple[int, str, str] | None  # (seq, actor, text so far) of the reply going
    watchers: int  # browsers subscribed to it


@dataclass(frozen=True)
class Snapshot:
    """What a newcomer receives first: replies to read from the store, then these events."""

    finished: int
    events: list[LiveEvent]


class LiveBroker:
    def __init__(self) -> None:
        self._runs: dict[int, _LiveRun] = {}
        self._closed = False

    def observer_for(self, record: RunRecord) -> _Tap:
        """The tap given to `RunManager.add_tap`: registers the run before its first event."""
        live = _LiveRun(record)
        self._runs[record.id] = live
        return _Tap(self, record.id)

    def is_live(self, run_id: int) -> bool:
        return run_id in self._runs

    def progress(self, run_id: int) -> Progress | None:
        """Where a live run stands here (None if it is not live here)."""
        live = self._runs.get(run_id)
        if live is None:
            return None
        return Progress(live.finished, live.current, len(live.subscribers))

    def subscribe(self, run_id: int, after: int) -> tuple[Subscriber, Snapshot] | None:
        """Watch a live run (None if it is not live here). Atomic: no await between taking the
        snapshot and joining the fan-out, so nothing said in between is missed."""
        live = self._runs.get(run_id)
        if live is None or self._closed:
            return None
        subscriber = Subscriber(after)
        events = []
        if live.current is not None and live.current[0] >= after:
            seq, actor, text = live.current
            events.append(LiveEvent("start", {"seq": seq, "actor": actor}))
            if text:
                events.append(LiveEvent("delta", {"seq": seq, "actor": actor, "text": text}))
        live.subscribers.add(subscriber)
        return subscriber, Snapshot(live.finished, events)

    def unsubscribe(self, run_id: int, subscriber: Subscriber) -> None:
        live = self._runs.get(run_id)
        if live is not None:
            live.subscribers.discard(subscriber)

    def close(self) -> None:
        """End every stream (the service is stopping); runs go on being tapped but not shown."""
        self._closed = True
        for live in self._runs.values():
            for subscriber in live.subscribers:
                subscriber.close()
            live.subscribers.clear()

    # -- fed by the taps

    def publish(self, run_id: int, event: Event) -> None:
        """Called by a run's tap for each event, in order."""
        live = self._runs.get(run_id)
        if live is None:
            return
        out = _translate(live, event)
        for item in out:
            for subscriber in list(live.subscribers):
                subscriber.put(item)
        if isinstance(event, RunEnded):
            for subscriber in live.subscribers:
                subscriber.close()
            del self._runs[run_id]


def _translate(live: _LiveRun, event: Event) -> list[LiveEvent]:
    """Update the run's state with `event` and say what browsers should hear of it."""
    match event:
        case RunStarted():
            return []
        case ReplyStarted(seq=seq, actor=actor, attempt=attempt):
            live.current = (seq, actor, "")
            return [LiveEvent("start", {"seq": seq, "actor": actor, "attempt": attempt})]
        case ReplyDelta(seq=seq, actor=actor, delta=delta, text=text):
            live.current = (seq, actor, text)
            return [LiveEvent("delta", {"seq": seq, "actor": actor, "text": delta})]
        case ReplyRetrying(seq=seq, actor=actor, attempt=attempt, delay=delay, reason=reason):
            live.current = (seq, actor, "")  # the failed attempt's text is void
            data = {"seq": seq, "actor": actor, "attempt": attempt, "delay": delay}
            return [LiveEvent("retry", {**data, "reason": reason})]
        case ReplyFinished(reply=reply):
            live.current = None
            live.count(reply)
            data = {**reply_payload(reply), "totals": totals_of(live.record)}
            return [LiveEvent("reply", data, id=reply.seq + 1)]
        case RunEnded(end=end):
            live.current = None
            return [LiveEvent("end", end_payload(end, totals_of(live.record)))]
    return []


class _Tap:
    """The Observer a run gets from the broker. Handling is synchronous, so it never lags."""

    name = "web"

    def __init__(self, broker: LiveBroker, run_id: int):
        self._broker = broker
        self._run_id = run_id

    async def handle(self, event: Event) -> None:
        self._broker.publish(self._run_id, event)

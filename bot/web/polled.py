"""The live stream of a run that another process drives: followed through the store.

The driver commits each finished reply and overwrites the run's live-text row at most once a
second (backrooms_engine/live.py); this polls both every POLL_SECONDS and sends what is new as
the same events a run driven here sends (bot/web/live.py), so the page cannot tell the two apart.
It is at most about a second behind the model: the driver's write interval, plus one poll.

However many browsers watch a run, the store is polled once for it (`Polls`): each poll's
reading goes to every viewer, and each viewer sends what it has not sent yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from backrooms_engine.errors import StoreError, UnknownRunError
from backrooms_engine.ports import LiveLine
from backrooms_engine.records import Reply, RunRecord

from ..runtime import Runtime
from .broker import LiveEvent, end_payload, totals_of
from .render import reply_payload

POLL_SECONDS = 0.2
PINGS_EVERY = 75  # polls: about fifteen seconds


@dataclass(frozen=True)
class _Reading:
    """The run as one poll read it."""

    run: RunRecord
    replies: list[Reply]  # all its finished replies, in seq order
    line: LiveLine | None
    driven: bool  # still driven by a live process


@dataclass
class _Poll:
    """One run's poll and what it last read; viewers wait for the next reading."""

    rt: Runtime
    run_id: int
    viewers: int = 0
    reading: _Reading | None = None
    failed: BaseException | None = None
    over: bool = False  # the poll has ended: no reading comes after the last one
    count: int = 0  # readings so far
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        replies: list[Reply] = []
        try:
            while True:
                run = await self.rt.archive.get_run(self.run_id)
                if run.replies > len(replies):  # read again only when a reply has finished
                    replies = await self.rt.archive.replies(self.run_id)
                line = await self.rt.live_text.live(self.run_id)
                driven = self.run_id in await self.rt.live_text.driven([self.run_id])
                self._publish(_Reading(run, replies, line, driven))
                if run.end is not None or not driven:
                    return
                await asyncio.sleep(POLL_SECONDS)
        except (StoreError, UnknownRunError) as exc:  # each viewer's stream ends with it
            self.failed = exc
        finally:
            self.over = True
            self.changed.set()

    def _publish(self, reading: _Reading) -> None:
        self.reading = reading
        self.count += 1
        self.changed.set()
        self.changed = asyncio.Event()

    async def after(self, count: int) -> tuple[_Reading, int]:
        """The latest reading if it is newer than the `count`th (waiting for one if not)."""
        while self.count <= count:
            if self.over:
                raise self.failed or _Over()
            await self.changed.wait()
        assert self.reading is not None
        return self.reading, self.count


class _Over(Exception):
    """The run's poll ended (its end, or no process drives it) and this viewer has it all."""


class Polls:
    """The runs being followed through the store, each polled once for all its viewers."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._polls: dict[int, _Poll] = {}

    @contextlib.asynccontextmanager
    async def watching(self, run_id: int) -> AsyncIterator[_Poll]:
        poll = self._polls.get(run_id)
        if poll is None or (poll.task is not None and poll.task.done()):
            poll = self._polls[run_id] = _Poll(self._rt, run_id)
            poll.task = asyncio.create_task(poll.run(), name=f"web poll of run {run_id}")
        poll.viewers += 1
        try:
            yield poll
        finally:
            poll.viewers -= 1
            if poll.viewers == 0 and self._polls.get(run_id) is poll:
                del self._polls[run_id]
                if poll.task is not None:
                    poll.task.cancel()


@dataclass
class _Shown:
    """What the browser has been sent of the run so far."""

    replies: int
    live: LiveLine | None = None


async def follow(polls: Polls, run_id: int, after: int) -> AsyncIterator[LiveEvent | None]:
    """Events for the run after `after` replies, until its end (or its driver lets it go, which
    ends the stream; the browser reconnects and is told it is paused). None: a keep-alive."""
    shown = _Shown(after)
    seen = 0
    async with polls.watching(run_id) as poll:
        while True:
            try:
                reading, count = await poll.after(seen)
            except _Over:
                return
            for reply in reading.replies[shown.replies :]:
                yield LiveEvent("reply", reply_payload(reply), id=reply.seq + 1)
                shown.replies = reply.seq + 1
            if reading.run.end is not None:
                yield LiveEvent("end", end_payload(reading.run.end, totals_of(reading.run)))
                return
            for event in _live_events(shown, reading.line):
                yield event
            if not reading.driven:
                return
            if count // PINGS_EVERY > seen // PINGS_EVERY:
                yield None
            seen = count


def _live_events(shown: _Shown, line: LiveLine | None) -> list[LiveEvent]:
    if line is None or line.seq < shown.replies or line == shown.live:
        return []
    before = shown.live
    events = []
    if before is None or before.seq != line.seq or not line.text.startswith(before.text):
        events.append(LiveEvent("start", {"seq": line.seq, "actor": line.actor}))
        before = LiveLine(line.seq, line.actor, "")
    if line.text != before.text:
        added = line.text[len(before.text) :]
        events.append(LiveEvent("delta", {"seq": line.seq, "actor": line.actor, "text": added}))
    shown.live = line
    return events

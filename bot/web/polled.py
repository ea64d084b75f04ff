"""The live stream of a run that another process drives: followed through the store.

The driver commits each finished reply and overwrites the run's live-text row at most once a
second (backrooms_engine/live.py); this polls both every POLL_SECONDS and sends what is new as
the same events a run driven here sends (bot/web/live.py), so the page cannot tell the two apart.
It is at most about a second behind the model: the driver's write interval, plus one poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from backrooms_engine.ports import LiveLine
from backrooms_engine.records import RunRecord

from ..runtime import Runtime
from .broker import LiveEvent, end_payload, totals_of
from .render import reply_payload

POLL_SECONDS = 0.2
PINGS_EVERY = 75  # polls: about fifteen seconds


@dataclass
class _Shown:
    """What the browser has been sent of the run so far."""

    replies: int
    live: LiveLine | None = None


async def follow(rt: Runtime, run_id: int, after: int) -> AsyncIterator[LiveEvent | None]:
    """Events for the run after `after` replies, until its end (or its driver lets it go, which
    ends the stream; the browser reconnects and is told it is paused). None: a keep-alive."""
    shown = _Shown(after)
    polls = 0
    while True:
        run = await rt.archive.get_run(run_id)
        if run.replies > shown.replies:
            for reply in (await rt.archive.replies(run_id))[shown.replies :]:
                yield LiveEvent("reply", reply_payload(reply), id=reply.seq + 1)
                shown.replies = reply.seq + 1
        if run.end is not None:
            yield LiveEvent("end", end_payload(run.end, totals_of(run)))
            return
        for event in _live_events(shown, await rt.live_text.live(run_id)):
            yield event
        if not await _still_driven(rt, run):
            return
        polls += 1
        if polls % PINGS_EVERY == 0:
            yield None
        await asyncio.sleep(POLL_SECONDS)


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


async def _still_driven(rt: Runtime, run: RunRecord) -> bool:
    return run.id in await rt.live_text.driven([run.id])

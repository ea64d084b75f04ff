"""GET /runs/{id}/events: a run's live text as server-sent events.

Events: `start` {seq, actor} (a reply begins, or begins again after a failed attempt: clear it),
`delta` {seq, actor, text} (text to append), `retry` {seq, actor, attempt, delay, reason},
`reply` {seq, turn, actor, text, segments, totals?} (finished; the event id is the number of
replies finished), `end` {reason, label, summary, turns, totals}, and `paused` {summary, state}
for a run that no process drives (state: queued, waiting or paused). `end` and `paused` close the stream. A run another process drives is followed
through the store (polled.py), with the same events.

No text is lost between the page and its stream. The page embeds how many replies it rendered
(`after`); the stream first sends the finished replies after those (read from the store), then the
reply in progress as its whole text so far, then everything that happens next. The broker takes the
snapshot and joins the fan-out in one step, so the two cannot drift apart. A browser that reconnects
sends Last-Event-ID, which replaces `after`, and the page ignores a reply it already shows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from backrooms_engine.records import Reply

from .broker import LiveEvent, Snapshot, Subscriber, end_payload, totals_of
from .context import web
from .polled import Polls, follow
from .render import idle_note, reply_payload
from .respond import run_id_number

PING_SECONDS = 15.0  # a comment line now and then keeps proxies from closing an idle stream
# Text is sent to a browser at most this often: the deltas of that time go as one write. Each
# write crosses Starlette, uvicorn and the socket once per viewer; a model streams some 20-100
# pieces a second, and 50 viewers at one write per piece cost the event loop more than the
# pages it serves (bench/README.md). A fifth of a second still reads as a live stream.
BATCH_SECONDS = 0.2
RETRY_MS = 2000  # how soon a browser reconnects after the stream drops
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def events(request: Request) -> Response:
    ctx = web(request)
    run_id = request.path_params["run_id"]
    await ctx.rt.archive.get_run(run_id)  # an unknown id is a 404, not an empty stream
    stream = _stream(request, run_id, _after(request))
    return StreamingResponse(stream, media_type="text/event-stream", headers=HEADERS)


async def _stream(request: Request, run_id: int, after: int) -> AsyncIterator[str]:
    # Joined here, inside the stream, so the `finally` that leaves the fan-out always runs.
    broker = web(request).broker
    joined = broker.subscribe(run_id, after)
    if joined is None:
        rt = web(request).rt
        elsewhere = run_id in await rt.live_text.driven([run_id])  # by another process
        polls = web(request).polls
        chunks = _polled(polls, run_id, after) if elsewhere else _archived(request, run_id, after)
        async for chunk in chunks:
            yield chunk
        return
    subscriber, snapshot = joined
    try:
        async for chunk in _live(request, run_id, after, subscriber, snapshot):
            yield chunk
    finally:
        broker.unsubscribe(run_id, subscriber)


def _after(request: Request) -> int:
    for raw in (request.headers.get("last-event-id"), request.query_params.get("after")):
        count = run_id_number(raw)
        if count is not None:
            return count
    return 0


async def _live(
    request: Request, run_id: int, after: int, subscriber: Subscriber, snapshot: Snapshot
) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    if snapshot.finished > after:
        for reply in (await web(request).rt.archive.replies(run_id))[after : snapshot.finished]:
            yield frame(_reply_event(reply))
    for event in snapshot.events:
        yield frame(event)
    while True:
        try:
            event = await asyncio.wait_for(subscriber.get(), PING_SECONDS)
        except TimeoutError:
            yield ": ping\n\n"
            continue
        if event is None:
            return
        if event.kind == "delta":
            await asyncio.sleep(BATCH_SECONDS)  # what else the run says meanwhile, in one write
        frames, more = [frame(event)], subscriber.take_queued()
        ended = None in more
        frames += [frame(item) for item in more if item is not None]
        yield "".join(frames)
        if ended:
            return


async def _archived(request: Request, run_id: int, after: int) -> AsyncIterator[str]:
    """A run not live here (ended, or left running by a stopped process): what the page lacks,
    then the end, or `paused`."""
    store = web(request).rt.archive
    run = await store.get_run(run_id)
    yield f"retry: {RETRY_MS}\n\n"
    for reply in (await store.replies(run_id))[after:]:
        yield frame(_reply_event(reply))
    if run.end is not None:
        yield frame(LiveEvent("end", end_payload(run.end, totals_of(run))))
    else:  # nobody drives it: the stream ends, saying why (pages.py's status words)
        state = run.status if run.status in ("queued", "paused") else "waiting"
        summary = idle_note(state, run_id)
        yield frame(LiveEvent("paused", {"summary": summary, "state": state}))


async def _polled(polls: Polls, run_id: int, after: int) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    async for event in follow(polls, run_id, after):
        yield ": ping\n\n" if event is None else frame(event)


def _reply_event(reply: Reply) -> LiveEvent:
    return LiveEvent("reply", reply_payload(reply), id=reply.seq + 1)


def frame(event: LiveEvent) -> str:
    """One SSE message. json.dumps escapes newlines, so the data is always a single line."""
    head = f"event: {event.kind}\n"
    if event.id is not None:
        head += f"id: {event.id}\n"
    return f"{head}data: {json.dumps(event.data)}\n\n"

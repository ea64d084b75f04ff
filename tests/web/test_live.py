"""The live feed: server-sent events for a running run, and the broker behind them."""

from __future__ import annotations

import asyncio
from typing import Any

from backrooms_engine.events import ReplyDelta, ReplyFinished, ReplyStarted, RunEnded
from backrooms_engine.records import Reply, RunEnd, RunRecord, RunSpec, now
from bot.web.broker import LiveBroker, Progress
from tests.web.conftest import OPUS, WAIT, Site, sse_events, until

LONG = "one two three four five six seven eight nine ten " * 3


async def collect(site: Site, run_id: int, after: int = 0) -> list[tuple[str, Any]]:
    async with site.http.get(f"/runs/{run_id}/events", params={"after": after}) as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [event async for event in sse_events(response)]


def progress(site: Site, run_id: int) -> Progress:
    """Where the broker says a live run stands (the run must be live)."""
    now_at = site.surface.broker.progress(run_id)
    assert now_at is not None, f"run {run_id} is not live"
    return now_at


def texts_by_seq(events: list[tuple[str, Any]]) -> dict[int, str]:
    """What a page would show per reply: deltas appended, reset by `start`, replaced by `reply`."""
    shown: dict[int, str] = {}
    for kind, data in events:
        if kind == "start":
            shown[data["seq"]] = ""
        elif kind == "delta":
            shown[data["seq"]] = shown.get(data["seq"], "") + data["text"]
        elif kind == "reply":
            assert shown.get(data["seq"], data["text"]) == data["text"]
            shown[data["seq"]] = data["text"]
    return shown


async def test_a_live_run_streams_deltas_replies_and_the_end(site: Site) -> None:
    site.models.chunk_count, site.models.chunk_delay = 10, 0.03
    run_id = await site.run(LONG, "short answer", wait=False)
    events = await asyncio.wait_for(collect(site, run_id), WAIT)
    kinds = [kind for kind, _ in events]
    assert kinds.count("delta") >= 10  # the text arrived piece by piece
    assert kinds[-1] == "end" and kinds.count("reply") == 2
    assert events[-1][1]["summary"] == "Reached maximum number of turns (1). Conversation ended."
    assert texts_by_seq(events) == {0: LONG, 1: "short answer"}
    reply = next(data for kind, data in events if kind == "reply")
    assert reply["actor"] == "Claude 1" and reply["segments"] == [["prose", LONG]]


async def test_a_late_subscriber_misses_nothing(site: Site) -> None:
    """Joined mid-reply, with the page showing the first reply only: the stream carries the
    reply in progress as its whole text so far, then the rest."""
    site.models.chunk_count, site.models.chunk_delay = 20, 0.05
    run_id = await site.run("first reply", LONG, "third", "fourth", turns=2, wait=False)

    def streaming_reply_1() -> bool:
        current = progress(site, run_id).current
        return current is not None and current[0] == 1 and bool(current[2])

    await until(streaming_reply_1, "reply 1")
    events = await asyncio.wait_for(collect(site, run_id, after=1), WAIT)
    assert events[0][0] == "start" and events[0][1]["seq"] == 1
    assert events[1][0] == "delta" and LONG.startswith(events[1][1]["text"])
    assert texts_by_seq(events) == {1: LONG, 2: "third", 3: "fourth"}


async def test_a_subscriber_behind_the_broker_catches_up_from_the_store(site: Site) -> None:
    site.models.chunk_count, site.models.chunk_delay = 20, 0.05
    run_id = await site.run("a", "b", LONG, "d", turns=2, wait=False)
    await until(lambda: progress(site, run_id).finished >= 2, "two finished replies")
    events = await asyncio.wait_for(collect(site, run_id, after=0), WAIT)
    assert texts_by_seq(events) == {0: "a", 1: "b", 2: LONG, 3: "d"}


async def test_an_ended_run_gets_what_the_page_lacks_and_the_end(site: Site) -> None:
    run_id = await site.run("x", "y")
    events = await asyncio.wait_for(collect(site, run_id, after=1), WAIT)
    assert [kind for kind, _ in events] == ["reply", "end"]
    assert events[0][1]["text"] == "y"


async def test_a_reconnecting_browser_resumes_from_its_last_event_id(site: Site) -> None:
    run_id = await site.run("x", "y")
    headers = {"Last-Event-ID": "2"}
    async with site.http.get(f"/runs/{run_id}/events?after=0", headers=headers) as response:
        events = [event async for event in sse_events(response)]
    assert [kind for kind, _ in events] == ["end"]


async def test_closing_the_surface_ends_open_streams(site: Site) -> None:
    site.models.chunk_count, site.models.chunk_delay = 50, 0.1  # a reply takes 5 s
    run_id = await site.run(LONG, turns=3, wait=False)

    async def watch() -> list[tuple[str, Any]]:
        return await collect(site, run_id)

    watcher = asyncio.create_task(watch())
    await until(lambda: progress(site, run_id).watchers, "the watcher to subscribe")
    started = asyncio.get_running_loop().time()
    await site.surface.close()
    await asyncio.wait_for(watcher, 5)
    assert asyncio.get_running_loop().time() - started < 3


# -- the broker on its own ---------------------------------------------------------------------


def record(run_id: int = 1) -> RunRecord:
    spec = RunSpec(models=("offline", "offline"))
    return RunRecord(run_id, spec, (), "running", now(), "/dev/null")


def reply(seq: int, text: str) -> Reply:
    return Reply(1, seq, seq // 2 + 1, seq % 2, f"A {seq % 2 + 1}", text, now(), now())


async def test_a_slow_subscriber_gets_merged_deltas_and_every_structural_event() -> None:
    broker = LiveBroker()
    tap = broker.observer_for(record())
    subscriber, snapshot = broker.subscribe(1, after=0)
    assert snapshot.events == [] and snapshot.finished == 0
    await tap.handle(ReplyStarted(1, 0, 1, 0, "A 1"))
    text = ""
    for i in range(500):  # far more than the queue holds: nobody reads
        text += f"w{i} "
        await tap.handle(ReplyDelta(1, 0, 0, "A 1", f"w{i} ", text))
    await tap.handle(ReplyFinished(reply(0, text)))
    await tap.handle(RunEnded(1, RunEnd("max_turns", turns=1, max_turns=1)))
    items = subscriber.queued
    assert len(items) < 100 and subscriber.merged > 400
    events = [item for item in items if item is not None]
    assert "".join(e.data["text"] for e in events if e.kind == "delta") == text
    assert [e.kind for e in events if e.kind != "delta"] == ["start", "reply", "end"]
    assert items[-1] is None  # the stream ends after the end
    assert not broker.is_live(1)


async def test_a_newcomer_gets_the_reply_in_progress_as_its_whole_text() -> None:
    broker = LiveBroker()
    tap = broker.observer_for(record())
    await tap.handle(ReplyFinished(reply(0, "done")))
    await tap.handle(ReplyStarted(1, 1, 1, 1, "A 2"))
    await tap.handle(ReplyDelta(1, 1, 1, "A 2", "hal", "hal"))
    await tap.handle(ReplyDelta(1, 1, 1, "A 2", "f way", "half way"))
    subscriber, snapshot = broker.subscribe(1, after=1)
    assert snapshot.finished == 1
    assert [(e.kind, e.data.get("text")) for e in snapshot.events] == [
        ("start", None),
        ("delta", "half way"),
    ]
    await tap.handle(ReplyDelta(1, 1, 1, "A 2", " there", "half way there"))
    assert [e.data["text"] for e in subscriber.queued if e] == [" there"]


async def test_a_subscriber_that_falls_hopelessly_behind_is_cut_off() -> None:
    broker = LiveBroker()
    tap = broker.observer_for(record())
    subscriber, _ = broker.subscribe(1, after=0)
    for seq in range(1100):  # structural events alone, never read
        await tap.handle(ReplyStarted(1, seq, 1, 0, "A 1"))
    assert subscriber.cut_off
    assert subscriber.queued == (None,)  # its browser reconnects and catches up from the store


async def test_a_released_web_run_resumes_with_the_live_feed(site: Site) -> None:
    """A service's shutdown releases a run, which waits to be claimed (the page says so); when
    the service resumes the runs it owns, a web run gets no poster of its own (observers_for
    gives none) and still streams to the page."""
    site.models.chunk_count, site.models.chunk_delay = 20, 0.05
    run_id = await site.run("one", "two", "three", "four", turns=2, wait=False)
    await until(lambda: progress(site, run_id).finished >= 1, "a finished reply")
    await site.rt.manager.shutdown(5)
    async with site.http.get(f"/runs/{run_id}") as response:
        page = await response.text()
    assert '<span id="state" class="badge state-waiting">waiting</span>' in page
    assert "waiting: no process drives it right now" in page
    events = await asyncio.wait_for(collect(site, run_id, after=4), WAIT)
    assert [(kind, data["state"]) for kind, data in events] == [("paused", "waiting")]

    resumed = await site.rt.manager.resume_all(site.surface.observers_for)
    assert [h.id for h in resumed] == [run_id]
    events = await asyncio.wait_for(collect(site, run_id, after=0), WAIT)
    stored = await site.rt.archive.replies(run_id)
    assert texts_by_seq(events) == {r.seq: r.text for r in stored}  # the cut reply was asked anew
    assert len(stored) == 4 and stored[0].text == "one"
    assert events[-1][1]["label"] == "turn limit"


async def test_a_retry_is_announced_and_the_void_attempt_cleared(site: Site) -> None:
    await site.run("warm", "up")
    site.models.chunk_count, site.models.first_byte_delay = 4, 0.3  # time for the page to join
    site.models.chunk_delay = 0.05  # the deltas and the error arrive apart, as a model sends them
    site.models.queue_error(OPUS, 529, after_chunks=2)  # fails mid-stream: asked for anew
    run_id = await site.run("second attempt", "answer", wait=False)
    events = await asyncio.wait_for(collect(site, run_id), WAIT)
    kinds = [kind for kind, _ in events]
    retry = kinds.index("retry")
    assert "delta" in kinds[:retry] and kinds[retry + 1] == "start"  # the page clears the void text
    assert texts_by_seq(events) == {0: "second attempt", 1: "answer"}


async def test_the_live_feed_says_a_reply_was_cut_off_and_what_the_run_has_cost(
    site: Site,
) -> None:
    site.models.queue_reply("claude-opus-5-5", "half", stop_reason="max_tokens")
    site.models.queue_reply("claude-opus-5-5", "whole")
    spec = RunSpec(models=("opus", "opus"), template="cli", max_turns=1, surface="web")
    run_id = (await site.rt.manager.start(spec)).id
    events = await asyncio.wait_for(collect(site, run_id), WAIT)
    finished = [data for kind, data in events if kind == "reply"]
    assert [r["cut_off"] for r in finished] == [True, False]
    end = events[-1][1]
    stored = await site.rt.archive.get_run(run_id)
    assert end["totals"]["cost"] == f"${stored.cost_usd:.4f}"  # the page's cost kept current

"""Stopping a run another process drives, through the store (stopping.py): two runtimes on one
folder's database are two processes (each store has its own owner and its own fence); the tests
with real processes are in tests/bot/test_stop_command.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from backrooms_engine.engine import StopSignal
from backrooms_engine.errors import UnknownRunError
from backrooms_engine.events import ReplyDelta, RunEnded
from backrooms_engine.logfile import transcript_text
from backrooms_engine.records import ParticipantInfo, RunEnd, RunSpec
from backrooms_engine.stopping import StopRequests
from backrooms_engine.store import StoreLocation
from backrooms_engine.store.postgres import PostgresStore
from tests.conftest import fake_env
from tests.fakes.memory_store import MemoryStore
from tests.fakes.scripted_provider import ScriptedProvider
from tests.helpers import RecordingObserver, runtime, scripted_manager, until
from tests.postgres import fresh_schema

OPUS = "claude-opus-5-5"
GPT4O = "gpt-4o-2024-08-06"
SPEC = RunSpec(models=("opus", "gpt4o"), max_turns=5)
CAST = [ParticipantInfo(0, "opus", "Claude 1", OPUS, "anthropic")]


async def test_a_stop_asked_elsewhere_ends_the_run_where_it_is_driven(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_reply(OPUS, "first reply")
    model_server.queue_reply(GPT4O, "a reply that takes 10 s", chunk_delay=0.5)
    model_server.chunk_count = 20
    rec = RecordingObserver()
    async with runtime(env) as driver, runtime(env) as asker:
        handle = await driver.manager.start(SPEC, [rec])
        await until(lambda: any(isinstance(e, ReplyDelta) and e.position == 1 for e in rec.events))
        result = await asker.manager.stop(handle.id, by="Ada")
        end = await asyncio.wait_for(asyncio.shield(handle.task), 10)
        record = await asker.archive.get_run(handle.id)
        stored = await asker.archive.replies(handle.id)
    assert result.stopped and result.message == (
        f"run {handle.id}: Conversation stopped by Ada after 0 turns."
    )
    assert end == RunEnd("stopped", by="Ada", turns=0)  # as a local stop ends it
    assert rec.of(RunEnded)[-1].end == end  # the driver's observers heard the end
    assert record.end == end and [r.text for r in stored] == ["first reply"]
    log = Path(record.log_path).read_text(encoding="utf-8")
    assert log == transcript_text(stored, end)


async def test_a_stop_of_a_run_nobody_drives_is_ended_by_the_asker(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_reply(OPUS, "first reply")
    model_server.queue_reply(GPT4O, "a reply that takes 10 s", chunk_delay=0.5)
    model_server.chunk_count = 20
    rec = RecordingObserver()
    async with runtime(env) as driver:
        handle = await driver.manager.start(SPEC, [rec])
        await until(lambda: any(isinstance(e, ReplyDelta) and e.position == 1 for e in rec.events))
        await driver.manager.shutdown(5)  # its run is left running, its lease released
    async with runtime(env) as asker:
        assert (await asker.archive.get_run(handle.id)).status == "running"
        result = await asker.manager.stop(handle.id, by="Ada")
        record = await asker.archive.get_run(handle.id)
        stored = await asker.archive.replies(handle.id)
    assert result.stopped and result.message == (
        f"run {handle.id}: Conversation stopped by Ada after 0 turns."
    )
    assert record.end == RunEnd("stopped", by="Ada", turns=0)
    assert Path(record.log_path).read_text(encoding="utf-8") == transcript_text(stored, record.end)


async def test_a_stop_ends_a_paused_run(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_reply(OPUS, "first reply")
    model_server.queue_reply(GPT4O, "second reply")
    model_server.queue_reply(OPUS, "a reply that takes 10 s", chunk_delay=0.5)
    model_server.chunk_count = 20
    rec = RecordingObserver()
    async with runtime(env) as driver:
        handle = await driver.manager.start(SPEC, [rec])
        await until(lambda: any(isinstance(e, ReplyDelta) and e.seq == 2 for e in rec.events))
        await driver.manager.shutdown(5)  # as a terminal run's SIGTERM: then it is paused
        await driver.transcript.pause_run(handle.id, datetime.now(UTC))
    async with runtime(env) as asker:
        assert (await asker.archive.get_run(handle.id)).status == "paused"
        result = await asker.manager.stop(handle.id, by="Ada")
        record = await asker.archive.get_run(handle.id)
    assert result.stopped
    assert (record.status, record.end) == ("ended", RunEnd("stopped", by="Ada", turns=1))


async def test_a_stop_of_an_ended_run_says_how_it_ended_and_asks_nothing(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    async with runtime(env) as driver, runtime(env) as asker:
        handle = await driver.manager.start(RunSpec(models=("opus", "gpt4o"), max_turns=1))
        await driver.manager.wait(handle.id)
        result = await asker.manager.stop(handle.id, by="Ada")
        assert await asker.transcript.stop_requests([handle.id]) == {}
        with pytest.raises(UnknownRunError, match="no run with id 42"):
            await asker.manager.stop(42, by="Ada")
    assert not result.stopped
    assert result.message == (
        f"run {handle.id} is not running: Reached maximum number of turns (1). Conversation ended."
    )


async def test_a_driver_that_does_not_answer_leaves_the_request_standing(model_server, tmp_path):
    """A run whose lease a live process holds is never ended by the asker: it waits, bounded,
    and says the request stands (the driver, or whoever claims the run next, ends it)."""
    env = fake_env(model_server, tmp_path)
    model_server.chunk_count, model_server.chunk_delay = 20, 0.5
    async with runtime(env) as holder, runtime(env) as asker:
        run_id = (await holder.manager.create(SPEC)).id  # held, not going: nobody polls for it
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await asker.manager.stop(run_id, by="Ada")
        took = loop.time() - began
        assert await asker.transcript.stop_requests([run_id]) == {run_id: "Ada"}
        assert (await asker.archive.get_run(run_id)).end is None
        handle = holder.manager.launch(await holder.archive.get_run(run_id))
        end = await asyncio.wait_for(asyncio.shield(handle.task), 10)  # launched: it reads it
    assert not result.stopped and "has not ended it within 5 s" in result.message
    assert 4 < took < 30
    assert end == RunEnd("stopped", by="Ada", turns=0)


class Counting(MemoryStore):
    """The memory store, keeping the run ids of every read of the stop requests."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[int]] = []

    async def stop_requests(self, run_ids):  # type: ignore[no-untyped-def]
        self.asked.append(sorted(run_ids))
        return await super().stop_requests(run_ids)


class Notices:
    """DesiredNotices in memory: what the test puts is heard; `closed` once the listening ends."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.closed = False

    async def notices(self) -> AsyncGenerator[int, None]:
        try:
            while True:
                yield await self.queue.get()
        finally:
            self.closed = True


async def test_the_poll_reads_all_held_runs_in_one_query_and_only_while_it_holds_any():
    store = Counting()
    held = {1: StopSignal(), 2: StopSignal()}
    for _ in held:
        await store.create_run(SPEC, CAST, "log.txt", datetime.now(UTC))
    poll = StopRequests(store, lambda: held, period=0.05)
    poll.watch()
    await store.request_stop(2, "Ada", datetime.now(UTC))
    await until(lambda: held[2].is_set(), 5, "the stop of run 2")
    assert (held[2].by, held[2].reason, held[1].is_set()) == ("Ada", "stopped", False)
    assert store.asked and all(ids == [1, 2] for ids in store.asked)
    held.clear()
    await asyncio.sleep(0.2)
    polls = len(store.asked)
    await asyncio.sleep(0.3)
    assert len(store.asked) == polls  # nothing held: no more queries
    await poll.close()


async def test_a_notice_is_a_hint_to_read_the_row_of_a_run_held_here():
    store = Counting()
    held = {1: StopSignal(), 2: StopSignal()}
    for _ in range(3):
        await store.create_run(SPEC, CAST, "log.txt", datetime.now(UTC))
    notices = Notices()
    poll = StopRequests(store, lambda: held, period=3600, notices=notices)
    poll.watch()
    await until(lambda: store.asked == [[1, 2]], 5, "the first poll, at once")
    notices.queue.put_nowait(2)  # no request stands: the row says so, nothing stops
    notices.queue.put_nowait(3)  # not held here: not even read
    await store.request_stop(1, "Ada", datetime.now(UTC))
    notices.queue.put_nowait(1)
    await until(lambda: held[1].is_set(), 5, "the stop of run 1")
    assert store.asked == [[1, 2], [2], [1]]  # the poll has not come round again
    assert (held[1].by, held[2].is_set()) == ("Ada", False)
    await poll.close()
    assert notices.closed  # the listening ended with the poll


async def test_a_stop_request_on_postgresql_is_announced_once_it_is_made():
    async with (
        fresh_schema() as url,
        await PostgresStore.open(StoreLocation("postgres", url)) as store,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as listener,
    ):
        moment = datetime.now(UTC)
        ended, going = [(await store.create_run(SPEC, CAST, "log.txt", moment)).id for _ in "ab"]
        await store.finish_run(ended, RunEnd("max_turns", max_turns=5), moment)
        await listener.execute("LISTEN backrooms_desired")
        assert await store.request_stop(ended, "Ada", moment) is False  # nothing to announce
        assert await store.request_stop(going, "Ada", moment) is True
        # The payload names the store's schema, then the run: the channel is the database's,
        # and other tests' stores (in schemas of their own) announce on it too.
        schema = url.rpartition("%3D")[2]
        heard = []
        async for notify in listener.notifies(timeout=5):
            if notify.payload.startswith(f"{schema} "):
                heard.append(notify.payload)
                break
        async for notify in listener.notifies(timeout=0.3):  # and nothing more
            if notify.payload.startswith(f"{schema} "):
                heard.append(notify.payload)
    assert heard == [f"{schema} {going}"]


async def test_without_leases_a_run_not_driven_here_is_ended_once_its_driver_had_time(tmp_path):
    """A store without leases (PostgreSQL until its leases come) cannot say who drives a run:
    a driver elsewhere gets its chance to answer, then the asker ends the run."""
    store = MemoryStore()
    async with scripted_manager(ScriptedProvider(), tmp_path, store=store) as manager:
        record = await store.create_run(SPEC, CAST, str(tmp_path / "gone.txt"), datetime.now(UTC))
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await manager.stop(record.id, by="Ada")
        took = loop.time() - began
        end = (await store.get_run(record.id)).end
    assert result.stopped and end == RunEnd("stopped", by="Ada", turns=0)
    assert took >= 1.0  # not at once: a driver elsewhere would have answered first

"""The turn loop's rules on a scripted provider (tests/fakes/scripted_provider.py): what the engine
does with the chunks a model sends, whatever a socket would have done to them. The same loop over
the real SDKs and the HTTP fake is tests/engine/test_loop.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backrooms_engine.engine import RetryPolicy
from backrooms_engine.events import Event, ReplyDelta, ReplyFinished, ReplyStarted
from backrooms_engine.manager import LimitError, Limits
from backrooms_engine.records import Reply, RunSpec
from tests.fakes.memory_store import MemoryStore
from tests.fakes.scripted_provider import Failure, ScriptedProvider
from tests.helpers import RecordingObserver, drive, scripted_manager

PAIR = ("opus", "gpt4o")


async def test_ctrl_c_split_across_two_chunks_ends_the_run(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    provider.reply("opus", "bye ^C", "^C now")
    rec = RecordingObserver()
    async with scripted_manager(provider, tmp_path) as manager:
        run_id, end = await drive(manager, RunSpec(models=PAIR, max_turns=10), rec)
        stored = await manager.store.replies(run_id)
        record = await manager.store.get_run(run_id)
    assert [e.delta for e in rec.of(ReplyDelta)] == ["bye ^C", "^C now"]
    assert (end.reason, end.actor, end.turns) == ("ctrl_c", "Claude 1", 0)
    assert [r.spec.alias for r in provider.requests] == ["opus"]  # GPT4o 2 is never asked
    assert [r.text for r in stored] == ["bye ^C^C now"]  # kept in the transcript all the same
    log = Path(record.log_path).read_text(encoding="utf-8")
    assert log.endswith("\nClaude 1 has ended the conversation with ^C^C.\n")


async def test_events_arrive_in_order_and_finished_after_commit(tmp_path: Path) -> None:
    seen_committed: list[bool] = []
    store = MemoryStore()

    class Checker(RecordingObserver):
        async def handle(self, event: Event) -> None:
            await super().handle(event)
            if isinstance(event, ReplyFinished):
                stored = await store.replies(event.run_id)
                seen_committed.append(event.reply.seq < len(stored))

    rec = Checker()
    async with scripted_manager(ScriptedProvider(), tmp_path, store=store) as manager:
        await drive(manager, RunSpec(models=PAIR, max_turns=1), rec)
    kinds = [type(e).__name__ for e in rec.events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunEnded"
    assert kinds.count("ReplyStarted") == 2 and kinds.count("ReplyFinished") == 2
    assert seen_committed == [True, True]
    assert [f.reply.usage.output_tokens for f in rec.of(ReplyFinished)] == [3, 3]


class SlowCommits(MemoryStore):
    """Each commit takes 0.2 s; notes whether the next speaker was asked before it ended."""

    def __init__(self, provider: ScriptedProvider) -> None:
        super().__init__()
        self.provider = provider
        self.asked_during_commit: list[bool] = []

    async def append_reply(self, reply: Reply) -> None:
        await asyncio.sleep(0.2)
        # Requests for replies 0..seq are seq + 1 (nothing is retried here): one more is the next.
        self.asked_during_commit.append(len(self.provider.requests) > reply.seq + 1)
        await super().append_reply(reply)


async def test_the_next_speaker_is_asked_while_the_last_reply_is_committed(
    tmp_path: Path,
) -> None:
    """A slow store delays nobody's turn, and observers still hear every reply end before the
    next one starts."""
    provider = ScriptedProvider()
    store = SlowCommits(provider)
    rec = RecordingObserver()
    async with scripted_manager(provider, tmp_path, store=store) as manager:
        run_id, end = await drive(manager, RunSpec(models=PAIR, max_turns=2), rec)
        stored = [r.seq for r in await manager.store.replies(run_id)]
    assert end.reason == "max_turns" and stored == [0, 1, 2, 3]
    assert store.asked_during_commit == [True, True, True, False]  # the last has no next speaker
    order = [
        (type(e).__name__, e.reply.seq if isinstance(e, ReplyFinished) else e.seq)
        for e in rec.events
        if isinstance(e, ReplyStarted | ReplyFinished)
    ]
    assert order == [(kind, seq) for seq in range(4) for kind in ("ReplyStarted", "ReplyFinished")]


async def test_retries_are_bounded(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    for _ in range(3):
        provider.fail("opus", "half a ", failure=Failure("HTTP 503", status=503))
    retry = RetryPolicy(attempts=3, base_delay=0)
    async with scripted_manager(provider, tmp_path, retry=retry) as manager:
        run_id, end = await drive(manager, RunSpec(models=PAIR, max_turns=1))
        stored = await manager.store.replies(run_id)
    assert end.reason == "error"
    assert end.detail == "opus (anthropic): gave up after 3 attempts: HTTP 503"
    assert provider.asked("opus") == 3 and provider.asked("gpt4o") == 0
    assert stored == []  # nothing of the failed attempts is kept


async def test_a_permanent_error_is_not_retried(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    provider.fail("gpt4o", failure=Failure("HTTP 401", transient=False, status=401))
    async with scripted_manager(provider, tmp_path) as manager:
        run_id, end = await drive(manager, RunSpec(models=PAIR, max_turns=3))
        stored = await manager.store.replies(run_id)
    assert (end.reason, end.detail) == ("error", "gpt4o (openai): HTTP 401")
    assert [r.text for r in stored] == ["opus reply 1"]  # the transcript so far is kept
    assert provider.asked("gpt4o") == 1


class Slow(RecordingObserver):
    async def handle(self, event: Event) -> None:
        await super().handle(event)
        await asyncio.sleep(0.05)


async def test_a_slow_observer_gets_merged_deltas_and_every_structural_event(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider()
    provider.reply("opus", *["word "] * 100)
    provider.reply("gpt4o", *["other "] * 100)
    slow, fast = Slow("slow"), RecordingObserver("fast")
    # A small queue makes the slow observer fall behind soon.
    async with scripted_manager(provider, tmp_path, observer_queue=4) as manager:
        run_id, end = await drive(manager, RunSpec(models=PAIR, max_turns=1), slow, fast)
        replies = await manager.store.replies(run_id)
    assert end.reason == "max_turns"
    assert len(fast.of(ReplyDelta)) == 200 and len(slow.of(ReplyDelta)) < 100
    assert [type(e).__name__ for e in slow.events if not isinstance(e, ReplyDelta)] == [
        "RunStarted",
        "ReplyStarted",
        "ReplyFinished",
        "ReplyStarted",
        "ReplyFinished",
        "RunEnded",
    ]
    for r in replies:  # merged deltas still add up to the whole reply
        assert "".join(e.delta for e in slow.of(ReplyDelta) if e.seq == r.seq) == r.text


async def test_the_global_cap_refuses_with_the_setting_name(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    held = asyncio.Event()
    provider.reply("opus", "still ", held, "writing")
    async with scripted_manager(provider, tmp_path, limits=Limits(max_runs=1)) as manager:
        first = await manager.start(RunSpec(models=PAIR, max_turns=1))
        with pytest.raises(LimitError, match="BACKROOMS_MAX_RUNS=1"):
            await manager.start(RunSpec(models=PAIR, max_turns=1))
        assert len(await manager.store.list_runs()) == 1  # the refused run left no trace
        held.set()
        end = await manager.wait(first.id)
        second = await manager.start(RunSpec(models=PAIR, max_turns=1))  # room again
        await manager.wait(second.id)
        runs = [r.id for r in await manager.store.list_runs()]
    assert end.reason == "max_turns"
    assert runs == [second.id, first.id]

"""The run service: concurrent runs, stop, budget, caps, observer isolation, resume and extend."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backrooms_engine.errors import ConfigError, UnknownRunError
from backrooms_engine.events import ReplyDelta, ReplyFinished, RunEnded, RunStarted
from backrooms_engine.manager import LimitError
from backrooms_engine.providers.cache_marks import unmarked
from backrooms_engine.records import ParticipantInfo, Reply, RunSpec, Usage
from tests.conftest import fake_env
from tests.helpers import RecordingObserver, by_message_count, run_to_end, runtime, until

OPUS = "claude-opus-5-5"
GPT4O = "gpt-4o-2024-08-06"


async def test_concurrent_runs_are_independent(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.chunk_delay = 0.01
    model_server.set_responder(by_message_count)
    model_server.queue_error("claude-haiku-5-5", 401)  # one run fails at once
    async with runtime(env) as rt:
        good = [
            await rt.manager.start(RunSpec(models=("opus", "gpt4o"), max_turns=3)) for _ in range(4)
        ]
        bad = await rt.manager.start(RunSpec(models=("haiku-5.5", "gpt4o"), max_turns=3))
        ends = await asyncio.gather(*(rt.manager.wait(h.id) for h in [*good, bad]))
        counts = [len(await rt.archive.replies(h.id)) for h in good]
    assert [e.reason for e in ends] == ["max_turns"] * 4 + ["error"]
    assert counts == [6] * 4


async def test_stop_mid_reply_cancels_the_request_and_keeps_no_partial_text(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_reply(OPUS, "first reply")
    model_server.queue_reply(GPT4O, "a reply that takes 10 s", chunk_delay=0.5)
    model_server.chunk_count = 20
    rec = RecordingObserver()
    async with runtime(env) as rt:
        handle = await rt.manager.start(RunSpec(models=("opus", "gpt4o"), max_turns=5), [rec])
        await until(lambda: any(isinstance(e, ReplyDelta) and e.position == 1 for e in rec.events))
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await rt.manager.stop(handle.id, by="Ada")
        took = loop.time() - began
        record = await rt.archive.get_run(handle.id)
        stored = await rt.archive.replies(handle.id)
        again = await rt.manager.stop(handle.id, by="Ada")
    assert result.stopped and "stopped by Ada after 0 turns" in result.message
    assert took < 5  # far less than the 10 s the reply would have taken
    assert [r.text for r in stored] == ["first reply"]
    assert record.status == "ended" and record.end.by == "Ada"
    assert (
        Path(record.log_path).read_text().endswith("\nConversation stopped by Ada after 0 turns.\n")
    )
    assert not again.stopped and "is not running" in again.message


async def test_stopping_an_unknown_run_names_the_id(model_server, tmp_path):
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        with pytest.raises(UnknownRunError, match="42"):
            await rt.manager.stop(42, by="x")


async def test_token_budget_ends_the_run(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    for _ in range(4):
        model_server.queue_reply("*", "words", input_tokens=40, output_tokens=10)
    async with runtime(env) as rt:
        _, end = await run_to_end(
            rt, RunSpec(models=("opus", "gpt4o"), max_turns=10, token_budget=120)
        )
        runs = await rt.archive.list_runs()
    assert end.reason == "budget" and end.detail == "120 tokens"
    assert len(model_server.requests) == 3  # 50 + 50 + 50 >= 120 after the third reply
    assert (runs[0].input_tokens, runs[0].output_tokens) == (120, 30)
    assert end.summary == "Budget of 120 tokens reached after 1 turn. Conversation ended."


async def test_default_budget_comes_from_settings(model_server, tmp_path):
    env = fake_env(model_server, tmp_path) | {"BACKROOMS_TOKEN_BUDGET": "1"}
    async with runtime(env) as rt:
        _, end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=10))
    assert end.reason == "budget"


async def test_starts_arriving_together_cannot_slip_past_a_cap(model_server, tmp_path):
    env = fake_env(model_server, tmp_path) | {
        "BACKROOMS_MAX_RUNS": "5",
        "BACKROOMS_MAX_RUNS_PER_SPACE": "2",
    }
    model_server.chunk_delay = 0.2

    def chat(space: str) -> RunSpec:
        return RunSpec(models=("opus", "gpt4o"), max_turns=1, surface="discord", space=space)

    async with runtime(env) as rt:
        outcomes = await asyncio.gather(
            *(rt.manager.start(chat("guild-1")) for _ in range(4)),
            *(rt.manager.start(chat(f"guild-{n}")) for n in range(2, 7)),
            return_exceptions=True,
        )
        for handle in outcomes:
            if not isinstance(handle, BaseException):
                await rt.manager.stop(handle.id, by="t")
        stored = await rt.archive.list_runs()
    refusals = [str(o) for o in outcomes if isinstance(o, LimitError)]
    assert len(stored) == 5 and len(refusals) == 4
    assert sum("BACKROOMS_MAX_RUNS_PER_SPACE=2" in r for r in refusals) == 2
    assert sum("BACKROOMS_MAX_RUNS=5" in r for r in refusals) == 2
    assert sum(r.spec.space == "guild-1" for r in stored) == 2


async def test_extensions_arriving_together_cannot_slip_past_a_cap(model_server, tmp_path):
    env = fake_env(model_server, tmp_path) | {"BACKROOMS_MAX_RUNS": "2"}
    async with runtime(env) as rt:
        ids = [
            (await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=1)))[0]
            for _ in range(3)
        ]
        model_server.chunk_delay = 0.2  # the extended runs are still going while others ask
        outcomes = await asyncio.gather(
            *(rt.manager.extend(run_id, 1) for run_id in ids), return_exceptions=True
        )
        for handle in outcomes:
            if not isinstance(handle, BaseException):
                await rt.manager.stop(handle.id, by="t")
    refusals = [str(o) for o in outcomes if isinstance(o, BaseException)]
    assert len(refusals) == 1 and "BACKROOMS_MAX_RUNS=2" in refusals[0]


async def test_per_space_cap_counts_only_that_space(model_server, tmp_path):
    env = fake_env(model_server, tmp_path) | {"BACKROOMS_MAX_RUNS_PER_SPACE": "1"}
    model_server.chunk_delay = 0.2
    chat = RunSpec(models=("opus", "gpt4o"), max_turns=1, surface="discord", space="guild-1")
    async with runtime(env) as rt:
        first = await rt.manager.start(chat)
        with pytest.raises(LimitError, match="BACKROOMS_MAX_RUNS_PER_SPACE=1"):
            await rt.manager.start(chat)
        other = await rt.manager.start(RunSpec(**{**chat.__dict__, "space": "guild-2"}))
        for h in (first, other):
            await rt.manager.stop(h.id, by="t")


async def test_chat_runs_get_the_turn_ceiling(model_server, tmp_path):
    env = fake_env(model_server, tmp_path) | {"BACKROOMS_CHAT_MAX_TURNS": "2"}
    async with runtime(env) as rt:
        with pytest.raises(LimitError, match=r"at most 2 turns.*BACKROOMS_CHAT_MAX_TURNS=2"):
            rt.manager.prepare(RunSpec(models=("opus", "gpt4o"), max_turns=3, surface="slack"))
        _, end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), surface="slack"))
        _, terminal_end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=3))
    assert end.reason == "max_turns" and end.max_turns == 2
    assert terminal_end.max_turns == 3  # the terminal keeps upstream's choice


class Failing(RecordingObserver):
    async def handle(self, event):
        await super().handle(event)
        raise RuntimeError("observer broke")


async def test_failing_observer_is_logged_and_the_run_goes_on(model_server, tmp_path, caplog):
    env = fake_env(model_server, tmp_path)
    healthy = RecordingObserver("healthy")
    async with runtime(env) as rt:
        with caplog.at_level(logging.ERROR):
            run_id, end = await run_to_end(
                rt, RunSpec(models=("opus", "gpt4o"), max_turns=2), Failing("broken"), healthy
            )
    assert end.reason == "max_turns"
    assert len(healthy.of(ReplyFinished)) == 4
    assert any(f"run {run_id}: observer broken failed" in r.getMessage() for r in caplog.records)


async def _seed_interrupted_run(rt, texts, *, template="cli", delivered=None):
    """A run as a crash leaves it: created, some replies committed, still marked running."""
    from backrooms_engine import logfile

    specs = rt.registry.resolve(["opus", "gpt4o"])
    t0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    path = logfile.allocate(rt.settings.log_dir, specs, template, t0)
    record = await rt.transcript.create_run(
        RunSpec(models=("opus", "gpt4o"), template=template, max_turns=2),
        [
            ParticipantInfo(0, "opus", "Claude 1", OPUS, "anthropic"),
            ParticipantInfo(1, "gpt4o", "GPT4o 2", GPT4O, "openai"),
        ],
        str(path),
        t0,
    )
    for seq, text in enumerate(texts):
        await rt.transcript.append_reply(
            Reply(
                record.id,
                seq,
                seq // 2 + 1,
                seq % 2,
                ["Claude 1", "GPT4o 2"][seq % 2],
                text,
                t0,
                t0,
                Usage(1, 1),
            )
        )
    # The log file lags one reply behind the store, as after a kill between commit and append.
    path.write_text(
        "".join(
            logfile.reply_block(a, t)
            for a, t in zip(["Claude 1", "GPT4o 2"], texts[:-1], strict=False)
        )
    )
    for name, count in (delivered or {}).items():
        await rt.transcript.mark_delivered(record.id, name, count)
    return record


async def test_resume_continues_from_the_store_and_replays_what_an_observer_missed(
    model_server, tmp_path
):
    env = fake_env(model_server, tmp_path)
    model_server.set_responder(by_message_count)
    rec = RecordingObserver("chat")
    async with runtime(env) as rt:
        record = await _seed_interrupted_run(rt, ["alpha", "beta"], delivered={"chat": 1})
        handle = await rt.manager.resume(record.id, [rec])
        end = await rt.manager.wait(handle.id)
        stored = await rt.archive.replies(record.id)
    assert end.reason == "max_turns"
    assert [r.text for r in stored][:2] == ["alpha", "beta"] and len(stored) == 4
    # The observer had seen reply 0 only: it gets reply 1 replayed, then the live ones, once each.
    assert [e.reply.seq for e in rec.of(ReplyFinished)] == [1, 2, 3]
    assert rec.of(RunStarted)[0].resumed
    # Contexts were rebuilt from the store: Claude 1's next request carries both stored replies.
    third = model_server.requests[0]
    assert [m["content"] for m in unmarked(third.messages[-2:])] == ["alpha", "beta"]
    log = Path(record.log_path).read_text()
    assert log == (
        "\n### Claude 1 ###\nalpha\n\n### GPT4o 2 ###\nbeta\n"
        f"\n### Claude 1 ###\n{stored[2].text}\n\n### GPT4o 2 ###\n{stored[3].text}\n"
        "\nReached maximum number of turns (2). Conversation ended.\n"
    )


async def test_resume_of_a_run_whose_model_is_gone_ends_it_with_the_reason(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    async with runtime(env) as rt:
        record = await _seed_interrupted_run(rt, ["alpha"])
        del rt.registry.models["gpt4o"]
        handles = await rt.manager.resume_all()
        after = await rt.archive.get_run(record.id)
        assert await rt.manager.resume_all() == []  # no crash loop: it is no longer running
    assert handles == []
    assert after.status == "ended" and "cannot resume: unknown model 'gpt4o'" in after.end.detail
    assert model_server.requests == []


async def test_resume_refuses_an_ended_run_and_points_at_continue(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    async with runtime(env) as rt:
        run_id, _ = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=1))
        with pytest.raises(ConfigError, match=f"backrooms continue {run_id} --turns N"):
            await rt.manager.resume(run_id)


async def test_extend_gives_an_ended_run_more_turns_and_a_clean_log(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.set_responder(by_message_count)
    async with runtime(env) as rt:
        run_id, _ = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=1))
        handle = await rt.manager.extend(run_id, 2)
        end = await rt.manager.wait(handle.id)
        record = await rt.archive.get_run(run_id)
        stored = await rt.archive.replies(run_id)
    assert end.reason == "max_turns" and end.max_turns == 3 and len(stored) == 6
    log = Path(record.log_path).read_text()
    assert log.count("Reached maximum number of turns") == 1
    assert log.endswith("Reached maximum number of turns (3). Conversation ended.\n")


async def test_extend_after_ctrl_c_skips_the_ctrl_c_reply_in_contexts(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_reply(OPUS, "bye ^C^C")
    async with runtime(env) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=5))
        assert end.reason == "ctrl_c"
        handle = await rt.manager.extend(run_id, 1)
        await rt.manager.wait(handle.id)
    gpt_request = model_server.requests[1]
    assert "bye ^C^C" not in str(gpt_request.messages)
    assert gpt_request.model == GPT4O  # the turn cut short goes on with participant 2


async def test_shutdown_leaves_runs_resumable(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.chunk_delay = 0.3
    rec = RecordingObserver()
    async with runtime(env) as rt:
        handle = await rt.manager.start(RunSpec(models=("opus", "gpt4o"), max_turns=3), [rec])
        await until(lambda: rec.of(ReplyDelta))
        await rt.manager.shutdown(deadline=5)
        record = await rt.archive.get_run(handle.id)
        with pytest.raises(LimitError, match="shutting down"):
            await rt.manager.start(RunSpec(models=("opus", "gpt4o")))
    assert record.status == "running"
    assert rec.of(RunEnded)[0].end.reason == "shutdown"
    assert "Conversation" not in Path(record.log_path).read_text()  # no closing line


async def test_a_tap_watches_every_run_launched_after_it(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    seen = RecordingObserver("tap")
    async with runtime(env) as rt:
        rt.manager.add_tap(lambda record: seen if record.spec.template == "cli" else None)
        await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=1))
        await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), template="science", max_turns=1))
    assert [e.run.spec.template for e in seen.of(RunStarted)] == ["cli"]
    assert len(seen.of(ReplyFinished)) == 2


async def test_a_user_resuming_counts_against_the_caps(model_server, tmp_path):
    env = fake_env(model_server, tmp_path) | {"BACKROOMS_MAX_RUNS": "1"}
    model_server.chunk_delay = 0.2
    async with runtime(env) as rt:
        ended, _ = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=1))
        going = await rt.manager.start(RunSpec(models=("opus", "gpt4o"), max_turns=1))
        with pytest.raises(LimitError, match="BACKROOMS_MAX_RUNS=1"):
            await rt.manager.extend(ended, 1)
        await rt.manager.stop(going.id, by="t")


async def test_two_resumes_at_once_start_one_engine(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.set_responder(by_message_count)
    async with runtime(env) as rt:
        record = await _seed_interrupted_run(rt, ["alpha"])
        results = await asyncio.gather(
            rt.manager.resume(record.id), rt.manager.resume(record.id), return_exceptions=True
        )
        handles = [r for r in results if not isinstance(r, BaseException)]
        errors = [r for r in results if isinstance(r, BaseException)]
        end = await rt.manager.wait(handles[0].id)
        stored = await rt.archive.replies(record.id)
    assert len(handles) == 1 and "already running" in str(errors[0])
    assert end.reason == "max_turns" and [r.seq for r in stored] == [0, 1, 2, 3]


async def test_resume_recreates_a_missing_log_folder(model_server, tmp_path):
    import shutil

    env = fake_env(model_server, tmp_path)
    async with runtime(env) as rt:
        record = await _seed_interrupted_run(rt, ["alpha", "beta"])
        shutil.rmtree(Path(record.log_path).parent)
        handles = await rt.manager.resume_all()
        end = await rt.manager.wait(handles[0].id)
    assert end.reason == "max_turns"
    assert Path(record.log_path).read_text().startswith("\n### Claude 1 ###\nalpha\n")


async def test_a_budget_ended_run_is_not_extended(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    async with runtime(env) as rt:
        run_id, end = await run_to_end(
            rt, RunSpec(models=("opus", "gpt4o"), max_turns=5, token_budget=1)
        )
        with pytest.raises(ConfigError, match="used its budget of 1 tokens"):
            await rt.manager.extend(run_id, 2)
    assert end.reason == "budget"

"""What a run costs, as stored and as shown: each reply's cache counts and dollars as the APIs
reported them through the real SDKs (the fake model server), unknown kept unknown, a reply cut at
max_tokens marked, thinking never taken for the reply, and the closing line's cost."""

from __future__ import annotations

import io

import pytest

from backrooms_engine import export
from backrooms_engine.events import ReplyFinished, RunEnded
from backrooms_engine.pricing import load_prices
from backrooms_engine.records import RunSpec
from bot import messages
from bot.terminal import CUT_OFF_NOTE, TerminalPrinter
from tests.conftest import fake_env
from tests.helpers import RecordingObserver, run_to_end, runtime

OPUS = "claude-opus-5-5"
GPT4O = "gpt-4o-2024-08-06"
PRICES = load_prices()


def usd(tokens_in: int, out: int, read: int, write: int, alias: str) -> float:
    p = PRICES[alias]
    assert p.input and p.output and p.cache_read is not None
    write_price = p.cache_write or 0.0
    return (tokens_in * p.input + out * p.output + read * p.cache_read + write * write_price) / 1e6


async def test_a_claude_reply_keeps_its_cache_counts_and_is_priced_when_made(
    model_server, tmp_path
):
    model_server.queue_reply(
        OPUS, "one two", input_tokens=10, output_tokens=2, cache_read_tokens=900,
        cache_write_tokens=300,
    )  # fmt: skip
    model_server.queue_reply(OPUS, "three", input_tokens=7, output_tokens=1)
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        run_id, _ = await run_to_end(rt, RunSpec(models=("opus", "opus"), max_turns=1))
        replies = await rt.archive.replies(run_id)
        run = await rt.archive.get_run(run_id)
    first, second = (r.usage for r in replies)
    assert (first.input_tokens, first.cache_read_tokens, first.cache_write_tokens) == (10, 900, 300)
    assert first.cost_usd == pytest.approx(usd(10, 2, 900, 300, "opus"))
    assert (second.cache_read_tokens, second.cache_write_tokens) == (0, 0)  # reported as none
    assert run.cost_usd == pytest.approx(first.cost_usd + second.cost_usd)
    assert run.usage_complete and (run.input_tokens, run.cache_read_tokens) == (17, 900)


async def test_openai_cached_tokens_are_split_out_of_the_prompt_and_absent_ones_stay_unknown(
    model_server, tmp_path
):
    model_server.queue_reply(GPT4O, "a b c", input_tokens=100, output_tokens=3, cached_tokens=64)
    model_server.queue_reply(GPT4O, "d e", input_tokens=120, output_tokens=2)  # no details
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        run_id, _ = await run_to_end(rt, RunSpec(models=("gpt4o", "gpt4o"), max_turns=1))
        replies = await rt.archive.replies(run_id)
        run = await rt.archive.get_run(run_id)
    told, untold = (r.usage for r in replies)
    assert (told.input_tokens, told.cache_read_tokens, told.cache_write_tokens) == (36, 64, 0)
    assert told.cost_usd == pytest.approx(usd(36, 3, 64, 0, "gpt4o"))
    assert (untold.input_tokens, untold.cache_read_tokens, untold.cost_usd) == (120, None, None)
    assert run.cost_usd == pytest.approx(told.cost_usd) and not run.usage_complete
    data = export.as_json(run, replies)
    assert [r["cache_read_tokens"] for r in data["replies"]] == [64, None]
    assert [r["cost_usd"] for r in data["replies"]] == [told.cost_usd, None]
    assert data["usage"]["complete"] is False
    assert data["usage"]["cache_read_tokens"] == 64 and data["usage"]["cost_usd"] == run.cost_usd


async def test_an_unpriced_model_is_counted_and_its_cost_left_unknown(model_server, tmp_path):
    for _ in range(2):
        model_server.queue_reply("claude-haiku-5-5", "hi", input_tokens=5, output_tokens=1)
    rec = RecordingObserver()
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        spec = RunSpec(models=("haiku-5.5", "haiku-5.5"), max_turns=1)
        run_id, end = await run_to_end(rt, spec, rec)
        run = await rt.archive.get_run(run_id)
    assert (run.input_tokens, run.output_tokens, run.cost_usd) == (10, 2, None)
    usage = rec.of(RunEnded)[0].usage
    assert usage is not None and usage.cost_usd is None
    line = messages.closing_text(run_id, end, None, usage)
    assert line.endswith("Conversation ended. Cost: cost unknown.")


async def test_the_closing_line_in_chat_says_what_the_run_cost(model_server, tmp_path):
    for _ in range(2):
        model_server.queue_reply(OPUS, "x", input_tokens=1000, output_tokens=250)
    rec = RecordingObserver()
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "opus"), max_turns=1), rec)
    usage = rec.of(RunEnded)[0].usage
    assert usage is not None
    assert usage.cost_usd == pytest.approx(2 * usd(1000, 250, 0, 0, "opus"))  # $0.018
    text = messages.closing_text(run_id, end, "https://relay.example", usage)
    assert text.splitlines()[0] == (
        f"Run {run_id}: Reached maximum number of turns (1). Conversation ended. Cost: $0.0180."
    )


async def test_the_run_s_cost_counts_the_reply_that_ended_it_with_ctrl_c(model_server, tmp_path):
    model_server.queue_reply(OPUS, "hello", input_tokens=100, output_tokens=10)
    model_server.queue_reply(OPUS, "bye ^C^C", input_tokens=200, output_tokens=20)
    rec = RecordingObserver()
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "opus"), max_turns=3), rec)
        stored = await rt.archive.get_run(run_id)
    usage = rec.of(RunEnded)[0].usage
    assert end.reason == "ctrl_c" and usage is not None
    assert usage.cost_usd == pytest.approx(usd(300, 30, 0, 0, "opus")) == stored.cost_usd


async def test_a_reply_cut_at_max_tokens_is_stored_and_shown_marked_and_thinking_is_not_the_reply(
    model_server, tmp_path
):
    model_server.queue_reply(
        OPUS, "the visible start of", thinking="secret chain of thought", stop_reason="max_tokens"
    )
    model_server.queue_reply(OPUS, "a whole reply", thinking="more private thinking")
    rec = RecordingObserver()
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        run_id, _ = await run_to_end(rt, RunSpec(models=("opus", "opus"), max_turns=1), rec)
        replies = await rt.archive.replies(run_id)
        run = await rt.archive.get_run(run_id)
    assert [r.text for r in replies] == ["the visible start of", "a whole reply"]
    assert [r.cut_off for r in replies] == [True, False]
    # The thinking's words are billed as output: the API counts them, so the stored usage does.
    assert replies[0].usage.output_tokens == len(
        "the visible start of secret chain of thought".split()
    )
    out = io.StringIO()
    printer = TerminalPrinter({}, stream=out, colour=False)
    for finished in rec.of(ReplyFinished):
        await printer.handle(finished)
    assert out.getvalue() == f"\n{CUT_OFF_NOTE}\n\n"
    assert [r["cut_off"] for r in export.as_json(run, replies)["replies"]] == [True, False]
    assert "secret" not in export.render(run, replies, "txt")


async def test_an_openai_reply_that_hit_the_length_limit_is_marked(model_server, tmp_path):
    model_server.queue_reply(GPT4O, "stops mid", stop_reason="max_tokens")
    model_server.queue_reply(GPT4O, "ends well")
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        run_id, _ = await run_to_end(rt, RunSpec(models=("gpt4o", "gpt4o"), max_turns=1))
        replies = await rt.archive.replies(run_id)
    assert [(r.text, r.cut_off) for r in replies] == [("stops mid", True), ("ends well", False)]


async def test_thinking_models_are_sent_their_effort_and_room_to_think(model_server, tmp_path):
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        await run_to_end(rt, RunSpec(models=("opus-5.5", "sonnet"), max_turns=1))
    flagship, seed = (r.body for r in model_server.requests_for("anthropic"))
    # output_config.effort is how the SDK's messages.create names it (OutputConfigParam).
    assert flagship["output_config"] == {"effort": "medium"}
    assert flagship["max_tokens"] == 16384  # thinking and text share it on the 5.5 models
    assert "output_config" not in seed and seed["max_tokens"] == 4096


def test_an_effort_the_api_does_not_take_is_refused_naming_the_choices(tmp_path):
    from backrooms_engine.errors import RegistryError
    from backrooms_engine.registry import load_registry

    models = tmp_path / "models.toml"
    models.write_text(
        '[models.opus]\nprovider = "anthropic"\ndisplay_name = "C"\ncompany = "a"\n'
        'effort = "huge"\n',
        encoding="utf-8",
    )
    with pytest.raises(RegistryError, match="'effort' is 'huge'; accepted: low, medium, high"):
        load_registry(models)

"""Any text a model sends survives (issue 18.1): a surrogate pair split across two stream events
is joined, a lone surrogate becomes U+FFFD, and the run goes on: the reply is stored, shown in the
terminal and sent to the next model. Real SDKs against the fake model server."""

from __future__ import annotations

import json

import pytest

from backrooms_engine.providers import _text
from backrooms_engine.records import RunSpec
from tests.conftest import fake_env
from tests.helpers import RecordingObserver, backrooms, run_to_end, runtime

OPUS = "claude-opus-5-5"
GPT4O = "gpt-4o-2024-08-06"
# Python strings hold JSON's escapes as they are: the fake sends "\ud83c" and "\udf00" as two
# separate events (split_chunks cuts by code point), as an API that streams tokens may.
SPLIT_EMOJI = "a \ud83c\udf00 b"  # four pieces: "a", " \ud83c", "\udf00 ", "b"
LONE = "x\ud800y"


@pytest.mark.parametrize("model", [OPUS, GPT4O])
@pytest.mark.parametrize("delay", [0.0, 0.03], ids=["one_read", "apart"])
async def test_an_emoji_split_across_two_events_is_joined(model_server, tmp_path, model, delay):
    model_server.chunk_count = 4
    model_server.chunk_delay = delay
    model_server.queue_reply(model, SPLIT_EMOJI)
    first, second = ("opus", "gpt4o") if model == OPUS else ("gpt4o", "opus")
    rec = RecordingObserver()
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=(first, second), max_turns=1), rec)
        stored = await rt.archive.replies(run_id)
    assert end.reason == "max_turns"
    assert stored[0].text == "a 🌀 b"
    assert "".join(d.delta for d in rec.events if hasattr(d, "delta") and d.seq == 0) == "a 🌀 b"
    assert model_server.requests[1].messages[-1]["content"] == "a 🌀 b"  # sent on, intact


@pytest.mark.parametrize("model", [OPUS, GPT4O])
async def test_a_lone_surrogate_becomes_the_replacement_character(model_server, tmp_path, model):
    model_server.queue_reply(model, LONE)
    first, second = ("opus", "gpt4o") if model == OPUS else ("gpt4o", "opus")
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=(first, second), max_turns=2))
        stored = await rt.archive.replies(run_id)
    assert end.reason == "max_turns"
    assert stored[0].text == "x\ufffdy"  # nothing else changed
    assert len(stored) == 4
    assert model_server.requests[1].messages[-1]["content"] == "x\ufffdy"


async def test_a_first_half_at_the_very_end_of_a_reply_is_replaced(model_server, tmp_path):
    model_server.chunk_count = 2
    model_server.queue_reply(OPUS, "end \ud83c")
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=1))
        stored = await rt.archive.replies(run_id)
    assert end.reason == "max_turns"
    assert stored[0].text == "end \ufffd"


async def test_the_world_interface_mends_its_text_too(model_server, tmp_path):
    model_server.queue_reply("world", "ls \udc00 -la")
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        run_id, end = await run_to_end(
            rt, RunSpec(models=("opus", "cli"), template="cli_with_world_interface", max_turns=1)
        )
        stored = await rt.archive.replies(run_id)
    assert end.reason == "max_turns"
    assert stored[1].text == "ls \ufffd -la"


async def test_the_terminal_prints_odd_text_and_the_transcript_keeps_it(model_server, tmp_path):
    model_server.chunk_count = 4
    model_server.chunk_delay = 0.02
    model_server.queue_reply(OPUS, SPLIT_EMOJI)
    model_server.queue_reply(GPT4O, LONE)
    env = fake_env(model_server, tmp_path) | {"PYTHONIOENCODING": "utf-8"}
    code, out, err = await backrooms(
        "run", "--lm", "opus", "gpt4o", "--max-turns", "1", env=env, cwd=tmp_path
    )
    assert code == 0, err
    assert "a 🌀 b" in out and "x\ufffdy" in out
    assert "Traceback" not in err and "internal error" not in out + err
    log = next((tmp_path / "BackroomsLogs").rglob("*.txt")).read_text(encoding="utf-8")
    assert "a 🌀 b" in log and "x\ufffdy" in log


def test_mending_changes_nothing_but_surrogates():
    assert _text.mend("plain ✓ 🌀") == "plain ✓ 🌀"
    assert _text.mend("\ud83c\udf00") == "🌀"
    assert _text.mend("\udf00\ud83c") == "\ufffd\ufffd"  # the halves in the wrong order
    mender = _text.StreamMender()
    pieces = [mender.piece(p) for p in ("a\ud83c", "\udf00", "\ud83c", "b")] + [mender.end()]
    assert pieces == ["a", "🌀", "", "\ufffdb", ""]
    assert json.dumps("".join(pieces), ensure_ascii=False).encode("utf-8")  # encodable

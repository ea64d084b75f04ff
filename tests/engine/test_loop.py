"""The turn loop against the real SDKs and the fake model server: order, stop rules, retries,
errors, every provider kind of the default registry. The loop's rules on their own, on a scripted
provider that no socket stands between, are tests/engine/test_engine.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from backrooms_engine import templates
from backrooms_engine.events import ReplyRetrying, ReplyStarted, RunEnded
from backrooms_engine.providers.cache_marks import unmarked
from backrooms_engine.records import RunSpec
from tests.conftest import fake_env
from tests.helpers import RecordingObserver, run_to_end, runtime

OPUS = "claude-opus-5-5"
GPT4O = "gpt-4o-2024-08-06"


async def test_three_participants_take_turns_in_order(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    rec = RecordingObserver()
    async with runtime(env) as rt:
        _, end = await run_to_end(
            rt, RunSpec(models=("opus", "gpt4o", "sonnet"), template="trio_cli", max_turns=2), rec
        )
        replies = await rt.archive.replies(rec.events[0].run_id)
    assert [r.actor for r in replies] == ["Claude 1", "GPT4o 2", "Claude 3"] * 2
    assert [(r.turn, r.position) for r in replies] == [
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 0),
        (2, 1),
        (2, 2),
    ]
    assert end.reason == "max_turns" and end.turns == 2
    # Participant 3 saw participant 1's and 2's first replies as user messages, in order.
    third = model_server.requests[2]
    # (what was sent, with any prompt-cache marker taken off: tests/engine/test_prompt_cache.py)
    assert [m["content"] for m in unmarked(third.messages[-2:])] == replies_text(replies[:2])
    assert [m["role"] for m in third.messages[-2:]] == ["user", "user"]


def replies_text(replies):
    return [r.text for r in replies]


async def test_max_turns_counts_whole_turns(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    async with runtime(env) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=3))
        record = await rt.archive.get_run(run_id)
    assert len(model_server.requests) == 6
    assert end.reason == "max_turns"
    assert (
        Path(record.log_path)
        .read_text()
        .endswith("\nReached maximum number of turns (3). Conversation ended.\n")
    )


@pytest.mark.parametrize("status", [429, 529, 500, 503, 408, 409])
async def test_transient_errors_are_retried(model_server, tmp_path, status):
    env = fake_env(model_server, tmp_path)
    model_server.queue_error(OPUS, status, retry_after=0)
    model_server.queue_reply(OPUS, "made it")
    rec = RecordingObserver()
    async with runtime(env) as rt:
        _, end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=1), rec)
    assert rec.texts[0] == "made it"
    assert end.reason == "max_turns"
    retry = rec.of(ReplyRetrying)
    assert len(retry) == 1 and str(status) in retry[0].reason
    assert [e.attempt for e in rec.of(ReplyStarted)] == [1, 2, 1]
    # Exactly one retry layer: the SDK did not retry on its own.
    assert len(model_server.requests_for("anthropic")) == 2


async def test_retry_after_is_honoured(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_error(GPT4O, 429, retry_after=0.3)
    rec = RecordingObserver()
    async with runtime(env) as rt:
        await run_to_end(rt, RunSpec(models=("gpt4o", "opus"), max_turns=1), rec)
    assert rec.of(ReplyRetrying)[0].delay == pytest.approx(0.3)


async def test_dropped_connection_mid_stream_restarts_the_reply(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_drop(GPT4O, after_chunks=2)
    model_server.queue_reply(GPT4O, "the whole reply")
    rec = RecordingObserver()
    async with runtime(env) as rt:
        run_id, _ = await run_to_end(rt, RunSpec(models=("gpt4o", "opus"), max_turns=1), rec)
        stored = await rt.archive.replies(run_id)
    assert stored[0].text == "the whole reply"  # nothing of the cut attempt is kept
    assert "connection lost" in rec.of(ReplyRetrying)[0].reason


async def test_error_inside_a_stream_is_retried(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_error(OPUS, 529, after_chunks=1)
    model_server.queue_reply(OPUS, "second try")
    rec = RecordingObserver()
    async with runtime(env) as rt:
        await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=1), rec)
    assert rec.texts[0] == "second try"


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (400, "HTTP 400"),
        (401, "OPENAI_API_KEY"),
        (403, "permission denied"),
        (404, "'gpt-4o-2024-08-06' not found"),
    ],
)
async def test_permanent_errors_end_the_run_with_a_reason(model_server, tmp_path, status, words):
    env = fake_env(model_server, tmp_path)
    model_server.queue_reply(OPUS, "hello")
    model_server.queue_error(GPT4O, status, message="nope")
    rec = RecordingObserver()
    async with runtime(env) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=3), rec)
        record = await rt.archive.get_run(run_id)
        stored = await rt.archive.replies(run_id)
    assert end.reason == "error"
    assert "gpt4o (openai)" in end.detail and words in end.detail
    assert len(model_server.requests) == 2  # not retried
    assert [r.text for r in stored] == ["hello"]  # the transcript so far is kept
    log = Path(record.log_path).read_text()
    assert log.endswith(f"\nConversation ended by an error: {end.detail}\n")
    assert rec.of(RunEnded)[0].end == end


@pytest.mark.parametrize(
    "alias",
    [
        "opus",
        "sonnet",
        "gpt4o",
        "o1-preview",
        "o1-mini",
        "opus-5.5",
        "sonnet-5.5",
        "haiku-5.5",
        "mythos",
        "fable",
        "gpt6-sol",
        "gpt6-astra",
        "gpt6-luna",
        "gpt5.5",
        "openrouter-llama",
        "ollama-llama",
        "vllm",
        "deepseek",
        "gemini",
        "offline",
    ],
)
async def test_every_model_of_the_default_registry_runs(model_server, tmp_path, alias):
    env = fake_env(model_server, tmp_path)
    async with runtime(env) as rt:
        spec = rt.registry.get(alias)
        run_id, end = await run_to_end(
            rt, RunSpec(models=(alias, alias), template="science", max_turns=1)
        )
        replies = await rt.archive.replies(run_id)
    assert end.reason == "max_turns"
    assert len(replies) == 2 and all(r.text for r in replies)
    if spec.provider.kind != "offline":
        assert [r.model for r in model_server.requests] == [spec.api_id] * 2
        assert replies[0].text == f"{spec.api_id} reply 1"
        assert replies[0].usage.input_tokens and replies[0].usage.output_tokens == 3
    else:
        assert model_server.requests == []


async def test_openai_compatible_provider_sends_its_own_key(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    async with runtime(env) as rt:
        await run_to_end(
            rt, RunSpec(models=("deepseek", "openrouter-llama"), template="science", max_turns=1)
        )
    first, second = model_server.requests
    assert first.headers["authorization"] == "Bearer test-key-for-deepseek"
    assert second.headers["authorization"] == "Bearer test-key-for-openrouter"


async def test_native_and_developer_system_prompts(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    async with runtime(env) as rt:
        await run_to_end(
            rt, RunSpec(models=("gpt6-sol", "deepseek"), template="science", max_turns=1)
        )
    sol, deepseek = model_server.requests
    assert sol.messages[0]["role"] == "developer"
    assert deepseek.messages[0]["role"] == "system"
    science = templates.find("science", templates.search_path())
    assert sol.messages[0]["content"] == science.lines[0].system_prompt
    assert deepseek.messages[0]["content"] == science.lines[1].system_prompt


async def test_world_interface_key_is_sent_when_set(model_server, tmp_path):
    env = fake_env(model_server, tmp_path) | {"WORLD_INTERFACE_KEY": "wi-secret"}
    async with runtime(env) as rt:
        await run_to_end(
            rt, RunSpec(models=("opus", "cli"), template="cli_with_world_interface", max_turns=1)
        )
    world = model_server.requests_for("world")
    assert world[0].headers["authorization"] == "Bearer wi-secret"
    assert world[0].path == "/world/v1/chat/completions"


@pytest.mark.parametrize(("alias", "model"), [("opus", OPUS), ("gpt4o", GPT4O)])
async def test_a_stream_cut_after_its_text_but_before_its_end_is_asked_again(
    model_server, tmp_path, alias, model
):
    """All the text arrived but the end marker did not: the reply may be incomplete."""
    env = fake_env(model_server, tmp_path)
    model_server.queue_drop(model, after_chunks=model_server.chunk_count)
    model_server.queue_reply(model, "complete")
    rec = RecordingObserver()
    async with runtime(env) as rt:
        await run_to_end(rt, RunSpec(models=(alias, alias), template="science", max_turns=1), rec)
    assert rec.texts[0] == "complete"
    assert "connection lost" in rec.of(ReplyRetrying)[0].reason


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_a_cleanly_closed_stream_without_its_end_marker_is_transient(kind):
    from backrooms_engine.conversation import ModelRequest
    from backrooms_engine.errors import TransientProviderError
    from backrooms_engine.providers import _sse, anthropic, openai
    from backrooms_engine.registry import load_registry

    registry = load_registry()
    spec = registry.get("opus" if kind == "anthropic" else "gpt4o")
    request = ModelRequest(spec, None, ())
    provider = spec.provider
    if kind == "anthropic":
        reader = anthropic._Events(request, provider)
        body = (
            b'data: {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}}'
        )
    else:
        reader = openai._Chunks(request, provider)
        body = b'data: {"choices": [{"delta": {"content": "hi"}}]}'

    async def chunks():
        yield body + b"\n\n"

    got = []
    with pytest.raises(TransientProviderError, match="ended before"):
        async for item in _sse.read_body(chunks(), reader, request, provider.name):
            got.append(item)
    assert got == ["hi"]


def _split_everywhere(body: bytes):
    """The body cut into two chunks at every byte, and into one-byte chunks."""
    for cut in range(len(body) + 1):
        yield [body[:cut], body[cut:]]
    yield [body[i : i + 1] for i in range(len(body))]


def test_server_sent_events_are_read_as_the_format_says():
    from backrooms_engine.providers import _sse

    body = (
        "event: ping\r\ndata: {}\r\n\r\n"
        ": a comment\n"
        "data:one\rdata: two\n\n"
        "data: caf\u00e9 \u2028 stays one line\n\n"
        "event: x\ndata: last"
    ).encode()
    expected = [
        ("ping", "{}"),
        (None, "one\ntwo"),
        (None, "caf\u00e9 \u2028 stays one line"),
        ("x", "last"),
    ]
    for chunks in _split_everywhere(body):
        decoder = _sse.EventDecoder()
        got = [event for chunk in chunks for event in decoder.feed(chunk)] + decoder.close()
        assert got == expected, chunks


async def test_a_world_interface_that_answers_html_ends_the_run_clearly(model_server, tmp_path):
    from aiohttp import web

    async def html(request):
        return web.Response(text="<html>a login page</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", html)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    env = fake_env(model_server, tmp_path) | {"WORLD_INTERFACE_URL": f"http://127.0.0.1:{port}"}
    try:
        async with runtime(env) as rt:
            _, end = await run_to_end(
                rt,
                RunSpec(models=("opus", "cli"), template="cli_with_world_interface", max_turns=1),
            )
    finally:
        await runner.cleanup()
    assert end.reason == "error"
    assert "did not answer as the world interface does: '<html>a login page</html>'" in end.detail

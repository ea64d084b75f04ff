"""The fake model server, proven against the real AsyncAnthropic and AsyncOpenAI over loopback."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from .model_server import FakeModelServer, estimate_input_tokens, split_chunks

# Works whether or not the project configures asyncio_mode = "auto".
pytestmark = pytest.mark.asyncio

CLAUDE = "claude-fake-1"
GPT = "gpt-fake-1"
UNICODE_TEXT = "Héllo wörld 🌀 — the 黄色 wallpaper hums\nforever"
PROMPT = [{"role": "user", "content": "Where are we? Describe the room."}]
SYSTEM = "You are an explorer."
REPO_ROOT = Path(__file__).resolve().parents[2]
STEP_TIMEOUT = 10.0  # no single await in these tests may hang the suite

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_SDK_VARS = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "OPENAI_ORG_ID")


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would swallow loopback traffic; so could SDK env defaults."""
    for name in (*_PROXY_VARS, *(v.lower() for v in _PROXY_VARS), *_SDK_VARS):
        monkeypatch.delenv(name, raising=False)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer(chunk_count=5) as fake:
        yield fake


@pytest_asyncio.fixture
async def claude(server: FakeModelServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        api_key="test-key", base_url=server.anthropic_base_url, max_retries=0, timeout=STEP_TIMEOUT
    )
    yield client
    await client.close()


@pytest_asyncio.fixture
async def gpt(server: FakeModelServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        api_key="test", base_url=server.openai_base_url, max_retries=0, timeout=STEP_TIMEOUT
    )
    yield client
    await client.close()


async def _claude_stream(client: anthropic.AsyncAnthropic, pieces: list[str]) -> Any:
    """Stream one reply, appending each text delta to ``pieces``; return the final message."""
    async with client.messages.stream(
        model=CLAUDE, max_tokens=64, system=SYSTEM, messages=PROMPT
    ) as stream:
        async for piece in stream.text_stream:
            pieces.append(piece)
        return await stream.get_final_message()


async def _gpt_stream(
    client: openai.AsyncOpenAI, pieces: list[str], *, include_usage: bool = True
) -> list[Any]:
    """Stream one reply, appending each non-empty content delta to ``pieces``; return all chunks."""
    options: Any = {"include_usage": True} if include_usage else openai.omit
    stream = await client.chat.completions.create(
        model=GPT, messages=PROMPT, stream=True, stream_options=options
    )
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    return chunks


# --------------------------------------------------------------------------- streaming


async def test_anthropic_stream_is_exact_chunked_and_reports_usage(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    server.queue_reply(CLAUDE, UNICODE_TEXT)
    pieces: list[str] = []
    final = await _claude_stream(claude, pieces)

    assert "".join(pieces) == UNICODE_TEXT
    assert len(pieces) == server.chunk_count
    assert final.content[0].text == UNICODE_TEXT
    assert final.stop_reason == "end_turn"
    request_body = server.requests[0].body
    assert final.usage.input_tokens == estimate_input_tokens(request_body)
    assert final.usage.output_tokens == len(UNICODE_TEXT.split())


async def test_anthropic_stream_uses_queued_usage(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    server.queue_reply(CLAUDE, "short", input_tokens=123, output_tokens=45)
    final = await _claude_stream(claude, [])
    assert (final.usage.input_tokens, final.usage.output_tokens) == (123, 45)


async def test_openai_stream_is_exact_chunked_and_ends_with_usage(
    server: FakeModelServer, gpt: openai.AsyncOpenAI
) -> None:
    server.chunk_count = 7
    server.queue_reply(GPT, UNICODE_TEXT)
    pieces: list[str] = []
    chunks = await _gpt_stream(gpt, pieces)

    assert "".join(pieces) == UNICODE_TEXT
    assert len(pieces) == 7
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == estimate_input_tokens(server.requests[0].body)
    assert last.usage.completion_tokens == len(UNICODE_TEXT.split())
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


async def test_openai_stream_has_no_usage_unless_asked(
    server: FakeModelServer, gpt: openai.AsyncOpenAI
) -> None:
    chunks = await _gpt_stream(gpt, [], include_usage=False)
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


async def test_short_text_streams_one_character_per_chunk(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    server.queue_reply(CLAUDE, "ok")
    pieces: list[str] = []
    await _claude_stream(claude, pieces)
    assert pieces == ["o", "k"]


# --------------------------------------------------------------------------- non-streaming


async def test_anthropic_non_streaming_message(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    server.queue_reply(CLAUDE, UNICODE_TEXT, output_tokens=9)
    message = await claude.messages.create(model=CLAUDE, max_tokens=64, messages=PROMPT)
    assert message.content[0].type == "text"
    assert message.content[0].text == UNICODE_TEXT
    assert message.usage.output_tokens == 9
    assert message.usage.input_tokens == estimate_input_tokens(server.requests[0].body)
    assert message.stop_reason == "end_turn"


async def test_openai_non_streaming_completion(
    server: FakeModelServer, gpt: openai.AsyncOpenAI
) -> None:
    server.queue_reply(GPT, UNICODE_TEXT)
    completion = await gpt.chat.completions.create(model=GPT, messages=PROMPT)
    assert completion.choices[0].message.content == UNICODE_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(UNICODE_TEXT.split())


# --------------------------------------------------------------------------- scripting


async def test_default_reply_counts_requests_per_model(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    first = await _claude_stream(claude, [])
    second = await claude.messages.create(model=CLAUDE, max_tokens=8, messages=PROMPT)
    other = await gpt.chat.completions.create(model=GPT, messages=PROMPT)

    assert first.content[0].text == f"{CLAUDE} reply 1"
    assert second.content[0].text == f"{CLAUDE} reply 2"
    assert other.choices[0].message.content == f"{GPT} reply 1"


async def test_queue_is_fifo_and_exact_model_beats_wildcard(
    server: FakeModelServer, gpt: openai.AsyncOpenAI
) -> None:
    server.queue_reply("*", "wild")
    server.queue_reply(GPT, "exact one")
    server.queue_reply(GPT, "exact two")

    texts = []
    for _ in range(4):
        completion = await gpt.chat.completions.create(model=GPT, messages=PROMPT)
        texts.append(completion.choices[0].message.content)

    assert texts == ["exact one", "exact two", "wild", f"{GPT} reply 4"]


async def test_responder_answers_when_queue_is_empty(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    seen: list[tuple[str, str]] = []

    def responder(api: str, body: dict[str, Any]) -> str:
        seen.append((api, body["model"]))
        return f"echo: {body['messages'][-1]['content']}"

    server.set_responder(responder)
    server.queue_reply(CLAUDE, "queued first")
    texts = [(await _claude_stream(claude, [])).content[0].text for _ in range(2)]

    assert texts == ["queued first", f"echo: {PROMPT[-1]['content']}"]
    assert seen == [("anthropic", CLAUDE)]


# --------------------------------------------------------------------------- errors


async def test_anthropic_429_carries_retry_after(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    server.queue_error(CLAUDE, 429, retry_after=7, message="slow down")
    with pytest.raises(anthropic.RateLimitError) as caught:
        await _claude_stream(claude, [])
    error = caught.value
    assert error.response.headers["retry-after"] == "7"
    assert error.type == "rate_limit_error"
    assert error.api_message == "slow down"


async def test_openai_429_carries_retry_after(
    server: FakeModelServer, gpt: openai.AsyncOpenAI
) -> None:
    server.queue_error(GPT, 429, retry_after=1.5)
    with pytest.raises(openai.RateLimitError) as caught:
        await _gpt_stream(gpt, [])
    assert caught.value.response.headers["retry-after"] == "1.5"
    assert caught.value.code == "rate_limit_exceeded"


async def test_anthropic_529_is_overloaded_error(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    server.queue_error(CLAUDE, 529)
    with pytest.raises(anthropic.OverloadedError) as caught:
        await _claude_stream(claude, [])
    assert caught.value.status_code == 529
    assert caught.value.type == "overloaded_error"


@pytest.mark.parametrize(
    ("status", "anthropic_error", "openai_error"),
    [
        (500, anthropic.InternalServerError, openai.InternalServerError),
        (404, anthropic.NotFoundError, openai.NotFoundError),
        (401, anthropic.AuthenticationError, openai.AuthenticationError),
    ],
)
async def test_http_errors_map_to_sdk_classes(
    server: FakeModelServer,
    claude: anthropic.AsyncAnthropic,
    gpt: openai.AsyncOpenAI,
    status: int,
    anthropic_error: type[Exception],
    openai_error: type[Exception],
) -> None:
    server.queue_error(CLAUDE, status)
    server.queue_error(GPT, status)
    with pytest.raises(anthropic_error):
        await claude.messages.create(model=CLAUDE, max_tokens=8, messages=PROMPT)
    with pytest.raises(openai_error):
        await gpt.chat.completions.create(model=GPT, messages=PROMPT)


async def test_404_bodies_name_model_not_found(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    server.queue_error("*", 404)
    server.queue_error("*", 404)
    with pytest.raises(anthropic.NotFoundError) as claude_error:
        await _claude_stream(claude, [])
    with pytest.raises(openai.NotFoundError) as gpt_error:
        await _gpt_stream(gpt, [])
    assert claude_error.value.type == "not_found_error"
    assert gpt_error.value.code == "model_not_found"


async def test_mid_stream_errors_reach_the_sdks(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    server.queue_error(CLAUDE, 529, after_chunks=2)
    server.queue_error(GPT, 500, after_chunks=1, message="boom")
    claude_pieces: list[str] = []
    gpt_pieces: list[str] = []

    with pytest.raises(anthropic.APIStatusError) as claude_error:
        await _claude_stream(claude, claude_pieces)
    with pytest.raises(openai.APIError, match="boom"):
        await _gpt_stream(gpt, gpt_pieces)

    assert claude_error.value.type == "overloaded_error"
    assert len(claude_pieces) == 2
    assert len(gpt_pieces) == 1


# --------------------------------------------------------------------------- dropped connections


async def test_dropped_anthropic_stream_raises_after_n_chunks(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    server.queue_drop(CLAUDE, after_chunks=2)
    pieces: list[str] = []
    # The anthropic SDK lets httpx2's transport error through mid-stream rather than wrapping it.
    with pytest.raises((httpx2.TransportError, anthropic.APIConnectionError)):
        await _claude_stream(claude, pieces)
    assert pieces == split_chunks(f"{CLAUDE} reply 1", server.chunk_count)[:2]


async def test_dropped_openai_stream_raises_connection_error(
    server: FakeModelServer, gpt: openai.AsyncOpenAI
) -> None:
    server.queue_drop(GPT, after_chunks=3)
    pieces: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        await _gpt_stream(gpt, pieces)
    assert len(pieces) == 3


async def test_dropped_non_streaming_request_is_a_connection_error(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    server.queue_drop("*")
    server.queue_drop("*")
    with pytest.raises(anthropic.APIConnectionError):
        await claude.messages.create(model=CLAUDE, max_tokens=8, messages=PROMPT)
    with pytest.raises(openai.APIConnectionError):
        await gpt.chat.completions.create(model=GPT, messages=PROMPT)


async def test_server_keeps_serving_after_a_drop(
    server: FakeModelServer, gpt: openai.AsyncOpenAI
) -> None:
    server.queue_drop(GPT, after_chunks=1)
    with pytest.raises(openai.APIConnectionError):
        await _gpt_stream(gpt, [])
    pieces: list[str] = []
    await _gpt_stream(gpt, pieces)
    assert "".join(pieces) == f"{GPT} reply 2"


# --------------------------------------------------------------------------- recording


async def test_requests_are_recorded_with_headers_and_body(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    await _claude_stream(claude, [])
    await gpt.chat.completions.create(model=GPT, messages=PROMPT)

    first, second = server.requests
    assert (first.api, first.path) == ("anthropic", "/anthropic/v1/messages")
    # anthropic 2.x sends the API key as a bearer token, not in x-api-key.
    assert first.headers["authorization"] == "Bearer test-key"
    assert "anthropic-version" in first.headers
    assert (first.model, first.system, first.stream) == (CLAUDE, SYSTEM, True)
    assert first.messages == PROMPT
    assert first.body["max_tokens"] == 64

    assert (second.api, second.path) == ("openai", "/openai/v1/chat/completions")
    assert second.headers["authorization"] == "Bearer test"
    assert (second.model, second.system, second.stream) == (GPT, None, False)
    assert second.messages == PROMPT
    assert server.requests_for("openai") == [second]
    assert server.requests_for("world") == []


# --------------------------------------------------------------------------- wire format


async def _post(url: str, body: Any) -> tuple[int, CIMultiDict[str], bytes]:
    timeout = aiohttp.ClientTimeout(total=STEP_TIMEOUT)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url, json=body) as resp,
    ):
        return resp.status, resp.headers.copy(), await resp.read()


async def test_anthropic_sse_wire_format(server: FakeModelServer) -> None:
    body = {"model": CLAUDE, "max_tokens": 8, "messages": PROMPT, "stream": True}
    status, headers, raw = await _post(f"{server.anthropic_base_url}/v1/messages", body)

    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    frames = raw.decode().split("\n\n")
    assert frames[-1] == ""
    events = [frame.split("\n")[0] for frame in frames[:-1]]
    assert all(frame.split("\n")[1].startswith("data: {") for frame in frames[:-1])
    assert events == [
        "event: message_start",
        "event: content_block_start",
        "event: ping",
        *["event: content_block_delta"] * server.chunk_count,
        "event: content_block_stop",
        "event: message_delta",
        "event: message_stop",
    ]


async def test_openai_sse_ends_with_done(server: FakeModelServer) -> None:
    body = {"model": GPT, "messages": PROMPT, "stream": True}
    status, headers, raw = await _post(f"{server.openai_base_url}/chat/completions", body)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert raw.endswith(b"data: [DONE]\n\n")


async def test_invalid_json_body_is_a_400(server: FakeModelServer) -> None:
    timeout = aiohttp.ClientTimeout(total=STEP_TIMEOUT)
    url = f"{server.anthropic_base_url}/v1/messages"
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"


# --------------------------------------------------------------------------- world interface


async def test_world_interface_answers_upstream_shape(server: FakeModelServer) -> None:
    server.queue_reply("world", "$ ls\nhallway_7/  exit.txt")
    url = f"{server.world_url}/v1/chat/completions"
    status, headers, raw = await _post(url, {"messages": [{"role": "user", "content": "ls"}]})

    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    reply = json.loads(raw)
    assert reply["choices"][0]["message"] == {
        "role": "assistant",
        "content": "$ ls\nhallway_7/  exit.txt",
    }
    (record,) = server.requests_for("world")
    assert (record.model, record.messages) == ("world", [{"role": "user", "content": "ls"}])


async def test_world_interface_default_reply_and_error(server: FakeModelServer) -> None:
    url = f"{server.world_url}/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "pwd"}]}
    server.queue_error("world", 503, retry_after=2)
    status, headers, raw = await _post(url, body)
    assert status == 503
    assert headers["retry-after"] == "2"
    assert b'"error"' in raw

    status, _, raw = await _post(url, body)
    assert status == 200
    assert b"world reply 2" in raw


# --------------------------------------------------------------------------- latency


async def test_chunk_and_first_byte_delays(
    server: FakeModelServer, gpt: openai.AsyncOpenAI
) -> None:
    server.chunk_count, server.chunk_delay, server.first_byte_delay = 5, 0.02, 0.05
    started = time.monotonic()
    pieces: list[str] = []
    await _gpt_stream(gpt, pieces)
    elapsed = time.monotonic() - started
    assert len(pieces) == 5
    assert elapsed >= 0.05 + 4 * 0.02 - 0.01  # small slack for timer granularity


# --------------------------------------------------------------------------- chunk splitting


@settings(max_examples=200, deadline=None, database=None)
@given(text=st.text(), count=st.integers(min_value=1, max_value=50))
async def test_split_chunks_is_exact(text: str, count: int) -> None:
    pieces = split_chunks(text, count)
    assert "".join(pieces) == text
    assert len(pieces) == min(count, len(text))
    assert all(pieces)
    assert max(map(len, pieces), default=0) - min(map(len, pieces), default=0) <= 1


# --------------------------------------------------------------------------- benchmark process


async def test_runs_as_its_own_process() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.model_server",
        *("--port", "0", "--chunks", "4", "--words", "30"),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), STEP_TIMEOUT)  # type: ignore[union-attr]
        assert line.startswith(b"READY http://127.0.0.1:")
        base = line.decode().split()[1]
        client = openai.AsyncOpenAI(
            api_key="t", base_url=f"{base}/openai/v1", max_retries=0, timeout=STEP_TIMEOUT
        )
        async with client:
            stream = await client.chat.completions.create(model=GPT, messages=PROMPT, stream=True)
            pieces = [ch.choices[0].delta.content async for ch in stream if ch.choices]
        text = "".join(p for p in pieces if p)
        assert len([p for p in pieces if p]) == 4
        assert text.startswith(f"{GPT} reply 1 ")
        assert len(text.split()) == 30
    finally:
        returncode = await _stop(proc)
    assert returncode == 0  # SIGTERM is a clean shutdown, not a crash


async def _stop(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM the server; SIGKILL it if it does not exit in time, so no process outlives a test."""
    if proc.returncode is None:
        proc.terminate()
    try:
        return await asyncio.wait_for(proc.wait(), STEP_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise

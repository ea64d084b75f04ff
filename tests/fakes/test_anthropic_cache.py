"""The fake's prompt-cache accounting, thinking blocks and cut-off replies, read through the real SDKs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pydantic
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from .anthropic_cache import AnthropicCache, default_min_tokens
from .model_server import FakeModelServer, estimate_input_tokens

CLAUDE = "claude-fake-1"  # minimum prefix 1,024 tokens
CLAUDE_55 = "claude-opus-5-5"  # minimum prefix 512 tokens
GPT = "gpt-fake-1"
STEP_TIMEOUT = 10.0
EPHEMERAL = {"type": "ephemeral"}


class Clock:
    """The cache's clock, moved by hand so lifetimes need no waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def server(clock: Clock) -> AsyncIterator[FakeModelServer]:
    async with FakeModelServer(chunk_count=4, anthropic_cache=AnthropicCache(clock=clock)) as fake:
        yield fake


@pytest_asyncio.fixture
async def claude(server: FakeModelServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        api_key="test-key", base_url=server.anthropic_base_url, max_retries=0, timeout=STEP_TIMEOUT
    )
    yield client
    await client.close()


def words(tokens: int, tag: str = "x") -> str:
    """Text of exactly ``tokens`` tokens under the fake's rule (4 characters a token)."""
    return (tag * 4) * tokens


def marked(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "cache_control": EPHEMERAL}]


async def usage_of(
    client: anthropic.AsyncAnthropic, model: str = CLAUDE, **params: Any
) -> anthropic.types.Usage:
    """Stream one reply; the usage the SDK's accumulator built from message_start/message_delta."""
    async with client.messages.stream(model=model, max_tokens=64, **params) as stream:
        async for _ in stream.text_stream:
            pass
        return (await stream.get_final_message()).usage


def split(usage: anthropic.types.Usage) -> tuple[int, int, int]:
    return (
        usage.cache_read_input_tokens or 0,
        usage.cache_creation_input_tokens or 0,
        usage.input_tokens,
    )


HELLO = [{"role": "user", "content": "hello"}]  # 5 characters: with the +1, 2 uncached tokens


# --------------------------------------------------------------------------- writes and reads


async def test_marked_system_prompt_is_written_then_read(claude: anthropic.AsyncAnthropic) -> None:
    system = marked(words(1200))
    first = await usage_of(claude, system=system, messages=HELLO)
    second = await usage_of(claude, system=system, messages=HELLO)
    assert split(first) == (0, 1200, 2)
    assert split(second) == (1200, 0, 2)


async def test_unmarked_request_reports_zero_cache_and_every_token_as_input(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    usage = await usage_of(claude, system=words(1200), messages=HELLO)
    assert split(usage) == (0, 0, estimate_input_tokens(server.requests[0].body))


async def test_prefix_under_the_minimum_is_silently_not_cached(
    claude: anthropic.AsyncAnthropic,
) -> None:
    system = marked(words(1000))
    first = await usage_of(claude, system=system, messages=HELLO)
    second = await usage_of(claude, system=system, messages=HELLO)
    assert split(first) == split(second) == (0, 0, 1002)


async def test_the_55_models_cache_from_512_tokens(claude: anthropic.AsyncAnthropic) -> None:
    system = marked(words(600))
    assert split(await usage_of(claude, CLAUDE_55, system=system, messages=HELLO)) == (0, 600, 2)
    assert split(await usage_of(claude, CLAUDE_55, system=system, messages=HELLO)) == (600, 0, 2)
    assert split(await usage_of(claude, CLAUDE, system=system, messages=HELLO)) == (0, 0, 602)


def test_minimum_rule_names_the_55_models_only() -> None:
    assert default_min_tokens("claude-sonnet-5-5") == 512
    assert default_min_tokens("claude-opus-5-5-20261101") == 512
    assert default_min_tokens("claude-opus-5-50") == 1024
    assert default_min_tokens("claude-mythos-5-2") == 1024


async def test_caches_are_per_model(claude: anthropic.AsyncAnthropic) -> None:
    system = marked(words(600))
    await usage_of(claude, CLAUDE_55, system=system, messages=HELLO)
    other = await usage_of(claude, "claude-sonnet-5-5", system=system, messages=HELLO)
    assert split(other) == (0, 600, 2)


async def test_next_request_reads_the_previous_prefix_and_writes_the_growth(
    claude: anthropic.AsyncAnthropic,
) -> None:
    turn1 = [{"role": "user", "content": marked(words(1100, "a"))}]
    reply = {"role": "assistant", "content": words(300, "b")}
    turn2 = [
        turn1[0],
        reply,
        {"role": "user", "content": marked(words(200, "c"))},
    ]
    assert split(await usage_of(claude, messages=turn1)) == (0, 1100, 1)
    assert split(await usage_of(claude, messages=turn2)) == (1100, 500, 1)


async def test_a_string_and_a_single_text_block_are_the_same_prefix(
    claude: anthropic.AsyncAnthropic,
) -> None:
    text = words(1100)
    as_block = [{"role": "user", "content": marked(text)}]
    await usage_of(claude, messages=as_block)
    longer = [
        {"role": "user", "content": text},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": marked("more")},
    ]
    # Only the new marker is in this request, so the old prefix is not looked up: a write.
    assert split(await usage_of(claude, messages=longer)) == (0, 1101, 1)
    # The same prefix with its first message as a marked block: the string's entry is read.
    longer[0] = {"role": "user", "content": marked(text)}
    assert split(await usage_of(claude, messages=longer)) == (1101, 0, 1)


async def test_a_changed_block_before_the_marker_misses(claude: anthropic.AsyncAnthropic) -> None:
    await usage_of(claude, system=marked(words(1200, "a")), messages=HELLO)
    usage = await usage_of(claude, system=marked(words(1200, "b")), messages=HELLO)
    assert split(usage) == (0, 1200, 2)


# --------------------------------------------------------------------------- lifetime


async def test_entry_lives_five_minutes_from_its_last_hit(
    clock: Clock, claude: anthropic.AsyncAnthropic
) -> None:
    system = marked(words(1200))
    await usage_of(claude, system=system, messages=HELLO)
    clock.now += 299
    assert split(await usage_of(claude, system=system, messages=HELLO))[0] == 1200
    clock.now += 299  # 598 s after the write, 299 after the refreshing hit
    assert split(await usage_of(claude, system=system, messages=HELLO))[0] == 1200
    clock.now += 301
    assert split(await usage_of(claude, system=system, messages=HELLO)) == (0, 1200, 2)


async def test_one_hour_marker_outlives_five_minutes_and_is_reported_apart(
    clock: Clock, claude: anthropic.AsyncAnthropic
) -> None:
    system = [{"type": "text", "text": words(1200), "cache_control": {**EPHEMERAL, "ttl": "1h"}}]
    first = await usage_of(claude, system=system, messages=HELLO)
    assert first.cache_creation is not None
    assert first.cache_creation.ephemeral_1h_input_tokens == 1200
    assert first.cache_creation.ephemeral_5m_input_tokens == 0
    clock.now += 3000
    assert split(await usage_of(claude, system=system, messages=HELLO))[0] == 1200


# --------------------------------------------------------------------------- refusals


def _blocks_with_markers(count: int) -> list[dict[str, Any]]:
    return [{"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL} for i in range(count)]


async def test_a_fifth_breakpoint_is_refused_like_the_api(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    server.queue_reply(CLAUDE, "kept for the next valid request")
    with pytest.raises(anthropic.BadRequestError) as refused:
        await usage_of(claude, system=_blocks_with_markers(5), messages=HELLO)
    assert refused.value.status_code == 400
    assert "A maximum of 4 blocks with cache_control may be provided. Found 5." in str(
        refused.value
    )
    message = await claude.messages.create(
        model=CLAUDE, max_tokens=8, system=_blocks_with_markers(4), messages=HELLO
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "kept for the next valid request"


async def test_an_unknown_cache_control_type_is_refused(claude: anthropic.AsyncAnthropic) -> None:
    system = [{"type": "text", "text": "x", "cache_control": {"type": "forever"}}]
    with pytest.raises(anthropic.BadRequestError):
        await claude.messages.create(model=CLAUDE, max_tokens=8, system=system, messages=HELLO)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the wire


async def test_raw_stream_events_carry_cache_counts_in_start_and_delta(
    claude: anthropic.AsyncAnthropic,
) -> None:
    system = marked(words(1200))
    await usage_of(claude, system=system, messages=HELLO)
    events = await claude.messages.create(
        model=CLAUDE, max_tokens=8, system=system, messages=HELLO, stream=True
    )
    seen = [event async for event in events]
    start = next(e for e in seen if e.type == "message_start")
    delta = next(e for e in seen if e.type == "message_delta")
    assert start.message.usage.cache_read_input_tokens == 1200
    assert start.message.usage.cache_creation_input_tokens == 0
    assert start.message.usage.input_tokens == 2
    assert start.message.usage.output_tokens == 1  # provisional, as the API sends it
    assert delta.usage.cache_read_input_tokens == 1200
    assert delta.usage.input_tokens == 2


async def test_non_streaming_message_reports_cache_counts(
    claude: anthropic.AsyncAnthropic,
) -> None:
    system = marked(words(1200))
    first = await claude.messages.create(model=CLAUDE, max_tokens=8, system=system, messages=HELLO)
    second = await claude.messages.create(model=CLAUDE, max_tokens=8, system=system, messages=HELLO)
    assert split(first.usage) == (0, 1200, 2)
    assert split(second.usage) == (1200, 0, 2)


async def test_queued_usage_reports_queued_cache_counts(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    server.queue_reply(CLAUDE, "hi", input_tokens=7, cache_read_tokens=70, cache_write_tokens=700)
    assert split(await usage_of(claude, messages=HELLO)) == (70, 700, 7)


# --------------------------------------------------------------------------- thinking, max_tokens


async def test_thinking_streams_before_the_text_and_is_not_text(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    server.queue_reply(CLAUDE_55, "the visible reply", thinking="first I wonder about the room")
    pieces: list[str] = []
    async with claude.messages.stream(model=CLAUDE_55, max_tokens=64, messages=HELLO) as stream:
        kinds = []
        async for event in stream:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
            if event.type == "text":
                pieces.append(event.text)
        final = await stream.get_final_message()
    assert "".join(pieces) == "the visible reply"
    assert kinds.index("signature_delta") < kinds.index("text_delta")
    assert kinds[0] == "thinking_delta"
    thought, text = final.content
    assert thought.type == "thinking"
    assert thought.thinking == "first I wonder about the room"
    assert thought.signature
    assert text.type == "text"
    assert text.text == "the visible reply"
    assert final.usage.output_tokens == 3 + 6  # the text's words and the thinking's


async def test_reply_cut_at_max_tokens_says_so(
    server: FakeModelServer, claude: anthropic.AsyncAnthropic
) -> None:
    server.queue_reply(CLAUDE_55, "cut off mid", thinking="long thought", stop_reason="max_tokens")
    server.queue_reply(CLAUDE_55, "cut again", stop_reason="max_tokens")
    async with claude.messages.stream(model=CLAUDE_55, max_tokens=64, messages=HELLO) as stream:
        streamed = await stream.get_final_message()
    plain = await claude.messages.create(model=CLAUDE_55, max_tokens=64, messages=HELLO)
    assert streamed.stop_reason == "max_tokens"
    assert [b.type for b in streamed.content] == ["thinking", "text"]
    assert plain.stop_reason == "max_tokens"
    assert [b.type for b in plain.content] == ["text"]


async def test_openai_reports_cached_tokens_only_when_queued(server: FakeModelServer) -> None:
    client = openai.AsyncOpenAI(
        api_key="test", base_url=server.openai_base_url, max_retries=0, timeout=STEP_TIMEOUT
    )
    server.queue_reply(GPT, "cached reply", cached_tokens=1024)
    server.queue_reply(GPT, "cut", stop_reason="max_tokens")
    try:
        stream = await client.chat.completions.create(
            model=GPT, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        plain = await client.chat.completions.create(model=GPT, messages=HELLO)
    finally:
        await client.close()
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 1024
    assert plain.usage is not None and plain.usage.prompt_tokens_details is None
    assert plain.choices[0].finish_reason == "length"


# --------------------------------------------------------------------------- properties

_requests = st.lists(
    st.tuples(
        st.lists(st.integers(0, 700), min_size=1, max_size=6),  # message sizes in tokens
        st.sets(st.integers(0, 5), max_size=4),  # which messages carry a marker
        st.floats(0, 400),  # seconds since the previous request
    ),
    min_size=1,
    max_size=8,
)


def _body(sizes: list[int], marks: set[int]) -> dict[str, Any]:
    messages = []
    for i, size in enumerate(sizes):
        block: dict[str, Any] = {"type": "text", "text": words(size, "abcdefgh"[i])}
        if i in marks:
            block["cache_control"] = EPHEMERAL
        role = "user" if i % 2 == 0 else "assistant"
        messages.append({"role": role, "content": [block]})
    return {"model": CLAUDE_55, "messages": messages}


@settings(max_examples=150, deadline=None)
@given(_requests)
def test_the_three_counts_always_add_up_to_the_input(
    requests: list[tuple[list[int], set[int], float]],
) -> None:
    clock = Clock()
    cache = AnthropicCache(clock=clock)
    for sizes, marks, pause in requests:
        clock.now += pause
        body = _body(sizes, marks)
        total = estimate_input_tokens(body)
        got = cache.account(body, total)
        assert (
            got.input_tokens + got.cache_read_input_tokens + got.cache_creation_input_tokens
            == total
        )
        assert (
            min(got.input_tokens, got.cache_read_input_tokens, got.cache_creation_input_tokens) >= 0
        )
        assert got.input_tokens >= 1
        again = cache.account(body, total)  # at once: everything cacheable is read, nothing written
        assert again.cache_creation_input_tokens == 0
        assert (
            again.cache_read_input_tokens
            == got.cache_read_input_tokens + got.cache_creation_input_tokens
        )


# --------------------------------------------------------------------------- against the SDK's types


async def test_every_streamed_event_validates_as_the_sdks_own_types(
    server: FakeModelServer,
) -> None:
    """Validated by pydantic against the SDK's models (the SDK itself builds them without
    validating): every frame is a RawMessageStreamEvent, thinking and signature deltas too."""
    server.queue_reply(CLAUDE_55, "visible", thinking="hidden thought", stop_reason="max_tokens")
    body = {"model": CLAUDE_55, "max_tokens": 8, "stream": True, "system": marked(words(600))}
    body["messages"] = HELLO
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.anthropic_base_url}/v1/messages", json=body) as response:
            raw = (await response.read()).decode()
    frames = [f for f in raw.split("\n\n") if f.strip()]
    adapter = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
    events = []
    for frame in frames:
        data = next(line[6:] for line in frame.splitlines() if line.startswith("data: "))
        if json.loads(data)["type"] != "ping":
            events.append(adapter.validate_python(json.loads(data)))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    deltas = [type(e.delta).__name__ for e in events if e.type == "content_block_delta"]
    assert deltas[0] == "ThinkingDelta" and "SignatureDelta" in deltas and deltas[-1] == "TextDelta"
    start = events[0]
    assert isinstance(start, anthropic.types.RawMessageStartEvent)
    assert start.message.usage.cache_creation_input_tokens == 600
    end = next(e for e in events if isinstance(e, anthropic.types.RawMessageDeltaEvent))
    assert end.delta.stop_reason == "max_tokens"
    assert end.usage.cache_creation_input_tokens == 600

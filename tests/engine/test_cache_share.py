"""What the cache markers save on a 10-turn two-Claude run with long replies, measured on the fake
model server's prompt-cache accounting through the real SDK (issue 16, "Tests and figures").

Run with ``-s`` to see the figures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest
import pytest_asyncio

from backrooms_engine import templates
from backrooms_engine.conversation import Conversation, participants_for
from backrooms_engine.pricing import TokenUsage, cost_usd, load_prices, uncached_cost_usd
from backrooms_engine.providers.cache_marks import SeatRequest, mark_request
from backrooms_engine.registry import load_registry
from tests.fakes.anthropic_cache import AnthropicCache, default_min_tokens
from tests.fakes.model_server import FakeModelServer, filler_responder

TURNS = 10
SEATS = ("opus", "sonnet")  # claude-opus-5-5 and claude-sonnet-5-5: 512-token minimum
REPLY_WORDS = 400


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Figures:
    input_tokens: int  # every input token: uncached, read and written
    read_tokens: int
    write_tokens: int
    best_read_tokens: int  # had every seat read its whole previous request
    cost_usd: float
    uncached_cost_usd: float

    @property
    def share(self) -> float:
        return self.read_tokens / self.input_tokens

    @property
    def best_share(self) -> float:
        return self.best_read_tokens / self.input_tokens


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass(frozen=True)
class Api:
    server: FakeModelServer
    client: anthropic.AsyncAnthropic


@pytest_asyncio.fixture
async def claude(clock: Clock) -> AsyncIterator[Api]:
    async with FakeModelServer(anthropic_cache=AnthropicCache(clock=clock)) as server:
        client = anthropic.AsyncAnthropic(
            api_key="test-key", base_url=server.anthropic_base_url, max_retries=0, timeout=10.0
        )
        yield Api(server, client)
        await client.close()


def _chars(system: str | None, messages: list[dict[str, Any]]) -> int:
    return len(system or "") + sum(len(m["content"]) for m in messages)


async def _run(api: Api, clock: Clock, *, pace: float, marks: bool) -> Figures:
    api.server.set_responder(filler_responder(REPLY_WORDS))  # the same replies on every run
    registry = load_registry()
    specs = registry.resolve(SEATS)
    prices = load_prices()
    conversation = Conversation(
        templates.find("cli", templates.search_path()), participants_for(specs)
    )
    previous: dict[int, tuple[SeatRequest, int]] = {}  # seat -> its last request, its characters
    totals = dict.fromkeys(("input", "read", "write", "best"), 0)
    cost = uncached = 0.0
    for turn in range(TURNS * len(SEATS)):
        seat = turn % len(SEATS)
        request = conversation.request(seat)
        messages = [m.as_dict() for m in request.messages]
        sent = messages
        if marks:
            last = previous.get(seat)
            sent = mark_request(
                request.system,
                messages,
                min_tokens=default_min_tokens(request.spec.api_id),
                previous=last[0] if last else None,
                now=clock.now,
            ).messages
        params: dict[str, Any] = {"system": request.system} if request.system else {}
        reply = await api.client.messages.create(
            model=request.spec.api_id, max_tokens=request.spec.max_tokens, messages=sent, **params
        )
        u = reply.usage
        read, write = u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0
        used = TokenUsage(u.input_tokens, u.output_tokens, read, write)
        totals["input"] += u.input_tokens + read + write
        totals["read"] += read
        totals["write"] += write
        totals["best"] += previous[seat][1] // 4 if seat in previous else 0  # the fake's rule
        cost += cost_usd(prices[SEATS[seat]], used) or 0.0
        uncached += uncached_cost_usd(prices[SEATS[seat]], used) or 0.0
        previous[seat] = (SeatRequest(clock.now, len(messages)), _chars(request.system, messages))
        conversation.append(seat, reply.content[0].text)  # type: ignore[union-attr]
        clock.now += pace
    return Figures(totals["input"], totals["read"], totals["write"], totals["best"], cost, uncached)


def _report(label: str, got: Figures) -> None:
    print(
        f"\n{label}: {got.input_tokens} input tokens, {got.read_tokens} read from cache "
        f"({got.share:.1%}; best possible {got.best_share:.1%}), {got.write_tokens} written; "
        f"${got.cost_usd:.4f} (${got.uncached_cost_usd:.4f} without caching)"
    )


async def test_a_brisk_run_reads_nearly_all_it_could_and_costs_less(
    claude: Api, clock: Clock
) -> None:
    cached = await _run(claude, clock, pace=20.0, marks=True)
    plain = await _run(claude, clock, pace=20.0, marks=False)
    _report("10 turns, 20 s a reply, markers", cached)
    _report("10 turns, 20 s a reply, none", plain)
    assert plain.read_tokens == plain.write_tokens == 0
    assert cached.input_tokens == plain.input_tokens  # the same text was sent
    assert cached.share >= 0.95 * cached.best_share
    assert cached.best_share > 0.75
    assert cached.cost_usd < 0.6 * plain.cost_usd
    assert plain.cost_usd == pytest.approx(plain.uncached_cost_usd)
    assert cached.uncached_cost_usd == pytest.approx(plain.cost_usd)


async def test_a_slow_run_sends_no_marker_and_pays_no_write(claude: Api, clock: Clock) -> None:
    slow = await _run(claude, clock, pace=400.0, marks=True)
    _report("10 turns, 400 s a reply, markers", slow)
    assert slow.read_tokens == 0
    # Only each seat's first request (no pace known yet) writes; nothing after pays for a write.
    first_two = slow.write_tokens
    assert first_two > 0
    assert slow.cost_usd <= slow.uncached_cost_usd * 1.05

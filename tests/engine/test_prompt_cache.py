"""Prompt caching on Claude as a run uses it: each seat's next request reads its previous prefix
from the cache (the fake model server keeps Anthropic's accounting, tests/fakes/anthropic_cache.py),
the run costs less than it would have uncached, and BACKROOMS_PROMPT_CACHE=0, a model's
`prompt_cache = false` or a seat's request older than the cache's lifetime send no marker."""

from __future__ import annotations

import textwrap
from typing import Any

from backrooms_engine.conversation import ModelRequest, SentBefore
from backrooms_engine.pricing import load_prices, uncached_cost_usd
from backrooms_engine.providers import ProviderPool
from backrooms_engine.providers.cache_marks import LIFETIME_SECONDS
from backrooms_engine.records import RunSpec, Usage
from backrooms_engine.registry import load_registry
from backrooms_engine.templates import Message
from tests.conftest import fake_env
from tests.fakes.model_server import filler_responder
from tests.helpers import run_to_end, runtime

TURNS = 10


def _markers(body: dict[str, Any]) -> int:
    blocks = [
        block
        for message in body.get("messages", [])
        if isinstance(message.get("content"), list)
        for block in message["content"]
    ]
    return sum(1 for block in blocks if "cache_control" in block)


async def _claude_run(model_server, tmp_path, env_extra=None):
    model_server.set_responder(filler_responder(400))
    env = fake_env(model_server, tmp_path) | (env_extra or {})
    async with runtime(env) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "sonnet"), max_turns=TURNS))
        replies = await rt.archive.replies(run_id)
        run = await rt.archive.get_run(run_id)
    assert end.reason == "max_turns"
    return run, replies


async def test_each_seat_reads_its_previous_request_from_the_cache_and_the_run_costs_less(
    model_server, tmp_path
):
    run, replies = await _claude_run(model_server, tmp_path)
    bodies = [r.body for r in model_server.requests_for("anthropic")]
    assert all(1 <= _markers(b) <= 4 for b in bodies)
    # A seat's first request writes; every later one reads what its previous one wrote.
    assert all(r.usage.cache_read_tokens == 0 for r in replies[:2])
    assert all(r.usage.cache_read_tokens > 0 for r in replies[2:])
    all_input = sum(r.usage.all_input for r in replies)
    assert run.cache_read_tokens / all_input > 0.5
    prices = load_prices()
    alias = {0: "opus", 1: "sonnet"}
    uncached = sum(uncached_cost_usd(prices[alias[r.position]], r.usage) for r in replies)
    assert run.cost_usd is not None and run.cost_usd < 0.7 * uncached


async def test_prompt_cache_off_sends_no_marker_and_reads_nothing(model_server, tmp_path):
    run, _ = await _claude_run(model_server, tmp_path, {"BACKROOMS_PROMPT_CACHE": "off"})
    assert not any(_markers(r.body) for r in model_server.requests_for("anthropic"))
    assert run.cache_read_tokens == 0 and run.cache_write_tokens == 0


async def test_a_model_with_prompt_cache_false_sends_no_marker(model_server, tmp_path):
    models = tmp_path / "models.toml"
    models.write_text(
        textwrap.dedent(
            """\
            [models.opus]
            provider = "anthropic"
            api_id = "claude-opus-5-5"
            display_name = "Claude"
            company = "anthropic"
            prompt_cache = false
            """
        ),
        encoding="utf-8",
    )
    await _claude_run(model_server, tmp_path, {"BACKROOMS_MODELS": str(models)})
    requests = model_server.requests_for("anthropic")
    assert not any(_markers(r.body) for r in requests if r.model == "claude-opus-5-5")
    assert any(_markers(r.body) for r in requests if r.model == "claude-sonnet-5-5")


async def test_a_seat_whose_previous_request_outlived_the_cache_is_sent_unmarked(
    model_server, tmp_path
):
    spec = load_registry().get("opus")
    long = [Message("user", "wall hum " * 400), Message("assistant", "ok " * 300)]
    messages = (*long, Message("user", "go on " * 300))
    env = fake_env(model_server, tmp_path)
    pool = ProviderPool(env, timeout=10.0)
    provider = pool.for_spec(spec)
    try:
        for seconds_ago in (LIFETIME_SECONDS - 10, LIFETIME_SECONDS + 10):
            request = ModelRequest(spec, "sys", messages, SentBefore(seconds_ago, 1))
            items = [item async for item in provider.stream(request)]
            assert isinstance(items[-1], Usage)
    finally:
        await pool.aclose()
    recent, stale = (r.body for r in model_server.requests_for("anthropic"))
    assert _markers(recent) == 2  # reads the previous prefix, writes this one
    assert _markers(stale) == 0

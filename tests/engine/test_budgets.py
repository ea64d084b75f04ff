"""Dollar budgets as a user meets them: the run ends before the request that could take it past
its budget (so it never overspends), a budget on an unpriced model is refused before any request,
BACKROOMS_BUDGET_USD and --budget-usd set it, and BACKROOMS_SPACE_DAILY_USD caps a community's
spend per UTC day.

The fake model server reports input tokens that have nothing to do with the estimate's
characters / 3: the estimate must take the seat's reported count, as the issue says."""

from __future__ import annotations

import pytest

from backrooms_engine.errors import ConfigError
from backrooms_engine.manager import LimitError
from backrooms_engine.records import RunSpec
from tests.bot.test_stored_runs import backrooms, workdir
from tests.conftest import fake_env
from tests.helpers import run_to_end, runtime

OPUS = "claude-opus-5-5"
# Each reply reports 10,000 input tokens (its text is one character) and 100 output tokens:
# 10,000 x $4 + 100 x $20 per million = $0.042 a reply at opus's prices.
REPLY_USD = 0.042


def _queue(model_server, n: int) -> None:
    for _ in range(n):
        model_server.queue_reply(OPUS, "x", input_tokens=10_000, output_tokens=100)


async def test_the_run_ends_before_the_request_that_could_cross_its_dollar_budget(
    model_server, tmp_path
):
    _queue(model_server, 10)
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        run_id, end = await run_to_end(
            rt, RunSpec(models=("opus", "opus"), max_turns=10, budget_usd=0.24)
        )
        run = await rt.archive.get_run(run_id)
    # The worst case of a request: max_tokens (4096) x $20 per million = $0.08192 of output,
    # plus the input at $4 per million with no cache credit. A seat's first request counts its
    # characters / 3 (a few hundred tokens here); a later one the 10,000 it last reported:
    #   request 1: 0       + ~0.0835  fits      request 3: 0.084 + ~0.1219 = ~0.206 fits
    #   request 2: 0.042   + ~0.0835  fits      request 4: 0.126 + ~0.1219 = ~0.248 > 0.24
    # (Counting characters alone, request 4 would have fitted and the run gone on.)
    assert len(model_server.requests) == 3
    assert end.reason == "budget" and end.detail == "$0.24"
    assert end.summary == "Budget of $0.24 reached after 1 turn. Conversation ended."
    assert run.cost_usd == pytest.approx(3 * REPLY_USD) and run.cost_usd <= 0.24


async def test_a_dollar_budget_on_an_unpriced_model_is_refused_before_any_request(
    model_server, tmp_path
):
    async with runtime(fake_env(model_server, tmp_path)) as rt:
        spec = RunSpec(models=("opus", "haiku-5.5"), max_turns=2, budget_usd=1.0)
        with pytest.raises(ConfigError, match=r"haiku-5\.5 has none; add \[prices\.haiku-5\.5\]"):
            await rt.manager.start(spec)
        assert await rt.archive.list_runs() == []
    assert model_server.requests == []


async def test_every_run_gets_the_default_dollar_budget(model_server, tmp_path):
    _queue(model_server, 10)
    env = fake_env(model_server, tmp_path) | {"BACKROOMS_BUDGET_USD": "$0.10"}
    async with runtime(env) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "opus"), max_turns=10))
        run = await rt.archive.get_run(run_id)
    assert run.spec.budget_usd == 0.10 and end.detail == "$0.10"
    assert len(model_server.requests) == 1  # 0.042 + ~0.0835 > 0.10: the second never went


async def test_a_space_past_its_daily_cap_is_refused_a_start_with_the_spend_and_setting(
    model_server, tmp_path
):
    _queue(model_server, 2)
    env = fake_env(model_server, tmp_path) | {"BACKROOMS_SPACE_DAILY_USD": "0.05"}
    async with runtime(env) as rt:
        chat = {"surface": "discord", "space": "guild-1", "max_turns": 1}
        await run_to_end(rt, RunSpec(models=("opus", "opus"), **chat))  # spends $0.084
        with pytest.raises(LimitError) as refused:
            await rt.manager.start(RunSpec(models=("opus", "opus"), **chat))
        elsewhere = {**chat, "space": "guild-2"}
        _queue(model_server, 2)
        _, end = await run_to_end(rt, RunSpec(models=("opus", "opus"), **elsewhere))
    assert str(refused.value) == (
        "this community has spent $0.0840 today, its cap is $0.0500 a day "
        "(BACKROOMS_SPACE_DAILY_USD=0.05); runs can start again after 00:00 UTC"
    )
    assert end.reason == "max_turns"  # another community's day is its own


async def test_budget_usd_on_the_command_line(model_server, tmp_path):
    _queue(model_server, 10)
    env, cwd = fake_env(model_server, tmp_path), workdir(tmp_path)
    ran = await backrooms("run", "--lm", "opus", "opus", "--budget-usd", "0.10", env=env, cwd=cwd)
    assert ran.code == 0, ran.err
    assert ran.out.endswith("\nBudget of $0.10 reached after 0 turns. Conversation ended.\n")
    bad = await backrooms("run", "--lm", "opus", "opus", "--budget-usd", "lots", env=env, cwd=cwd)
    assert bad.code == 2 and "must be an amount in US dollars such as 0.50" in bad.err

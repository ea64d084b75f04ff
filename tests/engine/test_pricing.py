"""Prices as data, a reply's cost, a run's totals and the budget estimate (issue 16, items 2-4)."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backrooms_engine.errors import RegistryError
from backrooms_engine.pricing import (
    Prices,
    TokenUsage,
    cost_usd,
    estimate_request_usd,
    load_prices,
    run_usage,
    uncached_cost_usd,
    with_cost,
    would_cross_budget,
)
from backrooms_engine.registry import load_registry

OPUS = Prices(input=4.0, output=20.0, cache_read=0.20, cache_write=5.0, as_of=date(2026, 12, 3))
GPT = Prices(input=2.5, output=10.0, cache_read=1.25)  # no cache_write price: OpenAI bills none


def usage(i: int | None = 0, o: int | None = 0, r: int | None = 0, w: int | None = 0) -> TokenUsage:
    return TokenUsage(input_tokens=i, output_tokens=o, cache_read_tokens=r, cache_write_tokens=w)


# --------------------------------------------------------------------------- the shipped tables


def test_shipped_prices_are_dated_sourced_and_name_shipped_models() -> None:
    registry = load_registry()
    prices = load_prices(aliases=registry.aliases())
    assert {"opus", "sonnet", "gpt4o", "o1-preview", "o1-mini"} <= set(prices)
    for alias, table in prices.items():
        assert table.as_of is not None, alias
        assert table.source, alias
        assert table.input is not None and table.output is not None, alias


def test_shipped_claude_prices_are_platform_notes_figures() -> None:
    opus = load_prices()["opus"]
    assert (opus.input, opus.output, opus.cache_read, opus.cache_write) == (4.0, 20.0, 0.20, 5.0)
    assert load_prices()["sonnet"].input == 2.0


def test_models_without_a_source_ship_no_prices() -> None:
    prices = load_prices()
    for alias in ("haiku-5.5", "deepseek", "gemini", "mythos", "gpt6-sol", "ollama-llama", "cli"):
        assert alias not in prices
        assert cost_usd(prices.get(alias), usage(1000, 100)) is None


# --------------------------------------------------------------------------- the user's file


def _user_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_user_file_changes_one_field_and_keeps_the_others(tmp_path: Path) -> None:
    user = _user_file(tmp_path, "[prices.opus]\ninput = 3.5\n")
    opus = load_prices(user)["opus"]
    assert opus.input == 3.5
    assert (opus.output, opus.cache_read, opus.cache_write) == (20.0, 0.20, 5.0)
    assert opus.as_of is None  # the shipped date no longer describes these prices
    assert opus.source == str(user)


def test_user_file_with_its_own_date_and_a_new_alias(tmp_path: Path) -> None:
    user = _user_file(
        tmp_path,
        '[prices.opus]\ninput = 3.5\nas_of = 2027-01-02\nsource = "my invoice"\n'
        "[prices.mine]\ninput = 1\noutput = 2\n",
    )
    prices = load_prices(user)
    assert prices["opus"].as_of == date(2027, 1, 2)
    assert prices["opus"].source == "my invoice"
    assert prices["mine"] == Prices(input=1.0, output=2.0, source=str(user))


def test_registry_accepts_a_file_with_price_tables(tmp_path: Path) -> None:
    user = _user_file(tmp_path, "[prices.opus]\ninput = 3.5\n")
    assert load_registry(user).get("opus").api_id == "claude-opus-5-5"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[prices.opus]\ninput = -1\n", "input must be a number"),
        ('[prices.opus]\noutput = "cheap"\n', "output must be a number"),
        ("[prices.opus]\ncache_read = true\n", "cache_read must be a number"),
        ("[prices.opus]\ninptu = 1\n", "unknown field(s) inptu"),
        ('[prices.opus]\nas_of = "last week"\n', "as_of must be a date"),
        ("[prices.opus]\nas_of = 2026-12-03T10:00:00\n", "as_of must be a date"),
        ("[prices.opus]\nsource = 3\n", "source must be a string"),
        ("prices = 3\n", "[prices] must hold"),
        ("[prices]\nopus = 3\n", "[prices.opus] must be a table"),
        ("[prices.opus\n", "malformed TOML"),
    ],
)
def test_bad_price_tables_fail_in_one_line_naming_file_and_table(
    tmp_path: Path, text: str, says: str
) -> None:
    user = _user_file(tmp_path, text)
    with pytest.raises(RegistryError) as failed:
        load_prices(user)
    message = str(failed.value)
    assert says in message
    assert str(user) in message
    assert "\n" not in message


def test_a_price_table_naming_no_model_is_an_error(tmp_path: Path) -> None:
    user = _user_file(tmp_path, "[prices.opsu]\ninput = 1\n")
    with pytest.raises(RegistryError, match=r"\[prices\.opsu\] names no model"):
        load_prices(user, aliases=load_registry().aliases())


# --------------------------------------------------------------------------- a reply's cost


def test_cost_prices_each_kind_of_token_at_its_own_rate() -> None:
    got = cost_usd(OPUS, usage(i=1000, o=500, r=200_000, w=10_000))
    assert got == pytest.approx((1000 * 4 + 500 * 20 + 200_000 * 0.2 + 10_000 * 5) / 1e6)


def test_cost_is_unknown_when_any_count_is_unknown() -> None:
    for unknown in (usage(i=None), usage(o=None), usage(r=None), usage(w=None)):
        assert cost_usd(OPUS, unknown) is None


def test_cost_needs_only_the_prices_of_kinds_used() -> None:
    assert cost_usd(GPT, usage(i=1000, o=100, r=500, w=0)) == pytest.approx(
        (1000 * 2.5 + 100 * 10 + 500 * 1.25) / 1e6
    )
    assert cost_usd(GPT, usage(i=1000, o=100, w=1)) is None  # a write with no write price


def test_cost_is_unknown_without_prices() -> None:
    assert cost_usd(None, usage(1000, 100)) is None
    assert uncached_cost_usd(None, usage(1000, 100)) is None


def test_with_cost_fixes_the_cost_when_the_reply_is_made() -> None:
    made = with_cost(OPUS, usage(i=1_000_000))
    assert made.cost_usd == pytest.approx(4.0)
    assert made.input_tokens == 1_000_000
    later = Prices(input=40.0, output=20.0)
    assert made.cost_usd == pytest.approx(4.0)  # a value object: the new price rewrites nothing
    assert cost_usd(later, made) == pytest.approx(40.0)


def test_caching_saves_the_difference_to_full_price_input() -> None:
    used = usage(i=100, o=0, r=9_000, w=900)
    assert uncached_cost_usd(OPUS, used) == pytest.approx(10_000 * 4 / 1e6)
    assert cost_usd(OPUS, used) == pytest.approx((100 * 4 + 9_000 * 0.2 + 900 * 5) / 1e6)


counts = st.integers(0, 10**9)
# No subnormal prices: a price of 5e-324 dollars per million tokens underflows to 0 once divided.
price = st.floats(0, 200, allow_nan=False, allow_subnormal=False)


@given(counts, counts, counts, counts, price, price, price, price)
def test_cost_is_never_negative_and_adds_up_over_replies(
    i: int, o: int, r: int, w: int, pi: float, po: float, pr: float, pw: float
) -> None:
    prices = Prices(pi, po, pr, pw)
    whole = cost_usd(prices, usage(i, o, r, w))
    parts = [cost_usd(prices, u) for u in (usage(i=i), usage(o=o), usage(r=r), usage(w=w))]
    assert whole is not None and whole >= 0
    assert whole == pytest.approx(sum(p for p in parts if p is not None), rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- a run's totals


def test_run_total_sums_known_values_and_says_when_incomplete() -> None:
    replies = [
        with_cost(OPUS, usage(100, 10, 0, 2000)),
        TokenUsage(input_tokens=50, output_tokens=None),  # a reply the API reported only in part
        with_cost(OPUS, usage(30, 5, 2000, 0)),
    ]
    total = run_usage(replies)
    assert total.input_tokens == 180
    assert total.output_tokens == 15
    assert total.cache_read_tokens == 2000
    assert total.cache_write_tokens == 2000
    assert total.cost_usd == pytest.approx(replies[0].cost_usd + replies[2].cost_usd)
    assert total.complete is False


def test_run_total_is_unknown_when_no_reply_knows_it() -> None:
    total = run_usage([TokenUsage(input_tokens=5), TokenUsage(input_tokens=7)])
    assert total.input_tokens == 12
    assert total.output_tokens is None
    assert total.cost_usd is None
    assert total.complete is False


def test_run_total_of_fully_known_replies_is_complete_and_zero_is_not_unknown() -> None:
    total = run_usage([with_cost(OPUS, usage(0, 0, 0, 0)), with_cost(OPUS, usage(1, 1, 0, 0))])
    assert total.cache_read_tokens == 0
    assert total.complete is True
    empty = run_usage([])
    assert (empty.input_tokens, empty.cost_usd, empty.complete) == (None, None, True)


optional = st.none() | st.integers(0, 10**6)


dollars = st.none() | st.floats(0, 100, allow_nan=False)


@given(
    st.lists(st.builds(TokenUsage, optional, optional, optional, optional, dollars), max_size=12)
)
def test_run_total_null_rules_hold_for_any_replies(replies: list[TokenUsage]) -> None:
    total = run_usage(replies)
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        known = [getattr(r, name) for r in replies if getattr(r, name) is not None]
        assert getattr(total, name) == (sum(known) if known else None)
    every_value = [
        v
        for r in replies
        for v in (
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.cost_usd,
        )
    ]
    assert total.complete == all(v is not None for v in every_value)
    known_costs = [r.cost_usd for r in replies if r.cost_usd is not None]
    assert total.cost_usd == (pytest.approx(sum(known_costs)) if known_costs else None)


# --------------------------------------------------------------------------- the budget estimate


def test_estimate_is_last_input_plus_new_chars_over_three_plus_max_tokens() -> None:
    got = estimate_request_usd(OPUS, previous_input_tokens=10_000, new_chars=3001, max_tokens=2048)
    expected_input = 10_000 + 1001  # 3001 / 3 rounded up
    assert got == pytest.approx((expected_input * 4.0 + 2048 * 20.0) / 1e6)


def test_estimate_gives_no_cache_credit() -> None:
    cheap_reads = Prices(input=4.0, output=20.0, cache_read=0.0, cache_write=0.0)
    assert estimate_request_usd(
        cheap_reads, previous_input_tokens=9000, new_chars=0, max_tokens=0
    ) == pytest.approx(9000 * 4.0 / 1e6)


def test_estimate_is_unknown_without_input_and_output_prices() -> None:
    for prices in (None, Prices(output=1.0), Prices(input=1.0)):
        assert (
            estimate_request_usd(prices, previous_input_tokens=1, new_chars=1, max_tokens=1) is None
        )


@given(st.integers(0, 10**7), st.integers(0, 10**7), st.integers(1, 200_000), price, price)
def test_estimate_covers_the_input_at_full_price_and_the_whole_output(
    previous: int, chars: int, max_tokens: int, pi: float, po: float
) -> None:
    prices = Prices(input=pi, output=po)
    got = estimate_request_usd(
        prices, previous_input_tokens=previous, new_chars=chars, max_tokens=max_tokens
    )
    assert got is not None
    floor = (previous + chars / 3) * pi + max_tokens * po
    assert got * 1e6 >= floor * (1 - 1e-12)
    assert got * 1e6 <= floor + pi * (1 + 1e-9) + 1e-6  # at most one token of rounding up
    assert math.isfinite(got)


def test_budget_is_crossed_only_past_it() -> None:
    assert would_cross_budget(0.40, 0.11, 0.50)
    assert not would_cross_budget(0.40, 0.10, 0.50)  # exactly at the budget is allowed
    assert not would_cross_budget(0.0, 0.0, 0.0)

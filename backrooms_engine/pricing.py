"""What replies cost: dated prices read from the registry's `[prices.ALIAS]` tables, and the rules
for a reply's cost, a run's totals and a request's worst-case estimate.

Prices are data, never constants here: the shipped `models.toml` holds them, dated, each with its
source; the user's file is laid over them field by field (unlike `[models.X]`, which it replaces
whole), so `[prices.opus] input = 3.5` changes one number and keeps the rest.

Token categories are disjoint, as Anthropic reports them: `input_tokens` is the uncached
remainder, beside `cache_read_tokens` and `cache_write_tokens`. (OpenAI's `prompt_tokens` includes
its cached tokens: a caller subtracts them before pricing.)

Unknown stays unknown, never zero and never a guess:
- a reply's cost is None when any of its four counts is None, when its model has no prices, or
  when a count above zero meets a price that is not given; a zero count needs no price;
- a run's total of each count (and of the cost) is None when every reply's value is None, else the
  sum of the known values; `complete` is false when any reply has any value None.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from .errors import RegistryError
from .registry import DEFAULT_REGISTRY

PER_MILLION = 1_000_000
PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")
_FIELDS = {*PRICE_FIELDS, "as_of", "source"}
ESTIMATE_CHARS_PER_TOKEN = 3  # the budget estimate's rule (issue 16): no tokenizer, a safe ratio


@dataclass(frozen=True)
class Prices:
    """USD per million tokens for one alias; None where no price is known.

    `cache_write` is the 5-minute cache write (the lifetime this project's markers ask for).
    `as_of` is the day the prices were read at `source`; None for prices a user set undated.
    """

    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    as_of: date | None = None
    source: str | None = None


@dataclass(frozen=True)
class TokenUsage:
    """One reply's counts as the API reported them (None: not reported) and its cost."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost_usd: float | None = None


class ReplyUsage(Protocol):
    """What a run's total is summed from: anything with TokenUsage's five fields."""

    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def cache_read_tokens(self) -> int | None: ...
    @property
    def cache_write_tokens(self) -> int | None: ...
    @property
    def cost_usd(self) -> float | None: ...


@dataclass(frozen=True)
class RunUsage(TokenUsage):
    """A run's totals: each None when no reply reported it; `complete` false if any reply lacked one."""

    complete: bool = True


# --------------------------------------------------------------------------- costs


def _terms(
    prices: Prices, usage: ReplyUsage, input_price: float | None
) -> list[tuple[int | None, float | None]]:
    return [
        (usage.input_tokens, input_price),
        (usage.output_tokens, prices.output),
        (usage.cache_read_tokens, prices.cache_read),
        (usage.cache_write_tokens, prices.cache_write),
    ]


def _priced(terms: Iterable[tuple[int | None, float | None]]) -> float | None:
    total = 0.0
    for tokens, price in terms:
        if tokens is None:
            return None
        if tokens == 0:
            continue  # nothing of this kind was used: its price does not matter
        if price is None:
            return None
        total += tokens * price
    return total / PER_MILLION


def cost_usd(prices: Prices | None, usage: ReplyUsage) -> float | None:
    """A reply's cost in USD, or None (see the module doc for exactly when)."""
    if prices is None:
        return None
    return _priced(_terms(prices, usage, prices.input))


def uncached_cost_usd(prices: Prices | None, usage: ReplyUsage) -> float | None:
    """What the same reply would have cost with no prompt cache: every input token at full price."""
    if prices is None:
        return None
    counts = (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens)
    whole = None if None in counts else sum(c for c in counts if c is not None)
    return _priced([(whole, prices.input), (usage.output_tokens, prices.output)])


def with_cost(prices: Prices | None, usage: TokenUsage) -> TokenUsage:
    """The usage with its cost filled in now, so later price changes never rewrite it."""
    return TokenUsage(**{**_counts(usage), "cost_usd": cost_usd(prices, usage)})


def _counts(usage: TokenUsage) -> dict[str, Any]:
    return {f.name: getattr(usage, f.name) for f in fields(TokenUsage) if f.name != "cost_usd"}


def _sum_known(values: list[Any]) -> Any:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def added(total: RunUsage, reply: ReplyUsage) -> RunUsage:
    """`total` with one more reply counted, by the same rules as run_usage (a running total)."""
    step = run_usage([reply])
    both = run_usage([total, step])
    return RunUsage(**_all(both), complete=total.complete and step.complete)


def _all(usage: TokenUsage) -> dict[str, Any]:
    return {f.name: getattr(usage, f.name) for f in fields(TokenUsage)}


def run_usage(replies: Iterable[ReplyUsage]) -> RunUsage:
    """A run's totals by the null rules in the module doc."""
    rows = list(replies)
    names = [f.name for f in fields(TokenUsage)]
    columns = {name: [getattr(r, name) for r in rows] for name in names}
    complete = all(v is not None for values in columns.values() for v in values)
    return RunUsage(**{n: _sum_known(v) for n, v in columns.items()}, complete=complete)


# --------------------------------------------------------------------------- budgets


def estimate_request_usd(
    prices: Prices | None, *, previous_input_tokens: int, new_chars: int, max_tokens: int
) -> float | None:
    """The most a request may cost (issue 16, item 4): the seat's last reported input tokens (all
    of them: uncached, read and written) plus the new text's characters / 3 (rounded up), all at
    the input price with no cache credit, plus `max_tokens` at the output price.

    On a seat's first request pass 0 and the characters of everything it sends. None when the
    input or output price is unknown: a dollar budget cannot be kept for that model.
    """
    if prices is None or prices.input is None or prices.output is None:
        return None
    tokens_in = previous_input_tokens + math.ceil(new_chars / ESTIMATE_CHARS_PER_TOKEN)
    return (tokens_in * prices.input + max_tokens * prices.output) / PER_MILLION


def would_cross_budget(spent_usd: float, estimate_usd: float, budget_usd: float) -> bool:
    """True when the next request could take the run past its budget: end the run before it."""
    return spent_usd + estimate_usd > budget_usd


# --------------------------------------------------------------------------- reading the tables


def load_prices(
    user_file: Path | None = None,
    *,
    default_file: Path = DEFAULT_REGISTRY,
    aliases: Iterable[str] | None = None,
) -> dict[str, Prices]:
    """The shipped `[prices.ALIAS]` tables with the user's laid over them field by field.

    A user table that sets a price but no `as_of` (or `source`) makes that alias's prices undated
    (`as_of` None) and sourced from the user's file. With `aliases`, a table naming an alias that
    is not among them is an error (a typo would otherwise price nothing, silently).
    """
    merged = {alias: _checked(default_file, alias, t) for alias, t in _tables(default_file).items()}
    if user_file is not None:
        for alias, table in _tables(user_file).items():
            merged[alias] = _overlay(
                merged.get(alias, {}), _checked(user_file, alias, table), user_file
            )
    if aliases is not None:
        known = set(aliases)
        for alias in sorted(set(merged) - known):
            raise RegistryError(
                f"[prices.{alias}] names no model; known: {', '.join(sorted(known))}"
            )
    return {alias: Prices(**table) for alias, table in merged.items()}


def _overlay(base: Mapping[str, Any], user: Mapping[str, Any], path: Path) -> dict[str, Any]:
    merged = {**base, **user}
    if any(name in user for name in PRICE_FIELDS):  # the shipped date no longer describes them
        if "as_of" not in user:
            merged["as_of"] = None
        if "source" not in user:
            merged["source"] = str(path)
    return merged


def _tables(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegistryError(f"cannot read model registry {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: malformed TOML: {exc}") from None
    prices = data.get("prices", {})
    if not isinstance(prices, dict):
        raise RegistryError(f"{path}: [prices] must hold one [prices.ALIAS] table per model")
    return prices


def _checked(path: Path, alias: str, table: Any) -> dict[str, Any]:
    where = f"{path}: [prices.{alias}]"
    if not isinstance(table, dict):
        raise RegistryError(f"{where} must be a table")
    extra = sorted(set(table) - _FIELDS)
    if extra:
        raise RegistryError(
            f"{where}: unknown field(s) {', '.join(extra)}; accepted: {', '.join(sorted(_FIELDS))}"
        )
    for name in PRICE_FIELDS:
        value = table.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise RegistryError(
                f"{where}: {name} must be a number of USD per million tokens, at least 0; got {value!r}"
            )
    as_of = table.get("as_of", date.min)
    if not isinstance(as_of, date) or isinstance(as_of, datetime):
        raise RegistryError(
            f"{where}: as_of must be a date such as 2026-12-03; got {table['as_of']!r}"
        )
    if "source" in table and not isinstance(table["source"], str):
        raise RegistryError(f"{where}: source must be a string naming where the prices were read")
    return {k: float(v) if k in PRICE_FIELDS else v for k, v in table.items()}

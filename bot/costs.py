"""A run's cost as every surface words it: dollars where the replies were priced, "cost unknown"
where none was, and never a guess (pricing.py holds the rules; this only writes them out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from backrooms_engine.pricing import Prices, RunUsage, cost_usd, uncached_cost_usd
from backrooms_engine.records import Reply, RunRecord

UNKNOWN = "cost unknown"


def usd(amount: float) -> str:
    """Dollars to the cent, or to four places under ten cents (a short run costs fractions of one)."""
    if amount >= 0.10 or amount == 0:
        return f"${amount:,.2f}"
    return f"${amount:.4f}"


def cost_words(cost: float | None, complete: bool) -> str:
    """`$0.42`, `at least $0.42` when some replies are unpriced or lack counts, else `cost unknown`."""
    if cost is None:
        return UNKNOWN
    return usd(cost) if complete else f"at least {usd(cost)}"


def cost_text(run: RunRecord) -> str:
    return cost_words(run.cost_usd, run.usage_complete)


def usage_cost_text(usage: RunUsage) -> str:
    return cost_words(usage.cost_usd, usage.complete)


def cost_cell(run: RunRecord) -> str:
    """The same, short enough for a table column."""
    if run.cost_usd is None:
        return "unknown"
    return ("≥" if not run.usage_complete else "") + usd(run.cost_usd)


def tokens_text(run: RunRecord) -> str:
    """Input (with what the prompt cache read and wrote) and output tokens; `?` where unknown."""

    def n(value: int | None) -> str:
        return "?" if value is None else f"{value:,}"

    cached = ""
    if run.cache_read_tokens or run.cache_write_tokens:
        cached = (
            f" (+{n(run.cache_read_tokens)} read from cache, {n(run.cache_write_tokens)} written)"
        )
    return f"{n(run.input_tokens)} in{cached}, {n(run.output_tokens)} out"


def total_tokens(run: RunRecord) -> int | None:
    """Every token the run used (cached or not), None when none were reported."""
    counts = (run.input_tokens, run.output_tokens, run.cache_read_tokens, run.cache_write_tokens)
    known = [c for c in counts if c is not None]
    return sum(known) if known else None


def caching_saved(
    run: RunRecord, replies: Iterable[Reply], prices: Mapping[str, Prices]
) -> float | None:
    """What the prompt cache saved on the priced replies, at today's prices (a reply's own cost
    is the one stored when it was made; this difference is only ever shown as an estimate).
    None when no reply could be priced both ways."""
    alias_at = {p.position: p.alias for p in run.participants}
    saved: list[float] = []
    for reply in replies:
        table = prices.get(alias_at.get(reply.position, ""))
        without, with_cache = uncached_cost_usd(table, reply.usage), cost_usd(table, reply.usage)
        if without is not None and with_cache is not None:
            saved.append(without - with_cache)
    return sum(saved) if saved else None

"""Dollar budgets (issue 16, item 4): a run's budget is kept before each request, never after,
and a community space's spend is capped per UTC day.

Before each request the engine estimates its most expensive outcome (pricing.estimate_request_usd:
the seat's last reported input tokens plus the new text's characters / 3 at the full input price,
plus max_tokens at the output price) and ends the run first if that could take it past its
budget: a run never overspends. The world interface costs nothing and is never estimated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from .conversation import ModelRequest
from .errors import ConfigError
from .pricing import Prices, estimate_request_usd
from .registry import ModelSpec


def usd_text(amount: float) -> str:
    """Dollars to the cent, or to four places under ten cents (a short run costs fractions of one)."""
    if amount >= 0.10 or amount == 0:
        return f"${amount:,.2f}"
    return f"${amount:.4f}"


def estimate(prices: Prices | None, request: ModelRequest, last_input: int | None) -> float | None:
    """The most this request may cost; None when its model's input or output price is unknown.

    A seat with no reported input yet (its first request, or the first after a resume) is
    estimated from every character it sends; otherwise from its last reported input plus the
    characters of the messages added since its previous request."""
    before = request.previous
    if before is None or last_input is None:
        previous = 0
        new = [request.system or "", *(m.content for m in request.messages)]
    else:
        previous = last_input
        new = [m.content for m in request.messages[before.messages :]]
    return estimate_request_usd(
        prices,
        previous_input_tokens=previous,
        new_chars=sum(len(text) for text in new),
        max_tokens=request.spec.max_tokens,
    )


def check_priced(
    budget_usd: float | None, specs: Sequence[ModelSpec], prices: Mapping[str, Prices]
) -> None:
    """A dollar budget cannot be kept for a model whose input or output price is unknown: such a
    start is refused up front, naming the models and where prices go."""
    if budget_usd is None:
        return
    unpriced = sorted(
        {
            s.alias
            for s in specs
            if not s.is_world_interface
            and ((p := prices.get(s.alias)) is None or p.input is None or p.output is None)
        }
    )
    if unpriced:
        raise ConfigError(
            f"a dollar budget needs prices, and {', '.join(unpriced)} has none; add "
            f"[prices.{unpriced[0]}] (input and output, USD per million tokens) to your "
            "models.toml, or start without a dollar budget"
        )


def utc_day(moment: datetime) -> tuple[datetime, datetime]:
    """The UTC day `moment` falls in, as [start, end)."""
    start = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def daily_cap_refusal(spent: float, cap: float) -> str | None:
    """Why a start is refused when the space has spent its day's cap, or None."""
    if spent < cap:
        return None
    return (
        f"this community has spent {usd_text(spent)} today, its cap is {usd_text(cap)} a day "
        f"(BACKROOMS_SPACE_DAILY_USD={cap:g}); runs can start again after 00:00 UTC"
    )

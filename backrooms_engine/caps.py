"""The caps on runs going at once: across the store (BACKROOMS_MAX_RUNS) and per community
(BACKROOMS_MAX_RUNS_PER_SPACE), with the messages a refused start shows.

The store counts them in the transaction that stores a new run (TranscriptStore.create_run's
`caps`), so several processes on one store share one cap instead of each having its own; the
manager also checks them against what it drives itself before it asks (manager.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LimitError


@dataclass(frozen=True)
class Caps:
    """None: no cap of that kind."""

    max_runs: int | None = None  # runs going in the whole store
    max_runs_per_space: int | None = None  # runs going in one space (a Discord server)


def refusal(caps: Caps, space: str | None, going: int, here: int) -> str | None:
    """Why one more run may not start while `going` runs are going, `here` of them in `space`;
    None when it may."""
    if caps.max_runs is not None and going >= caps.max_runs:
        return (
            f"{going} runs are going, the most this service runs at once "
            f"(BACKROOMS_MAX_RUNS={caps.max_runs}); stop one or raise the limit"
        )
    if space is not None and caps.max_runs_per_space is not None:
        if here >= caps.max_runs_per_space:
            return (
                f"{here} runs are going here, the most per community "
                f"(BACKROOMS_MAX_RUNS_PER_SPACE={caps.max_runs_per_space}); stop one first"
            )
    return None


def check_caps(caps: Caps, space: str | None, going: int, here: int) -> None:
    """Raise LimitError with the refusal, if any."""
    why = refusal(caps, space, going, here)
    if why is not None:
        raise LimitError(why)

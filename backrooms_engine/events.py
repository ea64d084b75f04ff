"""Events the engine emits while a run goes. Frozen, so one object can go to every observer.

A reply is one participant's output (the upstream "turn" is one reply from every participant).
Order within a run: RunStarted, then per reply ReplyStarted, ReplyDelta*, (ReplyRetrying,
ReplyStarted, ReplyDelta*)*, ReplyFinished, and last RunEnded. ReplyFinished is emitted only after the
reply is committed to the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from .pricing import RunUsage
from .records import Reply, RunEnd, RunRecord


@dataclass(frozen=True)
class RunStarted:
    run: RunRecord
    resumed: bool = False

    @property
    def run_id(self) -> int:
        return self.run.id


@dataclass(frozen=True)
class ReplyStarted:
    run_id: int
    seq: int
    turn: int
    position: int
    actor: str
    attempt: int = 1  # above 1: the earlier attempt's text is void, start the reply afresh


@dataclass(frozen=True)
class ReplyDelta:
    run_id: int
    seq: int
    position: int
    actor: str
    delta: str
    text: str  # the reply so far; a slow observer may skip deltas and keep only the latest


@dataclass(frozen=True)
class ReplyRetrying:
    run_id: int
    seq: int
    position: int
    actor: str
    attempt: int  # the attempt that failed
    delay: float
    reason: str


@dataclass(frozen=True)
class ReplyFinished:
    reply: Reply

    @property
    def run_id(self) -> int:
        return self.reply.run_id


@dataclass(frozen=True)
class RunEnded:
    run_id: int
    end: RunEnd
    # The run's usage totals and cost when the engine ended it; None where nobody counted (a
    # run that failed before the engine drove it).
    usage: RunUsage | None = None


Event = RunStarted | ReplyStarted | ReplyDelta | ReplyRetrying | ReplyFinished | RunEnded

STRUCTURAL = (RunStarted, ReplyStarted, ReplyRetrying, ReplyFinished, RunEnded)

"""Value objects shared by the engine, the store and every surface."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

EndReason = Literal["ctrl_c", "max_turns", "stopped", "budget", "error", "gone", "shutdown"]
# queued: stored, no driving process has claimed it yet; running: claimed (whether a process holds
# its lease right now is the Leases' business: with none it is waiting to be claimed again);
# paused: resumable, claimed by nobody until resumed; ended (ARCHITECTURE.md, run states).
RunStatus = Literal["queued", "running", "paused", "ended"]


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RunSpec:
    """A parsed start request: what to run, and who asked for it from where."""

    models: tuple[str, ...]
    template: str = "cli"
    max_turns: int | None = None
    started_by: str = "terminal"
    surface: str = "terminal"
    space: str | None = None  # the community: a Discord server id, a Slack workspace id
    place: str | None = None  # where it is shown, in the surface's own terms (channel, thread)
    token_budget: int | None = None
    budget_usd: float | None = None  # the most the run may cost (budgets.py)


@dataclass(frozen=True)
class ParticipantInfo:
    """A participant as stored: enough to show a transcript and to rebuild the run."""

    position: int
    alias: str
    actor: str
    api_id: str
    provider: str


@dataclass(frozen=True)
class Blueprint:
    """What a run stores to be rebuilt by any process: its template as loaded (upstream JSONL
    text, placeholders unfilled) and its models' resolved specs (JSON; names of key variables,
    never a key). The starting module (starting.py) writes and reads both."""

    template: str
    models: str


@dataclass(frozen=True)
class RunEnd:
    reason: EndReason
    actor: str | None = None  # who typed ^C^C
    by: str | None = None  # who stopped it
    detail: str | None = None  # the error, the budget ("$0.50", "10000 tokens"), ...
    turns: int = 0  # whole turns completed
    max_turns: int | None = None

    def closing_line(self) -> str:
        """The line the transcript ends with, in upstream's style, for every way a run can end."""
        match self.reason:
            case "ctrl_c":
                return f"\n{self.actor} has ended the conversation with ^C^C.\n"
            case "max_turns":
                return (
                    f"\nReached maximum number of turns ({self.max_turns}). Conversation ended.\n"
                )
            case "stopped":
                return f"\nConversation stopped by {self.by} after {_turns(self.turns)}.\n"
            case "budget":
                return (
                    f"\nBudget of {_budget(self.detail)} reached after {_turns(self.turns)}. "
                    "Conversation ended.\n"
                )
            case "gone":
                return f"\nConversation ended: {self.detail}.\n"
            case "shutdown":
                return f"\nConversation interrupted by a shutdown after {_turns(self.turns)}.\n"
            case _:
                return f"\nConversation ended by an error: {self.detail}\n"

    @property
    def summary(self) -> str:
        """The closing line without its surrounding newlines, for chat and status lines."""
        return self.closing_line().strip()


def _budget(detail: str | None) -> str:
    # Runs stored before dollar budgets said only the number of tokens.
    return f"{detail} tokens" if detail is not None and detail.isdigit() else str(detail)


def _turns(n: int) -> str:
    return f"{n} turn" if n == 1 else f"{n} turns"


@dataclass(frozen=True)
class Usage:
    """One reply's counts as the API reported them (None: not reported, never zero), its cost in
    USD when it was made (None: unpriced or a count unknown; pricing.py), and whether the API
    ended it at max_tokens (`cut_off`). `input_tokens` is the uncached remainder, beside the
    tokens read from and written to the prompt cache (Anthropic's accounting; OpenAI's cached
    tokens are subtracted from its prompt_tokens)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost_usd: float | None = None
    cut_off: bool = False

    @property
    def all_input(self) -> int:
        """Every input token the request carried, read from the cache or not."""
        counts = (self.input_tokens, self.cache_read_tokens, self.cache_write_tokens)
        return sum(c or 0 for c in counts)

    @property
    def total(self) -> int:
        """What a token budget counts: every input token (cached or not) and the output."""
        return self.all_input + (self.output_tokens or 0)


@dataclass(frozen=True)
class Reply:
    """One participant's output, exactly as the model produced it."""

    run_id: int
    seq: int  # 0-based index of the reply in the run: turn_index * participants + position
    turn: int  # 1-based
    position: int
    actor: str
    text: str
    started_at: datetime
    finished_at: datetime
    usage: Usage = field(default_factory=Usage)

    @property
    def cost_usd(self) -> float | None:
        return self.usage.cost_usd

    @property
    def cut_off(self) -> bool:
        """The API ended this reply at max_tokens: its text may stop mid-sentence."""
        return self.usage.cut_off


@dataclass(frozen=True)
class RunRecord:
    id: int
    spec: RunSpec
    participants: tuple[ParticipantInfo, ...]
    status: RunStatus
    created_at: datetime
    log_path: str
    end: RunEnd | None = None
    ended_at: datetime | None = None
    replies: int = 0
    # Totals over the run's replies: None when no reply reported the value, else the sum of the
    # known ones; usage_complete is false when any reply lacks any of them (pricing.run_usage).
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost_usd: float | None = None
    usage_complete: bool = True

    @property
    def turns(self) -> int:
        return self.replies // max(1, len(self.participants))

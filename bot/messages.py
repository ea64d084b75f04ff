"""Words the chat surfaces say, shared by Discord and Slack (each passes its own bold marker)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from backrooms_engine.pricing import RunUsage
from backrooms_engine.records import Reply, RunEnd, RunRecord
from backrooms_engine.registry import Registry

from . import costs

HELP = """\
{b}/backrooms start{b} `opus gpt4o cli 20`: models in turn order, then optionally a template and a \
turn limit (upstream's word order). The run gets its own thread; each model posts as itself.
{b}/backrooms stop{b} `[run]`: stop a run (in its thread, {stop_here} is enough). The starter \
or a moderator can stop it.
{b}/backrooms resume{b} `run`: continue a run the bot's restart or an error interrupted.
{b}/backrooms list{b}: the runs going here.
{b}/backrooms templates{b}, {b}/backrooms models{b}: what you can start.
A run ends when a model types `^C^C`, at its turn limit, at its token budget, or when stopped."""


# Under a reply the API ended at max_tokens (thinking models count their thinking in it too).
REPLY_CUT_OFF = "(cut off: this reply reached its max_tokens limit)"


def reply_text(reply: Reply) -> str:
    """A reply as a chat shows it: its text, and a mark when the API cut it off."""
    return f"{reply.text}\n\n{REPLY_CUT_OFF}" if reply.cut_off else reply.text


def help_text(bold: str, stop_here: str) -> str:
    return HELP.format(b=bold, stop_here=stop_here)


def run_url(public_url: str | None, run_id: int) -> str | None:
    return f"{public_url}/runs/{run_id}" if public_url else None


def starter_text(
    record: RunRecord, starter: str, *, bold: str, stop_hint: str, public_url: str | None
) -> str:
    who = ", ".join(f"{p.actor} (`{p.alias}`)" for p in record.participants)
    limit = f"up to {record.spec.max_turns} turns" if record.spec.max_turns else "no turn limit"
    budget = f", budget {record.spec.token_budget} tokens" if record.spec.token_budget else ""
    lines = [
        f"{bold}Backrooms run {record.id}{bold}: {who}",
        f"Template `{record.spec.template}`, {limit}{budget}. Started by {starter}.",
        stop_hint,
    ]
    url = run_url(public_url, record.id)
    if url:
        lines.append(f"Watch and download: {url}")
    return "\n".join(lines)


def closing_text(
    record_id: int, end: RunEnd, public_url: str | None, usage: RunUsage | None = None
) -> str:
    """The closing line; with the run's usage (RunEnded carries it), what the run cost."""
    text = f"Run {record_id}: {end.summary}"
    if usage is not None:
        text += f" Cost: {costs.usage_cost_text(usage)}."
    if end.reason == "gone":
        text += f" It can be resumed with `/backrooms resume {record_id}`."
    url = run_url(public_url, record_id)
    return f"{text}\nTranscript: {url}" if url else text


def thread_name(record: RunRecord) -> str:
    """Discord thread names are 1-100 characters."""
    who = " × ".join(p.actor for p in record.participants)
    return f"#{record.id} {who} · {record.spec.template}"[:100]


def runs_list(records: Sequence[RunRecord], where: Mapping[int, str]) -> str:
    if not records:
        return "No runs are going here. Start one with `/backrooms start opus gpt4o cli`."
    lines = []
    for r in records:
        who = " ".join(p.alias for p in r.participants)
        limit = f"/{r.spec.max_turns}" if r.spec.max_turns else ""
        lines.append(
            f"run {r.id}: {who}, `{r.spec.template}`, turn {r.turns}{limit} {where.get(r.id, '')}"
        )
    return "\n".join(lines)


def models_text(registry: Registry, env: Mapping[str, str]) -> str:
    usable, unusable = [], []
    for alias in registry.aliases():
        spec = registry.get(alias)
        p = spec.provider
        ready = not (p.key_required and p.key_env and not env.get(p.key_env))
        (usable if ready else unusable).append(f"`{alias}` ({spec.api_id})")
    text = "Models ready: " + ", ".join(usable)
    if unusable:
        text += "\nNot configured on this bot (no API key): " + ", ".join(unusable)
    return text


def templates_text(sizes: Mapping[str, int]) -> str:
    return "Templates: " + ", ".join(f"`{name}` ({n})" for name, n in sizes.items())

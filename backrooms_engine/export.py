"""A stored run as text (exactly the BackroomsLogs file), Markdown or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .logfile import transcript_text
from .records import Reply, RunRecord

FORMATS = ("txt", "md", "json")


def render(run: RunRecord, replies: Sequence[Reply], fmt: str) -> str:
    if fmt == "txt":
        return transcript_text(replies, run.end)
    if fmt == "md":
        return markdown(run, replies)
    if fmt == "json":
        return json.dumps(as_json(run, replies), ensure_ascii=False, indent=2) + "\n"
    raise ValueError(f"unknown format {fmt!r}; accepted: {', '.join(FORMATS)}")


def markdown(run: RunRecord, replies: Sequence[Reply]) -> str:
    who = ", ".join(f"{p.actor} (`{p.alias}`)" for p in run.participants)
    lines = [
        f"# Backrooms run {run.id}: {run.spec.template}",
        "",
        f"- Participants: {who}",
        f"- Started: {run.created_at.isoformat(timespec='seconds')} by {run.spec.started_by}",
        f"- Turns: {run.turns}; tokens: {run.input_tokens} in, {run.output_tokens} out",
        f"- Outcome: {run.end.summary if run.end else run.status}",
        "",
    ]
    for reply in replies:
        fence = _fence_for(reply.text)
        lines += [f"## {reply.actor}", "", fence, reply.text, fence, ""]
    return "\n".join(lines)


def _fence_for(text: str) -> str:
    """A fence longer than any backtick run in the text, so the reply shows verbatim."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def as_json(run: RunRecord, replies: Sequence[Reply]) -> dict[str, Any]:
    end = run.end
    return {
        "id": run.id,
        "template": run.spec.template,
        "max_turns": run.spec.max_turns,
        "token_budget": run.spec.token_budget,
        "started_by": run.spec.started_by,
        "surface": run.spec.surface,
        "status": run.status,
        "created_at": _iso(run.created_at),
        "ended_at": _iso(run.ended_at),
        "end": None
        if end is None
        else {
            "reason": end.reason,
            "actor": end.actor,
            "by": end.by,
            "detail": end.detail,
            "turns": end.turns,
            "summary": end.summary,
        },
        "participants": [
            {
                "position": p.position,
                "alias": p.alias,
                "actor": p.actor,
                "api_id": p.api_id,
                "provider": p.provider,
            }
            for p in run.participants
        ],
        "usage": {
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cache_read_tokens": run.cache_read_tokens,
            "cache_write_tokens": run.cache_write_tokens,
            "cost_usd": run.cost_usd,
            "complete": run.usage_complete,
        },
        "replies": [
            {
                "seq": r.seq,
                "turn": r.turn,
                "position": r.position,
                "actor": r.actor,
                "text": r.text,
                "started_at": _iso(r.started_at),
                "finished_at": _iso(r.finished_at),
                "input_tokens": r.usage.input_tokens,
                "output_tokens": r.usage.output_tokens,
                "cache_read_tokens": r.usage.cache_read_tokens,
                "cache_write_tokens": r.usage.cache_write_tokens,
                "cost_usd": r.usage.cost_usd,
                "cut_off": r.usage.cut_off,
            }
            for r in replies
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None

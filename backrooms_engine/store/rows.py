"""Rows <-> records: the statements (portable SQL, `?` placeholders) and the mapping between rows
and the engine's records, for both stores; the last two functions read SQLite's refusals."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from ..caps import Caps
from ..errors import LeaseLost, StoreError, UnknownRunError
from ..records import (
    Blueprint,
    ParticipantInfo,
    Reply,
    RunEnd,
    RunRecord,
    RunSpec,
    RunStatus,
    Usage,
)
from .rules import duplicate_reply, unknown_run, utc
from .sql import Row


def iso_text(moment: datetime) -> str:
    # Fixed precision, so the text sorts like the time it names.
    return utc(moment).isoformat(timespec="microseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


RUN_COLUMNS = (
    "id, models, template, max_turns, token_budget, started_by, surface, space, place, status, "
    "end_reason, end_actor, end_by, end_detail, end_turns, end_max_turns, created_at, ended_at, "
    "log_path, paused_at, budget_usd, queued"
)
INSERT_RUN = (
    "INSERT INTO runs (models, template, max_turns, token_budget, started_by, surface, space, "
    "place, status, created_at, log_path, budget_usd, template_jsonl, model_specs, queued) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)"
)
BLUEPRINT = "SELECT template_jsonl, model_specs FROM runs WHERE id = ?"
# What a space's replies cost between two times (ISO text in UTC sorts as the times do).
SPACE_SPEND = (
    "SELECT SUM(replies.cost_usd) AS spent FROM replies JOIN runs ON runs.id = replies.run_id "
    "WHERE runs.space = ? AND replies.finished_at >= ? AND replies.finished_at < ?"
)
INSERT_PARTICIPANT = (
    "INSERT INTO participants (run_id, position, alias, actor, api_id, provider) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
USAGE_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
)
REPLY_COLUMNS = (
    "run_id, seq, turn, position, actor, text, started_at, finished_at, "
    f"{', '.join(USAGE_COLUMNS)}, cut_off"
)
# One page of runs with their reply count and usage totals: aggregates only over the page's runs.
# SUM skips NULLs and is NULL when every value is: the null rules of pricing.run_usage.
RUNS_PAGE = f"""
WITH page AS (SELECT {{columns}} FROM runs WHERE {{where}} ORDER BY id {{order}} {{limit}}),
totals AS (
    SELECT run_id, COUNT(*) AS replies,
           {", ".join(f"SUM({c}) AS {c}" for c in USAGE_COLUMNS)},
           SUM(CASE WHEN {" OR ".join(f"{c} IS NULL" for c in USAGE_COLUMNS)} THEN 1 ELSE 0 END)
               AS unknown
    FROM replies WHERE run_id IN (SELECT id FROM page) GROUP BY run_id
)
SELECT page.*, COALESCE(totals.replies, 0) AS replies,
       {", ".join(f"totals.{c} AS {c}" for c in USAGE_COLUMNS)},
       COALESCE(totals.unknown, 0) AS unknown
FROM page LEFT JOIN totals ON totals.run_id = page.id
ORDER BY page.id {{order}}
"""
IDS_PER_LIST = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit


def run_values(
    spec: RunSpec,
    log_path: str,
    created_at: datetime,
    blueprint: Blueprint | None = None,
    queued: bool = False,
) -> tuple[Any, ...]:
    return (
        json.dumps(list(spec.models)),
        spec.template,
        spec.max_turns,
        spec.token_budget,
        spec.started_by,
        spec.surface,
        spec.space,
        spec.place,
        iso_text(created_at),
        log_path,
        spec.budget_usd,
        None if blueprint is None else blueprint.template,
        None if blueprint is None else blueprint.models,
        int(queued),
    )


def blueprint_of(found: Sequence[Row]) -> Blueprint | None:
    """A run's stored blueprint; None for a run created before migration 008 stored one."""
    if not found or found[0]["template_jsonl"] is None or found[0]["model_specs"] is None:
        return None
    return Blueprint(found[0]["template_jsonl"], found[0]["model_specs"])


def _end(row: Row) -> RunEnd | None:
    if row["status"] != "ended" or row["end_reason"] is None:
        return None
    return RunEnd(
        reason=row["end_reason"],
        actor=row["end_actor"],
        by=row["end_by"],
        detail=row["end_detail"],
        turns=row["end_turns"] or 0,
        max_turns=row["end_max_turns"],
    )


# A paused run keeps status 'running' (it is resumable) and has a paused_at (migration 004); a
# queued one keeps it too, with queued = 1 until a driving process claims it (migration 008).
# RESUMABLE: what a driving process may take, queued or running.
RESUMABLE = "status = 'running' AND paused_at IS NULL"
STATUS_CLAUSES = {
    "queued": f"{RESUMABLE} AND queued = 1",
    "running": f"{RESUMABLE} AND queued = 0",
    "paused": "status = 'running' AND paused_at IS NOT NULL",
    "ended": "status = 'ended'",
}


def status_of(row: Row) -> RunStatus:
    """The run state from the stored columns (see STATUS_CLAUSES)."""
    if row["status"] == "ended":
        return "ended"
    if row["paused_at"] is not None:
        return "paused"
    return "queued" if row["queued"] else "running"


def record_of(row: Row, participants: tuple[ParticipantInfo, ...]) -> RunRecord:
    spec = RunSpec(
        models=tuple(json.loads(row["models"])),
        template=row["template"],
        max_turns=row["max_turns"],
        started_by=row["started_by"],
        surface=row["surface"],
        space=row["space"],
        place=row["place"],
        token_budget=row["token_budget"],
        budget_usd=row["budget_usd"],
    )
    return RunRecord(
        id=row["id"],
        spec=spec,
        participants=participants,
        status=status_of(row),
        created_at=datetime.fromisoformat(row["created_at"]),
        log_path=row["log_path"],
        end=_end(row),
        ended_at=_time(row["ended_at"]),
        replies=row["replies"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        cache_write_tokens=row["cache_write_tokens"],
        cost_usd=row["cost_usd"],
        usage_complete=row["unknown"] == 0,
    )


def participant_of(row: Row) -> ParticipantInfo:
    return ParticipantInfo(
        position=row["position"],
        alias=row["alias"],
        actor=row["actor"],
        api_id=row["api_id"],
        provider=row["provider"],
    )


def reply_of(row: Row) -> Reply:
    return Reply(
        run_id=row["run_id"],
        seq=row["seq"],
        turn=row["turn"],
        position=row["position"],
        actor=row["actor"],
        text=row["text"],
        started_at=datetime.fromisoformat(row["started_at"]),
        finished_at=datetime.fromisoformat(row["finished_at"]),
        usage=Usage(
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            cache_read_tokens=row["cache_read_tokens"],
            cache_write_tokens=row["cache_write_tokens"],
            cost_usd=row["cost_usd"],
            cut_off=bool(row["cut_off"]),
        ),
    )


INSERT_REPLY = f"INSERT INTO replies ({REPLY_COLUMNS}) VALUES ({', '.join('?' * 14)})"


ROWS_PER_INSERT = 500  # up to 14 values a row: far below SQLite's 32,766 variables a statement


S = TypeVar("S")


def chunks(items: Sequence[S], size: int) -> Iterator[Sequence[S]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def inserts(statement: str, rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, list[Any], int]]:
    """`statement`, an INSERT of one row, made into statements of up to ROWS_PER_INSERT rows
    each: (the statement, its values in one flat list, how many rows it inserts)."""
    head, _, row = statement.rpartition(" VALUES ")
    for chunk in chunks(rows, ROWS_PER_INSERT):
        sql = f"{head} VALUES {', '.join([row] * len(chunk))}"
        yield sql, [value for values in chunk for value in values], len(chunk)


@dataclass(frozen=True)
class NewRun:
    values: tuple[Any, ...]  # for INSERT_RUN
    cast: tuple[ParticipantInfo, ...]
    space: str | None = None
    caps: Caps | None = None  # counted in the transaction that inserts it (transcript.py)


# The runs going (what the caps count), by space: running or queued, not paused. (`queued` is
# named for the state ARCHITECTURE.md describes, whichever migration spells it.)
GOING_BY_SPACE = (
    "SELECT space, COUNT(*) FROM runs WHERE status IN ('running', 'queued') "
    "AND paused_at IS NULL GROUP BY space"
)


def reply_values(reply: Reply) -> tuple[Any, ...]:
    return (
        reply.run_id,
        reply.seq,
        reply.turn,
        reply.position,
        reply.actor,
        reply.text,
        iso_text(reply.started_at),
        iso_text(reply.finished_at),
        reply.usage.input_tokens,
        reply.usage.output_tokens,
        reply.usage.cache_read_tokens,
        reply.usage.cache_write_tokens,
        reply.usage.cost_usd,
        int(reply.usage.cut_off),
    )


def reply_refused(error: sqlite3.IntegrityError, reply: Reply) -> StoreError | UnknownRunError:
    if error.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY":
        return duplicate_reply(reply)
    return refused(error, reply.run_id)


LEASE_LOST = "backrooms: lease lost"  # what the fence's triggers say (leases.py)


def refused(error: sqlite3.IntegrityError, run_id: int) -> StoreError | UnknownRunError:
    if error.sqlite_errorname == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return unknown_run(run_id)
    if error.sqlite_errorname == "SQLITE_CONSTRAINT_TRIGGER" and LEASE_LOST in str(error):
        return LeaseLost(run_id)
    return StoreError(f"run {run_id}: refused by the store: {error}")

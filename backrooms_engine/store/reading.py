"""Reading runs back, for the transcript and the archive alike: a page of runs with their totals,
then the casts of all of them (two queries whatever the page's size), and a run's replies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..records import ParticipantInfo, Reply, RunRecord
from .rows import (
    IDS_PER_LIST,
    REPLY_COLUMNS,
    RUN_COLUMNS,
    RUNS_PAGE,
    chunks,
    participant_of,
    record_of,
    reply_of,
)
from .rules import unknown_run
from .sql import Session, SqlDatabase


async def load_runs(
    db: Session,
    where: str,
    params: Sequence[Any],
    *,
    limit: int | None,
    order: str,
) -> list[RunRecord]:
    """The runs that pass `where`, by id in `order` (ASC or DESC). `where` and `order` are fixed
    fragments of the store's own modules; values travel as params."""
    query = RUNS_PAGE.format(
        columns=RUN_COLUMNS,
        where=where,
        order=order,
        limit="" if limit is None else f"LIMIT {int(limit)}",
    )
    rows = list(await db.execute_fetchall(query, params))
    cast = await participants_of(db, [row["id"] for row in rows])
    return [record_of(row, cast.get(row["id"], ())) for row in rows]


async def participants_of(
    db: Session, run_ids: list[int]
) -> dict[int, tuple[ParticipantInfo, ...]]:
    found: dict[int, list[ParticipantInfo]] = {}
    for chunk in chunks(run_ids, IDS_PER_LIST):
        rows = await db.execute_fetchall(
            "SELECT run_id, position, alias, actor, api_id, provider FROM participants "
            f"WHERE run_id IN ({', '.join('?' * len(chunk))}) ORDER BY run_id, position",
            chunk,
        )
        for row in rows:
            found.setdefault(row["run_id"], []).append(participant_of(row))
    return {run_id: tuple(cast) for run_id, cast in found.items()}


async def run_by_id(database: SqlDatabase, run_id: int) -> RunRecord:
    async with database.using() as db:
        found = await load_runs(db, "id = ?", (run_id,), limit=1, order="DESC")
    if not found:
        raise unknown_run(run_id)
    return found[0]


async def replies_of(database: SqlDatabase, run_id: int) -> list[Reply]:
    found = await database.read_for(
        run_id, f"SELECT {REPLY_COLUMNS} FROM replies WHERE run_id = ? ORDER BY seq", (run_id,)
    )
    return [reply_of(row) for row in found]

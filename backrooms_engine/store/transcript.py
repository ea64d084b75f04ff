"""The TranscriptStore port: runs, their replies, delivery cursors and ends.

SqlTranscript is portable SQL on any SqlDatabase (sql.py); each store adds how a batch of
replies is inserted, because that is where each driver reports a refused row its own way.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from ..batching import GroupCommit
from ..caps import Caps
from ..caps import refusal as cap_refusal
from ..errors import LimitError
from ..records import Blueprint, ParticipantInfo, Reply, RunEnd, RunRecord, RunSpec
from . import rows
from .desired import SqlDesired
from .reading import load_runs, replies_of, run_by_id
from .rules import check_count, check_list_args, check_participants, check_reply, unknown_run, utc
from .sql import Session, SqlDatabase

GOING = rows.GOING_BY_SPACE


class SqlTranscript:
    """Writes go through the owner's connection. Replies (and new runs) that arrive together share
    one transaction (batching.py): the busier the store, the larger each batch.

    A subclass names the exception its driver raises for a refused row (`refusal`) and turns one
    into the store's error for a reply (`refused`).
    """

    refusal: type[Exception]
    announce: str | None = (
        None  # tells listeners of a stop request (desired.py), if the dialect can
    )

    def refused(self, error: Exception, reply: Reply) -> BaseException:
        raise NotImplementedError

    # Told of each run this store creates and does not queue: a store whose leases do not learn
    # of it from the database itself (PostgreSQL's, migration 010) sets it.
    created: Callable[[int], None] | None = None

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._replies: GroupCommit[Reply, None] = GroupCommit(self._insert_replies)
        self._creations: GroupCommit[rows.NewRun, int] = GroupCommit(self._insert_runs)
        self._desired = SqlDesired(database, self.announce)

    async def idle(self) -> None:
        """Returns once what was already handed over is written."""
        await self._creations.idle()
        await self._replies.idle()

    async def create_run(
        self,
        spec: RunSpec,
        participants: Sequence[ParticipantInfo],
        log_path: str,
        created_at: datetime,
        *,
        caps: Caps | None = None,
        blueprint: Blueprint | None = None,
        queued: bool = False,
    ) -> RunRecord:
        check_participants(participants)
        cast = tuple(sorted(participants, key=lambda p: p.position))
        values = rows.run_values(spec, log_path, created_at, blueprint, queued)
        run_id = await self._creations.submit(rows.NewRun(values, cast, spec.space, caps))
        if self.created is not None and not queued:
            self.created(run_id)  # a driver's new run is its own from the start (Leases)
        return RunRecord(
            id=run_id,
            spec=spec,
            participants=cast,
            status="queued" if queued else "running",
            created_at=utc(created_at),
            log_path=log_path,
        )

    async def _insert_runs(self, batch: Sequence[rows.NewRun]) -> list[int | BaseException]:
        """The runs and their participants in one transaction, a statement per table and chunk,
        but for those a cap refuses (counted in the same transaction). Their ids come back in
        the order of the VALUES: SQLite gives each new row of a rowid table one more than the
        largest id so far, and the lock keeps other writers out."""
        ids: list[int] = []
        async with self._db.transaction() as db:
            refused = await self._over_caps(db, batch)
            runs = [run for run, no in zip(batch, refused, strict=True) if no is None]
            for sql, values, _ in rows.inserts(rows.INSERT_RUN, [run.values for run in runs]):
                found = await db.execute_fetchall(sql + " RETURNING id", values)
                ids += sorted(row[0] for row in found)
            cast = [
                (run_id, p.position, p.alias, p.actor, p.api_id, p.provider)
                for run_id, run in zip(ids, runs, strict=True)
                for p in run.cast
            ]
            for sql, values, _ in rows.inserts(rows.INSERT_PARTICIPANT, cast):
                await db.execute(sql, values)
        new = iter(ids)
        return [next(new) if no is None else no for no in refused]

    async def lock_for_caps(self, db: Session) -> None:
        """Keep every other creation of a capped run out until this transaction ends. SQLite's
        transactions begin IMMEDIATE (the file's write lock), which already does."""

    async def _over_caps(
        self, db: Session, batch: Sequence[rows.NewRun]
    ) -> list[LimitError | None]:
        """For each new run, the refusal of a cap it would go past, counted with the runs going
        in the store and those of the batch let in before it."""
        if all(run.caps is None for run in batch):
            return [None] * len(batch)
        await self.lock_for_caps(db)
        going = Counter({row[0]: int(row[1]) for row in await db.execute_fetchall(GOING)})
        refusals: list[LimitError | None] = []
        for run in batch:
            here = going[run.space] if run.space is not None else 0
            why = (
                None if run.caps is None else cap_refusal(run.caps, run.space, going.total(), here)
            )
            refusals.append(None if why is None else LimitError(why))
            if why is None:
                going[run.space] += 1
        return refusals

    async def append_reply(self, reply: Reply) -> None:
        """Returns once the reply is committed, before any observer hears of it."""
        check_reply(reply)
        await self._replies.submit(reply)

    async def _insert_replies(self, replies: Sequence[Reply]) -> list[BaseException | None]:
        batch = [rows.reply_values(reply) for reply in replies]
        stored = 0
        async with self._db.using() as db:
            if len(batch) > 1:
                # One statement per chunk of the batch: one trip to the database (on SQLite, to
                # its thread, each waiting for the busy event loop) and one implicit transaction,
                # all rows or none.
                try:
                    for sql, values, count in rows.inserts(rows.INSERT_REPLY, batch):
                        await db.execute(sql, values)
                        stored += count
                except self.refusal:
                    pass  # a refused reply took its chunk with it: that chunk goes one by one
            outcomes: list[BaseException | None] = [None] * stored
            for reply, one in zip(replies[stored:], batch[stored:], strict=True):
                try:
                    await db.execute(rows.INSERT_REPLY, one)  # autocommit: its own transaction
                    outcomes.append(None)
                except self.refusal as error:
                    outcomes.append(self.refused(error, reply))
            return outcomes

    async def finish_run(self, run_id: int, end: RunEnd, ended_at: datetime) -> None:
        changed = await self._db.write(
            run_id,
            "UPDATE runs SET status = 'ended', end_reason = ?, end_actor = ?, end_by = ?, "
            "end_detail = ?, end_turns = ?, end_max_turns = ?, ended_at = ? WHERE id = ?",
            (
                end.reason,
                end.actor,
                end.by,
                end.detail,
                end.turns,
                end.max_turns,
                rows.iso_text(ended_at),
                run_id,
            ),
        )
        if not changed:
            raise unknown_run(run_id)

    async def reopen_run(self, run_id: int, *, max_turns: int | None) -> None:
        changed = await self._db.write(
            run_id,
            "UPDATE runs SET status = 'running', end_reason = NULL, end_actor = NULL, "
            "end_by = NULL, end_detail = NULL, end_turns = NULL, end_max_turns = NULL, "
            "ended_at = NULL, paused_at = NULL, queued = 0, desired = NULL, desired_by = NULL, "
            "desired_at = NULL, max_turns = ? WHERE id = ?",
            (max_turns, run_id),
        )
        if not changed:
            raise unknown_run(run_id)

    async def pause_run(self, run_id: int, paused_at: datetime) -> None:
        """Mark a running run paused: resumable, but no driving process claims it (a terminal
        run stopped by SIGTERM). An ended run stays ended; `reopen_run` clears the pause."""
        changed = await self._db.write(
            run_id,
            "UPDATE runs SET paused_at = ? WHERE id = ? AND status = 'running'",
            (rows.iso_text(paused_at), run_id),
        )
        if not changed:
            await self.get_run(run_id)  # raises UnknownRunError for an id that does not exist

    async def request_stop(self, run_id: int, by: str, at: datetime) -> bool:
        return await self._desired.request_stop(run_id, by, at)

    async def stop_requests(self, run_ids: Sequence[int]) -> dict[int, str]:
        return await self._desired.stop_requests(run_ids)

    async def claimed(self, run_id: int) -> None:
        """A driving process took the run: a queued run is running from now on."""
        changed = await self._db.write(
            run_id, "UPDATE runs SET queued = 0 WHERE id = ? AND queued = 1", (run_id,)
        )
        if not changed:
            await self.get_run(run_id)  # raises UnknownRunError for an id that does not exist

    async def blueprint(self, run_id: int) -> Blueprint | None:
        return rows.blueprint_of(await self._db.read_for(run_id, rows.BLUEPRINT, (run_id,)))

    async def get_run(self, run_id: int) -> RunRecord:
        return await run_by_id(self._db, run_id)

    async def running_runs(self) -> list[RunRecord]:
        """Runs to drive, queued or left running (by a crash or a restart), oldest first: the
        order to resume them."""
        async with self._db.using() as db:
            return await load_runs(db, rows.RESUMABLE, (), limit=None, order="ASC")

    async def recent_ended(self, limit: int) -> list[RunRecord]:
        check_list_args(None, limit)
        async with self._db.using() as db:
            return await load_runs(db, rows.STATUS_CLAUSES["ended"], (), limit=limit, order="DESC")

    async def replies(self, run_id: int) -> list[Reply]:
        return await replies_of(self._db, run_id)

    async def space_spend(self, space: str, start: datetime, end: datetime) -> float:
        found = await self._db.fetch(
            rows.SPACE_SPEND, (space, rows.iso_text(start), rows.iso_text(end))
        )
        return float(found[0]["spent"] or 0.0) if found else 0.0

    async def delivered(self, run_id: int, observer: str) -> int:
        found = await self._db.read_for(
            run_id,
            "SELECT count FROM deliveries WHERE run_id = ? AND observer = ?",
            (run_id, observer),
        )
        return int(found[0][0]) if found else 0

    async def mark_delivered(self, run_id: int, observer: str, count: int) -> None:
        check_count(count)
        await self._db.write(
            run_id,
            "INSERT INTO deliveries (run_id, observer, count) VALUES (?, ?, ?) "
            "ON CONFLICT (run_id, observer) DO UPDATE SET count = excluded.count",
            (run_id, observer, count),
        )


class SqliteTranscript(SqlTranscript):
    refusal = sqlite3.IntegrityError

    def refused(self, error: Exception, reply: Reply) -> BaseException:
        assert isinstance(error, sqlite3.IntegrityError)
        return rows.reply_refused(error, reply)

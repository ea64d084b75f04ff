"""The Store port on one SQLite file (the package's docstring tells the rules it keeps)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from ..batching import GroupCommit
from ..errors import StoreError
from ..lifecycle import ClosesOnExit
from ..records import ParticipantInfo, Reply, RunEnd, RunRecord, RunSpec
from . import rows as _rows
from .opening import (
    BUSY_TIMEOUT_MS,
    _configure,
    _connect,
    _prepare_directory,
    _release_lock,
    _rollback,
    _take_owner_lock,
)
from .rows import (
    _CHUNK,
    _INSERT_PARTICIPANT,
    _INSERT_REPLY,
    _INSERT_RUN,
    _REPLY_COLUMNS,
    _RUN_COLUMNS,
    _RUNS_PAGE,
    _NewRun,
    _participant,
    _record,
    _refused,
    _reply,
    _reply_refused,
    _reply_values,
    _run_values,
    _text,
    chunks,
)
from .rules import check_count, check_list_args, check_participants, check_reply, unknown_run, utc

# A paused run keeps status 'running' (it is resumable) and has a paused_at (migration 004).
_STATUS_CLAUSES = {
    "running": "status = 'running' AND paused_at IS NULL",
    "paused": "status = 'running' AND paused_at IS NOT NULL",
    "ended": "status = 'ended'",
}


class SqliteStore(ClosesOnExit):
    """The Store port on one SQLite file. One connection; an asyncio lock serialises its use so one
    task's transaction never takes in another task's statements."""

    def __init__(self, path: Path, db: aiosqlite.Connection, lock_fd: int | None) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = db
        self._lock_fd = lock_fd
        self._lock = asyncio.Lock()
        # Writes that arrive together share a transaction (batching.py).
        self._replies: GroupCommit[Reply, None] = GroupCommit(self._insert_replies)
        self._creations: GroupCommit[_NewRun, int] = GroupCommit(self._insert_runs)

    @classmethod
    async def open(cls, path: Path, *, owner: bool = True) -> SqliteStore:
        path = Path(path)
        _prepare_directory(path)
        lock_fd = _take_owner_lock(path) if owner else None
        try:
            db = await _connect(path)
        except BaseException:
            _release_lock(lock_fd)
            raise
        store = cls(path, db, lock_fd)
        try:
            await _configure(db, path, upgrade=owner)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        # What was already handed over is written before the connection closes.
        await self._creations.idle()
        await self._replies.idle()
        # Under the lock: a transaction another task has begun finishes before the connection goes.
        async with self._lock:
            db, self._db = self._db, None
            if db is None:
                return
            try:
                with self._translated():
                    await db.close()
            finally:
                _release_lock(self._lock_fd)
                self._lock_fd = None

    # -- plumbing

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as error:
            if error.sqlite_errorname == "SQLITE_BUSY":
                raise StoreError(
                    f"{self.path} stayed locked by another process for {BUSY_TIMEOUT_MS} ms"
                ) from error
            raise StoreError(f"{self.path}: {error}") from error
        except sqlite3.Error as error:
            raise StoreError(f"{self.path}: {error}") from error

    @asynccontextmanager
    async def _using(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            if self._db is None:
                raise StoreError(f"the store {self.path} is closed")
            with self._translated():
                yield self._db

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._using() as db:
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                await db.execute("COMMIT")
            except BaseException:
                await _rollback(db)
                raise

    async def _exists(self, db: aiosqlite.Connection, run_id: int) -> None:
        rows = await db.execute_fetchall("SELECT 1 FROM runs WHERE id = ?", (run_id,))
        if not list(rows):
            raise unknown_run(run_id)

    async def _write(self, run_id: int, statement: str, values: Sequence[Any]) -> int:
        async with self._using() as db:
            try:
                cursor = await db.execute(statement, values)
            except sqlite3.IntegrityError as error:
                raise _refused(error, run_id) from error
            return cursor.rowcount

    async def _runs(
        self, where: str, params: Sequence[Any], *, limit: int | None, order: str
    ) -> list[RunRecord]:
        """`where` and `order` are fixed fragments from this module; values travel as params."""
        query = _RUNS_PAGE.format(
            columns=_RUN_COLUMNS,
            where=where,
            order=order,
            limit="" if limit is None else f"LIMIT {int(limit)}",
        )
        async with self._using() as db:
            rows = list(await db.execute_fetchall(query, params))
            cast = await self._participants(db, [row["id"] for row in rows])
        return [_record(row, cast.get(row["id"], ())) for row in rows]

    async def _participants(
        self, db: aiosqlite.Connection, run_ids: list[int]
    ) -> dict[int, tuple[ParticipantInfo, ...]]:
        found: dict[int, list[ParticipantInfo]] = {}
        for chunk in chunks(run_ids, _CHUNK):
            rows = await db.execute_fetchall(
                "SELECT run_id, position, alias, actor, api_id, provider FROM participants "
                f"WHERE run_id IN ({', '.join('?' * len(chunk))}) ORDER BY run_id, position",
                chunk,
            )
            for row in rows:
                found.setdefault(row["run_id"], []).append(_participant(row))
        return {run_id: tuple(cast) for run_id, cast in found.items()}

    # -- the Store port

    async def create_run(
        self,
        spec: RunSpec,
        participants: Sequence[ParticipantInfo],
        log_path: str,
        created_at: datetime,
    ) -> RunRecord:
        check_participants(participants)
        cast = tuple(sorted(participants, key=lambda p: p.position))
        run_id = await self._creations.submit(
            _NewRun(_run_values(spec, log_path, created_at), cast)
        )
        return RunRecord(
            id=run_id,
            spec=spec,
            participants=cast,
            status="running",
            created_at=utc(created_at),
            log_path=log_path,
        )

    async def _insert_runs(self, runs: Sequence[_NewRun]) -> list[int]:
        """The runs and their participants in one transaction, a statement per table and chunk.
        Their ids come back in the order of the VALUES: SQLite gives each new row of a rowid
        table one more than the largest id so far, and the lock keeps other writers out."""
        ids: list[int] = []
        async with self._transaction() as db:
            for sql, values, _ in _rows.inserts(_INSERT_RUN, [run.values for run in runs]):
                rows = await db.execute_fetchall(sql + " RETURNING id", values)
                ids += sorted(row[0] for row in rows)
            cast = [
                (run_id, p.position, p.alias, p.actor, p.api_id, p.provider)
                for run_id, run in zip(ids, runs, strict=True)
                for p in run.cast
            ]
            for sql, values, _ in _rows.inserts(_INSERT_PARTICIPANT, cast):
                await db.execute(sql, values)
        return ids

    async def append_reply(self, reply: Reply) -> None:
        """Returns once the reply is committed, before any observer hears of it. Replies of many
        runs that arrive together share one transaction (batching.py)."""
        check_reply(reply)
        await self._replies.submit(reply)

    async def _insert_replies(self, replies: Sequence[Reply]) -> list[BaseException | None]:
        rows = [_reply_values(reply) for reply in replies]
        stored = 0
        async with self._using() as db:
            if len(rows) > 1:
                # One statement per chunk of the batch: one trip to the SQLite thread (each trip
                # waits for the busy event loop) and one implicit transaction, all rows or none.
                try:
                    for sql, values, count in _rows.inserts(_INSERT_REPLY, rows):
                        await db.execute(sql, values)
                        stored += count
                except sqlite3.IntegrityError:
                    pass  # a refused reply took its chunk with it: that chunk goes one by one
            outcomes: list[BaseException | None] = [None] * stored
            for reply, values in zip(replies[stored:], rows[stored:], strict=True):
                try:
                    await db.execute(_INSERT_REPLY, values)  # autocommit: its own transaction
                    outcomes.append(None)
                except sqlite3.IntegrityError as error:
                    outcomes.append(_reply_refused(error, reply))
            return outcomes

    async def finish_run(self, run_id: int, end: RunEnd, ended_at: datetime) -> None:
        changed = await self._write(
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
                _text(ended_at),
                run_id,
            ),
        )
        if not changed:
            raise unknown_run(run_id)

    async def reopen_run(self, run_id: int, *, max_turns: int | None) -> None:
        changed = await self._write(
            run_id,
            "UPDATE runs SET status = 'running', end_reason = NULL, end_actor = NULL, "
            "end_by = NULL, end_detail = NULL, end_turns = NULL, end_max_turns = NULL, "
            "ended_at = NULL, paused_at = NULL, max_turns = ? WHERE id = ?",
            (max_turns, run_id),
        )
        if not changed:
            raise unknown_run(run_id)

    async def pause_run(self, run_id: int, paused_at: datetime) -> None:
        """Mark a running run paused: resumable, but no driving process claims it (a terminal
        run stopped by SIGTERM). An ended run stays ended; `reopen_run` clears the pause."""
        changed = await self._write(
            run_id,
            "UPDATE runs SET paused_at = ? WHERE id = ? AND status = 'running'",
            (_text(paused_at), run_id),
        )
        if not changed:
            await self.get_run(run_id)  # raises UnknownRunError for an id that does not exist

    async def get_run(self, run_id: int) -> RunRecord:
        found = await self._runs("id = ?", (run_id,), limit=1, order="DESC")
        if not found:
            raise unknown_run(run_id)
        return found[0]

    async def list_runs(
        self, *, status: str | None = None, space: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Newest first: ids grow with every run, so the highest id is the newest."""
        check_list_args(status, limit)
        filters = [("space = ?", space)]
        kept = [(clause, value) for clause, value in filters if value is not None]
        clauses = [clause for clause, _ in kept]
        if status is not None:
            clauses.insert(0, _STATUS_CLAUSES[status])
        where = " AND ".join(clauses) or "1 = 1"
        return await self._runs(where, [value for _, value in kept], limit=limit, order="DESC")

    async def running_runs(self) -> list[RunRecord]:
        """Runs left running (by a crash or a restart), oldest first: the order to resume them."""
        return await self._runs(_STATUS_CLAUSES["running"], (), limit=None, order="ASC")

    async def replies(self, run_id: int) -> list[Reply]:
        rows = await self._read_for(
            run_id, f"SELECT {_REPLY_COLUMNS} FROM replies WHERE run_id = ? ORDER BY seq", (run_id,)
        )
        return [_reply(row) for row in rows]

    async def delivered(self, run_id: int, observer: str) -> int:
        rows = await self._read_for(
            run_id,
            "SELECT count FROM deliveries WHERE run_id = ? AND observer = ?",
            (run_id, observer),
        )
        return int(rows[0][0]) if rows else 0

    async def mark_delivered(self, run_id: int, observer: str, count: int) -> None:
        check_count(count)
        await self._write(
            run_id,
            "INSERT INTO deliveries (run_id, observer, count) VALUES (?, ?, ?) "
            "ON CONFLICT (run_id, observer) DO UPDATE SET count = excluded.count",
            (run_id, observer, count),
        )

    # -- beyond the port: what chat surfaces remember about a run

    async def record_post(
        self, run_id: int, seq: int, part: int, surface: str, external_id: str
    ) -> None:
        """Remember the message that shows part `part` of reply `seq`; a second post replaces it."""
        await self._write(
            run_id,
            "INSERT INTO posts (run_id, seq, part, surface, external_id) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id, seq, part, surface) "
            "DO UPDATE SET external_id = excluded.external_id",
            (run_id, seq, part, surface, external_id),
        )

    async def posts(self, run_id: int, surface: str) -> dict[tuple[int, int], str]:
        rows = await self._read_for(
            run_id,
            "SELECT seq, part, external_id FROM posts WHERE run_id = ? AND surface = ? "
            "ORDER BY seq, part",
            (run_id, surface),
        )
        return {(row["seq"], row["part"]): row["external_id"] for row in rows}

    async def set_meta(self, run_id: int, key: str, value: str) -> None:
        await self._write(
            run_id,
            "INSERT INTO run_meta (run_id, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
            (run_id, key, value),
        )

    async def get_meta(self, run_id: int, key: str) -> str | None:
        rows = await self._read_for(
            run_id, "SELECT value FROM run_meta WHERE run_id = ? AND key = ?", (run_id, key)
        )
        return str(rows[0][0]) if rows else None

    async def set_space_setting(self, space: str, key: str, value: str) -> None:
        async with self._using() as db:
            await db.execute(
                "INSERT INTO space_settings (space, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",
                (space, key, value),
            )

    async def space_setting(self, space: str, key: str) -> str | None:
        async with self._using() as db:
            rows = list(
                await db.execute_fetchall(
                    "SELECT value FROM space_settings WHERE space = ? AND key = ?", (space, key)
                )
            )
        return str(rows[0][0]) if rows else None

    async def _read_for(self, run_id: int, query: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        """Rows about one run; none at all for a run that does not exist is an UnknownRunError."""
        async with self._using() as db:
            rows = list(await db.execute_fetchall(query, params))
            if not rows:
                await self._exists(db, run_id)
        return rows

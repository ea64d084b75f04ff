"""SQLite transcripts through aiosqlite: the Store port, plus chat posts and per-run surface data.

One process owns a store file (ARCHITECTURE.md, "One owner per store"): `open(owner=True)` holds
an exclusive `flock` on `<db>.lock` for the store's lifetime. The kernel drops it when the process
dies, even by SIGKILL, so the next start can resume the runs left `running`. A viewer
(`owner=False`, such as `backrooms runs`) takes no lock. It may create the schema of a brand-new,
empty file (so a viewer started first shows "no runs" instead of failing), but it never upgrades
an existing schema: that would change tables under a running owner that does not know the layout.

Schema changes are numbered SQL files in `migrations/`, each applied in its own transaction at open
and recorded in `schema_migrations`. The SQL stays portable: a PostgreSQL store will follow.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from .batching import GroupCommit
from .errors import ConfigError, StoreError, UnknownRunError
from .lifecycle import ClosesOnExit
from .records import ParticipantInfo, Reply, RunEnd, RunRecord, RunSpec, Usage

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_MS = 5000  # a viewer's read or a second connection's write waits this long, then fails
RUN_STATUSES = ("running", "ended")

# --- Rules shared with tests/fakes/memory_store.py, so both stores fail the same way -------------


def unknown_run(run_id: int) -> UnknownRunError:
    return UnknownRunError(f"no run with id {run_id}; `backrooms runs` lists them")


def duplicate_reply(reply: Reply) -> StoreError:
    return StoreError(f"run {reply.run_id} already has reply {reply.seq}; a reply is stored once")


def utc(moment: datetime) -> datetime:
    """Stored timestamps are UTC; a naive one is a bug upstream, not a time we could guess."""
    if moment.tzinfo is None:
        raise StoreError(f"timestamps must be timezone-aware; got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def check_reply(reply: Reply) -> None:
    if reply.seq < 0:
        raise StoreError(f"reply seq must be 0 or more; got {reply.seq}")


def check_participants(participants: Sequence[ParticipantInfo]) -> None:
    positions = [p.position for p in participants]
    if len(set(positions)) != len(positions):
        raise StoreError(f"participant positions must differ; got {sorted(positions)}")


def check_count(count: int) -> None:
    if count < 0:
        raise StoreError(f"a delivery count must be 0 or more; got {count}")


def check_list_args(status: str | None, limit: int) -> None:
    if status is not None and status not in RUN_STATUSES:
        raise ConfigError(f"unknown run status {status!r}; use one of: {', '.join(RUN_STATUSES)}")
    if limit < 1:
        raise ConfigError(f"a run list limit must be 1 or more; got {limit}")


# --- Opening: path checks, the owner lock, migrations ---------------------------------------------


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _cannot_create(path: Path, error: OSError) -> StoreError:
    if isinstance(error, PermissionError):
        reason = "permission denied"
    elif isinstance(error, NotADirectoryError | FileExistsError):
        reason = "a parent of it is a file, not a directory"
    else:
        reason = (error.strerror or str(error)).lower()
    return StoreError(f"cannot create {path}: {reason}; set BACKROOMS_DB to a writable path")


def _prepare_directory(path: Path) -> None:
    try:
        if path.is_dir():
            raise StoreError(
                f"cannot use {path}: it is a directory; set BACKROOMS_DB to a file path"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        # sqlite3 would only say "unable to open database file"; say why while we still know.
        if not path.exists() and not os.access(path.parent, os.W_OK):
            raise PermissionError(path)
    except OSError as error:
        raise _cannot_create(path, error) from error


def _owned_elsewhere(path: Path, lock: Path, holder: str) -> StoreError:
    if holder == str(os.getpid()):
        return StoreError(f"this process already has {path} open as its owner (lock {lock})")
    pid = f" (pid {holder})" if holder.isdigit() else ""
    return StoreError(
        f"another backrooms process{pid} owns {path}: it holds the lock on {lock}; "
        "stop it first, or set BACKROOMS_DB to another file"
    )


def _take_owner_lock(path: Path) -> int:
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    except OSError as error:
        raise _cannot_create(lock, error) from error
    try:
        _claim(fd, path, lock)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _claim(fd: int, path: Path, lock: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        raise _owned_elsewhere(path, lock, holder) from None
    try:
        # The pid only feeds the message above: the flock, not the file's content, is the lock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as error:
        raise StoreError(f"cannot write {lock}: {error.strerror}") from error


def _release_lock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


_MIGRATION_FILE = re.compile(r"(\d{3})_[a-z0-9_]+\.sql")


def load_migrations(directory: Path) -> list[Migration]:
    found = []
    for file in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.fullmatch(file.name)
        if match is None:
            raise StoreError(f"{file}: migration files are named like 001_init.sql")
        found.append(Migration(int(match[1]), file.stem, file.read_text(encoding="utf-8")))
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise StoreError(f"{directory}: migrations must be numbered 001, 002, ... without gaps")
    return found


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements; sqlite3 knows where one ends (even a CREATE TRIGGER)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if any(ln.strip() and not ln.strip().startswith("--") for ln in pending.splitlines()):
        yield pending  # unterminated: let SQLite report it


async def _schema_version(db: aiosqlite.Connection, path: Path) -> int:
    rows = await db.execute_fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    tables = sorted(row[0] for row in rows)
    if "schema_migrations" in tables:
        rows = await db.execute_fetchall("SELECT MAX(version) FROM schema_migrations")
        return int(next(iter(rows))[0] or 0)
    if tables:
        raise StoreError(
            f"{path} is a SQLite database but not a backrooms one (tables: {', '.join(tables)}); "
            "set BACKROOMS_DB to another file"
        )
    return 0


async def _rollback(db: aiosqlite.Connection) -> None:
    if db.in_transaction:
        await db.execute("ROLLBACK")


async def _apply(db: aiosqlite.Connection, path: Path, migration: Migration) -> None:
    await db.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have applied it while we waited for the write lock.
        if await _schema_version(db, path) < migration.version:
            for statement in _statements(migration.sql):
                await db.execute(statement)
            await db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, _text(datetime.now(UTC))),
            )
        await db.execute("COMMIT")
    except sqlite3.Error as error:
        await _rollback(db)
        raise StoreError(f"{path}: migration {migration.name} failed: {error}") from error
    except BaseException:
        await _rollback(db)
        raise


async def _migrate(db: aiosqlite.Connection, path: Path, *, upgrade: bool) -> None:
    migrations = load_migrations(MIGRATIONS_DIR)
    current, latest = await _schema_version(db, path), len(migrations)
    if current > latest:
        raise StoreError(
            f"{path} was written by a newer backrooms (schema version {current}; this one knows "
            f"up to {latest}); upgrade backrooms, or set BACKROOMS_DB to another file"
        )
    if 0 < current < latest and not upgrade:
        raise StoreError(
            f"{path} has schema version {current} and this backrooms needs {latest}; the owning "
            "process upgrades it when it starts (`backrooms bot` or `backrooms run`)"
        )
    for migration in migrations[current:]:
        await _apply(db, path, migration)


async def _connect(path: Path) -> aiosqlite.Connection:
    try:
        # Autocommit: every statement outside an explicit BEGIN is its own committed transaction.
        db = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as error:
        raise StoreError(f"cannot open {path}: {error}") from error
    db.row_factory = aiosqlite.Row
    return db


async def _configure(db: aiosqlite.Connection, path: Path, *, upgrade: bool) -> None:
    try:
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # first: WAL switch waits too
        await db.execute("PRAGMA journal_mode = WAL")  # viewers read while the owner writes
        # NORMAL in WAL mode: a committed reply survives the process being killed (the benchmark
        # showed FULL's fsync per commit queueing hundreds of runs behind the store); only a power
        # cut may lose the last commits, which the model would then be asked for again.
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        await _migrate(db, path, upgrade=upgrade)
    except sqlite3.DatabaseError as error:
        if error.sqlite_errorname == "SQLITE_NOTADB":
            raise StoreError(
                f"{path} is not a backrooms database (not SQLite): {error}; "
                "set BACKROOMS_DB to another file"
            ) from error
        if (error.sqlite_errorname or "").startswith("SQLITE_READONLY"):
            # WAL needs to write beside the file even to read it (the -wal and -shm files).
            raise StoreError(
                f"cannot open {path}: the file or its folder is read-only; make them writable "
                "or set BACKROOMS_DB to a writable path"
            ) from error
        raise StoreError(f"cannot open {path}: {error}") from error


# --- Rows <-> records -----------------------------------------------------------------------------


def _text(moment: datetime) -> str:
    # Fixed precision, so the text sorts like the time it names.
    return utc(moment).isoformat(timespec="microseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


_RUN_COLUMNS = (
    "id, models, template, max_turns, token_budget, started_by, surface, space, place, status, "
    "end_reason, end_actor, end_by, end_detail, end_turns, end_max_turns, created_at, ended_at, "
    "log_path"
)
_INSERT_RUN = (
    "INSERT INTO runs (models, template, max_turns, token_budget, started_by, surface, space, "
    "place, status, created_at, log_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)"
)
_INSERT_PARTICIPANT = (
    "INSERT INTO participants (run_id, position, alias, actor, api_id, provider) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_REPLY_COLUMNS = (
    "run_id, seq, turn, position, actor, text, started_at, finished_at, input_tokens, output_tokens"
)
# One page of runs with their reply count and token sums: aggregates only over the page's runs.
_RUNS_PAGE = """
WITH page AS (SELECT {columns} FROM runs WHERE {where} ORDER BY id {order} {limit}),
totals AS (
    SELECT run_id, COUNT(*) AS replies,
           SUM(COALESCE(input_tokens, 0)) AS input_tokens,
           SUM(COALESCE(output_tokens, 0)) AS output_tokens
    FROM replies WHERE run_id IN (SELECT id FROM page) GROUP BY run_id
)
SELECT page.*, COALESCE(totals.replies, 0) AS replies,
       COALESCE(totals.input_tokens, 0) AS input_tokens,
       COALESCE(totals.output_tokens, 0) AS output_tokens
FROM page LEFT JOIN totals ON totals.run_id = page.id
ORDER BY page.id {order}
"""
_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit


def _run_values(spec: RunSpec, log_path: str, created_at: datetime) -> tuple[Any, ...]:
    return (
        json.dumps(list(spec.models)),
        spec.template,
        spec.max_turns,
        spec.token_budget,
        spec.started_by,
        spec.surface,
        spec.space,
        spec.place,
        _text(created_at),
        log_path,
    )


def _end(row: sqlite3.Row) -> RunEnd | None:
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


def _record(row: sqlite3.Row, participants: tuple[ParticipantInfo, ...]) -> RunRecord:
    spec = RunSpec(
        models=tuple(json.loads(row["models"])),
        template=row["template"],
        max_turns=row["max_turns"],
        started_by=row["started_by"],
        surface=row["surface"],
        space=row["space"],
        place=row["place"],
        token_budget=row["token_budget"],
    )
    return RunRecord(
        id=row["id"],
        spec=spec,
        participants=participants,
        status=row["status"],
        created_at=datetime.fromisoformat(row["created_at"]),
        log_path=row["log_path"],
        end=_end(row),
        ended_at=_time(row["ended_at"]),
        replies=row["replies"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
    )


def _participant(row: sqlite3.Row) -> ParticipantInfo:
    return ParticipantInfo(
        position=row["position"],
        alias=row["alias"],
        actor=row["actor"],
        api_id=row["api_id"],
        provider=row["provider"],
    )


def _reply(row: sqlite3.Row) -> Reply:
    return Reply(
        run_id=row["run_id"],
        seq=row["seq"],
        turn=row["turn"],
        position=row["position"],
        actor=row["actor"],
        text=row["text"],
        started_at=datetime.fromisoformat(row["started_at"]),
        finished_at=datetime.fromisoformat(row["finished_at"]),
        usage=Usage(row["input_tokens"], row["output_tokens"]),
    )


_INSERT_REPLY = f"INSERT INTO replies ({_REPLY_COLUMNS}) VALUES ({', '.join('?' * 10)})"


_ROWS_PER_INSERT = 500  # up to 11 values a row: far below SQLite's 32,766 variables a statement


def _insert_many(statement: str, count: int) -> str:
    """`statement`, an INSERT of one row, made to insert `count` rows."""
    head, _, row = statement.rpartition(" VALUES ")
    return f"{head} VALUES {', '.join([row] * count)}"


@dataclass(frozen=True)
class _NewRun:
    values: tuple[Any, ...]  # for _INSERT_RUN
    cast: tuple[ParticipantInfo, ...]


def _reply_values(reply: Reply) -> tuple[Any, ...]:
    return (
        reply.run_id,
        reply.seq,
        reply.turn,
        reply.position,
        reply.actor,
        reply.text,
        _text(reply.started_at),
        _text(reply.finished_at),
        reply.usage.input_tokens,
        reply.usage.output_tokens,
    )


def _reply_refused(error: sqlite3.IntegrityError, reply: Reply) -> StoreError | UnknownRunError:
    if error.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY":
        return duplicate_reply(reply)
    return _refused(error, reply.run_id)


def _refused(error: sqlite3.IntegrityError, run_id: int) -> StoreError | UnknownRunError:
    if error.sqlite_errorname == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return unknown_run(run_id)
    return StoreError(f"run {run_id}: refused by the store: {error}")


# --- The store ------------------------------------------------------------------------------------


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
        for start in range(0, len(run_ids), _CHUNK):
            chunk = run_ids[start : start + _CHUNK]
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
            for start in range(0, len(runs), _ROWS_PER_INSERT):
                chunk = runs[start : start + _ROWS_PER_INSERT]
                rows = await db.execute_fetchall(
                    _insert_many(_INSERT_RUN, len(chunk)) + " RETURNING id",
                    [value for run in chunk for value in run.values],
                )
                ids += sorted(row[0] for row in rows)
            cast = [
                (run_id, p.position, p.alias, p.actor, p.api_id, p.provider)
                for run_id, run in zip(ids, runs, strict=True)
                for p in run.cast
            ]
            for start in range(0, len(cast), _ROWS_PER_INSERT):
                chunk_rows = cast[start : start + _ROWS_PER_INSERT]
                await db.execute(
                    _insert_many(_INSERT_PARTICIPANT, len(chunk_rows)),
                    [value for row in chunk_rows for value in row],
                )
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
                    while stored < len(rows):
                        chunk = rows[stored : stored + _ROWS_PER_INSERT]
                        values = [value for row in chunk for value in row]
                        await db.execute(_insert_many(_INSERT_REPLY, len(chunk)), values)
                        stored += len(chunk)
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
            "ended_at = NULL, max_turns = ? WHERE id = ?",
            (max_turns, run_id),
        )
        if not changed:
            raise unknown_run(run_id)

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
        filters = [("status = ?", status), ("space = ?", space)]
        kept = [(clause, value) for clause, value in filters if value is not None]
        where = " AND ".join(clause for clause, _ in kept) or "1 = 1"
        return await self._runs(where, [value for _, value in kept], limit=limit, order="DESC")

    async def running_runs(self) -> list[RunRecord]:
        """Runs left running (by a crash or a restart), oldest first: the order to resume them."""
        return await self._runs("status = 'running'", (), limit=None, order="ASC")

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

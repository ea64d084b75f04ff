"""The Archive port: what viewers list, filter, search and load.

SqlArchive is portable SQL on any SqlDatabase (sql.py); a store adds its own full-text search
(`matching` and `hits`). SqliteArchive's is FTS5 (migration 003_search.sqlite.sql).

SQLite's archive reads through a connection of its own opened with `mode=ro`, so it can never
write, and a page's reads do not queue behind the transcript's writes: the file is in WAL mode, so
this connection sees every committed reply while the owner writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from ..ports import PAGE_SIZE, Hit, RunFilter
from ..records import ParticipantInfo, Reply, RunRecord
from .reading import load_runs, participants_of, replies_of, run_by_id
from .rows import RUN_COLUMNS, RUNS_PAGE, STATUS_CLAUSES, record_of
from .rules import check_list_args
from .search import HIT_END, HIT_START, excerpt_parts, fts_query
from .sql import Row, SqlDatabase

KEPT = 20_000  # runs whose records and casts are kept: some 10 MB
_WITH_MODEL = "EXISTS (SELECT 1 FROM participants p WHERE p.run_id = runs.id AND p.alias = ?)"
_MATCHING = "id IN (SELECT run_id FROM reply_search WHERE reply_search MATCH ?)"
# A run and its participants are written in one transaction, so a run seen here has its cast.
_NEW_CHOICES = (
    "SELECT runs.id, runs.template, participants.alias FROM runs "
    "LEFT JOIN participants ON participants.run_id = runs.id WHERE runs.id > ?"
)


Clause = tuple[str, list[Any]]  # a WHERE fragment of the store's own and its parameters


class SqlArchive:
    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._choices = _Choices()
        self._known = _Known()

    def matching(self, words: str) -> Clause | None:
        """Runs where one reply matches `words` (ports.RunFilter's rules) as a condition on
        `runs.id`; None when no word can match anything."""
        raise NotImplementedError

    async def hits(self, words: str, run_ids: Sequence[int]) -> dict[int, Hit]:
        raise NotImplementedError

    async def get_run(self, run_id: int) -> RunRecord:
        return await run_by_id(self._db, run_id)

    async def replies(self, run_id: int) -> list[Reply]:
        return await replies_of(self._db, run_id)

    async def list_runs(
        self, *, status: str | None = None, space: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Newest first: ids grow with every run, so the highest id is the newest."""
        check_list_args(status, limit)
        clauses = [] if status is None else [STATUS_CLAUSES[status]]
        params = [] if space is None else [space]
        if space is not None:
            clauses.append("space = ?")
        where = " AND ".join(clauses) or "1 = 1"
        async with self._db.using() as db:
            return await load_runs(db, where, params, limit=limit, order="DESC")

    async def find_runs(self, f: RunFilter, limit: int = PAGE_SIZE) -> list[RunRecord]:
        """One query for the page with its totals, and one for the casts of runs not seen yet
        (a cast never changes). A row as it was last time gives back the same record."""
        check_list_args(None, limit)
        where = _where(f, self.matching)
        if where is None:
            return []
        clauses, params = where
        query = RUNS_PAGE.format(
            columns=RUN_COLUMNS, where=clauses, order="DESC", limit=f"LIMIT {int(limit)}"
        )
        async with self._db.using() as db:
            rows = list(await db.execute_fetchall(query, params))
            new = [row["id"] for row in rows if row["id"] not in self._known.casts]
            if new:
                self._known.make_room(len(new))
                self._known.casts.update(dict.fromkeys(new, ()))  # a run without a cast: ()
                self._known.casts.update(await participants_of(db, new))
        return [self._known.record(row, self._values(row)) for row in rows]

    def _values(self, row: Row) -> tuple[Any, ...]:
        """A row's values, to tell whether a run reads as it did last time."""
        return tuple(row[key] for key in row.keys())

    async def version(self) -> Hashable | None:
        """Something that changes whenever a commit, by any connection or process, may have
        changed what this archive reads; None: this store cannot tell (nothing may be kept)."""
        return None

    async def choices(self) -> tuple[list[str], list[str]]:
        """Kept up to date rather than scanned: only the runs created since the last call are
        read (an index seek, usually no row). A run's cast and template never change, and the
        store never deletes a run; one deleted by hand stays in the menus until a restart."""
        rows = await self._db.fetch(_NEW_CHOICES, [self._choices.seen])
        return self._choices.add(rows)


class SqliteArchive(SqlArchive):
    async def version(self) -> Hashable | None:
        """`PRAGMA data_version` on the archive's own connection: SQLite changes it whenever
        another connection (this process's writer, or any other process) has committed to the
        file since this connection last asked. The archive's connection never writes itself."""
        rows = await self._db.fetch("PRAGMA data_version")
        return int(rows[0][0])

    def _values(self, row: Row) -> tuple[Any, ...]:
        return tuple(cast(sqlite3.Row, row))  # in C: a third of what reading them by name costs

    def matching(self, words: str) -> Clause | None:
        match = fts_query(words)
        return None if match is None else (_MATCHING, [match])

    async def hits(self, words: str, run_ids: Sequence[int]) -> dict[int, Hit]:
        """The best-ranked (bm25) matching reply of each run, with an excerpt of 16 words.
        Ranked in Python over the page's matches only: ORDER BY rank would rank every reply
        that matches (all of them, for a word in nearly every reply) to keep a few hundred."""
        match = fts_query(words)
        if match is None or not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        rows = await self._db.fetch(
            "SELECT run_id, seq, rank, snippet(reply_search, 0, ?, ?, '…', 16) AS excerpt "
            f"FROM reply_search WHERE reply_search MATCH ? AND run_id IN ({marks})",
            [HIT_START, HIT_END, match, *run_ids],
        )
        best: dict[int, Row] = {}
        for row in rows:
            kept = best.get(row["run_id"])
            if kept is None or (row["rank"], row["seq"]) < (kept["rank"], kept["seq"]):
                best[row["run_id"]] = row
        return {
            int(run_id): Hit(int(run_id), int(row["seq"]), excerpt_parts(row["excerpt"]))
            for run_id, row in best.items()
        }


@dataclass
class _Known:
    """The casts and records of runs already read, by run id (a run's cast never changes; the
    rest of its record is only reused while its row reads the same). At most KEPT of each."""

    casts: dict[int, tuple[ParticipantInfo, ...]] = field(default_factory=dict)
    records: dict[int, tuple[tuple[Any, ...], RunRecord]] = field(default_factory=dict)

    def make_room(self, runs: int) -> None:
        """Forget the runs read first, before a page's new ones come in."""
        for kept in (self.records, self.casts):
            while kept and len(kept) + runs > KEPT:
                del kept[next(iter(kept))]

    def record(self, row: Row, values: tuple[Any, ...]) -> RunRecord:
        run_id = int(row["id"])
        known = self.records.get(run_id)
        if known is not None and known[0] == values:
            return known[1]
        record = record_of(row, self.casts.get(run_id, ()))
        self.records[run_id] = (values, record)
        return record


@dataclass
class _Choices:
    """The aliases and templates of the runs up to id `seen`."""

    seen: int = 0
    models: set[str] = field(default_factory=set)
    templates: set[str] = field(default_factory=set)

    def add(self, rows: Sequence[Row]) -> tuple[list[str], list[str]]:
        for row in rows:
            self.seen = max(self.seen, int(row["id"]))
            self.templates.add(row["template"])
            if row["alias"] is not None:
                self.models.add(row["alias"])
        return sorted(self.models), sorted(self.templates)


def _where(f: RunFilter, matching: Callable[[str], Clause | None]) -> Clause | None:
    """The filter as a WHERE clause and its parameters; None when nothing can match."""
    clauses: list[str] = ["1 = 1"]
    params: list[Any] = []
    if f.status is not None:
        clauses.append(STATUS_CLAUSES[f.status])
    conditions = (
        ("template = ?", f.template),
        ("id < ?", f.before),
        (_WITH_MODEL, f.model),
    )
    for clause, value in conditions:
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if f.q is not None:
        match = matching(f.q)
        if match is None:
            return None
        clauses.append(match[0])
        params += match[1]
    return " AND ".join(clauses), params

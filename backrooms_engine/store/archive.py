"""The Archive port: what viewers list, filter, search and load.

SqlArchive is portable SQL on any SqlDatabase (sql.py); a store adds its own full-text search
(`matching` and `hits`). SqliteArchive's is FTS5 (migration 003_search.sqlite.sql).

SQLite's archive reads through a connection of its own opened with `mode=ro`, so it can never
write, and a page's reads do not queue behind the transcript's writes: the file is in WAL mode, so
this connection sees every committed reply while the owner writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..ports import PAGE_SIZE, Hit, RunFilter
from ..records import Reply, RunRecord
from .reading import load_runs, replies_of, run_by_id
from .rows import STATUS_CLAUSES
from .rules import check_list_args
from .search import HIT_END, HIT_START, excerpt_parts, fts_query
from .sql import SqlDatabase

_WITH_MODEL = "EXISTS (SELECT 1 FROM participants p WHERE p.run_id = runs.id AND p.alias = ?)"
_MATCHING = "id IN (SELECT run_id FROM reply_search WHERE reply_search MATCH ?)"


Clause = tuple[str, list[Any]]  # a WHERE fragment of the store's own and its parameters


class SqlArchive:
    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

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
        """Two queries, whatever the page's size: the page with its totals, then its casts."""
        check_list_args(None, limit)
        where = _where(f, self.matching)
        if where is None:
            return []
        clauses, params = where
        async with self._db.using() as db:
            return await load_runs(db, clauses, params, limit=limit, order="DESC")

    async def choices(self) -> tuple[list[str], list[str]]:
        models = await self._db.fetch("SELECT DISTINCT alias FROM participants ORDER BY alias")
        names = await self._db.fetch("SELECT DISTINCT template FROM runs ORDER BY template")
        return [r["alias"] for r in models], [r["template"] for r in names]


class SqliteArchive(SqlArchive):
    def matching(self, words: str) -> Clause | None:
        match = fts_query(words)
        return None if match is None else (_MATCHING, [match])

    async def hits(self, words: str, run_ids: Sequence[int]) -> dict[int, Hit]:
        """The best-ranked (bm25) matching reply of each run, with an excerpt of 16 words."""
        match = fts_query(words)
        if match is None or not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        rows = await self._db.fetch(
            "SELECT run_id, seq, snippet(reply_search, 0, ?, ?, '…', 16) AS excerpt "
            f"FROM reply_search WHERE reply_search MATCH ? AND run_id IN ({marks}) ORDER BY rank",
            [HIT_START, HIT_END, match, *run_ids],
        )
        found: dict[int, Hit] = {}
        for row in rows:
            run_id = int(row["run_id"])
            if run_id not in found:
                found[run_id] = Hit(run_id, int(row["seq"]), excerpt_parts(row["excerpt"]))
        return found


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

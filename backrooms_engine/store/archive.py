"""The Archive port on SQLite: what viewers list, filter, search and load.

It reads through a connection of its own opened with `mode=ro`, so it can never write, and a
page's reads do not queue behind the transcript's writes: the file is in WAL mode, so this
connection sees every committed reply while the owner writes.
"""

from __future__ import annotations

from ..records import Reply, RunRecord
from .connection import Database
from .reading import load_runs, replies_of, run_by_id
from .rules import check_list_args


class SqliteArchive:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def get_run(self, run_id: int) -> RunRecord:
        return await run_by_id(self._db, run_id)

    async def replies(self, run_id: int) -> list[Reply]:
        return await replies_of(self._db, run_id)

    async def list_runs(
        self, *, status: str | None = None, space: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        """Newest first: ids grow with every run, so the highest id is the newest."""
        check_list_args(status, limit)
        filters = [("status = ?", status), ("space = ?", space)]
        kept = [(clause, value) for clause, value in filters if value is not None]
        where = " AND ".join(clause for clause, _ in kept) or "1 = 1"
        async with self._db.using() as db:
            return await load_runs(db, where, [v for _, v in kept], limit=limit, order="DESC")

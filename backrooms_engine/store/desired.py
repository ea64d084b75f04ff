"""A run's desired state: stop requests as rows (ARCHITECTURE.md, "Runs owned by leases").

Any process may ask for a run to stop, whoever drives it: the request is a write to the run's
row that no fence refuses (the SQLite fence, leases.py, guards a change of `status`, and the
request changes only the `desired` columns of migration 007). The process that drives the run
reads the requests of all the runs it holds in one query, about twice a second (stopping.py),
and ends the run as a local stop would.

On PostgreSQL the request is also announced (NOTIFY on `DESIRED_CHANNEL`, the run id as the
payload) in the request's own transaction, so it is heard only once it is committed. NOTIFY is
best effort (and lost through a transaction-mode pooler): the poll is what a driver relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from . import rows
from .rows import IDS_PER_LIST, chunks
from .rules import unknown_run
from .sql import SqlDatabase

DESIRED_CHANNEL = "backrooms_desired"
PG_ANNOUNCE = f"SELECT pg_notify('{DESIRED_CHANNEL}', ?)"

# The first asker is kept: a second stop of a stopping run does not rename who stopped it.
_REQUEST_STOP = (
    "UPDATE runs SET desired = 'stop', desired_at = ?, "
    "desired_by = CASE WHEN desired = 'stop' THEN desired_by ELSE ? END "
    "WHERE id = ? AND status <> 'ended'"
)


class SqlDesired:
    """Portable SQL on any SqlDatabase; `announce` (a statement taking the run id as text) tells
    listeners in the same transaction (PostgreSQL's NOTIFY), or None."""

    def __init__(self, database: SqlDatabase, announce: str | None = None) -> None:
        self._db = database
        self._announce = announce

    async def request_stop(self, run_id: int, by: str, at: datetime) -> bool:
        values = (rows.iso_text(at), by, run_id)
        if self._announce is None:
            changed = await self._db.write(run_id, _REQUEST_STOP, values)
        else:
            async with self._db.transaction() as db:
                changed = await db.execute(_REQUEST_STOP, values)
                if changed:
                    await db.execute_fetchall(self._announce, (str(run_id),))
        if changed:
            return True
        if not await self._db.fetch("SELECT 1 FROM runs WHERE id = ?", (run_id,)):
            raise unknown_run(run_id)
        return False  # it has ended

    async def stop_requests(self, run_ids: Sequence[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        for some in chunks(sorted(set(run_ids)), IDS_PER_LIST):
            marks = ", ".join("?" * len(some))
            for row in await self._db.fetch(
                f"SELECT id, desired_by FROM runs WHERE desired = 'stop' AND id IN ({marks})",
                list(some),
            ):
                found[int(row["id"])] = str(row["desired_by"])
        return found

"""A run's desired state: stop requests as rows (ARCHITECTURE.md, "Runs owned by leases").

Any process may ask for a run to stop, whoever drives it: the request is a write to the run's
row that no fence refuses (the SQLite fence, leases.py, guards a change of `status`, and the
request changes only the `desired` columns of migration 007). The process that drives the run
reads the requests of all the runs it holds in one query, at least once a second (stopping.py),
and ends the run as a local stop would.

On PostgreSQL the request is also announced (NOTIFY on `DESIRED_CHANNEL`) in the request's own
transaction, so it is heard only once it is committed; the driver listening (postgres/notices.py)
ends the run at once. A channel belongs to the database, not to a schema, so the payload names the
store's schema before the run id (`announced` reads it back): stores in two schemas of one
database (the tests' own) do not hear each other. NOTIFY is best effort (and lost through a
transaction-mode pooler): a notice is only a hint to read the row, and the poll stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from . import rows
from .rows import IDS_PER_LIST, chunks
from .rules import unknown_run
from .sql import SqlDatabase

DESIRED_CHANNEL = "backrooms_desired"
# "schema run_id": the schema the store's tables are in (the first of the search path that
# exists, as for every statement of the store), then the run id.
PG_ANNOUNCE = f"SELECT pg_notify('{DESIRED_CHANNEL}', current_schema() || ' ' || ?)"


def announced(payload: str, schema: str) -> int | None:
    """The run id a PG_ANNOUNCE payload names, if it is of the store in `schema`."""
    said_schema, _, run_id = payload.rpartition(" ")
    if said_schema != schema or not (run_id.isascii() and run_id.isdigit()):
        return None
    return int(run_id)


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

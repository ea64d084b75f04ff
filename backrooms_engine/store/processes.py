"""The Processes port: which driving processes are alive, and which runs they hold.

Portable SQL on any SqlDatabase (SQLite and PostgreSQL alike), as live_text.py: `now` is the
dialect's expression for the database's clock in seconds since 1970, the unit of `seen_until`
and of the runs' `lease_until`. A row is written by the process it names and no other; a process
that dies leaves its row behind, lapsed, and a later beat of any process sweeps such rows away.

A process on this machine that no longer exists is not alive even before its heartbeat lapses
(leases.dead_here), so `backrooms workers` stops listing a killed worker at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from ..errors import StoreError
from ..ports import ProcessInfo
from .leases import NOW, dead_here
from .rows import IDS_PER_LIST, chunks
from .sql import SqlDatabase

SWEEP_AFTER = 3600.0  # seconds past its heartbeat after which a dead process's row is deleted


class SqlProcesses:
    def __init__(
        self,
        writer: SqlDatabase,
        reader: SqlDatabase,
        owner: str | None,
        seconds: float,
        now: str = NOW,
    ) -> None:
        """`owner`: this process as its leases name it; None for a store that drives nothing."""
        self._writer = writer
        self._reader = reader
        self._owner = owner
        self.seconds = seconds
        self._now = now

    def _me(self) -> str:
        if self._owner is None:
            raise StoreError("this store was opened by a process that drives no run")
        return self._owner

    async def beat(self, role: str) -> None:
        me = self._me()
        async with self._writer.transaction() as db:
            await db.execute(
                "INSERT INTO processes (owner, role, started_at, seen_until) "
                f"VALUES (?, ?, {self._now}, {self._now} + ?) ON CONFLICT (owner) DO UPDATE "
                "SET role = excluded.role, seen_until = excluded.seen_until",
                (me, role, self.seconds),
            )
            await db.execute(
                f"DELETE FROM processes WHERE seen_until < {self._now} - ?", (SWEEP_AFTER,)
            )

    async def leave(self) -> None:
        me = self._me()
        async with self._writer.using() as db:
            await db.execute("DELETE FROM processes WHERE owner = ?", (me,))

    async def alive(self) -> list[ProcessInfo]:
        rows = await self._reader.fetch(
            "SELECT p.owner, p.role, p.started_at, (SELECT COUNT(*) FROM runs r "
            f"WHERE r.owner = p.owner AND r.lease_until > {self._now}) AS held "
            f"FROM processes p WHERE p.seen_until > {self._now} ORDER BY p.started_at, p.owner"
        )
        return [
            ProcessInfo(
                row["owner"],
                row["role"],
                datetime.fromtimestamp(float(row["started_at"]), UTC),
                int(row["held"]),
            )
            for row in rows
            if not dead_here(row["owner"])
        ]

    async def holders(self, run_ids: Sequence[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        for some in chunks(list(run_ids), IDS_PER_LIST):
            rows = await self._reader.fetch(
                f"SELECT id, owner FROM runs WHERE id IN ({', '.join('?' * len(some))}) "
                f"AND owner IS NOT NULL AND lease_until > {self._now}",
                list(some),
            )
            found.update(
                (int(row["id"]), str(row["owner"])) for row in rows if not dead_here(row["owner"])
            )
        return found

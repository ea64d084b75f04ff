"""MemoryProcesses: the Processes port in memory, over a ProcessTable that several "processes"
share (as they share a store). It behaves like store/processes.py where a caller can tell: the
same ordering, the same refusal for a store that drives nothing, lapsed heartbeats not alive.

The memory store has no leases, so the runs a process holds are what a test puts in
`ProcessTable.leases`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backrooms_engine.errors import StoreError
from backrooms_engine.ports import ProcessInfo


@dataclass
class _Row:
    role: str
    started_at: float
    seen_until: float


@dataclass
class ProcessTable:
    clock: Callable[[], float] = time.time  # the "database's" clock
    rows: dict[str, _Row] = field(default_factory=dict)
    leases: dict[int, tuple[str, float]] = field(default_factory=dict)  # run -> (owner, until)


class MemoryProcesses:
    def __init__(self, table: ProcessTable, owner: str | None, seconds: float = 10.0) -> None:
        self._table = table
        self._owner = owner
        self.seconds = seconds

    def _me(self) -> str:
        if self._owner is None:
            raise StoreError("this store was opened by a process that drives no run")
        return self._owner

    async def beat(self, role: str) -> None:
        me, now = self._me(), self._table.clock()
        row = self._table.rows.get(me)
        started = now if row is None else row.started_at
        self._table.rows[me] = _Row(role, started, now + self.seconds)

    async def leave(self) -> None:
        self._table.rows.pop(self._me(), None)

    async def alive(self) -> list[ProcessInfo]:
        now = self._table.clock()
        live = sorted(
            (row.started_at, owner, row)
            for owner, row in self._table.rows.items()
            if row.seen_until > now
        )
        return [
            ProcessInfo(owner, row.role, datetime.fromtimestamp(started, UTC), self._held(owner))
            for started, owner, row in live
        ]

    async def holders(self, run_ids: Sequence[int]) -> dict[int, str]:
        now = self._table.clock()
        return {
            run_id: owner
            for run_id in run_ids
            if (lease := self._table.leases.get(run_id)) is not None
            for owner, until in [lease]
            if until > now
        }

    def _held(self, owner: str) -> int:
        now = self._table.clock()
        return sum(1 for who, until in self._table.leases.values() if who == owner and until > now)

"""The Leases port on SQLite: which process drives which run, and the fence on its writes.

A driving process opens the file with an `Owner` (host, pid and a random part). Its write
connection then carries, in SQLite's per-connection `temp` schema, a table `fence` of the runs it
holds with the epoch it claimed each at, and triggers that refuse, inside the very statement, every
write for a run (a reply, a delivery cursor, a post, live text, the end) unless the run's epoch is
still the one held here. The check and the write are one statement, so a takeover by another
process between them is impossible. A refused write raises LeaseLost (rows.refused).

Lease times are the database's clock (`julianday('now')`, read inside each statement), never this
process's: two processes with different clocks still agree on when a lease ran out.

A run this connection creates is its own from the start (a trigger claims it in the INSERT), so no
other process can take it between its creation and its first claim, unless it is created queued
(`serve`'s form, which drives nothing). A store opened without an owner (a viewer, or `serve`)
has no fence.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

import aiosqlite

from ..errors import LeaseHeld
from .connection import Database
from .rows import LEASE_LOST  # the triggers' message; rows.refused makes it LeaseLost
from .rules import unknown_run

# Seconds since 1970 as REAL, by the database's clock. (unixepoch('subsec') needs SQLite 3.42.)
NOW = "((julianday('now') - 2440587.5) * 86400.0)"


@dataclass(frozen=True)
class Owner:
    """A driving process, as the runs it holds name it."""

    host: str
    pid: int
    token: str

    @classmethod
    def here(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(4))

    @property
    def text(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"


def dead_here(owner: str | None) -> bool:
    """True when `owner` names a process on this machine that no longer exists: a dead process
    writes nothing, so its runs need not wait for the lease to lapse. (A reused pid only makes
    this say alive, which is the safe side; a frozen process is alive.)"""
    if owner is None:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _refuse_unless_held(table: str, when: str, run: str) -> str:
    """A trigger that refuses a write for run `run` unless this connection holds its epoch."""
    return (
        f"CREATE TEMP TRIGGER fence_{table}_{when.split()[-1].lower()} {when} ON main.{table} "
        f"WHEN EXISTS (SELECT 1 FROM main.runs WHERE id = {run}) AND NOT EXISTS ("
        f"SELECT 1 FROM main.runs r JOIN temp.fence f ON f.run_id = r.id "
        f"WHERE r.id = {run} AND r.epoch = f.epoch) "
        f"BEGIN SELECT RAISE(ABORT, '{LEASE_LOST}'); END"
    )


_TABLES = [
    "CREATE TEMP TABLE fence (run_id INTEGER PRIMARY KEY, epoch INTEGER NOT NULL)",
    "CREATE TEMP TABLE me (owner TEXT NOT NULL, seconds REAL NOT NULL)",
]
# An upsert fires the BEFORE INSERT trigger too, so one trigger per table covers both ways.
_FENCED = ("replies", "deliveries", "posts", "live_text")
_TRIGGERS = [
    # The end, and a reopening (`continue`), change the status; claims and renewals do not.
    _refuse_unless_held("runs", "BEFORE UPDATE OF status", "OLD.id"),
    # A queued run (migration 008) is left for whichever driving process claims it.
    "CREATE TEMP TRIGGER own_new_run AFTER INSERT ON main.runs WHEN NEW.queued = 0 BEGIN "
    # (A trigger may not qualify the tables it writes: `runs` is main's, `fence` is temp's.)
    f"UPDATE runs SET owner = (SELECT owner FROM temp.me), epoch = 1, "
    f"lease_until = {NOW} + (SELECT seconds FROM temp.me) WHERE id = NEW.id; "
    "INSERT OR REPLACE INTO fence (run_id, epoch) VALUES (NEW.id, 1); END",
]


@dataclass(frozen=True)
class Holder:
    """Who holds a run's lease, and for how many more seconds (negative: it has lapsed)."""

    owner: str | None
    seconds_left: float | None

    @property
    def live(self) -> bool:
        return self.owner is not None and (self.seconds_left or 0.0) > 0


class SqliteLeases:
    """Claims, renewals and releases, on the driving process's write connection."""

    def __init__(self, database: Database, owner: Owner, seconds: float) -> None:
        self._db = database
        self.owner = owner
        self.seconds = seconds

    async def install(self) -> None:
        """Give the write connection its fence (once, right after the migrations)."""
        async with self._db.using() as db:
            columns = {row[1] for row in await db.execute_fetchall("PRAGMA table_info(runs)")}
            if not {"epoch", "queued"} <= columns:
                return  # an older schema (only tests apply part of the migrations)
            fenced = [_refuse_unless_held(t, "BEFORE INSERT", "NEW.run_id") for t in _FENCED]
            for statement in [*_TABLES, *fenced, *_TRIGGERS]:
                await db.execute(statement)
            await db.execute("INSERT INTO temp.me VALUES (?, ?)", (self.owner.text, self.seconds))

    async def claim(self, run_id: int) -> int:
        """Take a run nobody holds (or whose lease lapsed, whose holder died on this machine, or
        that is already ours): its new epoch. A queued run is running from now on. Raises LeaseHeld naming the live holder,
        UnknownRunError for a bad id."""
        async with self._db.transaction() as db:
            holder = await _holder(db, run_id)
            # The holder is named in the UPDATE, so it takes only what was just looked at.
            dead = dead_here(holder.owner)
            found = await db.execute_fetchall(
                f"UPDATE runs SET owner = ?, epoch = epoch + 1, lease_until = {NOW} + ?, queued = 0 "
                f"WHERE id = ? AND (owner IS NULL OR lease_until IS NULL "
                f"OR lease_until < {NOW} OR owner = ? OR (owner = ? AND ?)) RETURNING epoch",
                (self.owner.text, self.seconds, run_id, self.owner.text, holder.owner, dead),
            )
            rows = list(found)
            if rows:
                epoch = int(rows[0][0])
                await _hold(db, run_id, epoch)
                return epoch
        assert holder.owner is not None
        raise LeaseHeld(run_id, holder.owner, holder.seconds_left or 0.0)

    async def holder(self, run_id: int) -> Holder:
        async with self._db.using() as db:
            return await _holder(db, run_id)

    async def renew(self) -> set[int]:
        """Extend every lease held here by `seconds`: the ids of those that were lost instead
        (another process claimed them). Lost runs leave the fence, so their writes stay refused."""
        async with self._db.transaction() as db:
            renewed = await db.execute_fetchall(
                f"UPDATE runs SET lease_until = {NOW} + ? WHERE owner = ? AND epoch = "
                "(SELECT f.epoch FROM temp.fence f WHERE f.run_id = runs.id) RETURNING id",
                (self.seconds, self.owner.text),
            )
            kept = {int(row[0]) for row in renewed}
            held = {int(row[0]) for row in await db.execute_fetchall("SELECT run_id FROM fence")}
            lost = held - kept
            for run_id in lost:
                await db.execute("DELETE FROM temp.fence WHERE run_id = ?", (run_id,))
        return lost

    async def release(self, run_id: int) -> None:
        """Let a run go so that another process may claim it at once (no-op if not held)."""
        async with self._db.transaction() as db:
            await db.execute(
                "UPDATE runs SET owner = NULL, lease_until = NULL WHERE id = ? AND epoch = "
                "(SELECT f.epoch FROM temp.fence f WHERE f.run_id = runs.id)",
                (run_id,),
            )
            await db.execute("DELETE FROM temp.fence WHERE run_id = ?", (run_id,))

    async def waiting(self, surfaces: frozenset[str]) -> list[int]:
        """Runs of these surfaces that nobody drives: queued, released, whose lease lapsed, or
        whose holder died on this machine (and not paused), oldest first."""
        if not surfaces:
            return []
        marks = ", ".join("?" * len(surfaces))
        rows = await self._db.fetch(
            f"SELECT id, owner, (owner IS NULL OR lease_until IS NULL OR lease_until < {NOW}) "
            f"FROM runs WHERE status = 'running' AND paused_at IS NULL "
            f"AND surface IN ({marks}) AND (owner IS NULL OR owner != ?) ORDER BY id",
            [*sorted(surfaces), self.owner.text],
        )
        return [int(row[0]) for row in rows if row[2] or dead_here(row[1])]


async def _hold(db: aiosqlite.Connection, run_id: int, epoch: int) -> None:
    await db.execute(
        "INSERT OR REPLACE INTO temp.fence (run_id, epoch) VALUES (?, ?)", (run_id, epoch)
    )


async def _holder(db: aiosqlite.Connection, run_id: int) -> Holder:
    rows = list(
        await db.execute_fetchall(
            f"SELECT owner, lease_until - {NOW} FROM runs WHERE id = ?", (run_id,)
        )
    )
    if not rows:
        raise unknown_run(run_id)
    return Holder(rows[0][0], rows[0][1])

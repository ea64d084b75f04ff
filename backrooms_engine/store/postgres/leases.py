"""The Leases port on PostgreSQL: which process drives which run. The fence on its writes is in
the database (010_pg_fence.postgres.sql, whose comments say why it is race-free): a driving
process's connections name it in `backrooms.owner` (`session_settings`), and triggers refuse
every write for a run that process does not hold.

Lease times are the server's clock (`clock_timestamp()`, read inside each statement). Every call
here is one statement in its own transaction, so a process cut off from the server in the middle
of one leaves no transaction open holding a run's row.

Every claim picks its row with `SELECT ... FOR NO KEY UPDATE SKIP LOCKED` (the lock an UPDATE
of the row takes; a foreign key's FOR KEY SHARE does not stand in its way): claimers racing for
the same runs never wait for one another and never take the same run. A row locked this instant
is being claimed, renewed or written for (the fence's FOR SHARE) by another session: `claim`
refuses it at once with LeaseHeld, and the claim loop looks again a second later. A row it locks
is re-checked on its latest committed version (READ COMMITTED), so a claim that lost the race
sees the new owner and is refused too. Migration 010's "the claim waits until the write has
committed" reads, since, "the claim is refused until the write has committed": either way the
write is ordered before the takeover. `claim_waiting` claims a batch of candidates the same way.
"""

from __future__ import annotations

import asyncio

from ...errors import LeaseHeld
from ..leases import Holder, Owner, dead_here
from ..rules import unknown_run
from .connection import PgDatabase

# Seconds since 1970 by the server's clock (clock_timestamp: the moment of the statement).
PG_NOW = "EXTRACT(EPOCH FROM clock_timestamp())"

# The statuses of runs that wait for a driver when nobody holds them (a queued status joins here).
WAITING_STATUSES = "('running')"
# A run nobody drives: released, never claimed, or its lease ran out (by the server's clock).
UNHELD = f"(owner IS NULL OR lease_until IS NULL OR lease_until < {PG_NOW})"
WAITING = f"status IN {WAITING_STATUSES} AND paused_at IS NULL AND surface = ANY(?)"


def session_settings(owner: Owner, seconds: float) -> tuple[str, tuple[str, ...]]:
    """The statement (and its values) a driving process's connection runs once connected: who
    it is (the fence's token) and how long its new runs' leases last. A transaction left idle
    for a lease (the process cut off mid-transaction) is ended by the server, so it cannot hold
    a run's row while another process takes the run over."""
    idle_ms = str(max(1000, int(seconds * 1000)))
    return (
        "SELECT set_config('backrooms.owner', ?, false), "
        "set_config('backrooms.lease_seconds', ?, false), "
        "set_config('idle_in_transaction_session_timeout', ?, false)",
        (owner.text, repr(float(seconds)), idle_ms),
    )


class PgLeases:
    """Claims, renewals and releases, on the driving process's write connection."""

    def __init__(self, database: PgDatabase, owner: Owner, seconds: float) -> None:
        self._db = database
        self.owner = owner
        self.seconds = seconds
        # The runs held here, as the last claim, creation or renewal found them: what a renewal
        # that does not find one any more reports lost.
        self._held: set[int] = set()
        self._renewing: asyncio.Task[set[int]] | None = None

    def adopt(self, run_id: int) -> None:
        """A run this process created: its own from the start (migration 010's trigger)."""
        self._held.add(run_id)

    async def claim(self, run_id: int) -> int:
        """Take a run nobody holds (or whose lease lapsed, whose holder died on this machine, or
        that is already ours): its new epoch. Raises LeaseHeld naming the live holder,
        UnknownRunError for a bad id."""
        holder = await self.holder(run_id)
        # The holder is named in the WHERE, so a dead holder's run is taken only from it.
        dead = dead_here(holder.owner)
        rows = await self._db.fetch(
            f"WITH picked AS (SELECT id FROM runs WHERE id = ? "
            f"AND ({UNHELD} OR owner = ? OR (owner = ? AND ?)) FOR NO KEY UPDATE SKIP LOCKED) "
            f"UPDATE runs SET owner = ?, epoch = runs.epoch + 1, lease_until = {PG_NOW} + ?, queued = 0 "
            "FROM picked WHERE runs.id = picked.id RETURNING runs.epoch",
            (run_id, self.owner.text, holder.owner, dead, self.owner.text, self.seconds),
        )
        if rows:
            self._held.add(run_id)
            return int(rows[0][0])
        # Another process won the run while we looked, or its row is locked this instant.
        now = await self.holder(run_id)
        raise LeaseHeld(run_id, now.owner or holder.owner or "?", now.seconds_left or 0.0)

    async def claim_waiting(self, surfaces: frozenset[str], limit: int) -> dict[int, int]:
        """Claim up to `limit` waiting runs of these surfaces, oldest first, skipping any row
        another claimer has locked this instant: {run id: its new epoch}. Runs whose holder died
        on this machine but whose lease still runs are not among them (`waiting` lists those,
        `claim` takes them)."""
        if not surfaces or limit < 1:
            return {}
        rows = await self._db.fetch(
            f"WITH picked AS (SELECT id FROM runs WHERE {WAITING} AND {UNHELD} "
            "ORDER BY id LIMIT ? FOR NO KEY UPDATE SKIP LOCKED) "
            f"UPDATE runs SET owner = ?, epoch = runs.epoch + 1, lease_until = {PG_NOW} + ?, queued = 0 "
            "FROM picked WHERE runs.id = picked.id RETURNING runs.id, runs.epoch",
            (sorted(surfaces), limit, self.owner.text, self.seconds),
        )
        claimed = {int(row[0]): int(row[1]) for row in rows}
        self._held.update(claimed)
        return dict(sorted(claimed.items()))

    async def holder(self, run_id: int) -> Holder:
        rows = await self._db.fetch(
            f"SELECT owner, lease_until - {PG_NOW} FROM runs WHERE id = ?", (run_id,)
        )
        if not rows:
            raise unknown_run(run_id)
        left = rows[0][1]
        return Holder(rows[0][0], None if left is None else float(left))

    async def renew(self) -> set[int]:
        """Extend every lease held here by `seconds`: the ids of those that were lost instead
        (another process claimed them). A lost run's writes stay refused: its owner is not us.

        A caller that gives up waiting (the server is unreachable) does not cancel the statement:
        psycopg would then wait up to 10 s for the server to confirm the cancel, and the caller
        would learn that late that its leases are running out. The renewal goes on by itself,
        and the next call waits for that one instead of sending another."""
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._renew(), name="lease renewal statement")
            self._renewing.add_done_callback(_heard)
        return await asyncio.shield(self._renewing)

    async def close(self) -> None:
        """Stop a renewal still waiting for the server (the store is closing)."""
        if self._renewing is not None:
            self._renewing.cancel()
            await asyncio.gather(self._renewing, return_exceptions=True)

    async def _renew(self) -> set[int]:
        rows = await self._db.fetch(
            f"UPDATE runs SET lease_until = {PG_NOW} + ? WHERE owner = ? RETURNING id",
            (self.seconds, self.owner.text),
        )
        kept = {int(row[0]) for row in rows}
        lost, self._held = self._held - kept, kept
        return lost

    async def release(self, run_id: int) -> None:
        """Let a run go so that another process may claim it at once (no-op if not held)."""
        await self._db.fetch(
            "UPDATE runs SET owner = NULL, lease_until = NULL WHERE id = ? AND owner = ? "
            "RETURNING id",
            (run_id, self.owner.text),
        )
        self._held.discard(run_id)

    async def waiting(self, surfaces: frozenset[str]) -> list[int]:
        """Runs of these surfaces that nobody drives: queued, released, whose lease lapsed, or
        whose holder died on this machine (and not paused), oldest first."""
        if not surfaces:
            return []
        rows = await self._db.fetch(
            f"SELECT id, owner, {UNHELD} FROM runs WHERE {WAITING} "
            "AND (owner IS NULL OR owner != ?) ORDER BY id",
            (sorted(surfaces), self.owner.text),
        )
        return [int(row[0]) for row in rows if row[2] or dead_here(row[1])]


def _heard(task: asyncio.Task[set[int]]) -> None:
    """A renewal's failure is its caller's to report; one nobody waited for any more is dropped."""
    if not task.cancelled():
        task.exception()

"""The LiveText port: the reply being streamed, one small row per run, overwritten.

The driver writes it (fenced like its other writes, leases.py) at most once a second; viewers in
other processes poll it through the read-only connection. A row whose seq is below the run's
count of finished replies is stale: that reply is in the transcript now.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ports import LiveLine
from .leases import NOW
from .rows import IDS_PER_LIST, chunks
from .sql import SqlDatabase


class SqlLiveText:
    """Portable SQL on any SqlDatabase; `now` is the dialect's expression for the database's clock
    in seconds since 1970, the unit of `lease_until` and `written_at`."""

    def __init__(self, writer: SqlDatabase, reader: SqlDatabase, now: str = NOW) -> None:
        self._writer = writer
        self._reader = reader
        self._now = now

    async def write_live(self, run_id: int, seq: int, actor: str, text: str) -> None:
        await self._writer.write(
            run_id,
            "INSERT INTO live_text (run_id, seq, actor, text, written_at) "
            f"VALUES (?, ?, ?, ?, {self._now}) ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, "
            "actor = excluded.actor, text = excluded.text, written_at = excluded.written_at",
            (run_id, seq, actor, text),
        )

    async def live(self, run_id: int) -> LiveLine | None:
        rows = await self._reader.fetch(
            "SELECT seq, actor, text FROM live_text WHERE run_id = ?", (run_id,)
        )
        return LiveLine(rows[0]["seq"], rows[0]["actor"], rows[0]["text"]) if rows else None

    async def driven(self, run_ids: Sequence[int]) -> set[int]:
        found: set[int] = set()
        for some in chunks(list(run_ids), IDS_PER_LIST):
            rows = await self._reader.fetch(
                f"SELECT id FROM runs WHERE id IN ({', '.join('?' * len(some))}) "
                f"AND status = 'running' AND owner IS NOT NULL AND lease_until > {self._now}",
                list(some),
            )
            found.update(int(row["id"]) for row in rows)
        return found

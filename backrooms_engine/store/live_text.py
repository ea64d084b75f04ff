"""The LiveText port on SQLite: the reply being streamed, one small row per run, overwritten.

The driver writes it (fenced like its other writes, leases.py) at most once a second; viewers in
other processes poll it through the read-only connection. A row whose seq is below the run's
count of finished replies is stale: that reply is in the transcript now.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ports import LiveLine
from .connection import Database
from .leases import NOW
from .rows import IDS_PER_LIST, chunks


class SqliteLiveText:
    def __init__(self, writer: Database, reader: Database) -> None:
        self._writer = writer
        self._reader = reader

    async def write_live(self, run_id: int, seq: int, actor: str, text: str) -> None:
        await self._writer.write(
            run_id,
            "INSERT INTO live_text (run_id, seq, actor, text, written_at) "
            f"VALUES (?, ?, ?, ?, {NOW}) ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, "
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
                f"AND status = 'running' AND owner IS NOT NULL AND lease_until > {NOW}",
                list(some),
            )
            found.update(int(row[0]) for row in rows)
        return found

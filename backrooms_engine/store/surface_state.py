"""The SurfaceState port: chat metadata per run, posts, per-space settings (portable SQL: the
SQLite and the PostgreSQL store both use it)."""

from __future__ import annotations

from .sql import SqlDatabase


class SqliteSurfaceState:
    def __init__(self, database: SqlDatabase) -> None:
        self._db = database

    async def record_post(
        self, run_id: int, seq: int, part: int, surface: str, external_id: str
    ) -> None:
        """Remember the message that shows part `part` of reply `seq`; a second post replaces it."""
        await self._db.write(
            run_id,
            "INSERT INTO posts (run_id, seq, part, surface, external_id) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id, seq, part, surface) "
            "DO UPDATE SET external_id = excluded.external_id",
            (run_id, seq, part, surface, external_id),
        )

    async def posts(self, run_id: int, surface: str) -> dict[tuple[int, int], str]:
        rows = await self._db.read_for(
            run_id,
            "SELECT seq, part, external_id FROM posts WHERE run_id = ? AND surface = ? "
            "ORDER BY seq, part",
            (run_id, surface),
        )
        return {(row["seq"], row["part"]): row["external_id"] for row in rows}

    async def set_meta(self, run_id: int, key: str, value: str) -> None:
        await self._db.write(
            run_id,
            "INSERT INTO run_meta (run_id, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
            (run_id, key, value),
        )

    async def get_meta(self, run_id: int, key: str) -> str | None:
        rows = await self._db.read_for(
            run_id, "SELECT value FROM run_meta WHERE run_id = ? AND key = ?", (run_id, key)
        )
        return str(rows[0][0]) if rows else None

    async def set_space_setting(self, space: str, key: str, value: str) -> None:
        async with self._db.using() as db:
            await db.execute(
                "INSERT INTO space_settings (space, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",
                (space, key, value),
            )

    async def space_setting(self, space: str, key: str) -> str | None:
        rows = await self._db.fetch(
            "SELECT value FROM space_settings WHERE space = ? AND key = ?", (space, key)
        )
        return str(rows[0][0]) if rows else None

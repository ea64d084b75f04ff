"""The archive's filtered listing and full-text search, on a read-only SQLite connection of its own.

`SqliteStore` (the engine's, owned by the run loop) answers `get_run` and `replies`; what only the
web page asks (filter by model or template, search reply text through the FTS5 table of migration
003_search.sql) runs here, on a second connection opened with `mode=ro`. The store's file is in WAL
mode, so this connection reads committed data while the owner writes, and it can never write: the
owner keeps sole charge of the schema and the rows (ARCHITECTURE.md, "One owner per store").
The connection opens on first use, after the owner has applied the migrations.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from backrooms_engine.errors import StoreError

BUSY_TIMEOUT_MS = 5000
PAGE_SIZE = 50
HIT_START, HIT_END = "\x02", "\x03"  # snippet() markers: control characters no reply contains


@dataclass(frozen=True)
class RunFilter:
    model: str | None = None  # a participant's alias
    template: str | None = None
    status: str | None = None  # running | ended
    q: str | None = None  # words to find in reply text
    before: int | None = None  # run ids below this one (the next page)

    @property
    def active(self) -> bool:
        return any(v for v in (self.model, self.template, self.status, self.q))


@dataclass(frozen=True)
class Hit:
    """Where a search matched in one run: a reply and a short excerpt around the match."""

    run_id: int
    seq: int
    parts: tuple[tuple[str, bool], ...]  # (text, is the matched word), to be escaped when shown


def fts_query(words: str) -> str | None:
    """The user's words as an FTS5 query: every word must appear (`word*` matches a prefix).
    Each word is quoted, so FTS5 operators and punctuation in the box are only ever text."""
    terms = []
    for word in words.split():
        prefix = word.endswith("*") and len(word) > 1
        core = word.rstrip("*") if prefix else word
        if not re.search(r"\w", core):
            continue  # punctuation alone matches nothing in unicode61's tokens
        terms.append('"' + core.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " ".join(terms) or None


class RunQueries:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            try:
                db = await aiosqlite.connect(uri, uri=True, isolation_level=None)
                await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            except sqlite3.Error as error:
                raise StoreError(f"cannot read {self.path}: {error}") from error
            db.row_factory = aiosqlite.Row
            self._db = db
        return self._db

    async def close(self) -> None:
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await db.close()

    async def _fetch(self, query: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        async with self._lock:
            db = await self._connection()
            try:
                return list(await db.execute_fetchall(query, params))
            except sqlite3.Error as error:
                raise StoreError(f"{self.path}: {error}") from error

    async def run_ids(self, f: RunFilter, limit: int = PAGE_SIZE) -> list[int]:
        """Ids of the runs that pass the filter, newest first."""
        where, params = ["1 = 1"], []
        conditions = [
            ("status = ?", f.status),
            ("template = ?", f.template),
            ("id < ?", f.before),
            (
                "EXISTS (SELECT 1 FROM participants p WHERE p.run_id = runs.id AND p.alias = ?)",
                f.model,
            ),
        ]
        for clause, value in conditions:
            if value is not None:
                where.append(clause)
                params.append(value)
        if f.q is not None:
            match = fts_query(f.q)
            if match is None:
                return []
            where.append("id IN (SELECT run_id FROM reply_search WHERE reply_search MATCH ?)")
            params.append(match)
        query = f"SELECT id FROM runs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        rows = await self._fetch(query, [*params, limit])
        return [row["id"] for row in rows]

    async def hits(self, words: str, run_ids: Sequence[int]) -> dict[int, Hit]:
        """The best-ranked matching reply of each run, with an excerpt."""
        match = fts_query(words)
        if match is None or not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        rows = await self._fetch(
            "SELECT run_id, seq, snippet(reply_search, 0, ?, ?, '…', 16) AS excerpt "
            f"FROM reply_search WHERE reply_search MATCH ? AND run_id IN ({marks}) ORDER BY rank",
            [HIT_START, HIT_END, match, *run_ids],
        )
        found: dict[int, Hit] = {}
        for row in rows:
            run_id = int(row["run_id"])
            if run_id not in found:
                found[run_id] = Hit(run_id, int(row["seq"]), _parts(row["excerpt"]))
        return found

    async def choices(self) -> tuple[list[str], list[str]]:
        """The model aliases and templates that stored runs used, for the filter menus."""
        models = await self._fetch("SELECT DISTINCT alias FROM participants ORDER BY alias", ())
        names = await self._fetch("SELECT DISTINCT template FROM runs ORDER BY template", ())
        return [r["alias"] for r in models], [r["template"] for r in names]


def _parts(excerpt: str) -> tuple[tuple[str, bool], ...]:
    parts: list[tuple[str, bool]] = []
    for i, piece in enumerate(re.split(f"[{HIT_START}{HIT_END}]", excerpt)):
        if piece:
            parts.append((piece, i % 2 == 1))
    return tuple(parts)

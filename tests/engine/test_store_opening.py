"""A process opening a new database file while another process has just made it (and holds it
for a moment) still opens it (issue 14: two `backrooms run` in a new folder). SQLite refuses the
switch to WAL with SQLITE_BUSY at once, without its busy handler, in that moment (seen in the
suite: one of two `backrooms run` exited with "cannot open ...: database is locked"; three
processes opening one new file together failed 7 times in 60 before the switch was retried)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from backrooms_engine.store import SqliteStore


async def test_a_new_file_another_connection_holds_for_a_moment_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "backrooms.db"
    other = sqlite3.connect(path, isolation_level=None)  # another process making the file
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE scratch (x)")
    opening = asyncio.create_task(SqliteStore.open(path, owner=True))
    await asyncio.sleep(0.5)  # the opener meets the lock
    other.execute("ROLLBACK")
    other.close()
    store = await asyncio.wait_for(opening, 30)
    try:
        assert await store.list_runs() == []
    finally:
        await store.close()

"""Leases on every store that has them (SQLite, PostgreSQL): who drives a run, and the fence on
every write a driver makes.

Two stores opened on one database are two drivers (each has its own connection, so its own
fence); the tests that need a real second process (SIGKILL, two starts at once) spawn one. The
PostgreSQL cases run in a schema of their own (tests/postgres.py); what only PostgreSQL does
(claims that skip locked rows, the fence under concurrent sessions) is in
tests/engine/test_pg_leases.py."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backrooms_engine.errors import LeaseHeld, LeaseLost
from backrooms_engine.records import ParticipantInfo, Reply, RunEnd, RunSpec, Usage
from backrooms_engine.store import MIGRATIONS_DIR, SqliteStore, StoreLocation, load_migrations
from backrooms_engine.store.bundle import AllPorts
from backrooms_engine.store.postgres import PostgresStore
from tests.postgres import fresh_schema

ROOT = Path(__file__).resolve().parents[2]
CAST = [ParticipantInfo(0, "opus", "Claude 1", "claude-opus-5-5", "anthropic")]


@dataclass(frozen=True)
class Db:
    """One database two stores can share: SQLite's file, or a PostgreSQL schema's URL."""

    dialect: str
    where: str  # the file's path, or the URL

    async def open(self, *, lease_seconds: float = 10.0, drives: bool = True) -> Any:
        if self.dialect == "sqlite":
            return await SqliteStore.open(
                Path(self.where), drives=drives, lease_seconds=lease_seconds
            )
        return await PostgresStore.open(
            StoreLocation("postgres", self.where), drives=drives, lease_seconds=lease_seconds
        )

    def sql(self, statement: str, values: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A statement on a connection of its own (no fence), for what a test looks at or sets."""
        if self.dialect == "sqlite":
            with sqlite3.connect(self.where) as db:
                return list(db.execute(statement, values))
        with psycopg.connect(self.where, autocommit=True) as pg:
            cursor = pg.execute(statement.replace("?", "%s"), values)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    if request.param == "sqlite":
        yield Db("sqlite", str(tmp_path / "backrooms.db"))
        return
    async with fresh_schema() as url:
        yield Db("postgres", url)


def moment() -> datetime:
    return datetime.now(UTC)


def reply(run_id: int, seq: int) -> Reply:
    return Reply(run_id, seq, seq + 1, 0, "Claude 1", f"reply {seq}", moment(), moment(), Usage())


async def new_run(store: AllPorts, surface: str = "terminal") -> int:
    spec = RunSpec(models=("opus",), surface=surface)
    return (await store.create_run(spec, CAST, "log.txt", moment())).id


def leases_of(store: Any) -> Any:
    assert store.leases is not None
    return store.leases


def lease_row(db: Db, run_id: int) -> tuple[str | None, int]:
    [(owner, epoch)] = db.sql("SELECT owner, epoch FROM runs WHERE id = ?", (run_id,))
    return owner, epoch


async def test_a_created_run_is_its_creators_and_another_driver_is_refused(db: Db):
    async with await db.open() as a, await db.open() as b:
        run_id = await new_run(a)
        owner, epoch = lease_row(db, run_id)
        assert owner == leases_of(a).owner.text and epoch == 1
        with pytest.raises(LeaseHeld, match=f"pid {os.getpid()} on "):
            await leases_of(b).claim(run_id)
        with pytest.raises(LeaseLost, match=f"run {run_id} was taken over"):
            await b.append_reply(reply(run_id, 0))
        with pytest.raises(LeaseLost):
            await b.finish_run(run_id, RunEnd("stopped"), moment())
        with pytest.raises(LeaseLost):
            await b.mark_delivered(run_id, "poster", 1)
        with pytest.raises(LeaseLost):
            await b.record_post(run_id, 0, 0, "discord", "123")
        await a.append_reply(reply(run_id, 0))  # the holder writes as before
        assert [r.seq for r in await a.replies(run_id)] == [0]


async def test_a_lapsed_lease_is_claimed_and_the_old_driver_is_fenced_off(db: Db):
    async with (
        await db.open(lease_seconds=0.3) as a,
        await db.open() as b,
    ):
        run_id = await new_run(a)
        await a.append_reply(reply(run_id, 0))
        await asyncio.sleep(0.5)  # a's lease lapses (a never renewed it)
        assert await leases_of(b).claim(run_id) == 2
        with pytest.raises(LeaseLost):
            await a.append_reply(reply(run_id, 1))  # what a was still writing is refused
        assert await leases_of(a).renew() == {run_id}  # a learns it lost the run
        with pytest.raises(LeaseLost):
            await a.append_reply(reply(run_id, 1))
        await b.append_reply(reply(run_id, 1))
        await b.finish_run(run_id, RunEnd("max_turns", turns=2), moment())
        assert [r.seq for r in await b.replies(run_id)] == [0, 1]
        assert (await b.get_run(run_id)).status == "ended"


async def test_a_renewed_lease_is_kept_and_a_released_one_is_claimed_at_once(db: Db):
    async with (
        await db.open(lease_seconds=0.4) as a,
        await db.open() as b,
    ):
        run_id = await new_run(a)
        for _ in range(3):
            await asyncio.sleep(0.2)
            assert await leases_of(a).renew() == set()
        with pytest.raises(LeaseHeld):
            await leases_of(b).claim(run_id)  # 0.6 s after creation, still a's
        await leases_of(a).release(run_id)
        assert await leases_of(b).claim(run_id) == 2
        assert lease_row(db, run_id) == (leases_of(b).owner.text, 2)


async def test_waiting_lists_running_runs_nobody_drives_of_the_given_surfaces(db: Db):
    async with (
        await db.open(lease_seconds=0.3) as a,
        await db.open() as b,
        await db.open(drives=False) as server,
    ):
        lapsing = await new_run(a, "discord")
        held = await new_run(b, "discord")
        queued = await new_run(server, "discord")  # a store that drives nothing queues its runs
        other = await new_run(server, "slack")
        ended = await new_run(b, "discord")
        await b.finish_run(ended, RunEnd("stopped"), moment())
        paused = await new_run(server, "discord")
        db.sql("UPDATE runs SET paused_at = 'now' WHERE id = ?", (paused,))
        assert await leases_of(b).waiting(frozenset({"discord"})) == [queued]
        await asyncio.sleep(0.5)
        assert await leases_of(b).waiting(frozenset({"discord"})) == [lapsing, queued]
        assert await leases_of(b).waiting(frozenset({"discord", "slack"})) == [
            lapsing,
            queued,
            other,
        ]
        assert held not in await leases_of(b).waiting(frozenset({"discord"}))


CHILD = """
import asyncio, sys
from datetime import UTC, datetime
from backrooms_engine.records import RunSpec
from backrooms_engine.store import open_store, store_location

async def main() -> None:
    where = sys.argv[1]
    env = {"BACKROOMS_DATABASE_URL" if "://" in where else "BACKROOMS_DB": where}
    store = await open_store(store_location(env), lease_seconds=float(sys.argv[2]))
    if sys.argv[3] == "run":
        run = await store.create_run(RunSpec(models=("opus",)), [], "log.txt", datetime.now(UTC))
        print(run.id, flush=True)
        await asyncio.sleep(120)
    await store.close()
    print("opened", flush=True)

asyncio.run(main())
"""


async def child(db: Db, seconds: float, what: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, db.where, str(seconds), what,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_a_run_held_by_a_killed_process_is_claimed_as_soon_as_it_is_gone(db: Db):
    holder = await child(db, 1.5, "run")
    try:
        assert holder.stdout is not None
        assert (await asyncio.wait_for(holder.stdout.readline(), 30)).strip() == b"1"
        async with await db.open() as heir:
            with pytest.raises(LeaseHeld, match=f"pid {holder.pid} on "):
                await leases_of(heir).claim(1)  # the process is alive and holds it
            holder.kill()  # SIGKILL: on this machine a dead holder need not be waited for
            await asyncio.wait_for(holder.wait(), 10)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while True:
                try:
                    assert await leases_of(heir).claim(1) == 2
                    break
                except LeaseHeld:
                    assert loop.time() < deadline, "the lease never lapsed"
                    await asyncio.sleep(0.1)
            await heir.append_reply(reply(1, 0))
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_processes_starting_together_migrate_once(db: Db):
    children = [await child(db, 10, "open") for _ in range(3)]
    outputs = await asyncio.wait_for(asyncio.gather(*(c.communicate() for c in children)), 60)
    assert [out.strip() for out, _ in outputs] == [b"opened"] * 3
    versions = [v for (v,) in db.sql("SELECT version FROM schema_migrations ORDER BY version")]
    shipped = len(load_migrations(MIGRATIONS_DIR, "sqlite"))
    assert versions == list(range(1, shipped + 1))

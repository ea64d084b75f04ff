"""What only the PostgreSQL store must get right (the contract suite covers the ports): one
migration sequence with SQLite, applied once however many processes start together, a viewer
that never upgrades, a lost connection reopened, and the URL's password never in its errors.
Each test has a schema of its own (tests/postgres.py)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from backrooms_engine.errors import StoreError
from backrooms_engine.records import ParticipantInfo, RunSpec
from backrooms_engine.store import (
    DIALECTS,
    MIGRATIONS_DIR,
    SqliteStore,
    StoreLocation,
    load_migrations,
    open_store,
)
from backrooms_engine.store.postgres import PostgresStore
from backrooms_engine.store.postgres import opening as pg_opening
from tests.helpers import backrooms

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
CAST = (ParticipantInfo(0, "opus", "Claude 1", "claude-opus-4", "anthropic"),)


def at(url: str) -> StoreLocation:
    return StoreLocation("postgres", url, "BACKROOMS_DATABASE_URL")


async def versions(url: str) -> list[tuple[int, str]]:
    async with await psycopg.AsyncConnection.connect(url) as db:
        cursor = await db.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        return [(int(v), str(n)) for v, n in await cursor.fetchall()]


async def columns(url: str) -> dict[str, list[str]]:
    async with await psycopg.AsyncConnection.connect(url) as db:
        cursor = await db.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        )
        found: dict[str, list[str]] = {}
        for table, column in await cursor.fetchall():
            found.setdefault(table, []).append(column)
        return found


# --- one sequence, two dialects ------------------------------------------------------------------


SHIPPED = [
    (1, "001_init"),
    (2, "002_space_settings"),
    (3, "003_search"),
    (4, "004_paused"),
    (5, "005_leases"),
    (6, "006_cost"),
    (7, "007_desired"),
    (8, "008_queued"),
    (9, "009_processes"),
    (10, "010_pg_fence"),
]


def test_both_dialects_reach_the_same_version_under_the_same_names() -> None:
    shipped = {
        d: [(m.version, m.name) for m in load_migrations(MIGRATIONS_DIR, d)] for d in DIALECTS
    }
    # The names databases recorded before the files were split by dialect: renaming kept them.
    assert shipped["sqlite"][: len(SHIPPED)] == SHIPPED
    assert shipped["postgres"] == shipped["sqlite"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["001_a.sql", "001_b.postgres.sql"], "migration 001 has two files for postgres"),
        (["001_a.sqlite.sql", "003_c.sql"], "numbered 001, 002, ... without gaps"),
        (["001_a.sqlite.sql"], "numbered 001, 002"),  # postgres has nothing at 001
        (["001_a.mysql.sql"], "named like 001_init.sql or 001_init.postgres.sql"),
    ],
)
def test_a_sequence_a_dialect_cannot_follow_is_refused(
    tmp_path: Path, files: list[str], message: str
) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;\n", encoding="utf-8")
    if files == ["001_a.sqlite.sql"]:
        assert load_migrations(tmp_path, "sqlite")[0].name == "001_a"
    with pytest.raises(StoreError, match=message):
        load_migrations(tmp_path, "postgres")


async def test_both_stores_have_the_same_tables_and_columns(
    postgres_url: str, tmp_path: Path
) -> None:
    await (await SqliteStore.open(tmp_path / "b.db")).close()
    with sqlite3.connect(tmp_path / "b.db") as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        sqlite_tables = {
            name: [c[1] for c in db.execute(f"PRAGMA table_info({name})")]
            for name in names
            if not name.startswith("reply_search")  # FTS5's own tables
        }
    await (await PostgresStore.open(at(postgres_url))).close()
    pg_tables = await columns(postgres_url)
    pg_replies = [c for c in pg_tables.pop("replies") if c != "search"]  # less the tsvector
    assert pg_replies == sqlite_tables.pop("replies")
    assert pg_tables == sqlite_tables


async def test_concurrent_opens_migrate_once(postgres_url: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(at(postgres_url)) for _ in range(4)))
    for store in stores:
        await store.close()
    shipped = [(m.version, m.name) for m in load_migrations(MIGRATIONS_DIR, "postgres")]
    assert await versions(postgres_url) == shipped


def only_first(tmp_path: Path) -> Path:
    directory = tmp_path / "v1"
    directory.mkdir()
    shutil.copy(MIGRATIONS_DIR / "001_init.sql", directory)
    return directory


async def test_a_viewer_waits_for_the_owner_to_upgrade(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_opening, "MIGRATIONS_DIR", only_first(tmp_path))
    await (await PostgresStore.open(at(postgres_url))).close()
    monkeypatch.undo()
    latest = len(load_migrations(MIGRATIONS_DIR, "postgres"))
    with pytest.raises(StoreError, match=f"schema version 1 and this backrooms needs {latest}"):
        await PostgresStore.open(at(postgres_url), owner=False)
    await (await PostgresStore.open(at(postgres_url))).close()
    assert [v for v, _ in await versions(postgres_url)] == list(range(1, latest + 1))


async def test_the_search_migration_fills_in_replies_stored_before_it(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_opening, "MIGRATIONS_DIR", only_first(tmp_path))
    await (await PostgresStore.open(at(postgres_url))).close()
    # Rows as the first schema holds them (today's store writes columns it does not have yet).
    async with await psycopg.AsyncConnection.connect(postgres_url) as db:
        found = await db.execute(
            "INSERT INTO runs (models, template, started_by, surface, status, created_at, "
            "log_path) VALUES ('[\"opus\"]', 'cli', 'x', 'terminal', 'running', "
            "'2026-01-01T00:00:00.000000+00:00', 'l') "
            "RETURNING id"
        )
        (run_id,) = await found.fetchone()
        await db.execute(
            "INSERT INTO replies (run_id, seq, turn, position, actor, text, started_at, "
            "finished_at) VALUES (%s, 0, 1, 0, 'Claude 1', 'an old Café', 'x', 'x')",
            (run_id,),
        )
    monkeypatch.undo()
    async with await PostgresStore.open(at(postgres_url)) as store:
        from backrooms_engine.ports import RunFilter

        assert [r.id for r in await store.find_runs(RunFilter(q="cafe"))] == [run_id]


async def test_a_failing_migration_is_rolled_back_whole(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = only_first(tmp_path)
    (directory / "002_more.postgres.sql").write_text(
        "CREATE TABLE extra (id INTEGER);\nINSERT INTO nowhere VALUES (1);\n", encoding="utf-8"
    )
    monkeypatch.setattr(pg_opening, "MIGRATIONS_DIR", directory)
    with pytest.raises(StoreError, match='migration 002_more failed: relation "nowhere" does not'):
        await PostgresStore.open(at(postgres_url))
    assert await versions(postgres_url) == [(1, "001_init")]
    assert "extra" not in await columns(postgres_url)


async def test_a_schema_holding_other_tables_is_refused(postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as db:
        await db.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match=r"not a backrooms store \(invoices\)"):
        await PostgresStore.open(at(postgres_url))


# --- connections ---------------------------------------------------------------------------------


async def test_a_connection_the_server_dropped_is_opened_again(postgres_url: str) -> None:
    name = f"dropped_{uuid.uuid4().hex[:12]}"  # only this store's connections are dropped
    async with await open_store(at(f"{postgres_url}&application_name={name}")) as store:
        first = await store.create_run(RunSpec(models=("opus",), template="cli"), CAST, "l", T0)
        assert (await store.get_run(first.id)).id == first.id  # the reader is connected too
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            )
            assert len(await cursor.fetchall()) == 2
        with pytest.raises(StoreError, match="terminat"):  # the call that meets it fails...
            await store.get_run(first.id)
        assert (await store.get_run(first.id)).id == first.id  # ...and the next one reconnects
        spec = RunSpec(models=("opus",), template="cli")
        with pytest.raises(StoreError, match="terminat"):  # the writer's connection too
            await store.create_run(spec, CAST, "l", T0)
        second = await store.create_run(spec, CAST, "l", T0)
        assert [r.id for r in await store.list_runs()] == [second.id, first.id]


async def test_the_archive_cannot_write(postgres_url: str) -> None:
    """The archive reads through a connection opened as its own (`connect(read_only=True)`,
    what PostgresStore gives its archive): a write there is refused by the server."""
    async with await PostgresStore.open(at(postgres_url)):
        reader = await pg_opening.connect(at(postgres_url), read_only=True)
        try:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                await reader.execute("DELETE FROM runs")
        finally:
            await reader.close()


async def test_an_error_never_shows_the_password(postgres_url: str) -> None:
    url = postgres_url.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it
    async with await PostgresStore.open(at(url)) as store:
        await store.close()
        with pytest.raises(StoreError) as raised:
            await store.list_runs()
    assert "hunter2" not in str(raised.value) and "postgres:***@" in str(raised.value)


async def test_runs_lists_a_postgres_store_without_its_password(
    postgres_url: str, tmp_path: Path
) -> None:
    url = postgres_url.replace("postgres@", "postgres:hunter2@")
    env = {"BACKROOMS_DATABASE_URL": url}
    code, out, err = await backrooms("runs", env=env, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith("no runs yet in postgresql://postgres:***@127.0.0.1")
    assert "hunter2" not in out + err

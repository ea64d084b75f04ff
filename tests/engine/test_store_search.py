"""SQLite only: migration 003_search (the FTS5 index over reply text, its backfill and triggers),
the archive's read-only connection, and the search box's words as a safe FTS5 query."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from backrooms_engine import store as store_module
from backrooms_engine.errors import StoreError
from backrooms_engine.ports import PAGE_SIZE, Archive, RunFilter
from backrooms_engine.records import ParticipantInfo, Reply, RunEnd, RunSpec, now
from backrooms_engine.store import SqliteStore
from backrooms_engine.store import opening as store_opening
from backrooms_engine.store.archive import SqliteArchive
from backrooms_engine.store.connection import Database
from backrooms_engine.store.search import fts_query

CAST = (ParticipantInfo(0, "opus", "Claude 1", "x", "anthropic"),)


async def new_run(store: SqliteStore, template: str = "cli") -> int:
    spec = RunSpec(models=("opus",), template=template)
    return (await store.create_run(spec, CAST, "/dev/null", now())).id


async def ids_of(archive: Archive, f: RunFilter, limit: int = PAGE_SIZE) -> list[int]:
    return [run.id for run in await archive.find_runs(f, limit)]


async def add(store: SqliteStore, run_id: int, seq: int, text: str) -> None:
    await store.append_reply(Reply(run_id, seq, seq + 1, 0, "Claude 1", text, now(), now()))


async def test_the_migration_backfills_replies_stored_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for name in ("001_init.sql", "002_space_settings.sql"):
        shutil.copy(store_module.MIGRATIONS_DIR / name, old)
    path = tmp_path / "backrooms.db"
    monkeypatch.setattr(store_opening, "MIGRATIONS_DIR", old)
    await (await SqliteStore.open(path)).close()
    with contextlib.closing(sqlite3.connect(path)) as before:  # really the older schema
        assert before.execute("SELECT max(version) FROM schema_migrations").fetchone() == (2,)
        # Rows as that schema holds them (today's store writes columns it does not have yet).
        run_id = before.execute(
            "INSERT INTO runs (models, template, started_by, surface, status, created_at, "
            "log_path) VALUES ('[\"opus\"]', 'cli', 'x', 'terminal', 'running', "
            "'2026-01-01T00:00:00.000000+00:00', 'l') "
            "RETURNING id"
        ).fetchone()[0]
        before.execute(
            "INSERT INTO replies (run_id, seq, turn, position, actor, text, started_at, "
            "finished_at) VALUES (?, 0, 1, 0, 'Claude 1', 'an old reply about a lighthouse', "
            "'x', 'x')",
            (run_id,),
        )
        before.commit()
    monkeypatch.undo()
    async with await SqliteStore.open(path) as store:  # the owner applies 003
        assert store.leases is not None
        await store.leases.claim(run_id)  # a driver writes only for a run it holds
        await add(store, run_id, 1, "a new reply about a harbour")
        assert await ids_of(store.archive, RunFilter(q="lighthouse")) == [run_id]
        assert await ids_of(store.archive, RunFilter(q="harbour")) == [run_id]
        assert await ids_of(store.archive, RunFilter(q="submarine")) == []


async def test_triggers_follow_deletes_and_updates(tmp_path: Path) -> None:
    path = tmp_path / "backrooms.db"
    async with await SqliteStore.open(path) as store:
        run_id = await new_run(store)
        await add(store, run_id, 0, "alpha")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE replies SET text = 'beta' WHERE run_id = ?", (run_id,))
        found = db.execute("SELECT run_id, seq FROM reply_search WHERE reply_search MATCH 'beta'")
        assert found.fetchall() == [(run_id, 0)]
        assert db.execute("SELECT count(*) FROM reply_search WHERE text = 'alpha'").fetchone() == (
            0,
        )
        db.commit()  # the pragma is a no-op inside a transaction
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        assert db.execute("SELECT count(*) FROM reply_search").fetchone() == (0,)


async def test_the_archive_connection_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "backrooms.db"
    async with await SqliteStore.open(path) as store:
        run_id = await new_run(store)
        reader = Database.read_only(path)  # the kind of connection the archive reads through
        try:
            with pytest.raises(StoreError, match="readonly"):
                await reader.fetch("DELETE FROM runs")
            assert [row["id"] for row in await reader.fetch("SELECT id FROM runs")] == [run_id]
        finally:
            await reader.close()


@pytest.mark.parametrize(
    ("words", "query"),
    [
        ("hello world", '"hello" "world"'),
        ('say "hi"', '"say" """hi"""'),
        ("xylo*", '"xylo"*'),
        ("NOT OR AND", '"NOT" "OR" "AND"'),
        ("* ( ) :", None),
        ("", None),
    ],
)
def test_search_words_become_a_safe_fts5_query(words: str, query: str | None) -> None:
    assert fts_query(words) == query


async def test_a_page_of_runs_costs_the_same_few_queries_however_many_it_lists(
    tmp_path: Path,
) -> None:
    path = tmp_path / "backrooms.db"
    async with await SqliteStore.open(path) as store:
        for n in range(60):
            await add(store, await new_run(store), 0, f"the lighthouse keeper, night {n}")
        statements: list[str] = []
        reader = Database.read_only(path, trace=statements.append)
        archive = SqliteArchive(reader)
        try:
            # On first use the connection opens and FTS5 reads its config: not a page's cost.
            await archive.hits("lighthouse", [1])
            costs = {}
            for limit in (1, 5, 50):
                statements.clear()
                page = await archive.find_runs(RunFilter(q="lighthouse"), limit)
                hits = await archive.hits("lighthouse", [run.id for run in page])
                assert len(page) == len(hits) == limit
                # SQLite traces FTS5's own reads of its tables too, as "-- " comments: not ours.
                costs[limit] = sum(not sql.startswith("--") for sql in statements)
            assert page == [await store.get_run(run.id) for run in page]  # cast and totals too
        finally:
            await reader.close()
    assert costs == {1: 3, 5: 3, 50: 3}, costs  # the page, its casts, its excerpts


async def test_a_page_read_again_is_one_query_and_shows_what_changed_since(
    tmp_path: Path,
) -> None:
    path = tmp_path / "backrooms.db"
    async with await SqliteStore.open(path) as store:
        first = await new_run(store)
        await add(store, first, 0, "the first reply")
        statements: list[str] = []
        reader = Database.read_only(path, trace=statements.append)
        archive = SqliteArchive(reader)
        try:
            await archive.find_runs(RunFilter())
            statements.clear()
            again = await archive.find_runs(RunFilter())
            assert len(statements) == 1  # the page; its casts are known
            # A reply, an end and a new run since: the next read shows each of them.
            await add(store, first, 1, "a second reply")
            await store.finish_run(first, RunEnd(reason="max_turns", turns=2), now())
            second = await new_run(store, template="gallery")
            now_listed = await archive.find_runs(RunFilter())
            assert [run.id for run in again] == [first]
            assert now_listed == [await store.get_run(second), await store.get_run(first)]
            assert now_listed[1].replies == 2 and now_listed[1].status == "ended"
        finally:
            await reader.close()


async def test_the_filter_menus_follow_new_runs_without_scanning_the_archive(
    tmp_path: Path,
) -> None:
    path = tmp_path / "backrooms.db"
    async with await SqliteStore.open(path) as store:
        await new_run(store, template="cli")
        statements: list[str] = []
        reader = Database.read_only(path, trace=statements.append)
        archive = SqliteArchive(reader)
        try:
            assert await archive.choices() == (["opus"], ["cli"])
            cast = (ParticipantInfo(0, "gpt4o", "GPT 1", "y", "openai"),)
            spec = RunSpec(models=("gpt4o",), template="gallery")
            await store.create_run(spec, cast, "/dev/null", now())
            statements.clear()
            assert await archive.choices() == (["gpt4o", "opus"], ["cli", "gallery"])
            # One query, for the runs after the last one it had read.
            assert len(statements) == 1 and statements[0].endswith("WHERE runs.id > 1")
        finally:
            await reader.close()


async def test_the_excerpt_is_of_the_best_matching_reply_of_each_run(tmp_path: Path) -> None:
    path = tmp_path / "backrooms.db"
    async with await SqliteStore.open(path) as store:
        runs = [await new_run(store) for _ in range(3)]
        filler = " ".join(["corridor"] * 40)
        for run_id in runs:
            await add(store, run_id, 0, f"a lantern in the {filler}")
            await add(store, run_id, 1, "lantern, lantern, lantern")  # denser: ranks first
            await add(store, run_id, 2, "no light here")
        hits = await store.archive.hits("lantern", runs[:2])
    assert {run_id: hit.seq for run_id, hit in hits.items()} == {runs[0]: 1, runs[1]: 1}
    assert hits[runs[0]].parts == (
        ("lantern", True),
        (", ", False),
        ("lantern", True),
        (", ", False),
        ("lantern", True),
    )

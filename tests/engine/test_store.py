"""The Store contract, run over SqliteStore and MemoryStore alike, then what only SQLite has to get
right: migrations, the owner lock (also across a SIGKILL), and clear errors for bad paths."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from backrooms_engine import store as store_module
from backrooms_engine.errors import ConfigError, StoreError, UnknownRunError
from backrooms_engine.ports import Archive, SurfaceState, TranscriptStore
from backrooms_engine.records import ParticipantInfo, Reply, RunEnd, RunRecord, RunSpec, Usage
from backrooms_engine.store import SqliteStore
from backrooms_engine.store import opening as store_opening
from backrooms_engine.store import rows as store_rows
from tests.fakes.memory_store import MemoryStore

AnyStore = SqliteStore | MemoryStore
ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
PORTS = (TranscriptStore, SurfaceState, Archive)


def spec(**changes: object) -> RunSpec:
    fields: dict[str, object] = {"models": ("opus", "gpt4o"), "template": "cli", "max_turns": 3}
    return RunSpec(**(fields | changes))  # type: ignore[arg-type]


CAST = (
    ParticipantInfo(0, "opus", "Claude 1", "claude-opus-4", "anthropic"),
    ParticipantInfo(1, "gpt4o", "GPT 2", "gpt-4o", "openai"),
)


def reply(run_id: int, seq: int, usage: Usage | None = None, text: str = "") -> Reply:
    return Reply(
        run_id=run_id,
        seq=seq,
        turn=seq // 2 + 1,
        position=seq % 2,
        actor=CAST[seq % 2].actor,
        text=text or f"reply {seq}",
        started_at=T0 + timedelta(seconds=seq),
        finished_at=T0 + timedelta(seconds=seq, milliseconds=500),
        usage=usage or Usage(10, 20),
    )


async def new_run(store: AnyStore, **changes: object) -> int:
    record = await store.create_run(spec(**changes), CAST, "BackroomsLogs/x.txt", T0)
    return record.id


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AnyStore]:
    opened: AnyStore
    if request.param == "sqlite":
        opened = await SqliteStore.open(tmp_path / "data" / "backrooms.db")
    else:
        opened = MemoryStore()
    try:
        yield opened
    finally:
        await opened.close()


# --- the contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", [SqliteStore, MemoryStore])
@pytest.mark.parametrize("port", PORTS, ids=[p.__name__ for p in PORTS])
def test_both_stores_have_every_port_method_with_its_signature(
    implementation: type, port: type
) -> None:
    declared = {n: f for n, f in vars(port).items() if inspect.isfunction(f) and n[0] != "_"}
    assert declared
    for name, method in declared.items():
        ours = getattr(implementation, name)
        assert inspect.iscoroutinefunction(ours), name
        assert (
            inspect.signature(ours).parameters.keys() == inspect.signature(method).parameters.keys()
        )


async def test_create_run_returns_a_running_record_without_replies(store: AnyStore) -> None:
    record = await store.create_run(spec(space="guild"), tuple(reversed(CAST)), "log.txt", T0)
    assert record.status == "running"
    assert record.participants == CAST  # by position, whatever order they came in
    assert (record.replies, record.input_tokens, record.output_tokens) == (0, 0, 0)
    assert record.end is None and record.ended_at is None
    assert record.created_at == T0 and record.log_path == "log.txt"


async def test_get_run_gives_back_what_create_run_stored(store: AnyStore) -> None:
    wanted = spec(started_by="ann", surface="discord", space="g1", place="t1", token_budget=9000)
    created = await store.create_run(wanted, CAST, "log.txt", T0)
    assert await store.get_run(created.id) == created
    assert (await store.get_run(created.id)).spec == wanted


async def test_run_ids_grow_from_one(store: AnyStore) -> None:
    assert [await new_run(store) for _ in range(3)] == [1, 2, 3]


async def test_replies_come_back_in_seq_order_exactly_as_appended(store: AnyStore) -> None:
    run_id = await new_run(store)
    sent = [reply(run_id, 0, Usage(None, None)), reply(run_id, 1, text="multi\nline ^C^C")]
    for one in reversed(sent):
        await store.append_reply(one)
    assert await store.replies(run_id) == sent


async def test_timestamps_come_back_in_utc(store: AnyStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    record = await store.create_run(spec(), CAST, "log.txt", T0.astimezone(plus_two))
    await store.append_reply(reply(record.id, 0))
    got = await store.get_run(record.id)
    assert got.created_at == T0 and got.created_at.utcoffset() == timedelta(0)
    assert (await store.replies(record.id))[0].started_at.tzinfo is not None


async def test_naive_timestamps_are_refused(store: AnyStore) -> None:
    with pytest.raises(StoreError, match="timezone-aware"):
        await store.create_run(spec(), CAST, "log.txt", datetime(2025, 1, 1))


async def test_aggregates_count_replies_and_sum_tokens(store: AnyStore) -> None:
    run_id = await new_run(store)
    other = await new_run(store)
    await store.append_reply(reply(run_id, 0, Usage(100, 7)))
    await store.append_reply(reply(run_id, 1, Usage(None, 5)))  # unknown usage counts as 0
    await store.append_reply(reply(run_id, 2, Usage(1, None)))
    await store.append_reply(reply(other, 0, Usage(1000, 1000)))
    record = await store.get_run(run_id)
    assert (record.replies, record.input_tokens, record.output_tokens) == (3, 101, 12)
    assert record.turns == 1
    listed = {r.id: r for r in await store.list_runs()}
    assert listed[run_id] == record
    assert (listed[other].replies, listed[other].input_tokens) == (1, 1000)


async def test_the_same_seq_twice_is_refused_and_stored_once(store: AnyStore) -> None:
    run_id = await new_run(store)
    await store.append_reply(reply(run_id, 0, text="first"))
    with pytest.raises(StoreError, match="already has reply 0"):
        await store.append_reply(reply(run_id, 0, text="second"))
    assert [r.text for r in await store.replies(run_id)] == ["first"]
    assert (await store.get_run(run_id)).replies == 1


async def test_a_negative_seq_is_refused(store: AnyStore) -> None:
    run_id = await new_run(store)
    with pytest.raises(StoreError, match="0 or more"):
        await store.append_reply(dataclasses.replace(reply(run_id, 0), seq=-1))


async def test_participants_sharing_a_position_are_refused(store: AnyStore) -> None:
    with pytest.raises(StoreError, match="positions must differ"):
        await store.create_run(spec(), (CAST[0], CAST[0]), "log.txt", T0)
    assert await store.list_runs() == []


async def test_finish_run_stores_the_end_and_reopen_clears_it(store: AnyStore) -> None:
    run_id = await new_run(store)
    end = RunEnd(reason="stopped", by="ann", detail="enough", turns=2, max_turns=3)
    await store.finish_run(run_id, end, T0 + timedelta(minutes=5))
    ended = await store.get_run(run_id)
    assert (ended.status, ended.end, ended.ended_at) == ("ended", end, T0 + timedelta(minutes=5))
    await store.reopen_run(run_id, max_turns=7)
    reopened = await store.get_run(run_id)
    assert (reopened.status, reopened.end, reopened.ended_at) == ("running", None, None)
    assert reopened.spec.max_turns == 7


async def test_list_runs_is_newest_first_and_filters(store: AnyStore) -> None:
    first = await new_run(store, space="a")
    second = await new_run(store, space="b")
    third = await new_run(store, space="a")
    await store.finish_run(second, RunEnd(reason="max_turns", turns=3, max_turns=3), T0)
    assert [r.id for r in await store.list_runs()] == [third, second, first]
    assert [r.id for r in await store.list_runs(limit=2)] == [third, second]
    assert [r.id for r in await store.list_runs(space="a")] == [third, first]
    assert [r.id for r in await store.list_runs(status="ended")] == [second]
    assert [r.id for r in await store.list_runs(status="running", space="a")] == [third, first]
    assert await store.list_runs(space="nowhere") == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"status": "done"}, "use one of: running, ended"), ({"limit": 0}, "1 or more")],
)
async def test_list_runs_refuses_bad_arguments_saying_what_is_accepted(
    store: AnyStore, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        await store.list_runs(**arguments)  # type: ignore[arg-type]


async def test_running_runs_are_oldest_first_without_ended_ones(store: AnyStore) -> None:
    ids = [await new_run(store) for _ in range(3)]
    await store.finish_run(ids[1], RunEnd(reason="ctrl_c", actor="Claude 1"), T0)
    assert [r.id for r in await store.running_runs()] == [ids[0], ids[2]]


async def test_delivery_cursor_starts_at_zero_and_is_kept_per_observer(store: AnyStore) -> None:
    run_id = await new_run(store)
    other = await new_run(store)
    assert await store.delivered(run_id, "discord") == 0
    await store.mark_delivered(run_id, "discord", 2)
    await store.mark_delivered(run_id, "logfile", 5)
    await store.mark_delivered(run_id, "discord", 3)
    assert await store.delivered(run_id, "discord") == 3
    assert await store.delivered(run_id, "logfile") == 5
    assert await store.delivered(other, "discord") == 0


async def test_a_negative_delivery_count_is_refused(store: AnyStore) -> None:
    run_id = await new_run(store)
    with pytest.raises(StoreError, match="0 or more"):
        await store.mark_delivered(run_id, "discord", -1)


async def test_posts_are_kept_per_surface_and_a_second_post_replaces(store: AnyStore) -> None:
    run_id = await new_run(store)
    await store.record_post(run_id, 1, 0, "discord", "m3")
    await store.record_post(run_id, 0, 1, "discord", "m2")
    await store.record_post(run_id, 0, 0, "discord", "m1")
    await store.record_post(run_id, 0, 0, "slack", "1700000000.0001")
    await store.record_post(run_id, 1, 0, "discord", "m3-edited")
    discord = await store.posts(run_id, "discord")
    assert list(discord.items()) == [((0, 0), "m1"), ((0, 1), "m2"), ((1, 0), "m3-edited")]
    assert await store.posts(run_id, "slack") == {(0, 0): "1700000000.0001"}
    assert await store.posts(run_id, "web") == {}


async def test_meta_is_per_run_and_a_second_value_replaces(store: AnyStore) -> None:
    run_id = await new_run(store)
    other = await new_run(store)
    assert await store.get_meta(run_id, "thread_id") is None
    await store.set_meta(run_id, "thread_id", "111")
    await store.set_meta(run_id, "thread_id", "222")
    await store.set_meta(other, "thread_id", "333")
    assert await store.get_meta(run_id, "thread_id") == "222"
    assert await store.get_meta(other, "thread_id") == "333"


UNKNOWN_RUN_CALLS: dict[str, Callable[[AnyStore], Awaitable[object]]] = {
    "get_run": lambda s: s.get_run(42),
    "append_reply": lambda s: s.append_reply(reply(42, 0)),
    "finish_run": lambda s: s.finish_run(42, RunEnd(reason="stopped"), T0),
    "reopen_run": lambda s: s.reopen_run(42, max_turns=None),
    "replies": lambda s: s.replies(42),
    "delivered": lambda s: s.delivered(42, "discord"),
    "mark_delivered": lambda s: s.mark_delivered(42, "discord", 1),
    "record_post": lambda s: s.record_post(42, 0, 0, "discord", "m1"),
    "posts": lambda s: s.posts(42, "discord"),
    "set_meta": lambda s: s.set_meta(42, "thread_id", "1"),
    "get_meta": lambda s: s.get_meta(42, "thread_id"),
}


@pytest.mark.parametrize("call", UNKNOWN_RUN_CALLS.values(), ids=UNKNOWN_RUN_CALLS.keys())
async def test_an_unknown_run_id_is_named_and_the_listing_command_suggested(
    store: AnyStore, call: Callable[[AnyStore], Awaitable[object]]
) -> None:
    await new_run(store)
    with pytest.raises(UnknownRunError) as raised:
        await call(store)
    assert str(raised.value) == "no run with id 42; `backrooms runs` lists them"
    assert isinstance(raised.value, ConfigError)


async def test_a_closed_store_refuses_calls(store: AnyStore) -> None:
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.list_runs()
    await store.close()  # closing twice is harmless


# --- SQLite only: schema and durability -----------------------------------------------------------


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


SHIPPED = [(int(f.name[:3]), f.stem) for f in sorted(store_module.MIGRATIONS_DIR.glob("*.sql"))]


def schema_versions(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()


EXPECTED_TABLES = {
    "schema_migrations",
    "runs",
    "participants",
    "replies",
    "deliveries",
    "posts",
    "run_meta",
}


@pytest.mark.parametrize("empty_file", [False, True], ids=["missing", "zero_bytes"])
async def test_open_migrates_a_new_or_empty_file(tmp_path: Path, empty_file: bool) -> None:
    path = tmp_path / "backrooms.db"
    if empty_file:
        path.touch()
    async with await SqliteStore.open(path):
        pass
    assert EXPECTED_TABLES <= tables(path)
    assert schema_versions(path) == SHIPPED
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_reopening_keeps_the_data_and_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "backrooms.db"
    async with await SqliteStore.open(path) as first:
        run_id = await new_run(first)
        await first.append_reply(reply(run_id, 0))
    for owner in (True, False, True):
        async with await SqliteStore.open(path, owner=owner) as again:
            assert (await again.get_run(run_id)).replies == 1
    assert schema_versions(path) == SHIPPED


async def test_a_reply_is_committed_before_append_reply_returns(tmp_path: Path) -> None:
    path = tmp_path / "backrooms.db"
    async with await SqliteStore.open(path) as store:
        run_id = await new_run(store)
        await store.append_reply(reply(run_id, 0, text="durable"))
        with sqlite3.connect(path) as outsider:  # another connection sees only committed rows
            assert outsider.execute("SELECT text FROM replies").fetchall() == [("durable",)]


async def test_concurrent_tasks_do_not_mix_their_transactions(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "backrooms.db") as store:
        ids = await asyncio.gather(*(new_run(store) for _ in range(20)))
        await asyncio.gather(*(store.append_reply(reply(run_id, 0)) for run_id in ids))
        runs = await store.list_runs(limit=100)
    assert sorted(ids) == list(range(1, 21))
    assert all(r.participants == CAST and r.replies == 1 for r in runs)


async def test_replies_arriving_together_share_their_commits(tmp_path: Path) -> None:
    path = tmp_path / "backrooms.db"
    async with await SqliteStore.open(path) as store:
        ids = await asyncio.gather(*(new_run(store) for _ in range(40)))
        start = _wal_frames(path)
        for i in ids[:20]:  # one after the other: a commit each
            await store.append_reply(reply(i, 0, text=f"run {i}"))
        alone = _wal_frames(path) - start
        await asyncio.gather(*(store.append_reply(reply(i, 0, text=f"run {i}")) for i in ids[20:]))
        together = _wal_frames(path) - start - alone
        with sqlite3.connect(path) as outsider:
            stored = outsider.execute("SELECT run_id, text FROM replies ORDER BY run_id").fetchall()
    assert stored == [(i, f"run {i}") for i in sorted(ids)]
    assert 0 < together * 4 < alone, f"WAL frames: {together} together against {alone} one by one"


def _wal_frames(path: Path) -> int:
    """Pages written to the write-ahead log: every commit appends the pages it changed. The log
    only grows here: SQLite checkpoints it at 1,000 pages, far more than these tests write."""
    with contextlib.closing(sqlite3.connect(path)) as reader:
        page_size = reader.execute("PRAGMA page_size").fetchone()[0]
    wal = path.with_name(path.name + "-wal")
    return (wal.stat().st_size - 32) // (24 + page_size)  # a 32-byte header, then the frames


async def test_runs_created_together_each_get_their_own_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_rows, "ROWS_PER_INSERT", 3)  # several statements per batch
    async with await SqliteStore.open(tmp_path / "backrooms.db") as store:

        async def create(n: int) -> tuple[int, RunRecord]:
            cast = (ParticipantInfo(0, f"model-{n}", f"Actor {n}", f"api-{n}", "anthropic"),)
            record = await store.create_run(spec(max_turns=n + 1), cast, f"log-{n}.txt", T0)
            return n, record

        created = await asyncio.gather(*(create(n) for n in range(10)))
        stored = {r.id: r for r in await store.list_runs(limit=100)}
    assert sorted(record.id for _, record in created) == list(range(1, 11))
    for n, record in created:
        assert stored[record.id] == record
        assert record.log_path == f"log-{n}.txt" and record.spec.max_turns == n + 1
        assert [p.alias for p in record.participants] == [f"model-{n}"]


async def test_a_refused_reply_among_others_fails_alone(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "backrooms.db") as store:
        ids = await asyncio.gather(*(new_run(store) for _ in range(5)))
        await store.append_reply(reply(ids[2], 0, text="already there"))
        outcomes = await asyncio.gather(
            *(store.append_reply(reply(i, 0, text=f"new {i}")) for i in ids),
            store.append_reply(reply(999, 0)),
            return_exceptions=True,
        )
        texts = {i: [r.text for r in await store.replies(i)] for i in ids}
    assert [type(o).__name__ for o in outcomes] == [
        "NoneType",
        "NoneType",
        "StoreError",
        "NoneType",
        "NoneType",
        "UnknownRunError",
    ]
    assert "already has reply 0" in str(outcomes[2])
    assert texts == {i: ["already there" if i == ids[2] else f"new {i}"] for i in ids}


async def test_a_refusal_in_a_later_chunk_of_a_batch_keeps_the_chunks_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_rows, "ROWS_PER_INSERT", 2)
    async with await SqliteStore.open(tmp_path / "backrooms.db") as store:
        ids = await asyncio.gather(*(new_run(store) for _ in range(5)))
        await store.append_reply(reply(ids[3], 0, text="already there"))
        outcomes = await asyncio.gather(
            *(store.append_reply(reply(i, 0, text=f"new {i}")) for i in ids),
            return_exceptions=True,
        )
        texts = [[r.text for r in await store.replies(i)] for i in ids]
    assert [o is None for o in outcomes] == [True, True, True, False, True]
    assert texts == [["already there"] if i == ids[3] else [f"new {i}"] for i in ids]


async def test_close_writes_the_replies_already_handed_over(tmp_path: Path) -> None:
    path = tmp_path / "backrooms.db"
    store = await SqliteStore.open(path)
    ids = await asyncio.gather(*(new_run(store) for _ in range(10)))
    appends = [asyncio.create_task(store.append_reply(reply(i, 0))) for i in ids]
    await asyncio.sleep(0)  # every append has queued its reply
    await store.close()
    await asyncio.gather(*appends)
    with sqlite3.connect(path) as outsider:
        assert outsider.execute("SELECT count(*) FROM replies").fetchone() == (10,)


def write_migrations(directory: Path, extra: str | None) -> Path:
    """A migrations folder holding only the first shipped migration, plus `extra` as 002."""
    directory.mkdir()
    shutil.copy(store_module.MIGRATIONS_DIR / "001_init.sql", directory)
    if extra is not None:
        (directory / "002_more.sql").write_text(extra, encoding="utf-8")
    return directory


async def at_version_1(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_opening, "MIGRATIONS_DIR", write_migrations(tmp_path / "v1", None))
    await (await SqliteStore.open(path)).close()


async def test_an_owner_applies_a_new_migration_and_a_viewer_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "backrooms.db"
    await at_version_1(path, tmp_path, monkeypatch)
    newer = write_migrations(tmp_path / "migrations", "CREATE TABLE extra (id INTEGER);\n")
    monkeypatch.setattr(store_opening, "MIGRATIONS_DIR", newer)
    with pytest.raises(StoreError, match="schema version 1 and this backrooms needs 2"):
        await SqliteStore.open(path, owner=False)
    await (await SqliteStore.open(path)).close()
    assert schema_versions(path) == [(1, "001_init"), (2, "002_more")]
    assert "extra" in tables(path)


async def test_a_failing_migration_is_rolled_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "backrooms.db"
    await at_version_1(path, tmp_path, monkeypatch)
    broken = "CREATE TABLE extra (id INTEGER);\nINSERT INTO nowhere VALUES (1);\n"
    monkeypatch.setattr(store_opening, "MIGRATIONS_DIR", write_migrations(tmp_path / "m", broken))
    with pytest.raises(StoreError, match="migration 002_more failed: no such table: nowhere"):
        await SqliteStore.open(path)
    assert "extra" not in tables(path)
    assert schema_versions(path) == [(1, "001_init")]
    monkeypatch.undo()
    await (await SqliteStore.open(path)).close()  # and the failed open released the owner lock


@pytest.mark.parametrize("owner", [True, False])
async def test_a_newer_schema_is_refused(tmp_path: Path, owner: bool) -> None:
    path = tmp_path / "backrooms.db"
    await (await SqliteStore.open(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_migrations VALUES (99, '099_future', '2030-01-01')")
    with pytest.raises(StoreError, match=r"newer backrooms \(schema version 99; this one knows up"):
        await SqliteStore.open(path, owner=owner)


# --- SQLite only: a viewer beside the driver (leases: tests/engine/test_leases.py) ----------------


async def test_a_viewer_sees_what_the_owner_committed(tmp_path: Path) -> None:
    path = tmp_path / "backrooms.db"
    async with await SqliteStore.open(path) as owner:
        run_id = await new_run(owner)
        await owner.append_reply(reply(run_id, 0))
        async with await SqliteStore.open(path, owner=False) as viewer:
            assert (await viewer.get_run(run_id)).replies == 1


# --- SQLite only: paths that cannot work ----------------------------------------------------------


@pytest.mark.parametrize("owner", [True, False])
async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path, owner: bool) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 20, encoding="utf-8")
    for _ in range(2):  # the failed open released the lock: the second try fails the same way
        with pytest.raises(StoreError, match="is not a backrooms database \\(not SQLite\\)"):
            await SqliteStore.open(path, owner=owner)
    assert path.read_text(encoding="utf-8").startswith("these are my notes")


async def test_another_apps_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="a SQLite database but not a backrooms one"):
        await SqliteStore.open(path)


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="it is a directory; set BACKROOMS_DB"):
        await SqliteStore.open(tmp_path)


@pytest.mark.parametrize("owner", [True, False])
async def test_a_read_only_directory_is_refused(tmp_path: Path, owner: bool) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: directory permissions do not stop root from writing")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(
            StoreError, match=r"cannot create .*: permission denied; set BACKROOMS_DB"
        ):
            await SqliteStore.open(locked / "backrooms.db", owner=owner)
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("owner", [True, False])
@pytest.mark.parametrize("below", ["backrooms.db", "sub/backrooms.db"])
async def test_a_path_under_a_regular_file_is_refused(
    tmp_path: Path, owner: bool, below: str
) -> None:
    """Fails even for root, so the unwritable-path message is tested everywhere."""
    (tmp_path / "plain").write_text("a file", encoding="utf-8")
    with pytest.raises(
        StoreError, match="a parent of it is a file, not a directory; set BACKROOMS"
    ):
        await SqliteStore.open(tmp_path / "plain" / below, owner=owner)


async def test_space_settings_are_kept_per_space(store: AnyStore) -> None:
    assert await store.space_setting("guild-1", "streaming") is None
    await store.set_space_setting("guild-1", "streaming", "off")
    await store.set_space_setting("guild-1", "streaming", "on")
    await store.set_space_setting("guild-2", "streaming", "off")
    assert await store.space_setting("guild-1", "streaming") == "on"
    assert await store.space_setting("guild-2", "streaming") == "off"

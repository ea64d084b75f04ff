"""What only the SQLite store has to get right: migrations, durability and batched commits, the
owner lock (also across a SIGKILL), and clear errors for bad paths. What every store promises is
in tests/engine/test_store_contract.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backrooms_engine import store as store_module
from backrooms_engine.errors import StoreError
from backrooms_engine.records import ParticipantInfo, Reply, RunRecord, RunSpec, Usage
from backrooms_engine.store import SqliteStore
from backrooms_engine.store import opening as store_opening
from backrooms_engine.store import rows as store_rows
from tests import unprivileged

REPO = Path(__file__).resolve().parents[2]

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


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


async def new_run(store: SqliteStore, **changes: object) -> int:
    record = await store.create_run(spec(**changes), CAST, "BackroomsLogs/x.txt", T0)
    return record.id


# --- SQLite only: schema and durability -----------------------------------------------------------


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


SHIPPED = [(m.version, m.name) for m in store_module.load_migrations(store_module.MIGRATIONS_DIR)]


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


# Opening the store in a child process run as a user whom directory permissions bind, also under
# CI, which runs as root (tests/unprivileged.py).
OPEN_IN_CHILD = """
import asyncio, sys
from pathlib import Path
from backrooms_engine.errors import StoreError
from backrooms_engine.store import SqliteStore

async def main():
    try:
        await SqliteStore.open(Path(sys.argv[1]), owner=sys.argv[2] == "owner")
    except StoreError as exc:
        print(exc)
        return
    print("opened")

asyncio.run(main())
"""


@pytest.mark.parametrize("owner", [True, False])
def test_a_read_only_directory_is_refused(owner: bool) -> None:
    with unprivileged.workspace() as cwd:
        locked = cwd / "locked"
        locked.mkdir()
        unprivileged.give(locked)
        locked.chmod(0o555)
        try:
            argv = [sys.executable, "-c", OPEN_IN_CHILD, str(locked / "backrooms.db")]
            done = subprocess.run(
                unprivileged.command([*argv, "owner" if owner else "viewer"]),
                capture_output=True,
                text=True,
                timeout=60,
                cwd=cwd,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                check=False,
            )
            said = done.stdout.strip()
            assert re.fullmatch(r"cannot create .*: permission denied; set BACKROOMS_DB.*", said), (
                said,
                done.stderr[-2000:],
            )
            assert list(locked.iterdir()) == []
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


# --- SQLite only: the file is a secret ------------------------------------------------------------


def modes(path: Path) -> dict[str, int]:
    """The permission bits of the database and the -wal and -shm files beside it."""
    return {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in path.parent.iterdir()
        if p.name.startswith(path.name)
    }


@pytest.mark.parametrize("owner", [True, False])
async def test_a_new_database_is_readable_by_its_owner_only(tmp_path: Path, owner: bool) -> None:
    """It holds each Discord run's webhook token, which lets anyone post in that channel."""
    path = tmp_path / "data" / "backrooms.db"
    async with await SqliteStore.open(path, owner=owner) as store:
        if owner:
            await store.append_reply(reply(await new_run(store), 0))
        else:
            assert await store.list_runs() == []
        found = modes(path)
    assert {"backrooms.db", "backrooms.db-wal", "backrooms.db-shm"} <= set(found)
    assert found == dict.fromkeys(found, 0o600)


async def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "backrooms.db"
    await (await SqliteStore.open(path)).close()
    path.chmod(0o640)  # shared with a group on purpose
    async with await SqliteStore.open(path) as store:
        await new_run(store)
    assert modes(path)["backrooms.db"] == 0o640

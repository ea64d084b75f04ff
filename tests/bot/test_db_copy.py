"""`backrooms db copy --to URL`: a SQLite archive moved into an empty PostgreSQL store (issue 15,
"Moving in"), as a user meets it: the commands that read the archive print the same from either
store, what only chat surfaces read (posts, metadata, cursors, settings) came along, new runs
continue after the copied ids, a second copy changes nothing and says so, and every refusal is one
line that never shows the URL's password. Against the machine's PostgreSQL (tests/postgres.py:
each test in a schema of its own); commands run as real subprocesses.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backrooms_engine.errors import StoreError
from backrooms_engine.records import ParticipantInfo, Reply, RunEnd, RunSpec, Usage
from backrooms_engine.store import AllPorts, SqliteStore, StoreLocation
from backrooms_engine.store.copy import copy_store
from backrooms_engine.store.postgres import PostgresStore
from tests.helpers import backrooms

T0 = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
CAST = (
    ParticipantInfo(0, "opus", "Claude 1", "claude-opus-5-5", "anthropic"),
    ParticipantInfo(1, "gpt4o", "GPT 2", "gpt-4o-2024-08-06", "openai"),
)
PASSWORD = "hunter2-secret"


def with_password(url: str) -> str:
    """The schema's URL with a password in it (the server trusts local logins, so any works)."""
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def reply(run_id: int, seq: int, cost: float | None = 0.0125) -> Reply:
    return Reply(
        run_id=run_id,
        seq=seq,
        turn=seq // 2 + 1,
        position=seq % 2,
        actor=CAST[seq % 2].actor,
        text=f"run {run_id} says {seq}: 100% café ^C" if seq else f"hello from run {run_id}",
        started_at=T0 + timedelta(seconds=seq),
        finished_at=T0 + timedelta(seconds=seq, milliseconds=250),
        usage=Usage(12 + seq, 40, 1000 if seq else None, 7, cost, cut_off=seq == 3),
    )


async def run_with(store: AllPorts, replies: int, **spec: object) -> int:
    fields: dict[str, object] = {"models": ("opus", "gpt4o"), "max_turns": 5} | spec
    record = await store.create_run(RunSpec(**fields), CAST, f"BackroomsLogs/r{replies}.txt", T0)  # type: ignore[arg-type]
    for seq in range(replies):
        await store.append_reply(reply(record.id, seq))
    return record.id


async def archive(path: Path) -> list[int]:
    """A SQLite archive: an ended run with costs, a paused one, a chat run with posts, metadata
    and its space's settings (stopped), and one left running by a crash (its lease lapsed)."""
    async with await SqliteStore.open(path, lease_seconds=0.001) as store:
        ended = await run_with(store, 4, budget_usd=2.5, token_budget=90000)
        await store.finish_run(ended, RunEnd("max_turns", turns=2, max_turns=2), T0)
        await store.mark_delivered(ended, "log", 4)
        paused = await run_with(store, 2)
        await store.pause_run(paused, T0 + timedelta(minutes=1))
        chat = await run_with(
            store, 3, surface="discord", space="guild-1", place="chan-9", started_by="ada"
        )
        for seq in range(3):
            await store.record_post(chat, seq, 0, "discord", f"msg-{seq}")
        await store.record_post(chat, 2, 1, "discord", "msg-2b")
        await store.set_meta(chat, "discord.thread", "thread-77")
        await store.set_space_setting("guild-1", "streaming", "off")
        await store.mark_delivered(chat, "discord", 3)
        await store.finish_run(chat, RunEnd("stopped", by="ada", turns=2), T0)
        crashed = await run_with(store, 1, max_turns=None)
    await asyncio.sleep(0.05)  # the leases, of a thousandth of a second, have run out
    return [ended, paused, chat, crashed]


async def readings(env: dict[str, str], cwd: Path, ids: list[int]) -> list[tuple[int, str, str]]:
    """What `runs`, `show` and `export --format json` print."""
    commands = [("runs",), *(("show", str(i)) for i in ids[:3])]
    commands += [("export", str(i), "--format", "json") for i in ids]
    return [await backrooms(*command, env=env, cwd=cwd) for command in commands]


async def chat_state(store: AllPorts, run_id: int) -> tuple[object, ...]:
    return (
        await store.posts(run_id, "discord"),
        await store.get_meta(run_id, "discord.thread"),
        await store.delivered(run_id, "discord"),
        await store.space_setting("guild-1", "streaming"),
    )


async def test_the_copy_reads_back_the_same_and_new_runs_follow_the_copied_ids(
    postgres_url: str, tmp_path: Path
) -> None:
    ids = await archive(tmp_path / "backrooms.db")
    sqlite_env = {"BACKROOMS_DB": str(tmp_path / "backrooms.db"), "NO_COLOR": "1"}
    pg_env = {"BACKROOMS_DATABASE_URL": postgres_url, "NO_COLOR": "1"}
    target = with_password(postgres_url)

    code, out, err = await backrooms("db", "copy", "--to", target, env=sqlite_env, cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.startswith(f"copied {tmp_path / 'backrooms.db'} to postgresql://postgres:***@")
    assert "4 runs" in out and "10 replies" in out and "4 posts" in out
    assert PASSWORD not in out
    assert "new runs there start at id 5" in out

    before = await readings(sqlite_env, tmp_path, ids)
    after = await readings(pg_env, tmp_path, ids)
    assert [code for code, _, _ in before] == [0] * len(before)
    assert after == before
    assert "paused" in before[0][1] and "stopped" in before[0][1]
    assert "hello from run 1" in before[1][1] and '"cost_usd": 0.05' in before[4][1]

    async with await SqliteStore.open(tmp_path / "backrooms.db", drives=False) as old:
        kept = await chat_state(old, ids[2])
    location = StoreLocation("postgres", postgres_url)
    async with await PostgresStore.open(location) as new:
        assert await chat_state(new, ids[2]) == kept
        assert kept[0] == {(0, 0): "msg-0", (1, 0): "msg-1", (2, 0): "msg-2", (2, 1): "msg-2b"}
        assert [r.id for r in await new.running_runs()] == [ids[3]]  # waiting to be claimed
        assert await run_with(new, 0) == max(ids) + 1

    # Copied again: the target now also holds a run the archive has not.
    code, out, err = await backrooms("db", "copy", "--to", target, env=sqlite_env, cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [err.strip()]
    assert "already holds other runs (run 5)" in err and PASSWORD not in err


async def test_a_second_copy_changes_nothing_and_says_so(postgres_url: str, tmp_path: Path) -> None:
    await archive(tmp_path / "backrooms.db")
    env = {"BACKROOMS_DATABASE_URL": f"sqlite:///{tmp_path / 'backrooms.db'}"}
    first = await backrooms("db", "copy", "--to", postgres_url, env=env, cwd=tmp_path)
    again = await backrooms("db", "copy", "--to", postgres_url, env=env, cwd=tmp_path)
    assert first[0] == again[0] == 0
    assert again[1].strip().endswith("nothing changed") and "already holds this copy" in again[1]
    pg_env = {"BACKROOMS_DATABASE_URL": postgres_url}
    listed = await backrooms("runs", env=pg_env, cwd=tmp_path)
    assert listed[0] == 0 and len(listed[1].splitlines()) == 1 + 4  # the heading, four runs


async def test_an_archive_that_went_on_after_the_copy_is_not_copied_over_it(
    postgres_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "backrooms.db"
    ids = await archive(path)
    sqlite, pg = StoreLocation("sqlite", str(path)), StoreLocation("postgres", postgres_url)
    await copy_store(sqlite, pg)
    async with await SqliteStore.open(path, drives=False) as store:
        await store.append_reply(reply(ids[3], 1))
    with pytest.raises(StoreError, match=r"holds these runs, but not as they are here"):
        await copy_store(sqlite, pg)
    async with await PostgresStore.open(pg) as new:
        assert len(await new.replies(ids[3])) == 1  # the target kept what it had


async def test_a_run_being_driven_right_now_is_not_copied(
    postgres_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "backrooms.db"
    async with await SqliteStore.open(path) as driving:  # holds a live lease on what it creates
        run_id = await run_with(driving, 1)
        with pytest.raises(StoreError, match=rf"^run {run_id} is being driven .*then copy$"):
            await copy_store(
                StoreLocation("sqlite", str(path)), StoreLocation("postgres", postgres_url)
            )
    async with await PostgresStore.open(StoreLocation("postgres", postgres_url)) as target:
        assert await target.list_runs() == []  # nothing was copied


async def test_the_wrong_kind_of_store_on_either_side_is_refused_in_one_line(
    postgres_url: str, tmp_path: Path
) -> None:
    await archive(tmp_path / "backrooms.db")
    env = {"BACKROOMS_DB": str(tmp_path / "backrooms.db")}
    into_sqlite = await backrooms("db", "copy", "--to", "sqlite:///other.db", env=env, cwd=tmp_path)
    from_pg = await backrooms(
        "db",
        "copy",
        "--to",
        postgres_url,
        env={"BACKROOMS_DATABASE_URL": with_password(postgres_url)},
        cwd=tmp_path,
    )
    missing = await backrooms(
        "db", "copy", "--to", postgres_url, env={"BACKROOMS_DB": "nowhere.db"}, cwd=tmp_path
    )
    unreachable = await backrooms(
        "db",
        "copy",
        "--to",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test",
        env=env,
        cwd=tmp_path,
    )
    for code, out, err in (into_sqlite, from_pg, missing, unreachable):
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert err.startswith("backrooms: error: ") and PASSWORD not in err
    assert "the copy goes into PostgreSQL" in into_sqlite[2]
    assert "a PostgreSQL store; the copy reads a SQLite one" in from_pg[2]
    assert "no SQLite store at nowhere.db" in missing[2]
    assert "cannot connect to postgresql://postgres:***@127.0.0.1:1/test" in unreachable[2]
    assert not (tmp_path / "nowhere.db").exists() and not (tmp_path / "other.db").exists()

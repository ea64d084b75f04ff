"""A run survives its process: SIGKILL mid-run then `backrooms resume` gives the transcript and log
of an uninterrupted run; SIGTERM pauses cleanly (exit 143, shown `paused`, resumable)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from backrooms_engine.errors import StoreError
from backrooms_engine.store import SqliteStore
from tests.conftest import fake_env
from tests.helpers import backrooms, by_message_count, spawn_backrooms


async def _replies_stored(db: Path, at_least: int, limit: float = 30.0) -> int:
    """Poll the database as a reader (no owner lock) until enough replies are committed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        if db.exists():
            try:
                async with await SqliteStore.open(db, owner=False) as store:
                    runs = await store.list_runs()
            except StoreError:  # the owner is still creating or migrating it
                runs = []
            if runs and runs[0].replies >= at_least:
                return runs[0].id
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} replies stored in {limit}s")


async def _final(db: Path, run_id: int):
    async with await SqliteStore.open(db, owner=False) as store:
        return await store.get_run(run_id), await store.replies(run_id)


RUN = ("run", "--lm", "opus", "gpt4o", "--max-turns", "3")


async def test_sigkill_then_resume_equals_an_uninterrupted_run(model_server, tmp_path):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 0.05

    # The reference: the same run left alone.
    calm = tmp_path / "calm"
    calm.mkdir()
    code, _, err = await backrooms(*RUN, env=fake_env(model_server, calm), cwd=calm)
    assert code == 0, err
    ref_run, ref_replies = await _final(calm / "backrooms.db", 1)

    # The same run, killed after its second committed reply, then resumed.
    hurt = tmp_path / "hurt"
    hurt.mkdir()
    env = fake_env(model_server, hurt)
    proc = await spawn_backrooms(*RUN, env=env, cwd=hurt)
    run_id = await _replies_stored(hurt / "backrooms.db", 2)
    proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), 10)
    code, out, err = await backrooms("resume", str(run_id), env=env, cwd=hurt)
    assert code == 0, err

    run, replies = await _final(hurt / "backrooms.db", run_id)
    assert [(r.seq, r.actor, r.text) for r in replies] == [
        (r.seq, r.actor, r.text) for r in ref_replies
    ]
    assert run.end == ref_run.end and run.end.reason == "max_turns"
    assert Path(run.log_path).read_bytes() == Path(ref_run.log_path).read_bytes()
    # The resumed process shows each reply it had not shown before at most once.
    for r in replies:
        assert out.count(f"{r.text}\n") <= 1


async def test_sigterm_pauses_the_run_and_exits_143(model_server, tmp_path):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 0.1
    env = fake_env(model_server, tmp_path)
    proc = await spawn_backrooms(*RUN, env=env, cwd=tmp_path)
    run_id = await _replies_stored(tmp_path / "backrooms.db", 1)
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 25)
    assert proc.returncode == 143, err.decode()
    assert f"backrooms resume {run_id}" in err.decode()

    run, replies = await _final(tmp_path / "backrooms.db", run_id)
    assert run.status == "paused" and run.end is None  # resumable
    assert "Conversation" not in Path(run.log_path).read_text()

    model_server.chunk_delay = 0
    code, _, err = await backrooms("resume", str(run_id), env=env, cwd=tmp_path)
    assert code == 0, err
    run, replies = await _final(tmp_path / "backrooms.db", run_id)
    assert run.end.reason == "max_turns" and len(replies) == 6
    assert len({r.seq for r in replies}) == 6

"""`backrooms stop RUN` from another process, as a user meets it: a run driven by `backrooms run`
in one terminal is stopped from a second one; a run that has ended is not stopped again; a run
whose driver was killed is ended by the stop itself. Real processes, the fake model server, one
folder's database; every wait bounded."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from backrooms_engine.logfile import transcript_text
from backrooms_engine.records import RunEnd
from backrooms_engine.store import SqliteStore, StoreLocation
from backrooms_engine.store.postgres import PostgresStore
from tests.conftest import fake_env
from tests.helpers import backrooms, spawn_backrooms
from tests.postgres import fresh_schema

OPUS = "claude-opus-5-5"
SLOW = ("--lm", "opus", "gpt4o", "--max-turns", "20")
HEADER = b"### GPT4o 2 ###"  # the second reply has begun: the first one is committed
STOPPED = "Conversation stopped by the command line after 0 turns."


async def _stored(tmp_path: Path) -> tuple[RunEnd | None, list[str], str]:
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        run = await store.get_run(1)
        replies = await store.replies(1)
    return run.end, [r.text for r in replies], transcript_text(replies, run.end)


def _slow(model_server) -> None:
    """The first reply at once, every other one ten seconds long: a run of minutes."""
    model_server.chunk_count, model_server.chunk_delay = 40, 0.25
    model_server.queue_reply(OPUS, "first reply", chunk_delay=0.0)


async def _driven(env: dict[str, str], tmp_path: Path) -> asyncio.subprocess.Process:
    """`backrooms run` of a run that would take minutes, once its second reply streams."""
    run = await spawn_backrooms("run", *SLOW, env=env, cwd=tmp_path)
    assert run.stdout is not None
    await asyncio.wait_for(run.stdout.readuntil(HEADER), 60)
    return run


async def test_stop_from_another_process_ends_the_run_its_driver_drives(model_server, tmp_path):
    _slow(model_server)
    env = fake_env(model_server, tmp_path)
    run = await _driven(env, tmp_path)
    try:
        code, out, err = await backrooms("stop", "1", env=env, cwd=tmp_path)
        ended_after_stop = await _stored(tmp_path)
        assert run.stdout is not None
        rest, run_err = await asyncio.wait_for(run.communicate(), 60)
    finally:
        if run.returncode is None:
            run.kill()
            await run.wait()
    assert (code, out, err) == (0, f"run 1: {STOPPED}\n", "")
    end, texts, log_text = await _stored(tmp_path)
    assert end == RunEnd("stopped", by="the command line", turns=0)
    assert len(texts) == 1  # the reply in flight when the stop came is not kept
    assert ended_after_stop[:2] == (end, texts)  # stored once the command had answered
    assert run.returncode == 0  # a run that was stopped ended well (README, "Exit status")
    assert rest.decode().endswith(f"\n{STOPPED}\n")  # the terminal printed the closing line
    assert f"run 1: {STOPPED}" in run_err.decode()
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        log_path = (await store.get_run(1)).log_path
    assert Path(log_path).read_text(encoding="utf-8") == log_text


async def test_stop_of_a_run_that_has_ended_says_how_it_ended(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    assert (
        await backrooms("run", "--lm", "opus", "gpt4o", "--max-turns", "1", env=env, cwd=tmp_path)
    )[0] == 0
    code, out, err = await backrooms("stop", "1", env=env, cwd=tmp_path)
    assert (code, err) == (1, "")
    assert out == "run 1 is not running: Reached maximum number of turns (1). Conversation ended.\n"
    end, texts, _ = await _stored(tmp_path)
    assert end is not None and end.reason == "max_turns" and len(texts) == 2


async def test_stop_of_a_run_whose_driver_was_killed_ends_it(model_server, tmp_path):
    _slow(model_server)
    env = fake_env(model_server, tmp_path)
    run = await _driven(env, tmp_path)
    os.kill(run.pid, signal.SIGKILL)  # its lease is left behind, live by the clock
    await asyncio.wait_for(run.wait(), 30)
    code, out, err = await backrooms("stop", "1", env=env, cwd=tmp_path)
    assert (code, out, err) == (0, f"run 1: {STOPPED}\n", "")
    end, texts, log_text = await _stored(tmp_path)
    assert end == RunEnd("stopped", by="the command line", turns=0) and len(texts) == 1
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        log_path = (await store.get_run(1)).log_path
    assert Path(log_path).read_text(encoding="utf-8") == log_text  # closed as if it ran here


async def test_stop_of_an_unknown_run_is_one_line_and_creates_no_database(tmp_path):
    env = {"BACKROOMS_DB": str(tmp_path / "backrooms.db")}
    code, out, err = await backrooms("stop", "9", env=env, cwd=tmp_path)
    assert (code, out) == (2, "")
    assert err == "backrooms: error: no run with id 9; `backrooms runs` lists them\n"
    assert not (tmp_path / "backrooms.db").exists()
    code, _, err = await backrooms("stop", "nine", env=env, cwd=tmp_path)
    assert code == 2 and "expected a whole number, got 'nine'" in err and "Traceback" not in err


async def test_stop_from_another_process_on_postgresql(model_server, tmp_path):
    _slow(model_server)
    async with fresh_schema() as url:
        env = {**fake_env(model_server, tmp_path), "BACKROOMS_DATABASE_URL": url}
        del env["BACKROOMS_DB"]
        run = await _driven(env, tmp_path)
        try:
            code, out, err = await backrooms("stop", "1", env=env, cwd=tmp_path)
            assert await asyncio.wait_for(run.wait(), 60) == 0
        finally:
            if run.returncode is None:
                run.kill()
                await run.wait()
        async with await PostgresStore.open(StoreLocation("postgres", url), owner=False) as store:
            end = (await store.get_run(1)).end
            texts = [r.text for r in await store.replies(1)]
    assert (code, out, err) == (0, f"run 1: {STOPPED}\n", "")
    assert end == RunEnd("stopped", by="the command line", turns=0) and len(texts) == 1

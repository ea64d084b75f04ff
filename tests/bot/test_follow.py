"""`backrooms show RUN --follow` as a user meets it: one process drives a run (a `backrooms run`, a
`worker`), another follows it through the store and prints it live, ending with it. Real
processes against the fake model server, on SQLite and on PostgreSQL; every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backrooms_engine.ports import LiveLine
from backrooms_engine.records import ParticipantInfo, Reply, RunEnd, RunRecord, RunSpec, now
from backrooms_engine.store import open_store, store_location
from bot.following import NOT_STORED, STARTED_OVER, Transcript
from bot.terminal import TerminalPrinter
from tests.conftest import fake_env
from tests.helpers import backrooms, spawn_backrooms
from tests.postgres import fresh_schema

WORDS = " ".join(f"word{i}" for i in range(30))
LIMIT = 90.0  # for anything a loaded machine may be slow at
RUN = ("run", "--lm", "opus", "gpt4o", "--max-turns", "1")


def _slow(model_server) -> None:
    """Six seconds a reply: the driver writes its live text about six times during each."""
    model_server.set_responder(lambda api, body: WORDS)
    model_server.chunk_count, model_server.chunk_delay = 30, 0.2


@contextlib.asynccontextmanager
async def _store_env(dialect: str, model_server, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    env = fake_env(model_server, tmp_path)
    if dialect == "sqlite":
        yield env
        return
    async with fresh_schema() as url:
        del env["BACKROOMS_DB"]  # both set is an error
        yield {**env, "BACKROOMS_DATABASE_URL": url}


async def _stop(*procs) -> None:
    for proc in procs:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _started(run) -> None:
    """Wait until the driving `backrooms run` is streaming its first reply (the run is stored)."""
    await asyncio.wait_for(run.stdout.readuntil(b"### Claude 1 ###"), LIMIT)


async def _read_following(proc, env: dict[str, str]) -> tuple[str, bool]:
    """The follower's stdout to its end, and whether it printed text of a reply before the store
    held that reply: after each read, the replies it has begun printing are counted against the
    replies stored at that moment."""
    out, live = "", False
    async with await open_store(store_location(env), owner=False) as store:
        while chunk := await proc.stdout.read(4096):
            out += chunk.decode()
            begun = out.count("\n### ")
            text_under_last = out.rsplit("###\n", 1)[-1].strip()
            if not live and begun and text_under_last:
                live = (await store.get_run(1)).replies < begun
    return out, live


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_follow_prints_a_run_of_another_process_live_and_ends_with_it(
    dialect, model_server, tmp_path
):
    _slow(model_server)
    async with _store_env(dialect, model_server, tmp_path) as env:
        run = follower = None
        try:
            run = await spawn_backrooms(*RUN, env=env, cwd=tmp_path)
            await _started(run)
            follower = await spawn_backrooms("show", "1", "--follow", env=env, cwd=tmp_path)
            out, live = await asyncio.wait_for(_read_following(follower, env), LIMIT)
            err = (await asyncio.wait_for(follower.stderr.read(), LIMIT)).decode()
            code = await asyncio.wait_for(follower.wait(), LIMIT)  # by itself, as the run ended
            assert await asyncio.wait_for(run.wait(), LIMIT) == 0
        finally:
            await _stop(run, follower)
        shown = await backrooms("show", "1", env=env, cwd=tmp_path)
    assert code == 0 and "Traceback" not in err, err
    assert shown[0] == 0
    assert out == shown[1]  # the whole transcript, no text twice, none missing, and its end line
    assert out.count(WORDS) == 2 and out.endswith("Conversation ended.\n")
    assert live, "no text was printed before its reply was stored"
    assert err.splitlines()[-1] == shown[2].splitlines()[-1]  # the cost line, as show says it
    assert err.splitlines()[-1].startswith("cost: ")


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_a_signal_ends_the_follower_with_its_status_and_the_run_goes_on(
    sig, status, model_server, tmp_path
):
    _slow(model_server)
    env = fake_env(model_server, tmp_path)
    run = follower = None
    try:
        run = await spawn_backrooms(*RUN, env=env, cwd=tmp_path)
        await _started(run)
        follower = await spawn_backrooms("show", "1", "--follow", env=env, cwd=tmp_path)
        await asyncio.wait_for(follower.stdout.readuntil(b"### "), LIMIT)  # it is following
        follower.send_signal(sig)
        _, err = await asyncio.wait_for(follower.communicate(), LIMIT)
        assert run.returncode is None  # the run is its driver's: a follower leaving ends nothing
        model_server.chunk_delay = 0.0
        assert await asyncio.wait_for(run.wait(), LIMIT) == 0
    finally:
        await _stop(run, follower)
    assert follower.returncode == status
    assert "Traceback" not in err.decode()
    assert err.decode().endswith("backrooms: stopped following run 1; it goes on\n")


async def test_follow_of_a_queued_run_says_so_and_follows_the_worker_that_claims_it(
    model_server, tmp_path
):
    env = {**fake_env(model_server, tmp_path), "BACKROOMS_OFFLINE_DELAY": "0.01"}
    code, out, _ = await backrooms(
        "start", "--lm", "offline", "offline", "--max-turns", "2", env=env, cwd=tmp_path
    )
    assert (code, out) == (0, "run 1 queued\n")
    follower = worker = None
    try:
        follower = await spawn_backrooms("show", "1", "--follow", env=env, cwd=tmp_path)
        said = await asyncio.wait_for(follower.stderr.readline(), LIMIT)
        assert said.decode() == (
            "run 1 is queued: waiting for a driving process (backrooms worker, or backrooms bot)\n"
        )
        worker = await spawn_backrooms("worker", env=env, cwd=tmp_path)
        followed, err = await asyncio.wait_for(follower.communicate(), LIMIT)
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.communicate(), LIMIT)
    finally:
        await _stop(follower, worker)
    assert follower.returncode == 0 and "Traceback" not in err.decode()
    assert err.decode().startswith("run 1 is driven by ")  # once claimed, as the next line
    shown = await backrooms("show", "1", env=env, cwd=tmp_path)
    assert followed.decode() == shown[1] and "Reached maximum number of turns (2)" in shown[1]


async def test_follow_goes_on_when_another_process_takes_the_run_over(model_server, tmp_path):
    # The driver dies mid-reply; a worker claims the run once its lease lapses and streams that
    # reply again from its start: the follower prints none of the words it already printed.
    _slow(model_server)
    model_server.chunk_delay = 0.3  # nine seconds: the kill lands inside the first reply
    env = {**fake_env(model_server, tmp_path), "BACKROOMS_LEASE_SECONDS": "2"}
    run = follower = worker = None
    try:
        run = await spawn_backrooms(*RUN, env=env, cwd=tmp_path)
        await _started(run)
        follower = await spawn_backrooms("show", "1", "--follow", env=env, cwd=tmp_path)
        head = await asyncio.wait_for(follower.stdout.readuntil(b"word3 "), LIMIT)
        run.send_signal(signal.SIGKILL)
        await asyncio.wait_for(run.wait(), LIMIT)
        async with await open_store(store_location(env), owner=False) as store:
            assert (await store.get_run(1)).replies == 0  # what it printed was live text only
        said = await asyncio.wait_for(follower.stderr.readline(), LIMIT)
        assert said == b"run 1 is waiting to be claimed: no process drives it right now\n"
        model_server.chunk_delay = 0.1
        worker = await spawn_backrooms("worker", env=env, cwd=tmp_path)
        rest, err = await asyncio.wait_for(follower.communicate(), LIMIT)
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.communicate(), LIMIT)
    finally:
        await _stop(run, follower, worker)
    assert follower.returncode == 0 and "Traceback" not in err.decode()
    assert err.decode().startswith("run 1 is driven by ")
    shown = await backrooms("show", "1", env=env, cwd=tmp_path)
    assert shown[1].startswith("run 1 started") and shown[1].count(WORDS) == 2
    assert (head + rest).decode() == shown[1]  # no word twice, none missing


async def test_follow_of_an_ended_run_is_show(tmp_path):
    env = {"BACKROOMS_DB": str(tmp_path / "backrooms.db"), "NO_COLOR": "1"}
    ran = await backrooms(
        "run", "--lm", "offline", "offline", "--max-turns", "1", env=env, cwd=tmp_path
    )
    assert ran[0] == 0, ran[2]
    shown = await backrooms("show", "1", env=env, cwd=tmp_path)
    followed = await backrooms("show", "1", "--follow", env=env, cwd=tmp_path, limit=LIMIT)
    assert followed == shown and shown[0] == 0 and "Conversation ended." in shown[1]


async def test_follow_of_a_paused_run_prints_it_and_says_how_to_resume(model_server, tmp_path):
    _slow(model_server)
    env = fake_env(model_server, tmp_path)
    run = await spawn_backrooms(*RUN, env=env, cwd=tmp_path)
    try:
        await _started(run)
        run.send_signal(signal.SIGTERM)  # a terminal run pauses on SIGTERM
        assert await asyncio.wait_for(run.wait(), LIMIT) == 143
    finally:
        await _stop(run)
    shown = await backrooms("show", "1", env=env, cwd=tmp_path)
    code, out, err = await backrooms("show", "1", "--follow", env=env, cwd=tmp_path, limit=LIMIT)
    assert (code, out) == (0, shown[1])  # at once: a paused run waits for a person
    assert err.splitlines() == [
        "run 1 is paused: nobody drives it until `backrooms resume 1`",
        shown[2].splitlines()[-1],
    ]


async def test_follow_of_an_unknown_run_is_one_line_and_exits_2(tmp_path):
    env = {"BACKROOMS_DB": str(tmp_path / "backrooms.db")}
    unknown = "backrooms: error: no run with id 7; `backrooms runs` lists them\n"
    assert await backrooms("show", "7", "--follow", env=env, cwd=tmp_path) == (2, "", unknown)
    assert not (tmp_path / "backrooms.db").exists()  # a viewer creates no database
    ran = await backrooms(
        "run", "--lm", "offline", "offline", "--max-turns", "1", env=env, cwd=tmp_path
    )
    assert ran[0] == 0, ran[2]
    assert await backrooms("show", "7", "-f", env=env, cwd=tmp_path) == (2, "", unknown)


# -- what the printer is given as the live text and the stored reply disagree (in one process)


CAST = tuple(ParticipantInfo(i, "offline", f"Offline {i + 1}", "o", "offline") for i in (0, 1))
RUNNING = RunRecord(1, RunSpec(("offline", "offline")), CAST, "running", now(), "log.txt")


def _transcript() -> tuple[Transcript, io.StringIO]:
    out = io.StringIO()
    return Transcript(TerminalPrinter({}, stream=out, colour=False), RUNNING), out


def _reply(seq: int, text: str) -> Reply:
    return Reply(1, seq, seq // 2 + 1, seq % 2, f"Offline {seq % 2 + 1}", text, now(), now())


async def test_live_text_that_begins_again_is_not_printed_twice():
    transcript, out = _transcript()
    for text in ("one two", "one", "one two three"):  # a retry that says the same again
        await transcript.live(LiveLine(0, "Offline 1", text))
    await transcript.finished([_reply(0, "one two three four")])
    assert out.getvalue() == "\n### Offline 1 ###\none two three four\n"


async def test_live_text_that_changes_is_noted_and_printed_anew():
    transcript, out = _transcript()
    await transcript.live(LiveLine(0, "Offline 1", "one two"))
    await transcript.live(LiveLine(0, "Offline 1", "uno"))  # another attempt, other words
    await transcript.finished([_reply(0, "u")])  # finished shorter than shown: shown again
    await transcript.live(LiveLine(0, "Offline 1", "stale: reply 0 is stored"))
    await transcript.live(LiveLine(1, "Offline 2", "half a rep"))
    await transcript.end(dataclasses.replace(RUNNING, end=RunEnd("stopped", by="x")))
    assert out.getvalue() == (
        f"\n### Offline 1 ###\none two\n{STARTED_OVER}\nuno\n{STARTED_OVER}\nu\n"
        f"\n### Offline 2 ###\nhalf a rep\n{NOT_STORED.format(how='ended')}\n"
        "\nConversation stopped by x after 0 turns.\n"
    )

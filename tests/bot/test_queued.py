"""`backrooms serve` drives nothing (issue 14 item 2): its start form stores a queued run, the
page says who will drive it, and a `backrooms bot` on the same folder claims it and drives it to
the same transcript as an uninterrupted run. Real processes against the fake model server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from backrooms_engine.logfile import transcript_text
from backrooms_engine.records import ParticipantInfo, RunSpec
from backrooms_engine.store import SqliteStore
from tests.bot.test_shared_store import _free_port, _page, _page_with
from tests.conftest import fake_env
from tests.helpers import backrooms, by_message_count, spawn_backrooms

TOKEN = "queue token"
FORM = {"models": "opus gpt4o", "max_turns": "2", "token": TOKEN}


async def _stop(*procs) -> None:
    for proc in procs:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _ended(db: Path, run_id: int, limit: float = 90) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        async with await SqliteStore.open(db, owner=False) as store:
            if (await store.get_run(run_id)).status == "ended":
                return
        assert loop.time() < deadline, f"run {run_id} did not end in {limit} s"
        await asyncio.sleep(0.3)


async def test_serve_queues_a_run_and_backrooms_bot_claims_and_drives_it(model_server, tmp_path):
    model_server.set_responder(by_message_count)
    env = {**fake_env(model_server, tmp_path), "BACKROOMS_WEB_TOKEN": TOKEN}
    port = _free_port()
    serve = await spawn_backrooms(
        "serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=tmp_path
    )
    bot = None
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            await _page(http, "/")
            async with http.post("/runs", data=FORM, allow_redirects=False) as response:
                assert response.status == 303
                assert response.headers["location"] == "/runs/1"
            page = await _page(http, "/runs/1")
            assert "state-queued" in page
            assert "waiting for a driving process (backrooms bot, or backrooms worker)" in page
            assert "/runs/1" in await _page(http, "/?status=queued")
            await asyncio.sleep(1.5)  # serve claims nothing, however long it is left alone
            assert model_server.requests == []
            code, out, _ = await backrooms("export", "1", "--format", "json", env=env, cwd=tmp_path)
            assert code == 0
            exported = json.loads(out)
            assert (exported["status"], exported["end"]) == ("queued", None)
            code, out, _ = await backrooms("runs", env=env, cwd=tmp_path)
            assert code == 0 and "queued" in out.splitlines()[1]

            bot_env = {**env, "PORT": str(_free_port())}
            bot = await spawn_backrooms("bot", env=bot_env, cwd=tmp_path)
            await _ended(tmp_path / "backrooms.db", 1)
            ended = await _page_with(http, "/runs/1", "Reached maximum number of turns (2)")
            assert "state-queued" not in ended
    finally:
        await _stop(serve, bot)

    alone = tmp_path / "alone"
    alone.mkdir()
    code, _, err = await backrooms(
        "run",
        "--lm",
        "opus",
        "gpt4o",
        "--max-turns",
        "2",
        env=fake_env(model_server, alone),
        cwd=alone,
    )
    assert code == 0, err
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        run = await store.get_run(1)
        replies = await store.replies(1)
    async with await SqliteStore.open(alone / "backrooms.db", owner=False) as store:
        uninterrupted = await store.replies(1)
    assert run.status == "ended" and run.end is not None and run.end.reason == "max_turns"
    assert [(r.actor, r.text) for r in replies] == [(r.actor, r.text) for r in uninterrupted]
    assert Path(run.log_path).read_text(encoding="utf-8") == transcript_text(replies, run.end)


async def test_a_refused_start_on_serve_stores_nothing_and_says_one_line(model_server, tmp_path):
    env = {**fake_env(model_server, tmp_path), "BACKROOMS_WEB_TOKEN": TOKEN}
    env.pop("OPENAI_API_KEY")
    port = _free_port()
    serve = await spawn_backrooms(
        "serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=tmp_path
    )
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            await _page(http, "/")
            headers = {"authorization": f"Bearer {TOKEN}"}
            for models, message in [
                ("opus nosuch", "unknown model 'nosuch'"),
                ("opus gpt4o", "missing API key: set OPENAI_API_KEY"),
            ]:
                body = {"models": models, "max_turns": "2"}
                async with http.post("/runs", json=body, headers=headers) as response:
                    assert response.status == 400
                    answer = await response.text()
                assert message in answer and answer.count("\n") == 1
    finally:
        await _stop(serve)
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        assert await store.list_runs() == []


async def test_runs_lists_queued_and_waiting_runs_as_such(tmp_path):
    cast = [
        ParticipantInfo(i, "offline", f"Offline {i + 1}", "offline-markov", "offline")
        for i in (0, 1)
    ]
    spec = RunSpec(models=("offline", "offline"), max_turns=2, surface="web")
    # Stored by a process that drives nothing: nobody holds a lease on either.
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        await store.create_run(spec, cast, "q.txt", datetime.now(UTC), queued=True)
        await store.create_run(spec, cast, "w.txt", datetime.now(UTC))
    code, out, err = await backrooms(
        "runs", env={"BACKROOMS_DB": str(tmp_path / "backrooms.db")}, cwd=tmp_path
    )
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert " queued " in rows["1"] and " waiting " in rows["2"]

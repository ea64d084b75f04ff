"""Several processes on one folder's database, as a user meets them: `backrooms serve` lists a run
that `backrooms run` drives in another terminal and shows its text live as it streams; two
`backrooms run` work side by side. Real processes against the fake model server; bounded waits."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import aiohttp

from backrooms_engine.logfile import transcript_text
from backrooms_engine.store import SqliteStore
from tests.conftest import fake_env
from tests.helpers import by_message_count, spawn_backrooms

WORDS = " ".join(f"word{i}" for i in range(30))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _page(http: aiohttp.ClientSession, url: str, limit: float = 60) -> str:
    """GET `url` once the server answers (it may still be starting)."""
    async with asyncio.timeout(limit):
        while True:
            try:
                async with http.get(url) as response:
                    return await response.text()
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.2)


async def _page_with(http: aiohttp.ClientSession, url: str, needle: str) -> str:
    """GET `url` again and again (another process changes it) until it holds `needle`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while needle not in (text := await _page(http, url)):
        assert loop.time() < deadline, f"{needle!r} never appeared on {url}"
        await asyncio.sleep(0.2)
    return text


async def _events(http: aiohttp.ClientSession, url: str, limit: float = 60) -> list[tuple]:
    """The server-sent events of a run page until the stream ends: (kind, data)."""
    found: list[tuple] = []
    kind = None
    async with asyncio.timeout(limit), http.get(url) as response:
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                found.append((kind, json.loads(line[6:])))
    return found


async def test_serve_lists_and_streams_a_run_driven_by_backrooms_run(model_server, tmp_path):
    model_server.set_responder(lambda api, body: WORDS)
    model_server.chunk_count, model_server.chunk_delay = 30, 0.1  # three seconds a reply
    env = fake_env(model_server, tmp_path)
    port = _free_port()
    serve = await spawn_backrooms(
        "serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=tmp_path
    )
    run = None
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            await _page(http, "/")
            run = await spawn_backrooms(
                "run", "--lm", "opus", "gpt4o", "--max-turns", "1", env=env, cwd=tmp_path
            )
            index = await _page_with(http, "/", "/runs/1")
            assert "state-live" in index  # listed while it streams, as live
            assert 'data-live="1"' in await _page(http, "/runs/1")
            events = await _events(http, "/runs/1/events")
            code = await asyncio.wait_for(run.wait(), 60)
    finally:
        for proc in (serve, run):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert code == 0
    kinds = [kind for kind, _ in events]
    assert "delta" in kinds[: kinds.index("reply")]  # text arrived before the reply finished
    assert kinds[-1] == "end" and events[-1][1]["label"] == "turn limit"
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        stored = [r.text for r in await store.replies(1)]
    assert [data["text"] for kind, data in events if kind == "reply"][-1] == stored[-1]
    streamed = "".join(d["text"] for kind, d in events if kind == "delta" and d["seq"] == 1)
    assert WORDS.startswith(streamed) and streamed  # the second reply, live, in order


async def test_two_runs_side_by_side_in_one_folder(model_server, tmp_path):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 0.05
    env = fake_env(model_server, tmp_path)
    procs = [
        await spawn_backrooms(
            "run", "--lm", "opus", "gpt4o", "--max-turns", "2", env=env, cwd=tmp_path
        )
        for _ in range(2)
    ]
    try:
        results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 90)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert [p.returncode for p in procs] == [0, 0], [err.decode() for _, err in results]
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        runs = await store.list_runs()
        assert sorted(r.id for r in runs) == [1, 2]
        for run in runs:
            replies = await store.replies(run.id)
            assert [r.actor for r in replies] == ["Claude 1", "GPT4o 2"] * 2
            assert run.end is not None and run.end.reason == "max_turns"
            log = Path(run.log_path).read_text(encoding="utf-8")
            assert log == transcript_text(replies, run.end)


async def test_resume_of_a_run_another_process_drives_names_that_process(model_server, tmp_path):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 3.0  # the first run is still going while the resume is tried
    env = fake_env(model_server, tmp_path)
    first = await spawn_backrooms(
        "run", "--lm", "opus", "gpt4o", "--max-turns", "1", env=env, cwd=tmp_path
    )
    try:
        assert first.stdout is not None
        await asyncio.wait_for(first.stdout.readuntil(b"### Claude 1 ###"), 60)
        resume = await spawn_backrooms("resume", "1", env=env, cwd=tmp_path)
        out, err = await asyncio.wait_for(resume.communicate(), 60)
        assert first.returncode is None, "the first run ended before the resume was refused"
        model_server.chunk_delay = 0.0
        assert await asyncio.wait_for(first.wait(), 60) == 0
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    assert resume.returncode == 2 and out == b""
    assert f"run 1 is being driven by another process (pid {first.pid} on ".encode() in err
    assert b"Traceback" not in err
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        replies = await store.replies(1)
        run = await store.get_run(1)
    assert [r.actor for r in replies] == ["Claude 1", "GPT4o 2"]  # the first run lost nothing
    assert Path(run.log_path).read_text(encoding="utf-8") == transcript_text(replies, run.end)

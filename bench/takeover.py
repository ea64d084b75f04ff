"""Benchmark runs shared between processes on one SQLite file (issue 14) or one PostgreSQL store
(issue 15): takeover and live view.

    python bench/takeover.py [--repeat 3] [--lease 10] [--database-url postgresql://...]

With `--database-url` (a PostgreSQL server; each try gets a schema of its own, dropped after)
the takeovers run with both processes on that store through BACKROOMS_DATABASE_URL; the
live-view figure is measured on SQLite either way.

What it prints, each over `--repeat` tries (real processes, the Discord emulator and the fake
model server of tests/fakes, all on 127.0.0.1):

1. takeover after SIGKILL: two `backrooms discord` on one folder; the one driving a run is killed
   mid-reply; the time from the SIGKILL to the next reply committed by the other (polled in the
   database every 10 ms). On one machine a dead holder is seen at once (its pid is gone), so this
   is the claim loop's period plus one reply (the fake model's reply time is printed beside it).
2. takeover after SIGSTOP: the same with the driver frozen instead: it is alive, so the other
   waits for the lease (`--lease` seconds) to lapse.
3. live-view delay: `backrooms serve` beside a `backrooms run`; for every piece of streamed text,
   the time it reached the page's event stream minus the time the run's own terminal printed it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import psycopg
from psycopg import sql

from tests.conftest import fake_env
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.model_server import FakeModelServer
from tests.helpers import by_message_count, spawn_backrooms

REPLY_CHUNKS, CHUNK_DELAY = 5, 0.02  # the fake model's reply: about 0.1 s


def _replies(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT count(*) FROM replies").fetchone()[0]


@contextmanager
def _store(folder: Path, server: str | None) -> Iterator[tuple[dict[str, str], Callable[[], int]]]:
    """The settings naming the store both processes share, and a count of its replies: the
    folder's SQLite file, or a new schema on the PostgreSQL server `server`."""
    if server is None:
        db = folder / "backrooms.db"
        yield {"BACKROOMS_DB": str(db)}, lambda: _replies(db)
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    joiner = "&" if "?" in server else "?"
    url = f"{server}{joiner}options=-csearch_path%3D{schema}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            with psycopg.connect(url, autocommit=True) as reader:

                def count() -> int:
                    try:
                        return int(reader.execute("SELECT count(*) FROM replies").fetchone()[0])
                    except psycopg.errors.UndefinedTable:
                        return 0  # not migrated yet

                yield {"BACKROOMS_DATABASE_URL": url}, count
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def _ready(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(90):
        while b"discord surface ready" not in await proc.stdout.readline():
            pass


async def _until(predicate, limit: float) -> float:
    """Poll every 10 ms until `predicate()`; the moment it held."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("not reached")
        await asyncio.sleep(0.01)
    return time.monotonic()


async def takeover(
    models: FakeModelServer, how: signal.Signals, lease: float, server: str | None
) -> float:
    """Seconds from the signal to the other process's first committed reply."""
    models.set_responder(by_message_count)
    models.chunk_count, models.chunk_delay = REPLY_CHUNKS, CHUNK_DELAY
    with (
        tempfile.TemporaryDirectory() as scratch,
        _store(Path(scratch), server) as (store, replies),
    ):
        folder = Path(scratch)
        async with FakeDiscord() as fake:
            guild = fake.add_guild("Bench")
            channel = fake.add_text_channel(guild, "relay")
            env = fake_env(models, folder)
            env.pop("BACKROOMS_DB")
            env |= store | {
                "DISCORD_TOKEN": fake.token,
                "DISCORD_API_BASE_URL": fake.rest_base,
                "DISCORD_GATEWAY_URL": fake.gateway_url,
                "DISCORD_GUILD_IDS": str(guild),
                "DISCORD_STREAMING": "false",
                "BACKROOMS_LEASE_SECONDS": str(lease),
            }
            procs = [await spawn_backrooms("discord", env=env, cwd=folder, merge_stderr=True)]
            try:
                await _ready(procs[0])
                args = {"models": "opus gpt4o", "max_turns": 10}
                await fake.send_interaction(
                    guild, channel, fake.owner_user_id, "backrooms", "start", args
                )
                await _until(lambda: replies() >= 2, 60)
                models.chunk_delay = 5.0  # hold the driver mid-reply while the other starts
                procs.append(
                    await spawn_backrooms("discord", env=env, cwd=folder, merge_stderr=True)
                )
                await _ready(procs[1])
                count = replies()
                procs[0].send_signal(how)
                signalled = time.monotonic()
                models.chunk_delay = CHUNK_DELAY
                committed = await _until(lambda: replies() > count, 60 + lease)
                return committed - signalled
            finally:
                for proc in procs:
                    if proc.returncode is None:
                        proc.kill()  # SIGKILL ends a stopped process too
                        await proc.wait()


async def live_delays(models: FakeModelServer) -> list[float]:
    """For each streamed piece: when the page's stream had it minus when the terminal printed it."""
    words = " ".join(f"w{i:03d}" for i in range(60))
    models.set_responder(lambda api, body: words)
    models.chunk_count, models.chunk_delay = 60, 0.1  # six seconds of streaming a reply
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        env = fake_env(models, folder)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        serve = await spawn_backrooms(
            "serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=folder
        )
        run = None
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                await _answering(http)
                run = await spawn_backrooms(
                    "run", "--lm", "opus", "gpt4o", "--max-turns", "1", env=env, cwd=folder
                )
                printed: dict[str, float] = {}
                reading = asyncio.create_task(_stamp_words(run, printed))
                await _until(lambda: bool(printed), 60)
                paged = await _stream_words(http)
                await asyncio.wait_for(reading, 60)
        finally:
            for proc in (serve, run):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    return [paged[w] - printed[w] for w in paged if w in printed]


async def _answering(http: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(60):
        while True:
            try:
                async with http.get("/") as response:
                    await response.read()
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)


async def _stamp_words(proc: asyncio.subprocess.Process, seen: dict[str, float]) -> None:
    assert proc.stdout is not None
    while chunk := await proc.stdout.read(256):
        for word in chunk.decode(errors="replace").split():
            seen.setdefault(word, time.monotonic())


async def _stream_words(http: aiohttp.ClientSession) -> dict[str, float]:
    seen: dict[str, float] = {}
    kind = None
    async with asyncio.timeout(90), http.get("/runs/1/events") as response:
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "delta":
                for word in json.loads(line[6:])["text"].split():
                    seen.setdefault(word, time.monotonic())
    return seen


def _summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.2f} s, min {min(values):.2f}, max {max(values):.2f}"
        f" (n={len(values)})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lease", type=float, default=10.0, help="BACKROOMS_LEASE_SECONDS")
    parser.add_argument(
        "--database-url", help="a PostgreSQL server to run the takeovers on (default: SQLite)"
    )
    parser.add_argument("--skip-live", action="store_true", help="only the takeovers")
    args = parser.parse_args()
    server, lease = args.database_url, args.lease
    on = "PostgreSQL" if server else "SQLite"
    async with FakeModelServer() as models:
        killed = [await takeover(models, signal.SIGKILL, lease, server) for _ in range(args.repeat)]
        print(f"{on}: takeover after SIGKILL (lease {lease:g} s): {_summary(killed)}")
        print(f"  of which the new owner's reply itself: about {REPLY_CHUNKS * CHUNK_DELAY:.2f} s")
        frozen = [await takeover(models, signal.SIGSTOP, lease, server) for _ in range(args.repeat)]
        print(f"{on}: takeover after SIGSTOP (lease {lease:g} s): {_summary(frozen)}")
        if args.skip_live:
            return
        delays = [d for _ in range(args.repeat) for d in await live_delays(models)]
        assert delays, "no streamed text reached both the terminal and the page"
        print(f"live-view delay, page behind terminal: {_summary(delays)}")


if __name__ == "__main__":
    asyncio.run(main())

"""Two `backrooms discord` processes on one folder: when the one driving a run is killed (SIGKILL)
the other claims the run and finishes it, with nothing reposted and nothing lost; when it is
frozen (SIGSTOP) past its lease the other takes over, and the frozen one, woken, stores and posts
nothing more. Each on the SQLite file of the folder and on a PostgreSQL schema of its own
(BACKROOMS_DATABASE_URL). Real processes and signals against the Discord emulator; every wait is
bounded. The last test cuts a driver off from PostgreSQL through a proxy it freezes."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from backrooms_engine.logfile import transcript_text
from backrooms_engine.store import SqliteStore, StoreLocation, open_store
from tests.conftest import fake_env
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.model_server import FakeModelServer
from tests.freezable_proxy import FreezableProxy
from tests.helpers import backrooms, by_message_count, spawn_backrooms, until

LEASE = 2.0  # seconds: short, so the frozen process's lease lapses quickly


@pytest.fixture(params=["sqlite", "postgres"])
async def shared(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreLocation]:
    """The store both processes share: the folder's SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield StoreLocation("sqlite", str(tmp_path / "backrooms.db"))
        return
    from tests.postgres import fresh_schema

    async with fresh_schema() as url:
        yield StoreLocation("postgres", url, "BACKROOMS_DATABASE_URL")


def store_env(location: StoreLocation) -> dict[str, str]:
    if location.dialect == "sqlite":
        return {"BACKROOMS_DB": location.target}
    return {"BACKROOMS_DATABASE_URL": location.target}


def _env(
    model_server, tmp_path: Path, fake: FakeDiscord, guild: int, location: StoreLocation
) -> dict[str, str]:
    env = fake_env(model_server, tmp_path)
    env.pop("BACKROOMS_DB")
    return (
        env
        | store_env(location)
        | {
            "DISCORD_TOKEN": fake.token,
            "DISCORD_API_BASE_URL": fake.rest_base,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            "DISCORD_GUILD_IDS": str(guild),
            "DISCORD_STREAMING": "false",
            "BACKROOMS_LEASE_SECONDS": str(LEASE),
        }
    )


async def _ready(proc: asyncio.subprocess.Process, limit: float = 60) -> None:
    """Read the service's log until its Discord surface is ready."""
    assert proc.stdout is not None
    async with asyncio.timeout(limit):
        while b"discord surface ready" not in await proc.stdout.readline():
            pass


def _ended(fake: FakeDiscord) -> bool:
    return any(
        "Reached maximum number of turns (3)" in m["content"]
        for t in fake.threads
        for m in fake.messages(t)
    )


async def _stored(location: StoreLocation):
    async with await open_store(location, owner=False) as store:
        return await store.get_run(1), await store.replies(1)


async def _uninterrupted_texts(model_server, tmp_path: Path) -> list[str]:
    """The same conversation run start to end in one process, in a folder of its own."""
    calm = tmp_path / "calm"
    calm.mkdir()
    env = fake_env(model_server, calm)
    code, _, err = await backrooms(
        "run", "--lm", "opus", "gpt4o", "--max-turns", "3", env=env, cwd=calm, limit=90
    )
    assert code == 0, err
    async with await SqliteStore.open(calm / "backrooms.db", owner=False) as store:
        return [r.text for r in await store.replies(1)]


async def _start_run(fake: FakeDiscord, guild: int, channel: int) -> None:
    await fake.send_interaction(
        guild,
        channel,
        fake.owner_user_id,
        "backrooms",
        "start",
        {"models": "opus gpt4o", "max_turns": 3},
    )


async def test_a_killed_bot_s_run_is_finished_by_the_other_as_if_uninterrupted(
    model_server, tmp_path, shared
):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 0.05
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Backrooms")
        channel = fake.add_text_channel(guild, "relay")
        env = _env(model_server, tmp_path, fake, guild, shared)
        first = await spawn_backrooms("discord", env=env, cwd=tmp_path, merge_stderr=True)
        second = None
        try:
            await _ready(first)
            await _start_run(fake, guild, channel)
            await until(lambda: len(fake.webhook_executes()) >= 2, 60, "two posts")
            model_server.chunk_delay = 5.0  # the third reply streams while the second starts
            second = await spawn_backrooms("discord", env=env, cwd=tmp_path, merge_stderr=True)
            await _ready(second)
            first.send_signal(signal.SIGKILL)
            await asyncio.wait_for(first.wait(), 10)
            model_server.chunk_delay = 0.05
            await until(lambda: _ended(fake), 60, "the run's end in its thread")
            posts = [c.json["content"] for c in fake.webhook_executes()]
            second.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(second.communicate(), 30)
        finally:
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    assert second.returncode == 0, out.decode()[-2000:]
    assert b"run 1: claimed" in out
    run, replies = await _stored(shared)
    assert posts == [r.text for r in replies] and len(posts) == 6  # each once, in order
    assert [r.text for r in replies] == await _uninterrupted_texts(model_server, tmp_path)
    [log] = (tmp_path / "BackroomsLogs").rglob("*.txt")
    assert log.read_text(encoding="utf-8") == transcript_text(replies, run.end)


async def test_a_bot_frozen_past_its_lease_stores_and_posts_nothing_once_woken(
    model_server, tmp_path, shared
):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 0.1
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Backrooms")
        channel = fake.add_text_channel(guild, "relay")
        env = _env(model_server, tmp_path, fake, guild, shared)
        first = await spawn_backrooms("discord", env=env, cwd=tmp_path, merge_stderr=True)
        second = None
        try:
            await _ready(first)
            await _start_run(fake, guild, channel)
            await until(lambda: len(fake.webhook_executes()) >= 1, 60, "the first post")
            model_server.chunk_delay = 5.0  # the second reply streams while the second starts
            # Started after the command: an interaction reaches every connected process.
            second = await spawn_backrooms("discord", env=env, cwd=tmp_path, merge_stderr=True)
            await _ready(second)
            first.send_signal(signal.SIGSTOP)
            model_server.chunk_delay = 0.1
            await until(lambda: _ended(fake), 60, "the run's end, by the other process")
            calls_before = len(fake.calls)
            requests_before = len(model_server.requests)
            _, stored_before = await _stored(shared)
            first.send_signal(signal.SIGCONT)
            await asyncio.sleep(LEASE * 1.5)  # time for the woken process to do whatever it would
            calls_after = [c for c in fake.calls[calls_before:] if "webhooks" in c.path]
            _, stored_after = await _stored(shared)
            requests_after = len(model_server.requests)
            outs = []
            for proc in (first, second):
                proc.send_signal(signal.SIGTERM)
                outs.append(await asyncio.wait_for(proc.communicate(), 30))
        finally:
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    assert calls_after == []  # the woken process posted nothing
    assert requests_after == requests_before  # and asked no model anything
    assert stored_after == stored_before  # and stored nothing
    assert b"run 1: dropped" in outs[0][0]
    assert b"run 1: claimed" in outs[1][0]
    run, replies = await _stored(shared)
    assert run.end is not None and run.end.reason == "max_turns" and len(replies) == 6
    posts = [c.json["content"] for c in fake.webhook_executes()]
    assert posts == [r.text for r in replies]  # each once, in order, across both processes


async def test_a_bot_cut_off_from_postgres_stops_and_stays_silent_once_the_link_is_back(
    model_server, tmp_path, postgres_url
):
    """A network partition: the first process reaches the server through a proxy the test
    freezes. It cannot renew, so past its lease it sends no model request (each process has a
    model server of its own, to count them apart); the second takes the run over and ends it;
    once the link is back the first stores and posts nothing for the run it lost."""
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 0.1
    server_url = urlsplit(postgres_url)
    location = StoreLocation("postgres", postgres_url, "BACKROOMS_DATABASE_URL")
    async with (
        FakeDiscord() as fake,
        FakeModelServer() as heir_models,
        FreezableProxy(server_url.hostname or "127.0.0.1", server_url.port or 5432) as proxy,
    ):
        heir_models.set_responder(by_message_count)
        heir_models.chunk_delay = 0.1
        guild = fake.add_guild("Backrooms")
        channel = fake.add_text_channel(guild, "relay")
        proxied = server_url._replace(netloc=f"postgres@127.0.0.1:{proxy.port}").geturl()
        cut_off = StoreLocation("postgres", proxied, "BACKROOMS_DATABASE_URL")
        first_env = _env(model_server, tmp_path, fake, guild, cut_off)
        second_env = _env(heir_models, tmp_path, fake, guild, location)
        first = await spawn_backrooms("discord", env=first_env, cwd=tmp_path, merge_stderr=True)
        second = None
        try:
            await _ready(first)
            await _start_run(fake, guild, channel)
            await until(lambda: len(fake.webhook_executes()) >= 1, 60, "the first post")
            model_server.chunk_delay = 5.0  # the second reply streams while the second starts
            second = await spawn_backrooms(
                "discord", env=second_env, cwd=tmp_path, merge_stderr=True
            )
            await _ready(second)
            proxy.freeze()
            model_server.chunk_delay = 0.1
            await asyncio.sleep(LEASE + 1.0)  # past the lease, by the cut-off process's clock
            requests_cut_off = len(model_server.requests)
            await until(lambda: _ended(fake), 60, "the run's end, by the other process")
            assert len(model_server.requests) == requests_cut_off  # asked nothing more
            calls_before = len(fake.calls)
            _, stored_before = await _stored(location)
            proxy.thaw()
            await asyncio.sleep(LEASE * 2)  # time for the reconnected process to do its worst
            calls_after = [c for c in fake.calls[calls_before:] if "webhooks" in c.path]
            _, stored_after = await _stored(location)
            requests_after = len(model_server.requests)
            outs = []
            for proc in (first, second):
                proc.send_signal(signal.SIGTERM)
                outs.append(await asyncio.wait_for(proc.communicate(), 30))
        finally:
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    assert calls_after == []  # the process cut off posted nothing once the link was back
    assert requests_after == requests_cut_off  # and asked no model anything
    assert stored_after == stored_before  # and stored nothing
    assert len(heir_models.requests) > 0  # the other process drove the rest
    assert b"run 1: dropped" in outs[0][0]
    assert b"run 1: claimed" in outs[1][0]
    run, replies = await _stored(location)
    assert run.end is not None and run.end.reason == "max_turns" and len(replies) == 6
    posts = [c.json["content"] for c in fake.webhook_executes()]
    assert posts == [r.text for r in replies]  # each once, in order, across both processes

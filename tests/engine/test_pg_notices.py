"""Stop requests heard on PostgreSQL (LISTEN/NOTIFY: store/postgres/notices.py, stopping.py): a
driver on PostgreSQL ends a run as soon as a stop is asked from anywhere, not at its next poll.

The driver here polls once an hour (the manager's `stop_poll`), so a run that ends within the
test's bound was ended by what it heard. Each store's connections carry an application name of
their own, which is how a test finds its listener among the server's sessions (other tests run
beside it on the same server)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from backrooms_engine import templates
from backrooms_engine.engine import RetryPolicy
from backrooms_engine.manager import RunManager
from backrooms_engine.records import ParticipantInfo, RunEnd, RunSpec
from backrooms_engine.registry import load_registry
from backrooms_engine.store import StoreLocation
from backrooms_engine.store.postgres import PostgresStore
from tests.fakes.scripted_provider import ScriptedProvider
from tests.helpers import dummy_keys
from tests.postgres import fresh_schema

SPEC = RunSpec(models=("opus", "gpt4o"), max_turns=5)
CAST = [ParticipantInfo(0, "opus", "Claude 1", "claude-opus-5-5", "anthropic")]
AN_HOUR = 3600.0  # the poll's period here: it never comes round within a test
BOUND = 10.0  # seconds any one step may take, at most, on a loaded machine


def named(url: str) -> tuple[str, str]:
    """`url` with an application name of its own for its connections, and that name."""
    name = f"notices_{uuid.uuid4().hex[:12]}"
    return f"{url}&application_name={name}", name


async def listeners(admin: psycopg.AsyncConnection[object], name: str) -> list[int]:
    """The backend pids of `name`'s sessions that listen (their latest statement is LISTEN)."""
    cursor = await admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
        "AND state = 'idle' AND query LIKE 'LISTEN %%' ORDER BY pid",
        (name,),
    )
    return [int(row[0]) for row in await cursor.fetchall()]


async def until_listening(
    admin: psycopg.AsyncConnection[object], name: str, other_than: int | None = None
) -> int:
    """Wait, bounded, for `name`'s listener (a new one, if `other_than` names the old): its pid."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while True:
        found = [pid for pid in await listeners(admin, name) if pid != other_than]
        if found:
            return found[0]
        assert loop.time() < deadline, f"no listener of {name} within {BOUND} s"
        await asyncio.sleep(0.05)


@dataclass
class Driver:
    store: PostgresStore
    manager: RunManager
    name: str  # its connections' application name
    provider: ScriptedProvider


@contextlib.asynccontextmanager
async def driver(url: str, log_dir: Path) -> AsyncIterator[Driver]:
    """A manager driving runs on a PostgreSQL store, hearing stop requests, polling once an hour;
    its models stream a reply that never finishes, so a run goes on until it is stopped."""
    url, name = named(url)
    store = await PostgresStore.open(StoreLocation("postgres", url))
    provider = ScriptedProvider()
    for _ in range(3):
        provider.reply("opus", "a reply that never ends", asyncio.Event())
    manager = RunManager(
        registry=load_registry(),
        template_dirs=templates.search_path(),
        store=store,
        provider_for=lambda spec: provider,
        env=dummy_keys(),
        log_dir=log_dir,
        retry=RetryPolicy(base_delay=0),
        leases=store.leases,
        notices=store.notices,
        stop_poll=AN_HOUR,
    )
    try:
        yield Driver(store, manager, name, provider)
    finally:
        await manager.shutdown(5)
        await store.close()


async def asked_from_elsewhere(url: str, run_id: int) -> None:
    """A stop asked from another process's connection (a store that drives nothing)."""
    async with await PostgresStore.open(StoreLocation("postgres", url), drives=False) as other:
        assert await other.request_stop(run_id, "Ada", datetime.now(UTC))


async def test_a_stop_asked_from_another_connection_ends_the_run_without_waiting_for_the_poll(
    postgres_url: str, tmp_path: Path
) -> None:
    async with (
        driver(postgres_url, tmp_path) as d,
        await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin,
    ):
        handle = await d.manager.start(SPEC)
        await until_listening(admin, d.name)
        await asked_from_elsewhere(postgres_url, handle.id)
        end = await asyncio.wait_for(asyncio.shield(handle.task), BOUND)
        record = await d.store.get_run(handle.id)
    assert end == RunEnd("stopped", by="Ada", turns=0)  # as a local stop ends it
    assert record.end == end


async def test_a_dropped_listener_is_opened_again_and_hears_stops_again(
    postgres_url: str, tmp_path: Path
) -> None:
    async with (
        driver(postgres_url, tmp_path) as d,
        await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin,
    ):
        handle = await d.manager.start(SPEC)
        dropped = await until_listening(admin, d.name)
        await admin.execute("SELECT pg_terminate_backend(%s)", (dropped,))
        await until_listening(admin, d.name, other_than=dropped)
        await asked_from_elsewhere(postgres_url, handle.id)
        end = await asyncio.wait_for(asyncio.shield(handle.task), BOUND)
    assert end == RunEnd("stopped", by="Ada", turns=0)


async def test_the_listener_is_closed_when_the_driver_shuts_down(
    postgres_url: str, tmp_path: Path
) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        async with driver(postgres_url, tmp_path) as d:
            await d.manager.start(SPEC)
            await until_listening(admin, d.name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BOUND
        while await listeners(admin, d.name):  # the server ends a closed session soon after
            assert loop.time() < deadline, "the listener's session outlived the driver"
            await asyncio.sleep(0.05)


async def test_stores_in_two_schemas_of_one_database_do_not_hear_each_other(
    postgres_url: str,
) -> None:
    async with (
        fresh_schema() as other_url,
        await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin,
    ):
        (url_a, name_a), (url_b, name_b) = named(postgres_url), named(other_url)
        async with (
            await PostgresStore.open(StoreLocation("postgres", url_a)) as a,
            await PostgresStore.open(StoreLocation("postgres", url_b)) as b,
        ):
            # Run 1 in each schema (the same id, two runs), and b's run 2.
            for store in (a, b, b):
                await store.create_run(SPEC, CAST, "log.txt", datetime.now(UTC))
            heard: dict[str, list[int]] = {"a": [], "b": []}

            async def hear(store: PostgresStore, key: str) -> None:
                assert store.notices is not None
                async for run_id in store.notices.notices():
                    heard[key].append(run_id)

            tasks = [asyncio.create_task(hear(a, "a")), asyncio.create_task(hear(b, "b"))]
            try:
                await until_listening(admin, name_a)
                await until_listening(admin, name_b)
                await a.request_stop(1, "Ada", datetime.now(UTC))
                await asyncio.wait_for(_until_heard(heard, "a", [1]), BOUND)
                # b would have heard a's notice (of "run 1") before its own (in commit order).
                await b.request_stop(2, "Bea", datetime.now(UTC))
                await asyncio.wait_for(_until_heard(heard, "b", [2]), BOUND)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    assert heard == {"a": [1], "b": [2]}


async def _until_heard(heard: dict[str, list[int]], key: str, wanted: list[int]) -> None:
    while heard[key] != wanted:
        assert len(heard[key]) <= len(wanted), heard
        await asyncio.sleep(0.02)

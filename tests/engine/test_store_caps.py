"""The caps on runs going at once, counted by the store in the transaction that stores a run
(TranscriptStore.create_run's `caps`), so processes sharing one store share the caps: over every
implementation (the contract's `ports` fixture), then two stores on one SQLite file and on one
PostgreSQL schema racing past a cap of 1, then two runtimes (as two processes are) on one file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from backrooms_engine.caps import Caps
from backrooms_engine.errors import LimitError
from backrooms_engine.manager import LimitError as ManagerLimitError
from backrooms_engine.ports import TranscriptStore
from backrooms_engine.records import RunEnd, RunRecord, RunSpec
from backrooms_engine.store import AllPorts, SqliteStore, StoreLocation
from backrooms_engine.store.postgres import PostgresStore
from tests.conftest import fake_env
from tests.engine import test_store_contract as contract
from tests.engine.test_store_contract import CAST, T0, Ports, spec
from tests.helpers import runtime

ports = contract.ports  # the contract's fixture: each test runs over every implementation
PER_SPACE_2 = Caps(max_runs_per_space=2)


async def create(
    store: TranscriptStore, caps: Caps | None, space: str | None = "guild"
) -> RunRecord:
    return await store.create_run(spec(space=space), CAST, "log.txt", T0, caps=caps)


async def test_a_space_at_its_cap_refuses_the_next_run_with_the_users_message(
    ports: Ports,
) -> None:
    first = await create(ports.transcript, PER_SPACE_2)
    await create(ports.transcript, PER_SPACE_2)
    with pytest.raises(LimitError) as refused:
        await create(ports.transcript, PER_SPACE_2)
    assert str(refused.value) == (
        "2 runs are going here, the most per community (BACKROOMS_MAX_RUNS_PER_SPACE=2); "
        "stop one first"
    )
    assert isinstance(refused.value, ManagerLimitError)  # what the surfaces catch
    assert len(await ports.archive.list_runs()) == 2  # the refused run left nothing behind
    await create(ports.transcript, PER_SPACE_2, space="elsewhere")  # another space's own cap
    await create(ports.transcript, None)  # no caps asked for: none counted
    await ports.transcript.finish_run(first.id, RunEnd(reason="stopped"), T0)
    with pytest.raises(LimitError):  # the uncapped one is going too
        await create(ports.transcript, PER_SPACE_2)


async def test_ended_and_paused_runs_leave_room_under_the_caps(ports: Ports) -> None:
    one = Caps(max_runs=1, max_runs_per_space=1)
    ended = await create(ports.transcript, one)
    await ports.transcript.finish_run(ended.id, RunEnd(reason="stopped"), T0)
    paused = await create(ports.transcript, one)
    await ports.transcript.pause_run(paused.id, T0)
    going = await create(ports.transcript, one)
    with pytest.raises(LimitError, match=r"^1 runs are going, .*\(BACKROOMS_MAX_RUNS=1\)"):
        await create(ports.transcript, one, space=None)  # the global cap counts every space
    assert going.status == "running"


async def test_creations_arriving_together_are_counted_one_after_another(ports: Ports) -> None:
    outcomes = await asyncio.gather(
        *(create(ports.transcript, PER_SPACE_2) for _ in range(5)), return_exceptions=True
    )
    created = [o for o in outcomes if isinstance(o, RunRecord)]
    assert len(created) == 2
    assert all(isinstance(o, LimitError) for o in outcomes if o not in created)
    assert sorted(r.id for r in await ports.archive.list_runs()) == sorted(r.id for r in created)


# --- two stores on one database race past a cap of 1 --------------------------------------------

Opener = Callable[[], Awaitable[AllPorts]]


async def race(open_one: Opener, rounds: int = 5) -> list[int]:
    """Two stores, two creations each, per round, in a space of the round's own: how many runs
    each round stored."""
    a, b = await open_one(), await open_one()
    try:
        stored = []
        for n in range(rounds):
            space = f"guild-{n}"
            cap = Caps(max_runs_per_space=1)
            outcomes = await asyncio.gather(
                *(create(s.transcript, cap, space) for s in (a, b, a, b)), return_exceptions=True
            )
            assert all(isinstance(o, RunRecord | LimitError) for o in outcomes), outcomes
            stored.append(len(await a.archive.list_runs(space=space)))
        return stored
    finally:
        await a.close()
        await b.close()


async def test_two_stores_on_one_sqlite_file_let_one_run_past_a_cap_of_one(tmp_path: Path) -> None:
    path = tmp_path / "backrooms.db"
    assert await race(lambda: SqliteStore.open(path)) == [1] * 5


async def test_two_stores_on_one_postgres_schema_let_one_run_past_a_cap_of_one(
    postgres_url: str,
) -> None:
    location = StoreLocation("postgres", postgres_url)
    assert await race(lambda: PostgresStore.open(location)) == [1] * 5


# --- what a user sees: a second process on the store is held to the same cap --------------------


async def test_a_second_runtime_on_the_store_is_refused_past_the_space_cap(
    model_server, tmp_path: Path
) -> None:
    env = fake_env(model_server, tmp_path) | {"BACKROOMS_MAX_RUNS_PER_SPACE": "1"}
    model_server.chunk_delay = 0.2
    chat = RunSpec(models=("opus", "gpt4o"), max_turns=1, surface="discord", space="guild-1")
    async with runtime(env) as first, runtime(env) as second:
        going = await first.manager.start(chat)
        with pytest.raises(LimitError) as refused:
            await second.manager.start(chat)
        await first.manager.stop(going.id, by="t")
    assert "1 runs are going here" in str(refused.value)
    assert "BACKROOMS_MAX_RUNS_PER_SPACE=1" in str(refused.value)

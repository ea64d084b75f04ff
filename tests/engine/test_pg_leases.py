"""Leases on PostgreSQL under concurrency: claimers racing for waiting runs never hold one run
twice, and the fence (010_pg_fence.postgres.sql) leaves no moment between its check and the
write for a takeover. What every store with leases does is in tests/engine/test_leases.py.

Each test runs in a schema of its own (tests/postgres.py). The races are made deterministic with
a second session holding an open transaction, as a claim or a write in flight would."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import psycopg
import pytest

from backrooms_engine.errors import LeaseHeld, LeaseLost, StoreError
from backrooms_engine.records import ParticipantInfo, Reply, RunEnd, RunSpec, Usage
from backrooms_engine.store import StoreLocation
from backrooms_engine.store.postgres import PostgresStore
from backrooms_engine.store.postgres.leases import PgLeases

CAST = [ParticipantInfo(0, "opus", "Claude 1", "claude-opus-5-5", "anthropic")]
CLAIMERS, RUNS = 6, 40


def moment() -> datetime:
    return datetime.now(UTC)


def reply(run_id: int, seq: int) -> Reply:
    return Reply(run_id, seq, seq + 1, 0, "Claude 1", f"reply {seq}", moment(), moment(), Usage())


async def opened(url: str, **options: object) -> PostgresStore:
    return await PostgresStore.open(StoreLocation("postgres", url), **options)  # type: ignore[arg-type]


def leases_of(store: PostgresStore) -> PgLeases:
    assert store.leases is not None
    return store.leases


@pytest.fixture
async def queued(postgres_url: str) -> AsyncIterator[list[int]]:
    """RUNS runs of surface `discord` that nobody drives (stored by a store that drives none)."""
    async with await opened(postgres_url, drives=False) as server:
        spec = RunSpec(models=("opus",), surface="discord")
        yield [(await server.create_run(spec, CAST, "log.txt", moment())).id for _ in range(RUNS)]


async def test_claimers_racing_for_waiting_runs_never_take_one_twice(
    postgres_url: str, queued: list[int]
) -> None:
    stores = [await opened(postgres_url) for _ in range(CLAIMERS)]
    try:

        async def claim_all(store: PostgresStore) -> list[int]:
            taken: list[int] = []
            while batch := await leases_of(store).claim_waiting(frozenset({"discord"}), 3):
                taken += batch
                await asyncio.sleep(0)  # let the others in between
            return taken

        held = await asyncio.wait_for(asyncio.gather(*(claim_all(s) for s in stores)), 60)
    finally:
        for store in stores:
            await store.close()
    every = [run_id for taken in held for run_id in taken]
    assert sorted(every) == queued  # each run claimed, none twice
    assert sum(1 for taken in held if taken) > 1  # and the claimers really shared them


async def test_claimers_of_one_listed_run_are_refused_but_one_and_never_wait(
    postgres_url: str, queued: list[int]
) -> None:
    # A claimer that waited for another's row lock would fail: lock_timeout is 1 ms for them all.
    impatient = f"{postgres_url}%20-clock_timeout%3D1ms"
    stores = [await opened(impatient) for _ in range(CLAIMERS)]
    try:

        async def claim_listed(store: PostgresStore) -> list[int]:
            taken = []
            for run_id in await leases_of(store).waiting(frozenset({"discord"})):
                try:
                    await leases_of(store).claim(run_id)
                except LeaseHeld:
                    continue
                taken.append(run_id)
            return taken

        held = await asyncio.wait_for(asyncio.gather(*(claim_listed(s) for s in stores)), 60)
        owners = {run_id: (await leases_of(stores[0]).holder(run_id)).owner for run_id in queued}
    finally:
        for store in stores:
            await store.close()
    every = [run_id for taken in held for run_id in taken]
    assert sorted(every) == queued
    for store_taken, store in zip(held, stores, strict=True):
        assert all(owners[run_id] == store.leases.owner.text for run_id in store_taken)  # type: ignore[union-attr]


async def test_claim_waiting_skips_a_run_another_claimer_has_locked(
    postgres_url: str, queued: list[int]
) -> None:
    async with (
        await opened(postgres_url) as store,
        await psycopg.AsyncConnection.connect(postgres_url) as other,
    ):
        await other.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (queued[0],))
        # `other` holds run 1's row in an open transaction: the claim goes past it, not waits.
        claimed = await asyncio.wait_for(
            leases_of(store).claim_waiting(frozenset({"discord"}), 2), 10
        )
        assert list(claimed) == queued[1:3] and set(claimed.values()) == {1}
        await other.rollback()
        assert list(await leases_of(store).claim_waiting(frozenset({"discord"}), 1)) == [1]


async def test_every_write_is_refused_once_another_session_claimed_the_run(
    postgres_url: str,
) -> None:
    async with await opened(postgres_url, lease_seconds=0.3) as a, await opened(postgres_url) as b:
        run_id = (await a.create_run(RunSpec(models=("opus",)), CAST, "l", moment())).id
        await a.append_reply(reply(run_id, 0))
        await asyncio.sleep(0.5)
        assert await leases_of(b).claim(run_id) == 2
        writes = {
            "reply": a.append_reply(reply(run_id, 1)),
            "cursor": a.mark_delivered(run_id, "poster", 1),
            "post": a.record_post(run_id, 1, 0, "discord", "m1"),
            "live text": a.live_text.write_live(run_id, 1, "Claude 1", "half a"),
            "end": a.finish_run(run_id, RunEnd("stopped"), moment()),
        }
        for write in writes.values():
            with pytest.raises(LeaseLost):
                await write
        assert [r.seq for r in await b.replies(run_id)] == [0]
        assert (await b.get_run(run_id)).status == "running"
        assert await b.posts(run_id, "discord") == {}
        assert await b.live_text.live(run_id) is None


async def test_a_write_waits_for_a_claim_in_flight_and_is_then_refused(postgres_url: str) -> None:
    async with await opened(postgres_url) as a:
        run_id = (await a.create_run(RunSpec(models=("opus",)), CAST, "l", moment())).id
        async with await psycopg.AsyncConnection.connect(postgres_url) as claimer:
            # A claim, past its check and not yet committed (what `claim` does in one statement).
            await claimer.execute(
                "UPDATE runs SET owner = 'elsewhere:1:x', epoch = epoch + 1 WHERE id = %s",
                (run_id,),
            )
            write = asyncio.create_task(a.append_reply(reply(run_id, 0)))
            await asyncio.sleep(0.5)
            assert not write.done()  # the fence's FOR SHARE waits for the claim's row lock
            await claimer.commit()
            with pytest.raises(LeaseLost):
                await asyncio.wait_for(write, 10)
        assert await a.replies(run_id) == []


async def test_a_claim_is_refused_at_once_while_a_write_is_in_flight_which_is_kept(
    postgres_url: str,
) -> None:
    async with await opened(postgres_url, lease_seconds=0.3) as a, await opened(postgres_url) as b:
        run_id = (await a.create_run(RunSpec(models=("opus",)), CAST, "l", moment())).id
        await asyncio.sleep(0.5)  # a's lease lapsed: b may claim
        async with await psycopg.AsyncConnection.connect(postgres_url) as writer:
            # a's session, with a reply written (fence passed) and its transaction not committed.
            await writer.execute(
                "SELECT set_config('backrooms.owner', %s, false)", (leases_of(a).owner.text,)
            )
            await writer.execute(
                "INSERT INTO replies (run_id, seq, turn, position, actor, text, started_at, "
                "finished_at) VALUES (%s, 0, 1, 0, 'Claude 1', 'in flight', %s, %s)",
                (run_id, moment().isoformat(), moment().isoformat()),
            )
            # The write's FOR SHARE on the run's row: the claim skips the row, it does not wait.
            with pytest.raises(LeaseHeld):
                await asyncio.wait_for(leases_of(b).claim(run_id), 5)
            await writer.commit()
            assert await asyncio.wait_for(leases_of(b).claim(run_id), 10) == 2
        assert [r.text for r in await b.replies(run_id)] == ["in flight"]  # before the takeover
        with pytest.raises(LeaseLost):
            await a.append_reply(reply(run_id, 1))


async def test_a_claim_of_a_row_another_session_has_locked_returns_at_once(
    postgres_url: str, queued: list[int]
) -> None:
    async with (
        await opened(postgres_url) as store,
        await psycopg.AsyncConnection.connect(postgres_url) as other,
    ):
        await other.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (queued[0],))
        # `other` holds the row in an open transaction, as a claimer in flight would: refused.
        with pytest.raises(LeaseHeld):
            await asyncio.wait_for(leases_of(store).claim(queued[0]), 5)
        assert (await leases_of(store).holder(queued[0])).owner is None
        await other.rollback()
        assert await leases_of(store).claim(queued[0]) == 1


async def test_a_driver_keeps_its_runs_across_a_reconnection(postgres_url: str) -> None:
    name = f"dropped_{uuid.uuid4().hex[:12]}"  # only this store's connections are dropped
    async with (
        await opened(f"{postgres_url}&application_name={name}") as a,
        await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin,
    ):
        run_id = (await a.create_run(RunSpec(models=("opus",)), CAST, "l", moment())).id
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )
        with contextlib.suppress(StoreError):
            await a.mark_delivered(run_id, "poster", 1)  # this call may find the connection gone
        await a.mark_delivered(run_id, "poster", 1)  # reconnected: the run is still a's
        assert await a.delivered(run_id, "poster") == 1
        assert await leases_of(a).renew() == set()


async def test_a_store_that_drives_nothing_writes_unfenced(postgres_url: str) -> None:
    async with await opened(postgres_url, drives=False) as viewer:
        assert viewer.leases is None
        run_id = (await viewer.create_run(RunSpec(models=("opus",)), CAST, "l", moment())).id
        await viewer.append_reply(reply(run_id, 0))
        await viewer.finish_run(run_id, RunEnd("stopped"), moment())
        assert (await viewer.get_run(run_id)).status == "ended"

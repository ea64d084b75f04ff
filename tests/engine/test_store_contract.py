"""The store's contract: what TranscriptStore, SurfaceState and Archive (backrooms_engine/ports.py)
promise, run over every implementation. Writes go through the transcript and the surface state,
reads through the archive, so each store also shows that its viewers see what was committed.

An implementation joins by adding a factory to IMPLEMENTATIONS; what only one implementation must
get right (SQLite's migrations, its owner lock) is in tests/engine/test_store.py, PostgreSQL's in
tests/engine/test_store_postgres.py. Each PostgreSQL test runs in a schema of its own
(tests/postgres.py), which skips only where no server answers and CI is not "true".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from backrooms_engine.errors import ConfigError, StoreError, UnknownRunError
from backrooms_engine.ports import Archive, Processes, RunFilter, SurfaceState, TranscriptStore
from backrooms_engine.records import Blueprint, ParticipantInfo, Reply, RunEnd, RunSpec, Usage
from backrooms_engine.store import SqliteStore, StoreLocation
from backrooms_engine.store.postgres import PostgresStore
from backrooms_engine.store.processes import SqlProcesses
from tests.fakes.memory_processes import MemoryProcesses, ProcessTable
from tests.fakes.memory_store import MemoryStore
from tests.postgres import fresh_schema

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
CAST = (
    ParticipantInfo(0, "opus", "Claude 1", "claude-opus-4", "anthropic"),
    ParticipantInfo(1, "gpt4o", "GPT 2", "gpt-4o", "openai"),
)


@dataclass(frozen=True)
class Ports:
    transcript: TranscriptStore
    surface_state: SurfaceState
    archive: Archive
    close: Callable[[], Awaitable[None]]


async def _sqlite(tmp_path: Path) -> Ports:
    store = await SqliteStore.open(tmp_path / "data" / "backrooms.db")
    return Ports(store.transcript, store.surface_state, store.archive, store.close)


async def _memory(tmp_path: Path) -> Ports:
    store = MemoryStore()
    return Ports(store, store, store, store.close)


async def _postgres(url: str) -> Ports:
    store = await PostgresStore.open(StoreLocation("postgres", url))
    return Ports(store.transcript, store.surface_state, store.archive, store.close)


IMPLEMENTATIONS: dict[str, Callable[[Path], Awaitable[Ports]]] = {
    "sqlite": _sqlite,
    "memory": _memory,
}
PORTS = (TranscriptStore, SurfaceState, Archive)


@pytest.fixture(params=[*IMPLEMENTATIONS, "postgres"])
async def ports(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ports]:
    if request.param == "postgres":
        async with fresh_schema() as url:
            opened = await _postgres(url)
            try:
                yield opened
            finally:
                await opened.close()
        return
    opened = await IMPLEMENTATIONS[request.param](tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


def spec(**changes: object) -> RunSpec:
    fields: dict[str, object] = {"models": ("opus", "gpt4o"), "template": "cli", "max_turns": 3}
    return RunSpec(**(fields | changes))  # type: ignore[arg-type]


def reply(run_id: int, seq: int, usage: Usage | None = None, text: str = "") -> Reply:
    return Reply(
        run_id=run_id,
        seq=seq,
        turn=seq // 2 + 1,
        position=seq % 2,
        actor=CAST[seq % 2].actor,
        text=text or f"reply {seq}",
        started_at=T0 + timedelta(seconds=seq),
        finished_at=T0 + timedelta(seconds=seq, milliseconds=500),
        usage=usage or Usage(10, 20),
    )


async def new_run(p: Ports, *texts: str, **changes: object) -> int:
    """A run with `texts` as its replies, in order."""
    record = await p.transcript.create_run(spec(**changes), CAST, "BackroomsLogs/x.txt", T0)
    for seq, text in enumerate(texts):
        await p.transcript.append_reply(reply(record.id, seq, text=text))
    return record.id


async def found(p: Ports, **where: object) -> list[int]:
    return [run.id for run in await p.archive.find_runs(RunFilter(**where))]  # type: ignore[arg-type]


# --- every implementation offers every port ------------------------------------------------------


@pytest.mark.parametrize("implementation", [SqliteStore, MemoryStore, PostgresStore])
@pytest.mark.parametrize("port", PORTS, ids=[p.__name__ for p in PORTS])
def test_every_store_has_every_port_method_with_its_signature(
    implementation: type, port: type
) -> None:
    declared = {n: f for n, f in vars(port).items() if inspect.isfunction(f) and n[0] != "_"}
    assert declared
    for name, method in declared.items():
        ours = getattr(implementation, name)
        assert inspect.iscoroutinefunction(ours), name
        assert inspect.signature(ours).parameters == inspect.signature(method).parameters, name


# --- TranscriptStore ------------------------------------------------------------------------------


async def test_create_run_returns_a_running_record_without_replies(ports: Ports) -> None:
    record = await ports.transcript.create_run(
        spec(space="guild"), tuple(reversed(CAST)), "log.txt", T0
    )
    assert record.status == "running"
    assert record.participants == CAST  # by position, whatever order they came in
    assert (record.replies, record.input_tokens, record.output_tokens) == (0, None, None)
    assert record.cost_usd is None and record.usage_complete
    assert record.end is None and record.ended_at is None
    assert record.created_at == T0 and record.log_path == "log.txt"


async def test_get_run_gives_back_what_create_run_stored(ports: Ports) -> None:
    wanted = spec(
        started_by="ann", surface="discord", space="g1", place="t1", token_budget=9000,
        budget_usd=0.5,
    )  # fmt: skip
    created = await ports.transcript.create_run(wanted, CAST, "log.txt", T0)
    assert await ports.transcript.get_run(created.id) == created
    assert await ports.archive.get_run(created.id) == created
    assert (await ports.archive.get_run(created.id)).spec == wanted


async def test_run_ids_grow_from_one(ports: Ports) -> None:
    assert [await new_run(ports) for _ in range(3)] == [1, 2, 3]


async def test_replies_come_back_in_seq_order_exactly_as_appended(ports: Ports) -> None:
    run_id = await new_run(ports)
    sent = [reply(run_id, 0, Usage(None, None)), reply(run_id, 1, text="multi\nline ^C^C")]
    for one in reversed(sent):
        await ports.transcript.append_reply(one)
    assert await ports.transcript.replies(run_id) == sent
    assert await ports.archive.replies(run_id) == sent


FULL = Usage(1000, 1000, 300, 40, 0.0125)


async def test_a_reply_keeps_its_cache_counts_cost_and_cut_off_mark(ports: Ports) -> None:
    run_id = await new_run(ports)
    sent = [
        reply(run_id, 0, Usage(10, 1024, 5000, 700, 0.031, cut_off=True)),
        reply(run_id, 1, Usage(10, 3, 0, 0, None)),
    ]
    for one in sent:
        await ports.transcript.append_reply(one)
    got = await ports.archive.replies(run_id)
    assert got == sent and got[0].cut_off and not got[1].cut_off
    record = await ports.archive.get_run(run_id)
    assert (record.cache_read_tokens, record.cache_write_tokens) == (5000, 700)
    assert record.cost_usd == pytest.approx(0.031)  # the unpriced reply is left out,
    assert not record.usage_complete  # and the total says so


async def test_a_space_s_spend_sums_its_priced_replies_finished_in_the_window(
    ports: Ports,
) -> None:
    here, other = await new_run(ports, space="g1"), await new_run(ports, space="g2")
    late = await new_run(ports, space="g1")
    for run_id, cost in ((here, 0.25), (other, 9.0)):
        await ports.transcript.append_reply(reply(run_id, 0, Usage(1, 1, 0, 0, cost)))
    await ports.transcript.append_reply(reply(here, 1, Usage(1, 1, 0, 0, None)))  # unpriced
    late_reply = dataclasses.replace(
        reply(late, 0, Usage(1, 1, 0, 0, 4.0)), finished_at=T0 + timedelta(days=1)
    )
    await ports.transcript.append_reply(late_reply)
    day = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert await ports.transcript.space_spend("g1", *day) == pytest.approx(0.25)
    assert await ports.transcript.space_spend("g2", *day) == pytest.approx(9.0)
    assert await ports.transcript.space_spend("nowhere", *day) == 0.0
    # The end of the window is not in it; the start is.
    finished = T0 + timedelta(milliseconds=500)
    assert await ports.transcript.space_spend("g1", T0, finished) == 0.0
    assert await ports.transcript.space_spend("g1", finished, finished + timedelta(1)) == (
        pytest.approx(4.25)
    )


async def test_timestamps_come_back_in_utc(ports: Ports) -> None:
    plus_two = timezone(timedelta(hours=2))
    record = await ports.transcript.create_run(spec(), CAST, "log.txt", T0.astimezone(plus_two))
    await ports.transcript.append_reply(reply(record.id, 0))
    got = await ports.archive.get_run(record.id)
    assert got.created_at == T0 and got.created_at.utcoffset() == timedelta(0)
    assert (await ports.archive.replies(record.id))[0].started_at.tzinfo is not None


async def test_naive_timestamps_are_refused(ports: Ports) -> None:
    with pytest.raises(StoreError, match="timezone-aware"):
        await ports.transcript.create_run(spec(), CAST, "log.txt", datetime(2025, 1, 1))


async def test_aggregates_count_replies_and_sum_tokens(ports: Ports) -> None:
    run_id, other = await new_run(ports), await new_run(ports)
    for one in (reply(run_id, 0, Usage(100, 7)), reply(run_id, 1, Usage(None, 5))):
        await ports.transcript.append_reply(one)  # an unknown count is left out of the sum
    await ports.transcript.append_reply(reply(run_id, 2, Usage(1, None)))
    await ports.transcript.append_reply(reply(other, 0, FULL))
    record = await ports.archive.get_run(run_id)
    assert (record.replies, record.input_tokens, record.output_tokens) == (3, 101, 12)
    assert (record.cache_read_tokens, record.cache_write_tokens, record.cost_usd) == (None,) * 3
    assert not record.usage_complete
    assert record.turns == 1
    listed = {r.id: r for r in await ports.archive.list_runs()}
    assert listed[run_id] == record
    assert (listed[other].replies, listed[other].input_tokens) == (1, 1000)
    assert (listed[other].cache_read_tokens, listed[other].cache_write_tokens) == (300, 40)
    assert listed[other].cost_usd == pytest.approx(0.0125) and listed[other].usage_complete
    assert {r.id: r for r in await ports.archive.find_runs(RunFilter())} == listed


async def test_the_same_seq_twice_is_refused_and_stored_once(ports: Ports) -> None:
    run_id = await new_run(ports, "first")
    with pytest.raises(StoreError, match="already has reply 0"):
        await ports.transcript.append_reply(reply(run_id, 0, text="second"))
    assert [r.text for r in await ports.archive.replies(run_id)] == ["first"]
    assert (await ports.archive.get_run(run_id)).replies == 1


async def test_a_negative_seq_is_refused(ports: Ports) -> None:
    run_id = await new_run(ports)
    with pytest.raises(StoreError, match="0 or more"):
        await ports.transcript.append_reply(dataclasses.replace(reply(run_id, 0), seq=-1))


async def test_participants_sharing_a_position_are_refused(ports: Ports) -> None:
    with pytest.raises(StoreError, match="positions must differ"):
        await ports.transcript.create_run(spec(), (CAST[0], CAST[0]), "log.txt", T0)
    assert await ports.archive.list_runs() == []


async def test_finish_run_stores_the_end_and_reopen_clears_it(ports: Ports) -> None:
    run_id = await new_run(ports)
    end = RunEnd(reason="stopped", by="ann", detail="enough", turns=2, max_turns=3)
    await ports.transcript.finish_run(run_id, end, T0 + timedelta(minutes=5))
    ended = await ports.archive.get_run(run_id)
    assert (ended.status, ended.end, ended.ended_at) == ("ended", end, T0 + timedelta(minutes=5))
    await ports.transcript.reopen_run(run_id, max_turns=7)
    reopened = await ports.archive.get_run(run_id)
    assert (reopened.status, reopened.end, reopened.ended_at) == ("running", None, None)
    assert reopened.spec.max_turns == 7


async def test_running_runs_are_oldest_first_without_ended_ones(ports: Ports) -> None:
    ids = [await new_run(ports) for _ in range(3)]
    await ports.transcript.finish_run(ids[1], RunEnd(reason="ctrl_c", actor="Claude 1"), T0)
    assert [r.id for r in await ports.transcript.running_runs()] == [ids[0], ids[2]]


async def test_a_paused_run_is_listed_paused_claimed_by_nobody_until_reopened(
    ports: Ports,
) -> None:
    paused, going, ended = [await new_run(ports) for _ in range(3)]
    await ports.transcript.finish_run(ended, RunEnd(reason="max_turns", turns=1, max_turns=1), T0)
    await ports.transcript.pause_run(paused, T0)
    await ports.transcript.pause_run(ended, T0)  # an ended run stays ended
    assert (await ports.archive.get_run(paused)).status == "paused"
    assert (await ports.archive.get_run(paused)).end is None
    assert (await ports.archive.get_run(ended)).status == "ended"
    assert [r.id for r in await ports.transcript.running_runs()] == [going]
    assert [r.id for r in await ports.archive.list_runs(status="paused")] == [paused]
    assert [r.id for r in await ports.archive.list_runs(status="running")] == [going]
    assert await found(ports, status="paused") == [paused]
    assert await found(ports, status="running") == [going]
    await ports.transcript.reopen_run(paused, max_turns=3)
    assert (await ports.archive.get_run(paused)).status == "running"
    assert [r.id for r in await ports.transcript.running_runs()] == [paused, going]


# --- TranscriptStore: desired state (stop requests as rows) ----------------------------------------


async def test_a_stop_request_is_kept_with_who_asked_for_the_run_asked(ports: Ports) -> None:
    asked, other = await new_run(ports), await new_run(ports)
    assert await ports.transcript.stop_requests([asked, other]) == {}
    assert await ports.transcript.request_stop(asked, "ann", T0) is True
    assert await ports.transcript.stop_requests([asked, other]) == {asked: "ann"}
    assert await ports.transcript.stop_requests([other]) == {}
    assert await ports.transcript.stop_requests([]) == {}
    # Asking changes nothing a viewer reads: the run goes on until its driver ends it.
    record = await ports.archive.get_run(asked)
    assert (record.status, record.end) == ("running", None)


async def test_a_second_stop_request_keeps_the_first_asker(ports: Ports) -> None:
    run_id = await new_run(ports)
    await ports.transcript.request_stop(run_id, "ann", T0)
    assert await ports.transcript.request_stop(run_id, "bob", T0 + timedelta(seconds=1)) is True
    assert await ports.transcript.stop_requests([run_id]) == {run_id: "ann"}


async def test_a_stop_request_for_an_ended_run_is_refused_and_not_kept(ports: Ports) -> None:
    run_id = await new_run(ports)
    await ports.transcript.finish_run(run_id, RunEnd(reason="max_turns", max_turns=3), T0)
    assert await ports.transcript.request_stop(run_id, "ann", T0) is False
    assert await ports.transcript.stop_requests([run_id]) == {}
    assert (await ports.archive.get_run(run_id)).end == RunEnd(reason="max_turns", max_turns=3)


async def test_a_paused_run_takes_a_stop_request(ports: Ports) -> None:
    run_id = await new_run(ports)
    await ports.transcript.pause_run(run_id, T0)
    assert await ports.transcript.request_stop(run_id, "ann", T0) is True
    assert await ports.transcript.stop_requests([run_id]) == {run_id: "ann"}


async def test_reopening_a_run_clears_its_stop_request(ports: Ports) -> None:
    run_id = await new_run(ports)
    await ports.transcript.request_stop(run_id, "ann", T0)
    await ports.transcript.finish_run(run_id, RunEnd(reason="stopped", by="ann"), T0)
    assert await ports.transcript.stop_requests([run_id]) == {run_id: "ann"}  # what ended it
    await ports.transcript.reopen_run(run_id, max_turns=5)  # `continue`: a new stretch
    assert await ports.transcript.stop_requests([run_id]) == {}


async def test_stop_requests_of_many_runs_are_answered_at_once(ports: Ports) -> None:
    ids = [await new_run(ports) for _ in range(6)]
    for run_id in ids[::2]:
        await ports.transcript.request_stop(run_id, f"asker {run_id}", T0)
    wanted = [*ids, *ids, 10_000]  # repeats and an id with no run are harmless
    assert await ports.transcript.stop_requests(wanted) == {i: f"asker {i}" for i in ids[::2]}


async def test_a_stop_request_needs_a_timezone(ports: Ports) -> None:
    run_id = await new_run(ports)
    with pytest.raises(StoreError, match="timezone-aware"):
        await ports.transcript.request_stop(run_id, "ann", datetime(2025, 1, 1))


async def test_a_queued_run_is_listed_queued_and_resumable_until_claimed(ports: Ports) -> None:
    going = await new_run(ports)
    queued = (await ports.transcript.create_run(spec(), CAST, "q.txt", T0, queued=True)).id
    assert (await ports.archive.get_run(queued)).status == "queued"
    assert (await ports.archive.get_run(queued)).end is None
    assert [r.id for r in await ports.transcript.running_runs()] == [going, queued]
    assert [r.id for r in await ports.archive.list_runs(status="queued")] == [queued]
    assert [r.id for r in await ports.archive.list_runs(status="running")] == [going]
    assert await found(ports, status="queued") == [queued]
    await ports.transcript.claimed(going)  # a running run stays running
    await ports.transcript.claimed(queued)
    assert [(await ports.archive.get_run(i)).status for i in (going, queued)] == ["running"] * 2
    assert [r.id for r in await ports.archive.list_runs(status="queued")] == []


async def test_a_run_keeps_the_blueprint_it_was_created_with(ports: Ports) -> None:
    plain = await new_run(ports)
    blueprint = Blueprint('{"cli": true}\n', '[{"alias": "opus"}]')
    kept = await ports.transcript.create_run(spec(), CAST, "b.txt", T0, blueprint=blueprint)
    assert await ports.transcript.blueprint(plain) is None  # as runs stored before 008 are
    assert await ports.transcript.blueprint(kept.id) == blueprint
    assert kept.status == "running"


async def test_recent_ended_runs_are_newest_first_and_only_ended(ports: Ports) -> None:
    ids = [await new_run(ports) for _ in range(4)]
    for run_id in ids[:3]:
        await ports.transcript.finish_run(run_id, RunEnd(reason="stopped"), T0)
    await ports.transcript.pause_run(ids[3], T0)
    assert [r.id for r in await ports.transcript.recent_ended(2)] == [ids[2], ids[1]]
    assert [r.id for r in await ports.transcript.recent_ended(10)] == [ids[2], ids[1], ids[0]]


async def test_delivery_cursor_starts_at_zero_and_is_kept_per_observer(ports: Ports) -> None:
    run_id, other = await new_run(ports), await new_run(ports)
    assert await ports.transcript.delivered(run_id, "discord") == 0
    await ports.transcript.mark_delivered(run_id, "discord", 2)
    await ports.transcript.mark_delivered(run_id, "logfile", 5)
    await ports.transcript.mark_delivered(run_id, "discord", 3)
    assert await ports.transcript.delivered(run_id, "discord") == 3
    assert await ports.transcript.delivered(run_id, "logfile") == 5
    assert await ports.transcript.delivered(other, "discord") == 0


async def test_a_negative_delivery_count_is_refused(ports: Ports) -> None:
    run_id = await new_run(ports)
    with pytest.raises(StoreError, match="0 or more"):
        await ports.transcript.mark_delivered(run_id, "discord", -1)


# --- SurfaceState ---------------------------------------------------------------------------------


async def test_posts_are_kept_per_surface_and_a_second_post_replaces(ports: Ports) -> None:
    run_id, state = await new_run(ports), ports.surface_state
    await state.record_post(run_id, 1, 0, "discord", "m3")
    await state.record_post(run_id, 0, 1, "discord", "m2")
    await state.record_post(run_id, 0, 0, "discord", "m1")
    await state.record_post(run_id, 0, 0, "slack", "1700000000.0001")
    await state.record_post(run_id, 1, 0, "discord", "m3-edited")
    discord = await state.posts(run_id, "discord")
    assert list(discord.items()) == [((0, 0), "m1"), ((0, 1), "m2"), ((1, 0), "m3-edited")]
    assert await state.posts(run_id, "slack") == {(0, 0): "1700000000.0001"}
    assert await state.posts(run_id, "web") == {}


async def test_meta_is_per_run_and_a_second_value_replaces(ports: Ports) -> None:
    run_id, other, state = await new_run(ports), await new_run(ports), ports.surface_state
    assert await state.get_meta(run_id, "thread_id") is None
    await state.set_meta(run_id, "thread_id", "111")
    await state.set_meta(run_id, "thread_id", "222")
    await state.set_meta(other, "thread_id", "333")
    assert await state.get_meta(run_id, "thread_id") == "222"
    assert await state.get_meta(other, "thread_id") == "333"


async def test_space_settings_are_kept_per_space(ports: Ports) -> None:
    state = ports.surface_state
    assert await state.space_setting("guild-1", "streaming") is None
    await state.set_space_setting("guild-1", "streaming", "off")
    await state.set_space_setting("guild-1", "streaming", "on")
    await state.set_space_setting("guild-2", "streaming", "off")
    assert await state.space_setting("guild-1", "streaming") == "on"
    assert await state.space_setting("guild-2", "streaming") == "off"


UNKNOWN_RUN_CALLS: dict[str, Callable[[Ports], Awaitable[object]]] = {
    "get_run": lambda p: p.transcript.get_run(42),
    "append_reply": lambda p: p.transcript.append_reply(reply(42, 0)),
    "finish_run": lambda p: p.transcript.finish_run(42, RunEnd(reason="stopped"), T0),
    "reopen_run": lambda p: p.transcript.reopen_run(42, max_turns=None),
    "pause_run": lambda p: p.transcript.pause_run(42, T0),
    "request_stop": lambda p: p.transcript.request_stop(42, "ann", T0),
    "claimed": lambda p: p.transcript.claimed(42),
    "blueprint": lambda p: p.transcript.blueprint(42),
    "replies": lambda p: p.transcript.replies(42),
    "delivered": lambda p: p.transcript.delivered(42, "discord"),
    "mark_delivered": lambda p: p.transcript.mark_delivered(42, "discord", 1),
    "record_post": lambda p: p.surface_state.record_post(42, 0, 0, "discord", "m1"),
    "posts": lambda p: p.surface_state.posts(42, "discord"),
    "set_meta": lambda p: p.surface_state.set_meta(42, "thread_id", "1"),
    "get_meta": lambda p: p.surface_state.get_meta(42, "thread_id"),
    "archive.get_run": lambda p: p.archive.get_run(42),
    "archive.replies": lambda p: p.archive.replies(42),
}


@pytest.mark.parametrize("call", UNKNOWN_RUN_CALLS.values(), ids=UNKNOWN_RUN_CALLS.keys())
async def test_an_unknown_run_id_is_named_and_the_listing_command_suggested(
    ports: Ports, call: Callable[[Ports], Awaitable[object]]
) -> None:
    await new_run(ports)
    with pytest.raises(UnknownRunError) as raised:
        await call(ports)
    assert str(raised.value) == "no run with id 42; `backrooms runs` lists them"
    assert isinstance(raised.value, ConfigError)


CLOSED_CALLS: dict[str, Callable[[Ports], Awaitable[object]]] = {
    "transcript": lambda p: p.transcript.create_run(spec(), CAST, "log.txt", T0),
    "surface_state": lambda p: p.surface_state.space_setting("guild", "streaming"),
    "archive": lambda p: p.archive.list_runs(),
    "archive search": lambda p: p.archive.find_runs(RunFilter(q="word")),
}


@pytest.mark.parametrize("call", CLOSED_CALLS.values(), ids=CLOSED_CALLS.keys())
async def test_a_closed_store_refuses_calls(
    ports: Ports, call: Callable[[Ports], Awaitable[object]]
) -> None:
    await ports.close()
    with pytest.raises(StoreError, match="closed"):
        await call(ports)
    await ports.close()  # closing twice is harmless


# --- Archive: listing and filters -----------------------------------------------------------------


async def test_list_runs_is_newest_first_and_filters(ports: Ports) -> None:
    first, second, third = [await new_run(ports, space=s) for s in ("a", "b", "a")]
    await ports.transcript.finish_run(second, RunEnd(reason="max_turns", turns=3, max_turns=3), T0)
    archive = ports.archive
    assert [r.id for r in await archive.list_runs()] == [third, second, first]
    assert [r.id for r in await archive.list_runs(limit=2)] == [third, second]
    assert [r.id for r in await archive.list_runs(space="a")] == [third, first]
    assert [r.id for r in await archive.list_runs(status="ended")] == [second]
    assert [r.id for r in await archive.list_runs(status="running", space="a")] == [third, first]
    assert await archive.list_runs(space="nowhere") == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"status": "done"}, "use one of: queued, running, paused, ended"),
        ({"limit": 0}, "1 or more"),
    ],
)
async def test_list_runs_refuses_bad_arguments_saying_what_is_accepted(
    ports: Ports, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        await ports.archive.list_runs(**arguments)  # type: ignore[arg-type]


async def test_find_runs_filters_combine_and_page_newest_first(ports: Ports) -> None:
    cli = await new_run(ports, "one", template="cli")
    gallery = await new_run(ports, "two", template="gallery")
    other_cast = await ports.transcript.create_run(
        spec(models=("sonnet",), template="other"),
        (ParticipantInfo(0, "sonnet", "Claude 1", "s", "x"),),
        "l",
        T0,
    )
    last = await new_run(ports, "three", template="cli")
    await ports.transcript.finish_run(gallery, RunEnd(reason="stopped"), T0)
    assert await found(ports) == [last, other_cast.id, gallery, cli]
    assert await found(ports, template="cli") == [last, cli]
    assert await found(ports, model="opus") == [last, gallery, cli]
    assert await found(ports, model="opus", before=last) == [gallery, cli]
    assert await found(ports, status="ended") == [gallery]
    assert await found(ports, status="running", template="gallery") == []
    assert [r.id for r in await ports.archive.find_runs(RunFilter(), limit=2)] == [
        last,
        other_cast.id,
    ]
    page = await ports.archive.find_runs(RunFilter(template="cli"))
    assert page == [await ports.archive.get_run(run_id) for run_id in (last, cli)]


async def test_choices_are_the_models_and_templates_stored_runs_used(ports: Ports) -> None:
    assert await ports.archive.choices() == ([], [])
    await new_run(ports, template="gallery")
    await new_run(ports, template="cli")
    assert await ports.archive.choices() == (["gpt4o", "opus"], ["cli", "gallery"])


# --- Archive: the search rules (RunFilter's docstring) --------------------------------------------


async def test_search_needs_every_word_in_one_reply(ports: Ports) -> None:
    both = await new_run(ports, "the lighthouse keeper sleeps")
    await new_run(ports, "a lighthouse", "a keeper")  # each word, but never in the same reply
    await new_run(ports, "the keeper of nothing")
    assert await found(ports, q="lighthouse keeper") == [both]
    assert await found(ports, q="keeper lighthouse") == [both]  # in any order


async def test_search_matches_words_not_pieces_of_them(ports: Ports) -> None:
    await new_run(ports, "the lighthouse at dawn")
    for piece in ("light", "house", "ighthous", "lighthouses", "the lighthouse dawns"):
        assert await found(ports, q=piece) == [], piece


async def test_a_star_after_a_word_matches_every_word_it_begins(ports: Ports) -> None:
    lighthouse = await new_run(ports, "the lighthouse at dawn")
    lightning = await new_run(ports, "Lightning struck twice")
    await new_run(ports, "a twilight walk")  # "light" inside a word is no prefix
    assert await found(ports, q="light*") == [lightning, lighthouse]
    assert await found(ports, q="lighthouse*") == [lighthouse]
    assert await found(ports, q="light* dawn") == [lighthouse]


async def test_search_ignores_case_and_accents(ports: Ports) -> None:
    cafe = await new_run(ports, "Un Café au lait, naïve et DÉJÀ froid")
    plain = await new_run(ports, "a cafe for the naive")
    assert await found(ports, q="cafe") == [plain, cafe]
    assert await found(ports, q="CAFÉ") == [plain, cafe]
    assert await found(ports, q="naive deja") == [cafe]
    assert await found(ports, q="déjà*") == [cafe]


async def test_search_results_are_newest_first_and_keep_the_other_filters(ports: Ports) -> None:
    ids = [await new_run(ports, f"signal number {n}", template=t) for n, t in enumerate("abab")]
    assert await found(ports, q="signal") == ids[::-1]
    assert await found(ports, q="signal", template="a") == [ids[2], ids[0]]
    assert await found(ports, q="signal", before=ids[2]) == [ids[1], ids[0]]
    assert [r.id for r in await ports.archive.find_runs(RunFilter(q="signal"), limit=1)] == [ids[3]]


async def test_search_words_are_only_ever_text(ports: Ports) -> None:
    """FTS-style operators, quotes and punctuation in the box do nothing special."""
    both = await new_run(ports, "not a lighthouse, or a harbour")
    alone = await new_run(ports, "a lighthouse")
    quoted = await new_run(ports, 'she said "hi" and I don\'t know why')
    assert await found(ports, q="NOT lighthouse") == [both]
    assert await found(ports, q="lighthouse OR submarine") == []
    assert await found(ports, q="lighthouse") == [alone, both]
    assert await found(ports, q='"hi"') == [quoted]
    assert await found(ports, q="don't") == [quoted]
    assert await found(ports, q="lighthouse,") == [alone, both]
    for nothing in ("* ( ) :", '"', "-", "_"):
        assert await found(ports, q=nothing) == [], nothing


async def test_hits_show_the_matching_reply_with_the_words_marked(ports: Ports) -> None:
    texts = ("nothing here", "Out past the Lighthouse the café closes " + "and waits " * 20)
    run_id = await new_run(ports, *texts)
    other = await new_run(ports, "no match at all")
    hits = await ports.archive.hits("lighthouse cafe", [run_id, other])
    assert set(hits) == {run_id}
    hit = hits[run_id]
    assert (hit.run_id, hit.seq) == (run_id, 1)
    assert [text for text, marked in hit.parts if marked] == ["Lighthouse", "café"]
    shown = "".join(text for text, _ in hit.parts)
    assert shown.endswith("…") and shown.strip("…") in texts[1]  # cut, but never rewritten
    assert await ports.archive.hits("submarine", [run_id]) == {}
    assert await ports.archive.hits("* :", [run_id]) == {}


# --- Processes: the live driving processes --------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    """Two driving processes and a viewer on one store, and a way to hold a run as `first`."""

    first: Processes
    second: Processes
    viewer: Processes
    hold: Callable[[], Awaitable[int]]  # a run `first` holds a live lease on: its id
    close: Callable[[], Awaitable[None]]


async def _sqlite_registry(tmp_path: Path, seconds: float) -> Registry:
    path = tmp_path / "data" / "backrooms.db"
    first, second = [await SqliteStore.open(path, lease_seconds=seconds) for _ in range(2)]
    viewer = await SqliteStore.open(path, owner=False)

    async def hold() -> int:
        return (await first.create_run(spec(), CAST, "log.txt", T0)).id  # it is first's at once

    async def close() -> None:
        for store in (first, second, viewer):
            await store.close()

    return Registry(first.processes, second.processes, viewer.processes, hold, close)


async def _memory_registry(tmp_path: Path, seconds: float) -> Registry:
    table = ProcessTable()
    store = MemoryStore()
    first = MemoryProcesses(table, "here:1:aa", seconds)

    async def hold() -> int:
        run_id = (await store.create_run(spec(), CAST, "log.txt", T0)).id
        table.leases[run_id] = ("here:1:aa", table.clock() + 10)
        return run_id

    second = MemoryProcesses(table, "here:2:bb", seconds)
    return Registry(first, second, MemoryProcesses(table, None), hold, store.close)


async def _postgres_registry(url: str, seconds: float) -> Registry:
    location = StoreLocation("postgres", url)
    first, second = [await PostgresStore.open(location, lease_seconds=seconds) for _ in range(2)]
    viewer = await PostgresStore.open(location, owner=False)

    async def hold() -> int:
        if first.leases is None:
            pytest.skip("runs held are counted from leases, not on PostgreSQL yet (pgleases)")
        record = await viewer.create_run(spec(), CAST, "log.txt", T0)
        await first.leases.claim(record.id)
        return record.id

    async def close() -> None:
        for store in (first, second, viewer):
            await store.close()

    return Registry(first.processes, second.processes, viewer.processes, hold, close)


@contextlib.asynccontextmanager
async def _registry(kind: str, tmp_path: Path, seconds: float = 10.0) -> AsyncIterator[Registry]:
    if kind == "postgres":
        async with fresh_schema() as url:
            opened = await _postgres_registry(url, seconds)
            try:
                yield opened
            finally:
                await opened.close()
        return
    opened = await (_sqlite_registry if kind == "sqlite" else _memory_registry)(tmp_path, seconds)
    try:
        yield opened
    finally:
        await opened.close()


KINDS = ["sqlite", "memory", "postgres"]


@pytest.mark.parametrize("implementation", [SqlProcesses, MemoryProcesses])
def test_every_processes_implementation_has_the_port_s_methods(implementation: type) -> None:
    declared = {n: f for n, f in vars(Processes).items() if inspect.isfunction(f) and n[0] != "_"}
    assert set(declared) == {"beat", "leave", "alive", "holders"}
    for name, method in declared.items():
        ours = getattr(implementation, name)
        assert inspect.iscoroutinefunction(ours), name
        assert inspect.signature(ours).parameters == inspect.signature(method).parameters, name


@pytest.mark.parametrize("kind", KINDS)
async def test_no_process_is_alive_until_one_beats(kind: str, tmp_path: Path) -> None:
    async with _registry(kind, tmp_path) as reg:
        assert await reg.viewer.alive() == []


@pytest.mark.parametrize("kind", KINDS)
async def test_beating_processes_are_listed_oldest_first_with_role_and_start(
    kind: str, tmp_path: Path
) -> None:
    async with _registry(kind, tmp_path) as reg:
        before = datetime.now(UTC) - timedelta(seconds=5)
        await reg.first.beat("worker")
        await asyncio.sleep(0.05)  # SQLite's clock counts milliseconds: two starts, two times
        await reg.second.beat("bot")
        await reg.first.beat("worker")  # a second beat keeps the first start
        found = await reg.viewer.alive()
        assert [(p.role, p.runs) for p in found] == [("worker", 0), ("bot", 0)]
        assert found[0].owner != found[1].owner
        assert all(before < p.since < datetime.now(UTC) + timedelta(seconds=5) for p in found)
        assert found[0].since <= found[1].since and found[0].since.tzinfo is not None
        assert await reg.first.alive() == found  # every process reads the same


@pytest.mark.parametrize("kind", KINDS)
async def test_a_process_that_leaves_is_no_longer_alive(kind: str, tmp_path: Path) -> None:
    async with _registry(kind, tmp_path) as reg:
        await reg.first.beat("worker")
        await reg.second.beat("worker")
        await reg.first.leave()
        await reg.first.leave()  # leaving twice is harmless
        assert [p.owner for p in await reg.viewer.alive()] == [
            p.owner for p in await reg.second.alive()
        ]
        assert len(await reg.viewer.alive()) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_process_whose_heartbeat_lapsed_is_not_alive(kind: str, tmp_path: Path) -> None:
    async with _registry(kind, tmp_path, seconds=0.3) as reg:
        await reg.first.beat("worker")
        assert len(await reg.viewer.alive()) == 1
        for _ in range(200):  # bounded: 10 s at most
            if not await reg.viewer.alive():
                break
            await asyncio.sleep(0.05)
        assert await reg.viewer.alive() == []
        await reg.first.beat("worker")  # beating again makes it alive again
        assert len(await reg.viewer.alive()) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_store_that_drives_nothing_registers_no_process(kind: str, tmp_path: Path) -> None:
    async with _registry(kind, tmp_path) as reg:
        with pytest.raises(StoreError, match="drives no run"):
            await reg.viewer.beat("worker")
        with pytest.raises(StoreError, match="drives no run"):
            await reg.viewer.leave()


@pytest.mark.parametrize("kind", KINDS)
async def test_runs_held_are_counted_per_process_and_named_per_run(
    kind: str, tmp_path: Path
) -> None:
    async with _registry(kind, tmp_path) as reg:
        await reg.first.beat("worker")
        await asyncio.sleep(0.05)  # two starts, two times (as above)
        await reg.second.beat("bot")
        held = [await reg.hold(), await reg.hold()]
        found = await reg.viewer.alive()
        assert [(p.role, p.runs) for p in found] == [("worker", 2), ("bot", 0)]
        holders = await reg.viewer.holders([*held, 999])
        assert holders == {held[0]: found[0].owner, held[1]: found[0].owner}
        assert await reg.viewer.holders([]) == {}


async def test_the_archive_version_moves_with_every_commit_or_is_none(ports: Ports) -> None:
    """A viewer keeps what it made from the archive while `version()` reads the same
    (bot/web/cache.py), so every commit, a new run, a reply or an end, must move it."""
    first = await ports.archive.version()
    if first is None:  # this store cannot tell: a viewer keeps nothing from it
        return
    assert await ports.archive.version() == first  # nothing was committed in between
    run_id = await new_run(ports)
    after_run = await ports.archive.version()
    await ports.transcript.append_reply(reply(run_id, 0))
    after_reply = await ports.archive.version()
    await ports.transcript.finish_run(run_id, RunEnd(reason="max_turns", turns=1), T0)
    after_end = await ports.archive.version()
    assert first != after_run != after_reply != after_end

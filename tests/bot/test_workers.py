"""`backrooms start`, `worker` and `workers` as a user meets them: real processes on one folder's
database, against the fake model server, every wait bounded.

The fake model answers by the number of messages it is sent (helpers.by_message_count), so a run
taken over after a crash ends with the same replies as the same run uninterrupted."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from backrooms_engine.logfile import transcript_text
from backrooms_engine.ports import ProcessInfo
from backrooms_engine.records import Reply, RunRecord
from backrooms_engine.store import StoreLocation, open_store, store_location
from backrooms_engine.store.postgres import PostgresStore
from tests.conftest import fake_env
from tests.helpers import backrooms, by_message_count, spawn_backrooms, until
from tests.postgres import fresh_schema

LEASE = 2.0  # seconds: short, so a lapsed lease is claimed quickly
LIMIT = 120.0  # seconds any one wait may take under load (process starts take seconds)
NO_WORKER = "no worker is running; start one with: backrooms worker\n"


def _env(model_server, folder: Path, **extra: str) -> dict[str, str]:
    return fake_env(model_server, folder) | {"BACKROOMS_LEASE_SECONDS": str(LEASE)} | extra


class Worker:
    """A `backrooms worker` child process whose log lines are read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))

    @property
    def log(self) -> str:
        return "".join(self.lines)

    async def ready(self) -> None:
        await until(lambda: "worker ready" in self.log or self.proc.returncode is not None, LIMIT)
        assert "worker ready" in self.log, self.log[-2000:]

    async def stop(self, sig: int = signal.SIGTERM, limit: float = LIMIT) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), limit)
        await asyncio.wait_for(self._reader, 10)
        return code


@contextlib.asynccontextmanager
async def workers(env: dict[str, str], cwd: Path, *args: str) -> AsyncIterator[list[Worker]]:
    """Spawn workers on demand (`spawn`), each killed at the end if it is still running."""
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            if worker.proc.returncode is None:
                worker.proc.kill()
                await worker.proc.wait()


async def spawn_worker(started: list[Worker], env: dict[str, str], cwd: Path, *args: str) -> Worker:
    proc = await spawn_backrooms("worker", *args, env=env, cwd=cwd, merge_stderr=True)
    worker = Worker(proc)
    started.append(worker)
    return worker


async def _until_async(check: Callable[[], object], what: str, limit: float = LIMIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await check():  # type: ignore[misc]
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached in {limit} s")
        await asyncio.sleep(0.2)


async def start(env: dict[str, str], cwd: Path, models: str = "opus gpt4o", turns: int = 2):
    return await backrooms(
        "start", "--lm", *models.split(), "--max-turns", str(turns), env=env, cwd=cwd
    )


def viewer(env: dict[str, str]):
    """The store `env` names, opened as `backrooms runs` opens it."""
    return open_store(store_location(env), owner=False)


async def stored(env: dict[str, str]) -> list[tuple[RunRecord, list[Reply]]]:
    async with await viewer(env) as store:
        return [(run, await store.replies(run.id)) for run in await store.list_runs()]


async def alive(env: dict[str, str]) -> list[ProcessInfo]:
    async with await viewer(env) as store:
        return await store.processes.alive()


def all_ended(count: int, env: dict[str, str]) -> Callable[[], object]:
    async def check() -> bool:
        runs = await stored(env)
        return len(runs) == count and all(run.end is not None for run, _ in runs)

    return check


async def uninterrupted(model_server, tmp_path: Path, models: str = "opus gpt4o") -> list[str]:
    """The same conversation run start to end in one process, in a folder of its own."""
    calm = tmp_path / "calm"
    calm.mkdir(exist_ok=True)
    env = fake_env(model_server, calm)
    code, _, err = await backrooms(
        "run", "--lm", *models.split(), "--max-turns", "2", env=env, cwd=calm, limit=LIMIT
    )
    assert code == 0, err
    [(_, replies)] = await stored(env)
    return [r.text for r in replies]


def assert_each_as_uninterrupted(runs, expected: list[str]) -> None:
    for run, replies in runs:
        assert run.end is not None and run.end.reason == "max_turns", run
        assert [r.text for r in replies] == expected  # none lost, none twice, in order
        assert Path(run.log_path).read_text(encoding="utf-8") == transcript_text(replies, run.end)


# --- start, then a worker ------------------------------------------------------------------------


async def test_a_started_run_waits_for_a_worker_which_drives_it_to_its_end(model_server, tmp_path):
    model_server.set_responder(by_message_count)
    env = _env(model_server, tmp_path)
    code, out, err = await start(env, tmp_path)
    assert (code, out, err) == (0, "run 1 queued\n", NO_WORKER)
    listing = await backrooms("runs", env=env, cwd=tmp_path)
    assert " queued " in listing[1].splitlines()[1]  # stored, driven by nobody yet
    assert model_server.requests == []  # `start` asks no model anything

    async with workers(env, tmp_path) as started:
        worker = await spawn_worker(started, env, tmp_path)
        await worker.ready()
        await _until_async(all_ended(1, env), "the run's end")
        assert await worker.stop() == 0
    assert "run 1: claimed" in worker.log
    assert_each_as_uninterrupted(await stored(env), await uninterrupted(model_server, tmp_path))


async def test_a_refused_start_says_why_in_one_line_and_stores_nothing(model_server, tmp_path):
    env = _env(model_server, tmp_path)
    code, out, err = await start(env, tmp_path, models="opus nosuchmodel")
    assert code == 2 and out == ""
    assert err.startswith("backrooms: error: unknown model 'nosuchmodel'") and err.count("\n") == 1
    env.pop("OPENAI_API_KEY")
    code, out, err = await start(env, tmp_path, models="opus gpt4o")
    assert code == 2 and "OPENAI_API_KEY" in err and "Traceback" not in err
    code, out, _ = await backrooms("runs", env=env, cwd=tmp_path)
    assert "1" not in out.split()  # no run was stored


async def test_workers_lists_a_live_worker_with_the_runs_it_holds(model_server, tmp_path):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 1.0  # five seconds a reply: the run is held while we look
    env = _env(model_server, tmp_path)
    code, out, _ = await backrooms("workers", env=env, cwd=tmp_path)
    assert code == 0 and out.startswith("no process is driving runs in ")

    async with workers(env, tmp_path) as started:
        worker = await spawn_worker(started, env, tmp_path)
        await worker.ready()
        code, out, err = await start(env, tmp_path)
        assert (code, out, err) == (0, "run 1 queued\n", "")  # a worker is alive: no hint
        await until(lambda: "run 1: claimed" in worker.log, LIMIT, "the claim")
        code, out, _ = await backrooms("workers", env=env, cwd=tmp_path)
        [line] = out.splitlines()
        assert f":{worker.proc.pid}:" in line and " worker " in line and line.endswith(" 1 run")
        runs = await backrooms("runs", env=env, cwd=tmp_path)
        assert runs[1].splitlines()[1].split()[-1] == line.split()[0]  # its owner, by name
        assert await worker.stop() == 0
    code, out, _ = await backrooms("workers", env=env, cwd=tmp_path)
    assert out.startswith("no process is driving runs in ")  # it left on its way out


# --- several workers -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def store_env(kind: str, model_server, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The environment of processes sharing a SQLite folder, or a PostgreSQL schema of their own
    (whose multi-worker runs need leases there: skipped while PostgresStore has none)."""
    env = _env(model_server, tmp_path)
    if kind == "sqlite":
        yield env
        return
    async with fresh_schema() as url:
        probe = await PostgresStore.open(StoreLocation("postgres", url))
        try:
            unfenced = probe.leases is None
        finally:
            await probe.close()
        if unfenced:
            pytest.skip("two workers on PostgreSQL need its leases (branch pgleases)")
        env.pop("BACKROOMS_DB")
        yield env | {"BACKROOMS_DATABASE_URL": url}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_two_workers_lose_no_run_when_one_is_killed_mid_run(kind, model_server, tmp_path):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 0.2  # about a second a reply
    expected = await uninterrupted(model_server, tmp_path)
    async with store_env(kind, model_server, tmp_path) as env:
        await _two_workers_one_killed(env, tmp_path, expected)


async def _two_workers_one_killed(env: dict[str, str], tmp_path: Path, expected: list[str]):
    async with workers(env, tmp_path) as started:
        first, second = [
            await spawn_worker(started, env, tmp_path, "--max-runs", "3") for _ in "ab"
        ]
        await asyncio.gather(first.ready(), second.ready())
        for _ in range(6):
            assert (await start(env, tmp_path))[0] == 0

        async def both_hold_runs() -> bool:
            return sum(1 for p in await alive(env) if p.runs > 0) == 2

        await _until_async(both_hold_runs, "both workers holding runs")
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
        await _until_async(all_ended(6, env), "every run's end")
        assert await second.stop() == 0
    runs = await stored(env)
    assert len(runs) == 6
    assert_each_as_uninterrupted(runs, expected)
    assert "claimed" in second.log


async def test_a_worker_stopped_with_sigterm_exits_0_and_the_other_takes_its_runs(
    model_server, tmp_path
):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 0.6  # three seconds a reply: runs are mid-way at the SIGTERM
    env = _env(model_server, tmp_path, BACKROOMS_SHUTDOWN_DEADLINE="5")
    expected = await uninterrupted(model_server, tmp_path)
    async with workers(env, tmp_path) as started:
        first = await spawn_worker(started, env, tmp_path)
        await first.ready()
        for _ in range(2):
            assert (await start(env, tmp_path))[0] == 0
        await until(lambda: "run 2: claimed" in first.log, LIMIT, "the claims")
        second = await spawn_worker(started, env, tmp_path)
        await second.ready()
        loop = asyncio.get_running_loop()
        since = loop.time()
        assert await first.stop(signal.SIGTERM, limit=30) == 0
        assert loop.time() - since < 30  # well within a platform's 30 s kill
        await _until_async(all_ended(2, env), "every run's end, by the other worker")
        assert await second.stop() == 0
    assert "run 1: claimed" in second.log and "run 2: claimed" in second.log
    assert_each_as_uninterrupted(await stored(env), expected)


async def test_a_worker_without_a_run_s_key_leaves_it_alone(model_server, tmp_path):
    model_server.set_responder(by_message_count)
    env = _env(model_server, tmp_path)
    assert (await start(env, tmp_path, models="opus gpt4o"))[0] == 0
    assert (await start(env, tmp_path, models="opus opus"))[0] == 0
    keyless = {k: v for k, v in env.items() if k != "OPENAI_API_KEY"}
    async with workers(keyless, tmp_path) as started:
        worker = await spawn_worker(started, keyless, tmp_path)
        await worker.ready()

        async def second_ended() -> bool:
            return any(run.id == 2 and run.end is not None for run, _ in await stored(env))

        await _until_async(second_ended, "the opus run's end")
        await asyncio.sleep(LEASE)  # a few more looks at the waiting runs
        assert await worker.stop() == 0
    assert "run 1: left for another process" in worker.log and "OPENAI_API_KEY" in worker.log
    assert "run 1: claimed" not in worker.log
    [(run1, replies1)] = [(r, rs) for r, rs in await stored(env) if r.id == 1]
    assert (run1.status, run1.end, replies1) == ("queued", None, [])  # untouched, still queued
    assert not any("gpt-4o" in str(r.body) for r in model_server.requests)


async def test_a_worker_with_max_runs_1_holds_one_run_at_a_time(model_server, tmp_path):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 0.1
    env = _env(model_server, tmp_path)
    for _ in range(3):
        assert (await start(env, tmp_path))[0] == 0
    held: list[int] = []
    going: list[int] = []
    async with workers(env, tmp_path) as started:
        worker = await spawn_worker(started, env, tmp_path, "--max-runs", "1")
        await worker.ready()

        async def sample_until_all_ended() -> bool:
            held.extend(p.runs for p in await alive(env))
            runs = await stored(env)
            going.append(sum(1 for run, rs in runs if run.end is None and rs))
            return all(run.end is not None for run, _ in runs)

        await _until_async(sample_until_all_ended, "every run's end")
        assert await worker.stop() == 0
    assert max(held) == 1 and max(going) == 1  # one at a time, and it did hold one
    assert worker.log.count(": claimed") == 3


async def test_start_workers_and_runs_on_postgresql_never_print_the_password(
    model_server, tmp_path
):
    async with fresh_schema() as url:
        secret = url.replace("postgres@", "postgres:sekrit-pw@", 1)  # trust auth ignores it
        env = _env(model_server, tmp_path) | {"BACKROOMS_DATABASE_URL": secret}
        env.pop("BACKROOMS_DB")
        started = await start(env, tmp_path)
        listed = await backrooms("workers", env=env, cwd=tmp_path)
        runs = await backrooms("runs", env=env, cwd=tmp_path)
    assert started == (0, "run 1 queued\n", NO_WORKER)
    assert listed[0] == 0 and "postgres:***@" in listed[1]
    assert runs[0] == 0 and " queued " in runs[1].splitlines()[1]
    for _, out, err in (started, listed, runs):
        assert "sekrit" not in out + err

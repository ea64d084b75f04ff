"""Small pieces several tests share: an observer that records events, a runtime on the fakes, and
a run manager on the in-memory fakes (a scripted provider and the memory store)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TypeVar

from backrooms_engine import templates
from backrooms_engine.engine import RetryPolicy
from backrooms_engine.events import Event, ReplyFinished
from backrooms_engine.manager import Limits, RunManager
from backrooms_engine.observers import DEFAULT_QUEUE_SIZE
from backrooms_engine.ports import Observer
from backrooms_engine.records import RunEnd, RunSpec
from backrooms_engine.registry import load_registry
from bot.runtime import Runtime, open_runtime
from bot.settings import Settings
from tests.fakes.memory_store import MemoryStore
from tests.fakes.scripted_provider import ScriptedProvider

E = TypeVar("E", bound=Event)


class RecordingObserver:
    def __init__(self, name: str = "recorder"):
        self.name = name
        self.events: list[Event] = []

    async def handle(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def texts(self) -> list[str]:
        return [e.reply.text for e in self.of(ReplyFinished)]


@contextlib.asynccontextmanager
async def runtime(
    env: Mapping[str, str], templates_dir: Path | None = None
) -> AsyncIterator[Runtime]:
    async with open_runtime(Settings.from_mapping(env), templates_dir=templates_dir) as rt:
        yield rt


async def run_to_end(rt: Runtime, spec: RunSpec, *observers: Observer) -> tuple[int, RunEnd]:
    return await drive(rt.manager, spec, *observers)


async def drive(manager: RunManager, spec: RunSpec, *observers: Observer) -> tuple[int, RunEnd]:
    """Start a run and wait for its end: (run id, end)."""
    handle = await manager.start(spec, list(observers))
    end = await manager.wait(handle.id)
    return handle.id, end


def dummy_keys() -> dict[str, str]:
    """A key for every provider of the default registry, so no start is refused for want of one."""
    providers = load_registry().providers.values()
    return {p.key_env: f"test-key-for-{p.name}" for p in providers if p.key_env}


@contextlib.asynccontextmanager
async def scripted_manager(
    provider: ScriptedProvider,
    log_dir: Path,
    *,
    limits: Limits | None = None,
    retry: RetryPolicy | None = None,
    observer_queue: int = DEFAULT_QUEUE_SIZE,
    store: MemoryStore | None = None,
) -> AsyncIterator[RunManager]:
    """A RunManager on the in-memory fakes: `provider` answers for every model, the memory store
    (or `store`) keeps the transcript (`manager.store`), log files go to `log_dir`."""
    store = store or MemoryStore()
    manager = RunManager(
        registry=load_registry(),
        template_dirs=templates.search_path(),
        store=store,
        provider_for=lambda spec: provider,
        env=dummy_keys(),
        log_dir=log_dir,
        retry=retry or RetryPolicy(base_delay=0),
        limits=limits,
        observer_queue=observer_queue,
    )
    try:
        yield manager
    finally:
        await manager.shutdown(5)
        await store.close()


async def until(predicate, limit: float = 15.0, what: str = "condition") -> None:
    """Wait, bounded, until `predicate()` holds (polling: the thing waited on is in another
    process or behind an event loop we do not own)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached in {limit} s")
        await asyncio.sleep(0.02)


def by_message_count(api: str, body: dict) -> str:
    """A fake model reply that depends only on the request, so a request sent again (after a
    crash) gets the same answer and transcripts can be compared with an uninterrupted run."""
    return f"{body.get('model', 'world')} answers message {len(body.get('messages', []))}"


async def spawn_backrooms(
    *args: str, env: Mapping[str, str], cwd: Path, merge_stderr: bool = False
):
    """The console script in a child process, without the developer's real keys."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "OPENAI"))}
    full.update(env)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from bot.cli import main; sys.exit(main())",
        *args,
        env=full,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
    )


async def backrooms(*args: str, env: Mapping[str, str], cwd: Path, limit: float = 60):
    """Run `backrooms ARGS` to its end: (exit code, stdout, stderr)."""
    proc = await spawn_backrooms(*args, env=env, cwd=cwd)
    out, err = await asyncio.wait_for(proc.communicate(), limit)
    return proc.returncode, out.decode(), err.decode()

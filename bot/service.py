"""The long-running service: chat surfaces and the web viewer around one RunManager.

One process owns the store (ARCHITECTURE.md, "One owner per store"): it resumes the runs its surfaces
own at start, and on SIGTERM or SIGINT stops taking commands, pauses the running runs (they stay
resumable) within the shutdown deadline, closes the surfaces and the store, and exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Sequence
from typing import Protocol

from backrooms_engine.ports import Observer
from backrooms_engine.providers import ProviderPool
from backrooms_engine.records import RunRecord

from .runtime import Runtime, open_runtime
from .settings import Settings

log = logging.getLogger(__name__)


class Surface(Protocol):
    name: str  # the RunSpec.surface of the runs it starts: "discord", "slack", "web"

    async def start(self, rt: Runtime) -> None:
        """Connect and begin taking commands; return once ready (a failure raises)."""
        ...

    async def observers_for(self, record: RunRecord) -> Sequence[Observer] | None:
        """The observers a resumed run of this surface gets (its chat poster), or None to leave
        the run alone (the surface found it cannot go on and ended it)."""
        ...

    async def stop_accepting(self) -> None:
        """Refuse new commands politely; runs are paused by the manager next."""
        ...

    async def close(self) -> None: ...


async def serve(settings: Settings, surfaces: Sequence[Surface]) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    async with open_runtime(settings) as rt:
        started: list[Surface] = []
        await warm(rt.providers)
        try:
            for surface in surfaces:
                await surface.start(rt)
                started.append(surface)
                log.info("%s surface ready", surface.name)
            by_name = {s.name: s for s in surfaces}
            resumed = await rt.manager.resume_all(_owned_by(by_name))
            log.info("resumed %d runs", len(resumed))
            await stopping.wait()
            log.info("shutting down: pausing %d runs", len(rt.manager.active()))
        finally:
            for surface in started:
                await surface.stop_accepting()
            await rt.manager.shutdown(settings.shutdown_deadline)
            for surface in reversed(started):
                await surface.close()
    return 0


async def warm(providers: ProviderPool) -> None:
    """Ready the process before it takes commands: the model SDKs imported off the event loop
    (ProviderPool.warm), then, once per process, everything alive (the SDKs' modules, classes and
    schemas, a few hundred thousand objects that live as long as the process) moved out of the
    cyclic garbage collector's sight. Otherwise each full collection walks them all, a stall of
    about 0.2 s for every run and chat surface of the process (bench/). Process-wide, so it is
    done here, in the application, not in the engine."""
    await providers.warm()
    _freeze_once()


_frozen = False


def _freeze_once() -> None:
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()  # what is garbage now is freed, not frozen
        gc.freeze()


def _owned_by(surfaces: dict[str, Surface]):
    async def observers_for(record: RunRecord) -> Sequence[Observer] | None:
        surface = surfaces.get(record.spec.surface)
        if surface is None:
            return None  # a terminal run, or a surface not running here: `backrooms resume` it
        return await surface.observers_for(record)

    return observers_for

"""The long-running service: chat surfaces and the web viewer around one RunManager, or none of
them (`backrooms worker`).

Several services may share one store (ARCHITECTURE.md, "Runs owned by leases"): each drives the
runs it starts, and about once a second claims the waiting runs it can serve (never claimed,
released by a service that stopped, or whose owner died or stopped renewing its lease), rebuilding
each from the store: its own surfaces' runs in its own spaces, or for a worker every run no chat
shows (claiming.py). On SIGTERM or SIGINT (a rolling deploy: the new copy is already up) it
stops claiming, closes its chat connections first (the Discord gateway, Slack's Socket Mode) so
that commands reach the new copy, then stops its runs and releases their leases (the new copy
claims them at once; they are not paused), its posters showing what they still owe over REST
until the shutdown deadline; then it closes the surfaces and the store, and exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Sequence
from typing import Protocol

from backrooms_engine.errors import StoreError
from backrooms_engine.ports import Observer
from backrooms_engine.providers import ProviderPool
from backrooms_engine.records import RunRecord

from .claiming import Choice, Claims
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

    def shows(self, record: RunRecord) -> bool:
        """Whether this surface can show a run of its own surface: its space (a Discord server,
        a Slack workspace) is one it is connected to. Asked before a waiting run is claimed."""
        ...

    async def stop_accepting(self) -> None:
        """Take no more commands: close the connection they arrive on, if it is one that
        another copy of the service can take over (a gateway, a socket), and refuse politely
        whatever still arrives. Posting must keep working until `close`: the manager releases
        the runs next, while their posters finish."""
        ...

    async def close(self) -> None: ...


async def serve(
    settings: Settings,
    surfaces: Sequence[Surface],
    claims: Claims | None = None,
    *,
    drives: bool = True,
) -> int:
    """`claims`: which waiting runs to claim (default: those its surfaces show, as a `bot`; no
    surface named: none, as `backrooms serve`, whose form queues runs for a driving process).
    `drives=False`: drive nothing at all (no Leases: nothing to renew)."""
    claims = claims or Claims("bot", frozenset(s.name for s in surfaces), settings.max_runs)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    async with open_runtime(settings, role=claims.role, drives=drives) as rt:
        started: list[Surface] = []
        await warm(rt.providers)
        try:
            for surface in surfaces:
                await surface.start(rt)
                started.append(surface)
                log.info("%s surface ready", surface.name)
            by_name = {s.name: s for s in surfaces}
            log.info(
                "%s ready: claims waiting runs of %s, at most %d at once",
                claims.role,
                ", ".join(sorted(claims.surfaces)) or "no surface",
                claims.max_runs,
            )
            claiming = (
                [asyncio.create_task(_claim_waiting(rt, by_name, claims), name="claim runs")]
                if claims.surfaces and drives
                else []
            )
            try:
                await stopping.wait()
            finally:
                for task in claiming:
                    task.cancel()
                await asyncio.gather(*claiming, return_exceptions=True)
            log.info("shutting down: releasing %d runs", len(rt.manager.active()))
        finally:
            for surface in started:  # first, so that commands reach the new copy at once
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


CLAIM_EVERY = 1.0  # seconds between two looks for waiting runs, at most


async def _claim_waiting(rt: Runtime, surfaces: dict[str, Surface], claims: Claims) -> None:
    """Claim, again and again, the waiting runs this process can serve (claiming.py)."""
    period = min(CLAIM_EVERY, rt.settings.lease_seconds / 3)
    choice = Choice(rt, surfaces, claims)
    while True:
        try:
            resumed = await rt.manager.resume_all(
                choice.observers_for, surfaces=claims.surfaces, wanted=choice.fresh_round()
            )
        except StoreError as exc:  # the store is busy or gone for a moment: look again later
            log.warning("cannot look for waiting runs: %s", exc)
        else:
            for handle in resumed:
                log.info("run %s: claimed, going on from the store", handle.id)
        await asyncio.sleep(period)

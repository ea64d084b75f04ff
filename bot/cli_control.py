"""`backrooms stop RUN`: stop a run from any process, whoever drives it (engine: stopping.py).

The command asks through the store (the run's desired state) and waits, up to 5 s, for the
run's end: the process that drives the run reads the request and ends it within about a second,
as its own stop would. This command drives nothing, so it opens the store as a viewer does;
only for a run that nobody drives (waiting to be claimed, queued, paused, or its driver dead)
does it also open it as a driving process, to claim that run, end it and let it go.

Its answer is on stdout: the run's closing summary (`run N: Conversation stopped by ...`, the
wording `runs` and `show` use for an end) and exit status 0; `run N is not running: <summary>`
and 1 for a run that had ended; 1 too when the driving process did not end the run in time (the
request stands: it ends the run once it reads it). A bad id is refused like every command's
bad input (status 2).
"""

from __future__ import annotations

import argparse
import contextlib

from backrooms_engine.errors import LeaseHeld
from backrooms_engine.records import RunEnd, RunRecord
from backrooms_engine.stopping import ask_and_wait, end_here
from backrooms_engine.store import AllPorts, open_store, unknown_run

from . import eventloop
from .cli_stored import has_database
from .interrupts import FAILED, OK, Interrupts
from .settings import Settings


def cmd_stop(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    if not has_database(settings):  # no database: no run; and a stop creates none
        raise unknown_run(args.run_id)
    return eventloop.run(_stop(settings, args.run_id, args.by), settings.event_loop)


async def _stop(settings: Settings, run_id: int, by: str) -> int:
    async with (
        await open_store(settings.store, owner=False) as viewer,
        contextlib.AsyncExitStack() as later,
    ):
        asked = await ask_and_wait(viewer, run_id, by, _Ending(settings, viewer, later, by))
    print(asked.message)
    return OK if asked.ended else FAILED


class _Ending:
    """Ends the run here when nobody drives it (stopping.py's `try_here`). The first look asks
    the viewer's store whether a live lease holds the run, and if so leaves it to its driver;
    later looks (the driver has not answered) try to claim it, which a live driver refuses.
    A store without leases (PostgreSQL until its leases come) cannot tell who drives a run:
    after the first look the run is taken for nobody's, as the manager does."""

    def __init__(
        self, settings: Settings, viewer: AllPorts, later: contextlib.AsyncExitStack, by: str
    ):
        self._settings = settings
        self._viewer = viewer
        self._later = later
        self._by = by
        self._driver: AllPorts | None = None

    async def __call__(self, record: RunRecord, first: bool) -> RunEnd | None:
        if first and record.status == "running":
            if await self._viewer.live_text.driven([record.id]):
                return None  # its driver reads the request
        driver = await self._driving_store()
        if driver.leases is None:
            return None if first else await end_here(driver.transcript, record.id, self._by)
        try:
            await driver.leases.claim(record.id)
        except LeaseHeld:
            return None
        try:
            return await end_here(driver.transcript, record.id, self._by)
        finally:
            await driver.leases.release(record.id)

    async def _driving_store(self) -> AllPorts:
        if self._driver is None:
            store = await open_store(
                self._settings.store, owner=True, lease_seconds=self._settings.lease_seconds
            )
            self._driver = await self._later.enter_async_context(store)
        return self._driver

"""The manager's side of leases (ARCHITECTURE.md, "Runs owned by leases"): claim the runs it
drives, renew them every third of the lease, and let a run go the moment it is no longer ours.

A run is dropped, at once and without a word to its observers, when
- a write for it is refused (LeaseLost: another process claimed it), or a renewal says so, or
- this process could not renew within the lease by its own clock (cut off from the store, or
  frozen): another process may already be driving it, so no model request is sent for it and
  nothing more is shown.
Dropping cancels the run's task; `fenced` observers and the `guarded` emit hear nothing after.
Without a Leases port (the in-memory store of unit tests) every run is simply ours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .errors import LeaseLost, StoreError
from .events import Event
from .ports import Leases, Observer

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]


class LeaseKeeper:
    def __init__(self, leases: Leases | None, drop: Callable[[int], None]) -> None:
        self.leases = leases
        self._drop = drop  # cancels the run's task (the manager's)
        self._until: dict[int, float] = {}  # run id -> monotonic time its lease lapses, to us
        self._lost: set[int] = set()
        self._renewer: asyncio.Task[None] | None = None

    # -- holding

    async def take(self, run_id: int) -> None:
        """Claim a run (LeaseHeld if another live process drives it)."""
        if self.leases is None:
            return
        since = time.monotonic()
        await self.leases.claim(run_id)
        self.hold(run_id, since)

    def hold(self, run_id: int, since: float) -> None:
        """Count a run as ours from `since` (a claim, or a creation, that began then)."""
        if self.leases is not None:
            self._lost.discard(run_id)
            self._until[run_id] = since + self.leases.seconds
            self._start_renewing()

    async def let_go(self, run_id: int) -> None:
        """Release a run that ended or paused here, so another process may claim it at once
        (a run dropped as lost is only forgotten: the fence would refuse the release anyway)."""
        self._until.pop(run_id, None)
        if run_id in self._lost:
            self._lost.discard(run_id)
            return
        if self.leases is None:
            return
        try:
            await self.leases.release(run_id)
        except StoreError as exc:  # it lapses by itself within the lease
            log.warning("run %s: cannot release its lease: %s", run_id, exc)

    def still_mine(self, run_id: int) -> bool:
        if self.leases is None:
            return True
        return run_id not in self._lost and time.monotonic() < self._until.get(run_id, 0.0)

    def lost(self, run_id: int, why: str, *, cancel: bool = True) -> None:
        """Drop a run at once: no request, no post, no write more for it. `cancel=False` from
        inside the run's own task, which is ending already."""
        if run_id in self._lost or self.leases is None:
            return
        log.warning("run %s: dropped, %s", run_id, why)
        self._lost.add(run_id)
        self._until.pop(run_id, None)
        if cancel:
            self._drop(run_id)

    def was_lost(self, run_id: int) -> bool:
        return run_id in self._lost

    # -- guarding what a run does

    def guarded(self, run_id: int, emit: Emit) -> Emit:
        """The run's emit, silent (and dropping the run) once the lease is not surely ours."""

        def guarded_emit(event: Event) -> None:
            if self.still_mine(run_id):
                emit(event)
            else:
                self.lost(run_id, "its lease ran out before this process could renew it")

        return guarded_emit

    def fenced(self, run_id: int, observer: Observer) -> Observer:
        return _Fenced(self, run_id, observer) if self.leases is not None else observer

    # -- renewing

    def _start_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_forever(), name="lease renewal")

    async def _renew_forever(self) -> None:
        assert self.leases is not None
        period = self.leases.seconds / 3
        while self._until:
            await asyncio.sleep(period)
            await self._renew_once(period)

    async def _renew_once(self, period: float) -> None:
        assert self.leases is not None
        since = time.monotonic()
        try:
            lost = await asyncio.wait_for(self.leases.renew(), period)
        except (StoreError, TimeoutError) as exc:
            log.warning("cannot renew leases: %s", exc)
            lost = set()
        else:
            for run_id in list(self._until):
                if run_id not in lost:
                    self._until[run_id] = since + self.leases.seconds
        for run_id in lost:
            self.lost(run_id, "another process claimed it")
        for run_id, until in list(self._until.items()):
            if time.monotonic() >= until:
                self.lost(run_id, "its lease ran out before this process could renew it")

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)


class _Fenced:
    """An observer that hears nothing once its run is no longer surely ours, and that drops the
    run when one of its own writes (a post record, a delivery cursor) is refused."""

    def __init__(self, keeper: LeaseKeeper, run_id: int, inner: Observer) -> None:
        self._keeper = keeper
        self._run_id = run_id
        self.inner = inner
        self.name = inner.name
        self.wants_deltas: Any = getattr(inner, "wants_deltas", True)
        # A chat poster stays one (delivery.py): it is shown from the store, not from a queue.
        self.durable: bool = bool(getattr(inner, "durable", False))

    async def handle(self, event: Event) -> None:
        if not self._keeper.still_mine(self._run_id):
            return
        try:
            await self.inner.handle(event)
        except LeaseLost:
            self._keeper.lost(self._run_id, "another process claimed it")
            raise

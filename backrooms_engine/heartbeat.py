"""A driving process's heartbeat in the store's registry of processes (ports.Processes).

It beats when the process opens its store and every third of the lease after, whether or not
the process holds runs (a worker waiting for work is alive too), and leaves on a clean exit. A
beat that fails is logged and tried again at the next period: the registry only tells people
what runs (`backrooms workers`), so it never stops a run.
"""

from __future__ import annotations

import asyncio
import logging

from .errors import StoreError
from .ports import Processes

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, processes: Processes, role: str) -> None:
        self._processes = processes
        self._role = role
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._beat()
        self._task = asyncio.create_task(self._beat_forever(), name="heartbeat")

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._processes.seconds / 3)
            await self._beat()

    async def _beat(self) -> None:
        try:
            await self._processes.beat(self._role)
        except StoreError as exc:
            log.warning("cannot register this process as alive: %s", exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self._processes.leave()
        except StoreError as exc:  # its row lapses by itself
            log.warning("cannot unregister this process: %s", exc)

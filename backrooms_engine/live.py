"""Live text for viewers in other processes: the reply being streamed, written to the store at
most once a second per run (ARCHITECTURE.md, "Runs owned by leases").

The first delta after a quiet second is written at once; later ones within the second wait for
it to pass, and only the latest text is written then. A finished reply needs no write: it is in
the transcript, and a viewer ignores live text of a reply that has finished.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .errors import StoreError
from .events import Event, ReplyDelta, ReplyFinished, ReplyStarted, RunEnded
from .ports import LiveText

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between two writes of one run's live text, at least


class LiveTextFeed:
    """The observer that keeps a run's live-text row current."""

    name = "live text"  # never tracked: it has no delivery cursor

    def __init__(self, run_id: int, port: LiveText, interval: float = INTERVAL) -> None:
        self._run_id = run_id
        self._port = port
        self._interval = interval
        self._latest: tuple[int, str, str] | None = None
        self._written_at = -interval
        self._timer: asyncio.Task[None] | None = None

    async def handle(self, event: Event) -> None:
        match event:
            case ReplyDelta(seq=seq, actor=actor, text=text):
                self._latest = (seq, actor, text)
                await self._soon()
            case ReplyStarted() | ReplyFinished() | RunEnded():
                self._latest = None
                if isinstance(event, RunEnded) and self._timer is not None:
                    self._timer.cancel()

    async def _soon(self) -> None:
        wait = self._written_at + self._interval - time.monotonic()
        if wait <= 0:
            await self._write()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._later(wait), name=f"live text {self._run_id}")

    async def _later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        await self._write()

    async def _write(self) -> None:
        latest = self._latest
        if latest is None:
            return
        self._written_at = time.monotonic()
        try:
            await self._port.write_live(self._run_id, *latest)
        except StoreError as exc:  # viewers elsewhere see the text when the reply finishes
            log.warning("run %s: cannot write live text: %s", self._run_id, exc)

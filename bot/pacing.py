"""Pacing of chat posts: sliding-window budgets shared by every run posting into one channel.

Whole messages wait their turn, in order; streaming edits are taken only when the budget has room
right now, so with many runs in one channel the edits thin out and the messages still go through.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable


class SlidingWindow:
    """At most `limit` events in any `window` seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self._clock = limit, window, clock
        self._times: collections.deque[float] = collections.deque()

    def delay(self) -> float:
        """Seconds until one more event fits (0 when it fits now)."""
        now = self._clock()
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window - now

    def take(self) -> None:
        self._times.append(self._clock())

    def used(self) -> int:
        """Events inside the current window."""
        self.delay()
        return len(self._times)


class ChannelBudget:
    """One channel's budget: every request counts against `requests`, new messages also against
    `messages`. Used through `message()` (waits, FIFO) and `try_edit()` (never waits)."""

    def __init__(self, requests: SlidingWindow, messages: SlidingWindow | None = None):
        self.requests = requests
        self.messages = messages
        self._turn = asyncio.Lock()  # asyncio.Lock wakes waiters in arrival order
        self.waiting = 0

    async def message(self) -> None:
        self.waiting += 1
        try:
            async with self._turn:
                # Sleeps exactly until a slot frees; no event would say so sooner.
                while (wait := self._delay(self.messages, self.requests)) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(wait)
                self.requests.take()
                if self.messages is not None:
                    self.messages.take()
        finally:
            self.waiting -= 1

    def try_edit(self, reserve: int = 1) -> bool:
        """Take a request slot for an edit only if messages are not waiting and `reserve` slots
        would still be left for them afterwards."""
        if self.waiting or self._turn.locked():
            return False
        if self.requests.used() + 1 + reserve > self.requests.limit:
            return False
        self.requests.take()
        return True

    async def request(self) -> None:
        """A request that must happen (a final edit): waits like a message but is not one."""
        self.waiting += 1
        try:
            async with self._turn:
                while (wait := self.requests.delay()) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(wait)
                self.requests.take()
        finally:
            self.waiting -= 1

    @staticmethod
    def _delay(*windows: SlidingWindow | None) -> float:
        return max((w.delay() for w in windows if w is not None), default=0.0)


class Spacing:
    """At least `interval` seconds between the end of one post and the start of the next, across
    everyone posting to one channel (Slack: about one message per second per channel)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval, self._clock = interval, clock
        self._last_landed = -float("inf")
        self._turn = asyncio.Lock()

    async def __aenter__(self) -> None:
        await self._turn.acquire()
        wait = self._last_landed + self.interval - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)

    async def __aexit__(self, *exc: object) -> None:
        self._last_landed = self._clock()
        self._turn.release()

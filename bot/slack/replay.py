"""HTTP mode's guard against replayed requests.

Slack signs each request over its timestamp and body, and bolt refuses a bad signature or a
timestamp more than five minutes off. Within those five minutes the same signed request sent again
verifies just as well: replayed, one `/backrooms start` would start a second run. So every
signature that passed is remembered until its timestamp leaves the window, and a request that
brings one back is answered with an empty 200 and goes no further. Slack itself never resends a
slash command or a button press with the same signature (its retries are signed anew).

The memory is this process's: with several HTTP-mode processes behind one balancer, a replay sent
to another one is not caught.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

log = logging.getLogger(__name__)

WINDOW = 5 * 60  # seconds either side of a timestamp that bolt's verifier accepts
MOST_REMEMBERED = 20_000  # a bound, far above what Slack sends one app in ten minutes


class ReplayGuard:
    def __init__(self, clock: Callable[[], float] = time.time, most: int = MOST_REMEMBERED):
        self._clock = clock
        self._most = most
        self._until: OrderedDict[str, float] = OrderedDict()  # signature -> when it expires

    def first_time(self, signature: str, timestamp: str) -> bool:
        """True the first time a verified signature is seen while it could still verify."""
        now = self._clock()
        self._forget(now)
        if signature in self._until:
            return False
        try:
            expires = int(timestamp) + WINDOW
        except ValueError:  # bolt has verified it, so this is only caution
            expires = int(now) + 2 * WINDOW
        self._until[signature] = max(expires, now)
        while len(self._until) > self._most:
            self._until.popitem(last=False)
        return True

    def _forget(self, now: float) -> None:
        # Oldest first, nearly: Slack's timestamps grow with arrival.
        for signature, expires in list(self._until.items()):
            if expires >= now:
                break
            del self._until[signature]

    async def middleware(
        self, req: AsyncBoltRequest, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        """A bolt middleware: it runs after bolt's own signature check, so only requests that
        verified are remembered (a flood of forged ones cannot fill the memory)."""
        if req.mode != "http":
            return await next()
        signature = _header(req, "x-slack-signature")
        if self.first_time(signature, _header(req, "x-slack-request-timestamp")):
            return await next()
        log.warning("slack: ignored a replayed request (a signature already used)")
        return BoltResponse(status=200, body="")


def _header(req: AsyncBoltRequest, name: str) -> str:
    values = req.headers.get(name) or [""]
    return str(values[0])

"""Failures a test asks for (``fail_next``) and Discord's rate limits: 5 requests per 2 s per
webhook, announced in X-RateLimit-* headers that discord.py's webhook adapter obeys, and about 30
messages a minute per channel with no warning headers (Discord's undocumented limit). Each limit
is enforced only when the test turns it on; every 429 is shaped like Discord's."""

from __future__ import annotations

import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from .errors import ApiError, too_many_requests
from .state import State


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    code: int
    message: str
    retry_after: float | None
    is_global: bool
    remaining: int


class Faults:
    def __init__(self) -> None:
        self._pending: list[Fault] = []

    def add(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        code: int,
        message: str | None,
        retry_after: float | None,
        is_global: bool,
        count: int,
    ) -> None:
        default = "You are being rate limited." if status == 429 else f"{status}: injected failure"
        fault = Fault(
            method.upper(),
            re.compile(path_regex),
            status,
            code,
            message or default,
            retry_after,
            is_global,
            count,
        )
        self._pending.append(fault)

    def inject(self, method: str, path: str) -> None:
        """Raise the first pending fault that matches this request, if any."""
        for fault in self._pending:
            if fault.method == method and fault.pattern.search(path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._pending.remove(fault)
                if fault.status == 429:
                    raise too_many_requests(
                        fault.retry_after if fault.retry_after is not None else 1.0,
                        scope="global" if fault.is_global else "user",
                        bucket="injected",
                        limit=1,
                        is_global=fault.is_global,
                    )
                raise ApiError(fault.status, fault.code, fault.message)


class RateLimits:
    def __init__(self, state: State) -> None:
        self._state = state
        self._webhook_hits: dict[int, deque[float]] = defaultdict(deque)
        self._channel_hits: dict[int, deque[float]] = defaultdict(deque)

    def webhook_hit(self, webhook_id: int) -> dict[str, str]:
        """Count a request to a webhook; the headers telling how many are left, or a 429."""
        limit, window = self._state.webhook_rate_limit
        hits = _recent(self._webhook_hits[webhook_id], window)
        now = time.monotonic()
        if not self._state.enforce_webhook_rate_limit:
            hits.append(now)
            return {}
        if len(hits) >= limit:
            self._state.rate_limited += 1
            raise too_many_requests(
                hits[0] + window - now, scope="user", bucket=f"webhook-{webhook_id}", limit=limit
            )
        hits.append(now)
        reset_after = hits[0] + window - now
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(limit - len(hits)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": f"webhook-{webhook_id}",
        }

    def channel_hit(self, channel_id: int) -> None:
        """Count a message into a channel, or a 429 without warning."""
        limit, window = self._state.channel_rate_limit
        hits = _recent(self._channel_hits[channel_id], window)
        now = time.monotonic()
        if self._state.enforce_channel_rate_limit and len(hits) >= limit:
            self._state.rate_limited += 1
            raise too_many_requests(
                hits[0] + window - now, scope="shared", bucket=f"channel-{channel_id}", limit=limit
            )
        hits.append(now)


def _recent(hits: deque[float], window: float) -> deque[float]:
    """``hits`` without those older than ``window`` seconds."""
    now = time.monotonic()
    while hits and hits[0] <= now - window:
        hits.popleft()
    return hits

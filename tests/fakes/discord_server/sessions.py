"""Gateway sockets and sessions: what survives a dropped socket so that RESUME can replay it."""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections import deque
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


def op(code: int, data: Any) -> dict[str, Any]:
    """A gateway frame that is not a dispatch (HELLO, HEARTBEAT_ACK, INVALID_SESSION)."""
    return {"op": code, "d": data, "s": None, "t": None}


class Connection:
    """One gateway socket. Its zlib context spans every frame it sends, HELLO included: a
    zlib-stream client keeps one decompressor per connection."""

    def __init__(self, ws: web.WebSocketResponse, compress: bool) -> None:
        self.ws = ws
        self._zlib = zlib.compressobj() if compress else None
        self._lock = asyncio.Lock()

    async def write(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        async with self._lock:
            if self.ws.closed:
                return
            try:
                if self._zlib is None:
                    await self.ws.send_str(text)
                else:
                    data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
            except ConnectionError:  # the client went away mid-send; its reconnect will RESUME
                log.debug("gateway frame dropped: socket closed")


class Session:
    """A gateway session; survives a dropped socket so that RESUME can replay what it missed."""

    def __init__(self, session_id: str, intents: int, shard: list[int] | None) -> None:
        self.id = session_id
        self.intents = intents
        self.shard = shard
        self.seq = 0
        self.sent: deque[dict[str, Any]] = deque(maxlen=2000)
        self.conn: Connection | None = None
        self._lock = asyncio.Lock()  # seq order == write order

    async def dispatch(self, event: str, data: Any) -> None:
        async with self._lock:
            self.seq += 1
            frame = {"op": 0, "t": event, "s": self.seq, "d": data}
            self.sent.append(frame)
            if self.conn is not None:
                await self.conn.write(frame)

    async def replay(self, conn: Connection, after: int) -> None:
        async with self._lock:
            self.conn = conn
            for frame in [f for f in self.sent if f["s"] > after]:
                await conn.write(frame)

"""The websocket gateway at ``/gateway``: HELLO, IDENTIFY answered with READY and one
GUILD_CREATE per guild, heartbeats acked, RESUME replaying what a dropped socket missed, member
chunks; and Discord's close codes for what a client gets wrong. zlib-stream is honoured (one zlib
context per socket, every frame ending in Z_SYNC_FLUSH); otherwise frames are text."""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from .constants import PRIVILEGED_INTENTS
from .sessions import Connection, Session, op
from .world import World


class Gateway:
    def __init__(self, world: World) -> None:
        self.world = world

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        w = self.world
        query = dict(request.query)
        w.gateway_queries.append(query)
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        w.sockets.add(ws)
        conn = Connection(ws, compress=query.get("compress") == "zlib-stream")
        session: Session | None = None
        try:
            await conn.write(op(10, {"heartbeat_interval": w.heartbeat_interval_ms}))
            # Discord closes a session that misses heartbeats; the timeout also bounds the loop.
            timeout = w.heartbeat_interval_ms / 1000 * 2
            while not ws.closed:
                try:
                    msg = await ws.receive(timeout=timeout)
                except TimeoutError:
                    await ws.close(code=4009, message=b"Session timed out")
                    break
                if msg.type is not WSMsgType.TEXT:
                    break
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                session = await self._on_frame(conn, session, frame)
        finally:
            w.sockets.discard(ws)
            if session is not None and session.conn is conn:
                session.conn = None
        return ws

    async def _on_frame(
        self, conn: Connection, session: Session | None, frame: dict[str, Any]
    ) -> Session | None:
        code, data = frame.get("op"), frame.get("d") or {}
        if code == 1:
            await conn.write(op(11, None))
            return session
        if code == 2 and session is None:
            return await self._identify(conn, data)
        if code == 6 and session is None:
            return await self._resume(conn, data)
        if session is None:
            await conn.ws.close(code=4003, message=b"Not authenticated.")
        elif code == 8:
            await self._member_chunk(session, data)
        elif code in (2, 6):
            await conn.ws.close(code=4005, message=b"Already authenticated.")
        elif code not in (3, 4):
            await conn.ws.close(code=4001, message=b"Unknown opcode.")
        return session

    async def _identify(self, conn: Connection, data: dict[str, Any]) -> Session | None:
        w = self.world
        w.identify_payloads.append(data)
        problem = self._identify_problem(data)
        if problem is not None:
            await conn.ws.close(code=problem[0], message=problem[1])
            return None
        session = Session(secrets.token_hex(16), data["intents"], data.get("shard"))
        session.conn = conn
        w.sessions[session.id] = session
        await session.dispatch("READY", self._ready_payload(session))
        for guild_id in list(w.guilds):
            await session.dispatch("GUILD_CREATE", w.guild_create_payload(guild_id))
        w.ready.set()
        return session

    def _identify_problem(self, data: dict[str, Any]) -> tuple[int, bytes] | None:
        intents = data.get("intents")
        if data.get("token") != self.world.token:
            return (4004, b"Authentication failed.")
        if not isinstance(intents, int):
            return (4013, b"Invalid intent(s).")
        if intents & PRIVILEGED_INTENTS & ~self.world.enabled_privileged_intents:
            return (4014, b"Disallowed intent(s).")
        return None

    async def _resume(self, conn: Connection, data: dict[str, Any]) -> Session | None:
        w = self.world
        session = w.sessions.get(data.get("session_id") or "")
        if session is None or data.get("token") != w.token:
            await conn.write(op(9, False))
            return None
        w.resume_count += 1
        await session.replay(conn, data.get("seq") or 0)
        await session.dispatch("RESUMED", {"_trace": ["fake-discord"]})
        return session

    async def _member_chunk(self, session: Session, data: dict[str, Any]) -> None:
        w = self.world
        guild = w.guilds.get(int(data["guild_id"]))
        members = [] if guild is None else [w.full_member(guild, uid) for uid in guild.members]
        chunk = {
            "guild_id": data["guild_id"],
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
            "nonce": data.get("nonce"),
        }
        await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    def _ready_payload(self, session: Session) -> dict[str, Any]:
        w = self.world
        me = {**w.users[w.bot_user_id], "verified": True, "mfa_enabled": False, "email": None}
        payload = {
            "v": 10,
            "user": me,
            "guilds": [{"id": str(g), "unavailable": True} for g in w.guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": w.gateway_url,
            "application": {"id": str(w.application_id), "flags": w.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }
        if session.shard is not None:
            payload["shard"] = session.shard
        return payload

"""A Discord API emulator on 127.0.0.1 that the real discord.py 2.7 client logs in to.

One aiohttp app serves the REST API under ``/api/v10`` and a websocket gateway at ``/gateway``.
:func:`configure_discord_py` (or ``fake.patch_client()``) points discord.py at it and restores it:

* ``discord.http.Route.BASE = fake.rest_base``: REST *and* webhooks, since
  ``discord/webhook/async_.py`` builds every URL (execute, edit, interaction callbacks,
  followups) from the same ``Route``;
* ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)``. A plain
  ``Client``/``Bot`` never calls ``GET /gateway``; it appends ``?v=10&encoding=json&compress=
  zlib-stream``. The fake honours zlib-stream (one zlib context per socket, HELLO included,
  every frame ending in Z_SYNC_FLUSH) and sends text frames otherwise (discord.py asks for
  ``zstd-stream`` when ``zstandard`` is installed; it decodes only binary frames, so text works).
  ``AutoShardedClient`` calls ``GET /gateway/bot`` and uses the ``url`` returned.

Usage (see ``test_discord_server.py``)::

    async with FakeDiscord() as fake:
        guild = fake.add_guild("Backrooms")
        channel = fake.add_text_channel(guild, "relay")
        with configure_discord_py(fake):
            bot = commands.Bot(..., intents=discord.Intents(guilds=True), guild_ready_timeout=0.05)
            await bot.login(fake.token)
            task = asyncio.create_task(bot.connect())
            await fake.wait_ready(5)
            await bot.tree.sync(guild=discord.Object(guild))
            hit = await fake.send_interaction(guild, channel, fake.owner_user_id,
                                              "backrooms", "start", {"template": "x"})
            ...
            await asyncio.wait_for(bot.close(), 5)   # the bot first: it reconnects otherwise

World: ``add_guild`` (the bot's guild permissions are exactly ``bot_permissions``, default
:data:`ALL_NEEDED`; ``@everyone`` has ``everyone_permissions``, default 0), ``add_text_channel`` /
``add_forum_channel`` (``bot_permissions=`` adds a member overwrite giving the bot exactly those),
``set_bot_channel_permissions``, ``add_role``, ``add_member`` (``permissions`` become a personal
role). ``owner_user_id`` owns every guild and the application (all permissions). Changes made
while a client is connected reach it as gateway events (GUILD_CREATE, CHANNEL_CREATE, ...).

Moderator actions: ``delete_thread`` (alias ``send_thread_delete``; THREAD_DELETE, then
``404 10003``), ``archive_thread(id, locked=False)`` (THREAD_UPDATE), ``delete_webhook``
(then ``404 10015``), ``delete_channel``; ``drop_gateway(code)`` closes the sockets (4000:
discord.py reconnects and RESUMEs; missed events are replayed, ``resume_count`` counts).

Injection: ``send_interaction`` (type 2; the data ``id``/``guild_id`` and option types come from
what the bot synced, so an unsynced command raises LookupError), ``send_autocomplete`` (type 4,
one ``focused`` option), ``send_component`` (type 3, a button or select on a stored message).

Observation: ``calls`` (every REST request in arrival order as a frozen :class:`Call` with a
``route`` name such as ``execute_webhook``, ``interaction_followup``, ``thread_from_message``;
``None`` for unknown routes), ``find_calls(method, path_regex, route=)``, ``wait_for_call``,
``messages(channel_or_thread)`` (edits applied, ``edits`` history), ``threads``, ``webhooks``,
``commands(guild_id)``, ``webhook_executes(thread_id)`` / ``webhook_edits`` (2xx only unless
``include_failed``), ``interaction_responses`` / ``wait_for_response`` / ``interaction_state``,
``identify_payloads``, ``gateway_queries``, ``rate_limited``, ``internal_errors``.

Faults and limits: ``fail_next(method, path_regex, status, code=, message=, retry_after=,
count=)``; ``enforce_webhook_rate_limit`` (``webhook_rate_limit`` = 5 per 2 s per webhook, sent as
X-RateLimit-* headers that discord.py's webhook adapter obeys, so pacing avoids 429s);
``enforce_channel_rate_limit`` (``channel_rate_limit`` = 30 messages per 60 s per channel, with no
warning headers, like Discord's undocumented per-channel limit); ``interaction_ack_deadline``
(3 s), ``interaction_token_lifetime`` (15 min).

Faithful on purpose, each a way a real bot fails: ``Content-Type: application/json`` exactly
(with ``; charset=utf-8`` discord.py's ``json_or_text`` returns a str); every 429 carries ``Via``
(without it discord.py assumes a Cloudflare ban and raises) plus ``retry_after``/``global`` in the
body; webhook usernames containing "discord"/"clyde" or over 80 characters and content over 2000
characters answer ``400 50035``; a webhook message in a thread is found only with ``?thread_id=``;
executing a webhook into an archived thread unarchives it (Discord's documented ``thread_id``
behaviour) unless it is also locked (``400 50083``), while editing in an archived thread is
``400 50083``; a late interaction callback is ``404 10062``, a second one ``400 40060``; a 16th
webhook in a channel is ``400 30007``; ``allowed_mentions`` decides ``mentions`` and
``mention_everyone`` on stored messages; gateway events obey the IDENTIFY intents
(MESSAGE_CREATE needs GUILD_MESSAGES and, for others' content, MESSAGE_CONTENT).

Not modelled: voice, DMs, presences, reactions, role or guild editing, option types other than
string/integer/boolean/number (no ``resolved``), global rate limits, audit logs, private-thread
membership. A bug inside the fake answers 400 with code -1 (not 500: discord.py retries 5xx with
1-7 s sleeps) and is listed in ``internal_errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import logging
import math
import re
import secrets
import time
import traceback
import zlib
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from aiohttp import BodyPartReader, WSMsgType, web

from backrooms_engine.lifecycle import StartsOnEntry

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v10"
JSON_CONTENT_TYPE: Final = "application/json"
DISCORD_EPOCH_MS: Final = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR: Final = 1 << 3
MANAGE_CHANNELS: Final = 1 << 4
VIEW_CHANNEL: Final = 1 << 10
SEND_MESSAGES: Final = 1 << 11
MANAGE_MESSAGES: Final = 1 << 13
EMBED_LINKS: Final = 1 << 14
ATTACH_FILES: Final = 1 << 15
READ_MESSAGE_HISTORY: Final = 1 << 16
MENTION_EVERYONE: Final = 1 << 17
MANAGE_WEBHOOKS: Final = 1 << 29
USE_APPLICATION_COMMANDS: Final = 1 << 31
MANAGE_THREADS: Final = 1 << 34
CREATE_PUBLIC_THREADS: Final = 1 << 35
CREATE_PRIVATE_THREADS: Final = 1 << 36
SEND_MESSAGES_IN_THREADS: Final = 1 << 38
ALL_PERMISSIONS: Final = (1 << 51) - 1
ALL_NEEDED: Final = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | SEND_MESSAGES_IN_THREADS
    | CREATE_PUBLIC_THREADS
    | MANAGE_WEBHOOKS
    | READ_MESSAGE_HISTORY
    | EMBED_LINKS
    | ATTACH_FILES
    | MANAGE_THREADS
    | USE_APPLICATION_COMMANDS
)
"""What the relay bot asks for in its invite (see PLATFORM_NOTES, Discord section)."""
MEMBER_PERMISSIONS: Final = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | SEND_MESSAGES_IN_THREADS
    | CREATE_PUBLIC_THREADS
    | READ_MESSAGE_HISTORY
    | EMBED_LINKS
    | USE_APPLICATION_COMMANDS
)

# Gateway intents.
INTENT_GUILDS: Final = 1 << 0
INTENT_GUILD_MEMBERS: Final = 1 << 1
INTENT_GUILD_WEBHOOKS: Final = 1 << 5
INTENT_GUILD_PRESENCES: Final = 1 << 8
INTENT_GUILD_MESSAGES: Final = 1 << 9
INTENT_MESSAGE_CONTENT: Final = 1 << 15
PRIVILEGED_INTENTS: Final = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# Channel types.
TEXT: Final = 0
PUBLIC_THREAD: Final = 11
PRIVATE_THREAD: Final = 12
FORUM: Final = 15
THREAD_TYPES: Final = frozenset({10, PUBLIC_THREAD, PRIVATE_THREAD})

AUTO_ARCHIVE_DURATIONS: Final = frozenset({60, 1440, 4320, 10080})
MAX_WEBHOOKS_PER_CHANNEL: Final = 15
MAX_CONTENT: Final = 2000
MAX_USERNAME: Final = 80
FORBIDDEN_NAME_PARTS: Final = ("discord", "clyde")
_INTERACTION_ROUTES: Final = {
    "execute_webhook": "interaction_followup",
    "get_webhook_message": "interaction_get_message",
    "edit_webhook_message": "interaction_edit_message",
    "delete_webhook_message": "interaction_delete_message",
}
_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _op(op: int, data: Any) -> dict[str, Any]:
    return {"op": op, "d": data, "s": None, "t": None}


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- routing

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _placeholder_regex(match: re.Match[str]) -> str:
    return r"([^/]+)" if match.group(1) == "token" else r"(\d+)"


def _route(method: str, path: str, name: str, *, auth: bool = True) -> Callable[[Any], Any]:
    """Mark a handler as serving ``method path`` (``{id}`` a snowflake, ``{token}`` a token)."""

    def mark(function: Any) -> Any:
        function.__dict__.setdefault("_routes", []).append((method, path, name, auth))
        return function

    return mark


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Call:
    """One REST request as the fake received it. ``json`` is the JSON body, or the parsed
    ``payload_json`` part of a multipart body (then ``files`` names the file parts)."""

    seq: int
    method: str
    path: str
    route: str | None
    query: Mapping[str, str]
    json: Any
    files: tuple[str, ...]
    headers: Mapping[str, str]
    time: float
    status: int
    response: Any = field(repr=False, compare=False)


@dataclass(frozen=True)
class Interaction:
    """An interaction the fake dispatched; ``payload`` is the INTERACTION_CREATE ``d``."""

    id: int
    token: str
    type: int
    guild_id: int
    channel_id: int
    user_id: int
    payload: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class InteractionResponse:
    type: int
    data: Any
    time: float


@dataclass
class InteractionState:
    record: Interaction
    created: float
    responses: list[InteractionResponse] = field(default_factory=list)
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    code: int
    message: str
    retry_after: float | None
    is_global: bool
    remaining: int


@dataclass
class _Message:
    payload: dict[str, Any]
    edits: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Guild:
    id: int
    name: str
    roles: dict[int, dict[str, Any]]
    members: dict[int, dict[str, Any]]  # user id -> member payload without "user"
    channel_ids: list[int]
    bot_role_id: int
    joined_at: str


class ApiError(Exception):
    """Raised inside a handler; becomes Discord's JSON error body."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code, **self.extra}
        if self.errors:
            body["errors"] = self.errors
        return body


def _form_error(field_name: str, code: str, message: str) -> ApiError:
    errors = {field_name: {"_errors": [{"code": code, "message": message}]}}
    return ApiError(400, 50035, "Invalid Form Body", errors=errors)


def _unknown_channel() -> ApiError:
    return ApiError(404, 10003, "Unknown Channel")


def _unknown_webhook() -> ApiError:
    return ApiError(404, 10015, "Unknown Webhook")


def _unknown_message() -> ApiError:
    return ApiError(404, 10008, "Unknown Message")


def _archived() -> ApiError:
    return ApiError(400, 50083, "Operation cannot be performed on an archived thread")


def _missing_permissions() -> ApiError:
    return ApiError(403, 50013, "Missing Permissions")


def _too_many_requests(
    retry_after: float, *, scope: str, bucket: str, limit: int, is_global: bool = False
) -> ApiError:
    headers = {
        "Via": "1.1 google",  # discord.py treats a 429 without Via as a Cloudflare ban
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
        "X-RateLimit-Reset-After": f"{retry_after:.3f}",
        "X-RateLimit-Bucket": bucket,
        "X-RateLimit-Scope": scope,
    }
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    extra = {"retry_after": retry_after, "global": is_global}
    return ApiError(429, 0, "You are being rate limited.", headers=headers, extra=extra)


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    files: tuple[str, ...]


@dataclass
class _Reply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[_Request, re.Match[str]], Awaitable[Any]]


class _Snowflakes:
    """Increasing snowflakes with real timestamps, so ``discord.utils.snowflake_time`` works."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last


# --------------------------------------------------------------------------- gateway session


class _Connection:
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


class _Session:
    """A gateway session; survives a dropped socket so that RESUME can replay what it missed."""

    def __init__(self, session_id: str, intents: int, shard: list[int] | None) -> None:
        self.id = session_id
        self.intents = intents
        self.shard = shard
        self.seq = 0
        self.sent: deque[dict[str, Any]] = deque(maxlen=2000)
        self.conn: _Connection | None = None
        self._lock = asyncio.Lock()  # seq order == write order

    async def dispatch(self, event: str, data: Any) -> None:
        async with self._lock:
            self.seq += 1
            frame = {"op": 0, "t": event, "s": self.seq, "d": data}
            self.sent.append(frame)
            if self.conn is not None:
                await self.conn.write(frame)

    async def replay(self, conn: _Connection, after: int) -> None:
        async with self._lock:
            self.conn = conn
            for frame in [f for f in self.sent if f["s"] > after]:
                await conn.write(frame)


# --------------------------------------------------------------------------- the fake


class FakeDiscord(StartsOnEntry):
    """The emulator. Every wait it offers takes a timeout; every socket closes on :meth:`close`."""

    heartbeat_interval_ms: int = 41_250
    interaction_ack_deadline: float = 3.0
    interaction_token_lifetime: float = 15 * 60.0
    webhook_rate_limit: tuple[int, float] = (5, 2.0)
    channel_rate_limit: tuple[int, float] = (30, 60.0)

    def __init__(self, *, host: str = "127.0.0.1", token: str | None = None) -> None:
        self.host = host
        self.port = 0
        self.token = token or f"fake.{secrets.token_urlsafe(24)}"
        self._ids = _Snowflakes()
        self.application_id = self._ids()
        self.bot_user_id = self.application_id  # like Discord: a bot's user id is its app id
        self.owner_user_id = self._ids()
        self.application_flags = 0
        self.enabled_privileged_intents = PRIVILEGED_INTENTS
        self.enforce_webhook_rate_limit = False
        self.enforce_channel_rate_limit = False
        self.rate_limited = 0
        self.internal_errors: list[str] = []
        self.identify_payloads: list[dict[str, Any]] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.resume_count = 0
        self._users: dict[int, dict[str, Any]] = {}
        self._guilds: dict[int, _Guild] = {}
        self._channels: dict[int, dict[str, Any]] = {}
        self._deleted_channels: set[int] = set()
        self._messages: dict[int, list[_Message]] = defaultdict(list)
        self._ephemeral: dict[int, _Message] = {}  # seen only by the invoking user
        self._tasks: set[asyncio.Task[None]] = set()
        self._webhooks: dict[int, dict[str, Any]] = {}
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        self._interactions: dict[int, InteractionState] = {}
        self._tokens: dict[str, int] = {}
        self._faults: list[_Fault] = []
        self._calls: list[Call | None] = []
        self._call_seq = itertools.count()
        self._changed = asyncio.Condition()
        self._webhook_hits: dict[int, deque[float]] = defaultdict(deque)
        self._channel_hits: dict[int, deque[float]] = defaultdict(deque)
        self._sessions: dict[str, _Session] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self._ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._routes = self._build_routes()
        self._add_user(self.bot_user_id, "Backrooms Relay", bot=True)
        self._add_user(self.owner_user_id, "owner")

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, self.host, 0).start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1001, message=b"fake shutting down"), 2.0)
        runner, self._runner = self._runner, None
        if runner is not None:
            await asyncio.wait_for(runner.cleanup(), 5.0)

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("FakeDiscord is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def rest_base(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    def patch_client(self) -> contextlib.AbstractContextManager[None]:
        return configure_discord_py(self)

    # ------------------------------------------------------------------ world building

    def _add_user(self, user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        user = {
            "id": str(user_id),
            "username": name,
            "global_name": None if bot else name,
            "discriminator": "0",
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "collectibles": None,
            "primary_guild": None,
            "clan": None,
            "public_flags": 0,
            "flags": 0,
            "bot": bot,
            "system": False,
        }
        self._users[user_id] = user
        return user

    def add_guild(
        self, name: str, *, bot_permissions: int = ALL_NEEDED, everyone_permissions: int = 0
    ) -> int:
        """A guild the bot is in. The bot's guild-wide permissions are exactly
        ``bot_permissions | everyone_permissions`` (its managed role plus @everyone)."""
        guild_id = self._ids()
        bot_role_id = self._ids()
        guild = _Guild(guild_id, name, {}, {}, [], bot_role_id, _now_iso())
        guild.roles[guild_id] = self._role_payload(guild_id, "@everyone", everyone_permissions, 0)
        guild.roles[bot_role_id] = self._role_payload(
            bot_role_id, self._users[self.bot_user_id]["username"], bot_permissions, 1
        )
        guild.roles[bot_role_id]["managed"] = True
        guild.roles[bot_role_id]["tags"] = {"bot_id": str(self.bot_user_id)}
        self._guilds[guild_id] = guild
        guild.members[self.owner_user_id] = self._member_payload([], guild.joined_at)
        guild.members[self.bot_user_id] = self._member_payload([bot_role_id], guild.joined_at)
        self._schedule(self._dispatch_guild_create(guild_id))
        return guild_id

    def add_role(self, guild_id: int, name: str, permissions: int) -> int:
        guild = self._guilds[guild_id]
        role_id = self._ids()
        guild.roles[role_id] = self._role_payload(role_id, name, permissions, len(guild.roles))
        return role_id

    def add_member(
        self,
        guild_id: int,
        name: str,
        *,
        roles: tuple[int, ...] | list[int] = (),
        permissions: int | None = MEMBER_PERMISSIONS,
    ) -> int:
        """A human member; ``permissions`` becomes a personal role (None: only ``roles``)."""
        guild = self._guilds[guild_id]
        user_id = self._ids()
        self._add_user(user_id, name)
        role_ids = list(roles)
        if permissions is not None:
            role_ids.append(self.add_role(guild_id, f"{name} permissions", permissions))
        guild.members[user_id] = self._member_payload(role_ids, _now_iso())
        member = {**guild.members[user_id], "user": self._users[user_id], "guild_id": str(guild_id)}
        self._schedule(self._dispatch("GUILD_MEMBER_ADD", member, INTENT_GUILD_MEMBERS))
        return user_id

    def add_text_channel(
        self,
        guild_id: int,
        name: str,
        *,
        bot_permissions: int | None = None,
        parent_id: int | None = None,
    ) -> int:
        """``bot_permissions`` adds a member overwrite so the bot has exactly those in here."""
        return self._add_channel(guild_id, name, TEXT, bot_permissions, parent_id)

    def add_forum_channel(
        self,
        guild_id: int,
        name: str,
        *,
        bot_permissions: int | None = None,
        parent_id: int | None = None,
    ) -> int:
        return self._add_channel(guild_id, name, FORUM, bot_permissions, parent_id)

    def _add_channel(
        self,
        guild_id: int,
        name: str,
        kind: int,
        bot_permissions: int | None,
        parent_id: int | None,
    ) -> int:
        guild = self._guilds[guild_id]
        channel_id = self._ids()
        channel: dict[str, Any] = {
            "id": str(channel_id),
            "type": kind,
            "guild_id": str(guild_id),
            "name": name,
            "position": len(guild.channel_ids),
            "permission_overwrites": [],
            "parent_id": None if parent_id is None else str(parent_id),
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "default_auto_archive_duration": 1440,
            "default_thread_rate_limit_per_user": 0,
            "flags": 0,
        }
        if kind == FORUM:
            channel |= {
                "available_tags": [],
                "default_reaction_emoji": None,
                "default_sort_order": None,
                "default_forum_layout": 0,
                "template": "",
            }
        self._channels[channel_id] = channel
        guild.channel_ids.append(channel_id)
        if bot_permissions is not None:
            self._set_bot_overwrite(channel, bot_permissions)
        self._schedule(self._dispatch("CHANNEL_CREATE", copy.deepcopy(channel), INTENT_GUILDS))
        return channel_id

    def set_bot_channel_permissions(self, channel_id: int, permissions: int) -> None:
        channel = self._channels[channel_id]
        self._set_bot_overwrite(channel, permissions)
        self._schedule(self._dispatch("CHANNEL_UPDATE", copy.deepcopy(channel), INTENT_GUILDS))

    def _set_bot_overwrite(self, channel: dict[str, Any], permissions: int) -> None:
        overwrites = [
            o for o in channel["permission_overwrites"] if o["id"] != str(self.bot_user_id)
        ]
        overwrites.append(
            {
                "id": str(self.bot_user_id),
                "type": 1,
                "allow": str(permissions),
                "deny": str(ALL_PERMISSIONS & ~permissions),
            }
        )
        channel["permission_overwrites"] = overwrites

    @staticmethod
    def _role_payload(role_id: int, name: str, permissions: int, position: int) -> dict[str, Any]:
        return {
            "id": str(role_id),
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }

    @staticmethod
    def _member_payload(role_ids: list[int], joined_at: str) -> dict[str, Any]:
        return {
            "roles": [str(r) for r in role_ids],
            "nick": None,
            "avatar": None,
            "banner": None,
            "joined_at": joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
            "unusual_dm_activity_until": None,
        }

    # ------------------------------------------------------------------ moderator actions

    def delete_thread(self, thread_id: int) -> None:
        """A moderator deletes a thread: THREAD_DELETE now, 404 10003 for every later call."""
        thread = self._channels.pop(thread_id)
        self._deleted_channels.add(thread_id)
        data = {k: thread[k] for k in ("id", "guild_id", "parent_id", "type")}
        self._schedule(self._dispatch("THREAD_DELETE", data, INTENT_GUILDS))

    send_thread_delete = delete_thread

    def archive_thread(self, thread_id: int, *, locked: bool = False) -> None:
        """A moderator (or Discord's auto-archive) archives a thread; THREAD_UPDATE follows."""
        self._set_archived(self._thread(thread_id), archived=True, locked=locked)

    def delete_channel(self, channel_id: int) -> None:
        channel = self._channels.pop(channel_id)
        self._deleted_channels.add(channel_id)
        for thread_id in [
            i for i, c in self._channels.items() if c.get("parent_id") == str(channel_id)
        ]:
            self._channels.pop(thread_id)
            self._deleted_channels.add(thread_id)
        for webhook_id in [
            i for i, w in self._webhooks.items() if w["channel_id"] == str(channel_id)
        ]:
            del self._webhooks[webhook_id]
        self._schedule(self._dispatch("CHANNEL_DELETE", channel, INTENT_GUILDS))

    def delete_webhook(self, webhook_id: int) -> None:
        """Someone removes the webhook in the UI: later calls answer 404 10015 Unknown Webhook."""
        hook = self._webhooks.pop(webhook_id)
        self._schedule(self._webhooks_update(hook))

    def _set_archived(
        self, thread: dict[str, Any], *, archived: bool, locked: bool | None = None
    ) -> None:
        meta = thread["thread_metadata"]
        meta["archived"] = archived
        meta["archive_timestamp"] = _now_iso()
        if locked is not None:
            meta["locked"] = locked
        self._schedule(self._dispatch("THREAD_UPDATE", copy.deepcopy(thread), INTENT_GUILDS))

    # ------------------------------------------------------------------ observation

    @property
    def calls(self) -> list[Call]:
        return [c for c in self._calls if c is not None]

    def find_calls(
        self, method: str | None = None, path_regex: str | None = None, *, route: str | None = None
    ) -> list[Call]:
        pattern = re.compile(path_regex) if path_regex else None
        return [
            c
            for c in self.calls
            if (method is None or c.method == method)
            and (pattern is None or pattern.search(c.path))
            and (route is None or c.route == route)
        ]

    async def wait_for_call(self, predicate: Callable[[Call], bool], seconds: float = 5.0) -> Call:
        """The first recorded call (past or future) that satisfies ``predicate``."""

        def found() -> Call | None:
            return next((c for c in self.calls if predicate(c)), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), seconds)
        call = found()
        assert call is not None
        return call

    def messages(self, channel_id: int) -> list[dict[str, Any]]:
        """The channel's (or thread's) live messages, edits applied, each with an ``edits`` list."""
        return [
            {**copy.deepcopy(m.payload), "edits": copy.deepcopy(m.edits)}
            for m in self._messages.get(channel_id, [])
        ]

    @property
    def threads(self) -> dict[int, dict[str, Any]]:
        return {i: copy.deepcopy(c) for i, c in self._channels.items() if c["type"] in THREAD_TYPES}

    @property
    def webhooks(self) -> dict[int, dict[str, Any]]:
        return copy.deepcopy(self._webhooks)

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        return copy.deepcopy(self._commands.get(guild_id, []))

    def webhook_executes(
        self, thread_id: int | None = None, *, include_failed: bool = False
    ) -> list[Call]:
        return self._webhook_calls("execute_webhook", thread_id, include_failed)

    def webhook_edits(
        self, thread_id: int | None = None, *, include_failed: bool = False
    ) -> list[Call]:
        return self._webhook_calls("edit_webhook_message", thread_id, include_failed)

    def _webhook_calls(self, route: str, thread_id: int | None, include_failed: bool) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.route == route
            and (include_failed or 200 <= c.status < 300)
            and (thread_id is None or c.query.get("thread_id") == str(thread_id))
        ]

    def interaction_state(self, interaction_id: int) -> InteractionState:
        return self._interactions[interaction_id]

    def interaction_responses(self, interaction_id: int) -> list[InteractionResponse]:
        return list(self._interactions[interaction_id].responses)

    async def wait_for_response(
        self, interaction_id: int, seconds: float = 5.0
    ) -> InteractionResponse:
        state = self._interactions[interaction_id]
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: bool(state.responses)), seconds)
        return state.responses[0]

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        code: int = 0,
        message: str | None = None,
        retry_after: float | None = None,
        is_global: bool = False,
        count: int = 1,
    ) -> None:
        """The next ``count`` requests matching ``method`` and ``path_regex`` (searched in the path
        after ``/api/v10``) fail. A 429 is shaped like Discord's (Via, Retry-After, X-RateLimit-*,
        body ``retry_after``/``global``, scope "user")."""
        default = "You are being rate limited." if status == 429 else f"{status}: injected failure"
        self._faults.append(
            _Fault(
                method.upper(),
                re.compile(path_regex),
                status,
                code,
                message or default,
                retry_after,
                is_global,
                count,
            )
        )

    # ------------------------------------------------------------------ gateway

    async def wait_ready(self, seconds: float = 5.0) -> None:
        """Until a client identified and received READY plus one GUILD_CREATE per guild."""
        await asyncio.wait_for(self._ready.wait(), seconds)

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway socket (4000 is resumable; discord.py reconnects and RESUMEs)."""
        for ws in list(self._sockets):
            await asyncio.wait_for(ws.close(code=code), 2.0)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        query = dict(request.query)
        self.gateway_queries.append(query)
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        conn = _Connection(ws, compress=query.get("compress") == "zlib-stream")
        session: _Session | None = None
        try:
            await conn.write(_op(10, {"heartbeat_interval": self.heartbeat_interval_ms}))
            # Discord closes a session that misses heartbeats; the timeout also bounds the loop.
            timeout = self.heartbeat_interval_ms / 1000 * 2
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
                session = await self._on_gateway_frame(conn, session, frame)
        finally:
            self._sockets.discard(ws)
            if session is not None and session.conn is conn:
                session.conn = None
        return ws

    async def _on_gateway_frame(
        self, conn: _Connection, session: _Session | None, frame: dict[str, Any]
    ) -> _Session | None:
        op, data = frame.get("op"), frame.get("d")
        if op == 1:
            await conn.write(_op(11, None))
            return session
        if op == 2 and session is None:
            return await self._identify(conn, data)
        if op == 6 and session is None:
            return await self._resume(conn, data)
        if session is None:
            await conn.ws.close(code=4003, message=b"Not authenticated.")
        elif op == 8:
            await self._member_chunk(session, data)
        elif op in (2, 6):
            await conn.ws.close(code=4005, message=b"Already authenticated.")
        elif op not in (3, 4):
            await conn.ws.close(code=4001, message=b"Unknown opcode.")
        return session

    async def _identify(self, conn: _Connection, data: dict[str, Any]) -> _Session | None:
        self.identify_payloads.append(data)
        intents = data.get("intents")
        problem: tuple[int, bytes] | None = None
        if data.get("token") != self.token:
            problem = (4004, b"Authentication failed.")
        elif not isinstance(intents, int):
            problem = (4013, b"Invalid intent(s).")
        elif intents & PRIVILEGED_INTENTS & ~self.enabled_privileged_intents:
            problem = (4014, b"Disallowed intent(s).")
        if problem is not None:
            await conn.ws.close(code=problem[0], message=problem[1])
            return None
        session = _Session(secrets.token_hex(16), intents, data.get("shard"))
        session.conn = conn
        self._sessions[session.id] = session
        await session.dispatch("READY", self._ready_payload(session))
        for guild_id in list(self._guilds):
            await session.dispatch("GUILD_CREATE", self._guild_create_payload(guild_id))
        self._ready.set()
        return session

    async def _resume(self, conn: _Connection, data: dict[str, Any]) -> _Session | None:
        session = self._sessions.get(data.get("session_id") or "")
        if session is None or data.get("token") != self.token:
            await conn.write(_op(9, False))
            return None
        self.resume_count += 1
        await session.replay(conn, data.get("seq") or 0)
        await session.dispatch("RESUMED", {"_trace": ["fake-discord"]})
        return session

    async def _member_chunk(self, session: _Session, data: dict[str, Any]) -> None:
        guild = self._guilds.get(int(data["guild_id"]))
        members = [] if guild is None else [self._full_member(guild, uid) for uid in guild.members]
        chunk = {
            "guild_id": data["guild_id"],
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
            "nonce": data.get("nonce"),
        }
        await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    def _ready_payload(self, session: _Session) -> dict[str, Any]:
        payload = {
            "v": 10,
            "user": {
                **self._users[self.bot_user_id],
                "verified": True,
                "mfa_enabled": False,
                "email": None,
            },
            "guilds": [{"id": str(g), "unavailable": True} for g in self._guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": self.application_flags},
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

    def _guild_create_payload(self, guild_id: int) -> dict[str, Any]:
        guild = self._guilds[guild_id]
        channels = [
            copy.deepcopy(self._channels[c]) for c in guild.channel_ids if c in self._channels
        ]
        threads = [
            copy.deepcopy(c)
            for c in self._channels.values()
            if c["type"] in THREAD_TYPES
            and c["guild_id"] == str(guild_id)
            and not c["thread_metadata"]["archived"]
        ]
        return {
            **self._guild_payload(guild),
            "joined_at": guild.joined_at,
            "large": False,
            "unavailable": False,
            "member_count": len(guild.members),
            "members": [self._full_member(guild, uid) for uid in guild.members],
            "channels": channels,
            "threads": threads,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "lazy": True,
            "application_command_counts": {},
        }

    def _guild_payload(self, guild: _Guild) -> dict[str, Any]:
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "owner_id": str(self.owner_user_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "widget_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": list(copy.deepcopy(guild.roles).values()),
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_presences": None,
            "max_members": 500_000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "description": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "nsfw": False,
            "incidents_data": None,
            "hub_type": None,
            "version": 0,
        }

    def _full_member(self, guild: _Guild, user_id: int) -> dict[str, Any]:
        return {
            **copy.deepcopy(guild.members[user_id]),
            "user": copy.deepcopy(self._users[user_id]),
        }

    async def _dispatch_guild_create(self, guild_id: int) -> None:
        await self._dispatch("GUILD_CREATE", self._guild_create_payload(guild_id), INTENT_GUILDS)

    async def _dispatch(self, event: str, data: Any, intent: int | None) -> None:
        for session in list(self._sessions.values()):
            if intent is None or session.intents & intent:
                payload = data
                if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
                    payload = self._visible_content(session, data)
                await session.dispatch(event, payload)

    def _visible_content(self, session: _Session, data: dict[str, Any]) -> dict[str, Any]:
        # Without MESSAGE_CONTENT a bot sees the content of its own messages only.
        if session.intents & INTENT_MESSAGE_CONTENT or data["author"]["id"] == str(
            self.bot_user_id
        ):
            return data
        return {**data, "content": "", "embeds": [], "attachments": [], "components": []}

    def _schedule(self, coro: Coroutine[Any, Any, None]) -> None:
        """World changes made from sync test code reach connected clients as gateway events."""
        if not self._sessions:
            coro.close()  # nobody has identified yet: READY/GUILD_CREATE will carry the state
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ interactions (inject)

    async def send_interaction(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        command: str,
        subcommand: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Interaction:
        """Dispatch an APPLICATION_COMMAND interaction for a command the bot registered."""
        data = self._command_data(guild_id, command, subcommand, options or {}, focused=None)
        return await self._send_interaction(2, guild_id, channel_id, user_id, data)

    async def send_autocomplete(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        command: str,
        subcommand: str | None,
        options: Mapping[str, Any],
        focused: str,
    ) -> Interaction:
        data = self._command_data(guild_id, command, subcommand, options, focused=focused)
        return await self._send_interaction(4, guild_id, channel_id, user_id, data)

    async def send_component(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        message_id: int,
        custom_id: str,
        *,
        component_type: int = 2,
        values: list[str] | None = None,
    ) -> Interaction:
        """A click on a button (or a select, with ``values``) of a message in ``channel_id``."""
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        message = self._find_message(channel_id, message_id).payload
        return await self._send_interaction(3, guild_id, channel_id, user_id, data, message=message)

    def _command_data(
        self,
        guild_id: int,
        command: str,
        subcommand: str | None,
        options: Mapping[str, Any],
        *,
        focused: str | None,
    ) -> dict[str, Any]:
        registered = next(
            (c for c in self._commands.get(guild_id, []) if c["name"] == command), None
        )
        scope: int | None = guild_id
        if registered is None:
            scope = None
            registered = next(
                (c for c in self._commands.get(None, []) if c["name"] == command), None
            )
        if registered is None:
            raise LookupError(f"/{command} is not registered (the bot has not synced it)")
        definitions = registered.get("options", [])
        if subcommand is not None:
            sub = next((o for o in definitions if o["name"] == subcommand and o["type"] == 1), None)
            if sub is None:
                raise LookupError(f"/{command} has no subcommand {subcommand!r}")
            definitions = sub.get("options", [])
        types = {o["name"]: o["type"] for o in definitions}
        values = []
        for name, value in options.items():
            if name not in types:
                raise LookupError(f"/{command} {subcommand or ''} has no option {name!r}")
            option: dict[str, Any] = {"name": name, "type": types[name], "value": value}
            if name == focused:
                option |= {"focused": True, "value": str(value)}
            values.append(option)
        data: dict[str, Any] = {"id": registered["id"], "name": command, "type": 1}
        if scope is not None:
            data["guild_id"] = str(scope)
        if subcommand is None:
            data["options"] = values
        else:
            data["options"] = [{"type": 1, "name": subcommand, "options": values}]
        return data

    async def _send_interaction(
        self,
        kind: int,
        guild_id: int,
        channel_id: int,
        user_id: int,
        data: dict[str, Any],
        *,
        message: dict[str, Any] | None = None,
    ) -> Interaction:
        guild = self._guilds[guild_id]
        channel = self._channel(channel_id)
        interaction_id, token = self._ids(), "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        member = self._full_member(guild, user_id)
        member["permissions"] = str(self._permissions(user_id, channel_id))
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
            "guild_locale": "en-US",
            "channel_id": str(channel_id),
            "channel": {**copy.deepcopy(channel), "permissions": member["permissions"]},
            "member": member,
            "token": token,
            "version": 1,
            "app_permissions": str(self._permissions(self.bot_user_id, channel_id)),
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if message is not None:
            payload["message"] = copy.deepcopy(message)
        record = Interaction(
            interaction_id, token, kind, guild_id, channel_id, user_id, MappingProxyType(payload)
        )
        self._interactions[interaction_id] = InteractionState(record, time.monotonic())
        self._tokens[token] = interaction_id
        await self._dispatch("INTERACTION_CREATE", payload, None)
        return record

    # ------------------------------------------------------------------ permissions

    def _permissions(self, user_id: int, channel_id: int) -> int:
        channel = self._channel(channel_id)
        if channel["type"] in THREAD_TYPES:
            channel = self._channel(int(channel["parent_id"]))
        guild = self._guilds[int(channel["guild_id"])]
        if user_id == self.owner_user_id:
            return ALL_PERMISSIONS
        member = guild.members.get(user_id)
        if member is None:
            return 0
        role_ids = [str(guild.id), *member["roles"]]
        perms = 0
        for role_id in role_ids:
            perms |= int(guild.roles[int(role_id)]["permissions"])
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        overwrites = {(o["type"], o["id"]): o for o in channel["permission_overwrites"]}
        everyone = overwrites.get((0, str(guild.id)))
        if everyone:
            perms = (perms & ~int(everyone["deny"])) | int(everyone["allow"])
        allow = deny = 0
        for role_id in member["roles"]:
            if (o := overwrites.get((0, role_id))) is not None:
                allow, deny = allow | int(o["allow"]), deny | int(o["deny"])
        perms = (perms & ~deny) | allow
        if (o := overwrites.get((1, str(user_id)))) is not None:
            perms = (perms & ~int(o["deny"])) | int(o["allow"])
        return perms if perms & VIEW_CHANNEL else 0

    def _require(self, channel_id: int, *needed: int) -> None:
        perms = self._permissions(self.bot_user_id, channel_id)
        if not perms & VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        for bit in needed:
            if not perms & bit:
                raise _missing_permissions()

    # ------------------------------------------------------------------ REST plumbing

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], str, Handler, bool]]:
        """(method, path pattern, route name, handler, needs bot auth), from the @_route marks."""
        routes = []
        for attribute in dir(type(self)):
            function = getattr(type(self), attribute)
            for method, path, name, auth in getattr(function, "_routes", ()):
                pattern = re.compile("^" + _PLACEHOLDER.sub(_placeholder_regex, path) + "$")
                routes.append((method, pattern, name, getattr(self, attribute), auth))
        return routes

    async def _rest(self, request: web.Request) -> web.Response:
        seq = next(self._call_seq)
        self._calls.append(None)  # reserve the slot: records stay in arrival order
        arrived = time.monotonic()
        path = request.path[len(API_PREFIX) :]
        headers = {k.lower(): v for k, v in request.headers.items()}
        req = _Request(request.method, path, dict(request.query), headers, None, ())
        match = self._match(request.method, path)
        try:
            req.body, req.files = await _read_body(request)
            reply = await self._answer(req, match)
        except ApiError as error:
            reply = _Reply(error.body(), error.status, error.headers)
        self._calls[seq] = Call(
            seq,
            req.method,
            path,
            None if match is None else match[0],
            MappingProxyType(req.query),
            req.body,
            req.files,
            MappingProxyType(headers),
            arrived,
            reply.status,
            reply.body,
        )
        async with self._changed:
            self._changed.notify_all()
        return self._response(reply)

    @staticmethod
    def _response(reply: _Reply) -> web.Response:
        if reply.status == 204 or reply.body is None:
            return web.Response(status=204, headers=reply.headers)
        # body= (not text=) so that aiohttp adds no "; charset=utf-8": discord.py compares the
        # header to "application/json" exactly and otherwise hands the caller a str.
        headers = {**reply.headers, "Content-Type": JSON_CONTENT_TYPE}
        return web.Response(status=reply.status, body=_json_bytes(reply.body), headers=headers)

    def _match(self, method: str, path: str) -> tuple[str, Handler, re.Match[str], bool] | None:
        for route_method, pattern, name, handler, auth in self._routes:
            if route_method == method and (m := pattern.match(path)):
                if name in _INTERACTION_ROUTES and m.group(1) == str(self.application_id):
                    name = _INTERACTION_ROUTES[name]  # the interaction's webhook, not a channel's
                return name, handler, m, auth
        return None

    async def _answer(
        self, req: _Request, match: tuple[str, Handler, re.Match[str], bool] | None
    ) -> _Reply:
        if (
            match is not None
            and match[3]
            and req.headers.get("authorization") != f"Bot {self.token}"
        ):
            raise ApiError(401, 0, "401: Unauthorized")
        self._inject_fault(req)
        if match is None:
            raise ApiError(404, 0, "404: Not Found")
        _, handler, m, _ = match
        try:
            result = await handler(req, m)
        except ApiError:
            raise
        except Exception as exc:  # a bug in the fake must not look like Discord's answer
            self.internal_errors.append(traceback.format_exc())
            log.exception("fake discord handler failed on %s %s", req.method, req.path)
            raise ApiError(400, -1, f"fake_discord internal error: {exc!r}") from exc
        return result if isinstance(result, _Reply) else _Reply(result)

    def _inject_fault(self, req: _Request) -> None:
        for fault in self._faults:
            if fault.method == req.method and fault.pattern.search(req.path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                if fault.status == 429:
                    raise _too_many_requests(
                        fault.retry_after if fault.retry_after is not None else 1.0,
                        scope="global" if fault.is_global else "user",
                        bucket="injected",
                        limit=1,
                        is_global=fault.is_global,
                    )
                raise ApiError(fault.status, fault.code, fault.message)

    # ------------------------------------------------------------------ rate-limit models

    def _webhook_hit(self, webhook_id: int) -> dict[str, str]:
        limit, window = self.webhook_rate_limit
        hits = self._webhook_hits[webhook_id]
        now = time.monotonic()
        while hits and hits[0] <= now - window:
            hits.popleft()
        if not self.enforce_webhook_rate_limit:
            hits.append(now)
            return {}
        if len(hits) >= limit:
            self.rate_limited += 1
            raise _too_many_requests(
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

    def _channel_hit(self, channel_id: int) -> None:
        limit, window = self.channel_rate_limit
        hits = self._channel_hits[channel_id]
        now = time.monotonic()
        while hits and hits[0] <= now - window:
            hits.popleft()
        if self.enforce_channel_rate_limit and len(hits) >= limit:
            self.rate_limited += 1
            raise _too_many_requests(
                hits[0] + window - now, scope="shared", bucket=f"channel-{channel_id}", limit=limit
            )
        hits.append(now)

    # ------------------------------------------------------------------ state helpers

    def _channel(self, channel_id: int) -> dict[str, Any]:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise _unknown_channel()
        return channel

    def _thread(self, thread_id: int) -> dict[str, Any]:
        channel = self._channel(thread_id)
        if channel["type"] not in THREAD_TYPES:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        return channel

    def _find_message(self, channel_id: int, message_id: int) -> _Message:
        self._channel(channel_id)
        for message in self._messages.get(channel_id, []):
            if message.payload["id"] == str(message_id):
                return message
        raise _unknown_message()

    def _public_user(self, user_id: int) -> dict[str, Any]:
        return copy.deepcopy(self._users[user_id])

    def _mentions(self, message: dict[str, Any], allowed: dict[str, Any] | None) -> dict[str, Any]:
        """Who the content pings under ``allowed_mentions`` (omitted: parse everything)."""
        guild = self._guilds[int(message["guild_id"])]
        content = message["content"]
        parse = (
            {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse") or [])
        )
        ok_users = set((allowed or {}).get("users") or [])
        ok_roles = set((allowed or {}).get("roles") or [])
        users = [
            self._public_user(int(u))
            for u in dict.fromkeys(_USER_MENTION.findall(content))
            if int(u) in guild.members and ("users" in parse or u in ok_users)
        ]
        roles = [
            r
            for r in dict.fromkeys(_ROLE_MENTION.findall(content))
            if int(r) in guild.roles and ("roles" in parse or r in ok_roles)
        ]
        everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
        if "webhook_id" not in message:  # a bot needs MENTION_EVERYONE; a webhook does not
            perms = self._permissions(self.bot_user_id, int(message["channel_id"]))
            everyone = everyone and bool(perms & MENTION_EVERYONE)
        return {"mentions": users, "mention_roles": roles, "mention_everyone": everyone}

    def _validate_message(self, body: Any, files: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(body, dict):
            body = {}
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            raise _form_error("content", "BASE_TYPE_STRING", "Must be a string.")
        if content is not None and len(content) > MAX_CONTENT:
            raise _form_error(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
            )
        if len(body.get("embeds") or []) > 10:
            raise _form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        has_body = (
            content
            or body.get("embeds")
            or files
            or body.get("components")
            or body.get("sticker_ids")
        )
        if not has_body:
            raise ApiError(400, 50006, "Cannot send an empty message")
        return body

    def _new_message(
        self,
        channel_id: int,
        body: dict[str, Any],
        files: tuple[str, ...],
        *,
        author_id: int,
        message_id: int | None = None,
        webhook: dict[str, Any] | None = None,
        kind: int = 0,
    ) -> _Message:
        channel = self._channel(channel_id)
        guild_id = int(channel["guild_id"])
        message_id = message_id or self._ids()
        content = body.get("content") or ""
        if webhook is not None:
            author = {
                **self._public_user(self.bot_user_id),
                "id": webhook["id"],
                "username": body.get("username") or webhook["name"],
                "avatar": None,
                "global_name": None,
                "discriminator": "0000",
                "bot": True,
            }
        else:
            author = self._public_user(author_id)
        payload: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "guild_id": str(guild_id),
            "author": author,
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "attachments": [self._attachment(channel_id, name) for name in files],
            "embeds": body.get("embeds") or [],
            "pinned": False,
            "type": kind,
            "flags": int(body.get("flags") or 0),
            "components": body.get("components") or [],
        }
        if "nonce" in body:
            payload["nonce"] = body["nonce"]
        if webhook is not None:
            payload["webhook_id"] = webhook["id"]
            payload["application_id"] = str(self.application_id)
            if body.get("avatar_url"):
                payload["author"]["avatar_url"] = body[
                    "avatar_url"
                ]  # recorded for tests; not Discord's
        payload |= self._mentions(payload, body.get("allowed_mentions"))
        if channel["type"] in THREAD_TYPES:
            payload["position"] = channel["total_message_sent"]
            channel["message_count"] += 1
            channel["total_message_sent"] += 1
        channel["last_message_id"] = str(message_id)
        message = _Message(payload)
        self._messages[channel_id].append(message)
        return message

    def _attachment(self, channel_id: int, filename: str) -> dict[str, Any]:
        attachment_id = self._ids()
        url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{filename}"
        return {
            "id": str(attachment_id),
            "filename": filename,
            "size": 0,
            "url": url,
            "proxy_url": url,
        }

    def _gateway_message(self, message: _Message) -> dict[str, Any]:
        payload = copy.deepcopy(message.payload)
        author_id = int(payload["author"]["id"])
        guild = self._guilds[int(payload["guild_id"])]
        if "webhook_id" not in payload and author_id in guild.members:
            payload["member"] = copy.deepcopy(guild.members[author_id])
        payload["author"].pop("avatar_url", None)
        return payload

    async def _created(self, message: _Message) -> None:
        await self._dispatch(
            "MESSAGE_CREATE", self._gateway_message(message), INTENT_GUILD_MESSAGES
        )

    def _response_message(self, message: _Message) -> dict[str, Any]:
        payload = copy.deepcopy(message.payload)
        payload["author"].pop("avatar_url", None)
        return payload

    async def _edit(self, message: _Message, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            body = {}
        content = body.get("content")
        if isinstance(content, str) and len(content) > MAX_CONTENT:
            raise _form_error(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
            )
        payload = message.payload
        message.edits.append(
            {"time": time.monotonic(), "before": payload["content"], "body": copy.deepcopy(body)}
        )
        if "content" in body:
            payload["content"] = content or ""
            payload |= self._mentions(payload, body.get("allowed_mentions"))
        for key in ("embeds", "components", "flags"):
            if key in body and body[key] is not None:
                payload[key] = body[key]
        payload["edited_timestamp"] = _now_iso()
        if not payload["flags"] & 64:
            await self._dispatch(
                "MESSAGE_UPDATE", self._gateway_message(message), INTENT_GUILD_MESSAGES
            )
        return self._response_message(message)

    # ------------------------------------------------------------------ handlers: meta

    @_route("GET", "/gateway", "get_gateway", auth=False)
    async def _h_gateway(self, req: _Request, m: re.Match[str]) -> Any:
        return {"url": self.gateway_url}

    @_route("GET", "/gateway/bot", "get_gateway_bot")
    async def _h_gateway_bot(self, req: _Request, m: re.Match[str]) -> Any:
        limits = {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": limits}

    @_route("GET", "/users/@me", "get_current_user")
    async def _h_me(self, req: _Request, m: re.Match[str]) -> Any:
        return {
            **self._public_user(self.bot_user_id),
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
        }

    @_route("GET", "/oauth2/applications/@me", "get_application")
    @_route("GET", "/applications/@me", "get_application")
    async def _h_application(self, req: _Request, m: re.Match[str]) -> Any:
        bot = self._public_user(self.bot_user_id)
        return {
            "id": str(self.application_id),
            "name": bot["username"],
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self._public_user(self.owner_user_id),
            "team": None,
            "flags": self.application_flags,
            "bot": bot,
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "tags": [],
            "approximate_guild_count": len(self._guilds),
            "integration_types_config": {"0": {}},
        }

    # ------------------------------------------------------------------ handlers: commands

    def _command_scope(self, m: re.Match[str]) -> int | None:
        if int(m.group(1)) != self.application_id:
            raise ApiError(403, 50001, "Missing Access")
        if m.lastindex and m.lastindex >= 2:
            guild_id = int(m.group(2))
            if guild_id not in self._guilds:
                raise ApiError(403, 50001, "Missing Access")
            return guild_id
        return None

    @_route("GET", "/applications/{id}/commands", "get_global_commands")
    @_route("GET", "/applications/{id}/guilds/{id}/commands", "get_guild_commands")
    async def _h_get_commands(self, req: _Request, m: re.Match[str]) -> Any:
        return self.commands(self._command_scope(m))

    @_route("PUT", "/applications/{id}/commands", "sync_global_commands")
    @_route("PUT", "/applications/{id}/guilds/{id}/commands", "sync_guild_commands")
    async def _h_put_commands(self, req: _Request, m: re.Match[str]) -> Any:
        scope = self._command_scope(m)
        if not isinstance(req.body, list):
            raise _form_error("_root", "LIST_TYPE_CONVERT", "Must be a list.")
        old = {(c["name"], c["type"]): c for c in self._commands.get(scope, [])}
        stored = []
        for index, body in enumerate(req.body):
            _validate_command(index, body)
            kind = body.get("type", 1)
            previous = old.get((body["name"], kind))
            command = {
                "id": previous["id"] if previous else str(self._ids()),
                "application_id": str(self.application_id),
                "version": str(self._ids()),
                "type": kind,
                "name": body["name"],
                "description": body.get("description", ""),
                "options": body.get("options", []),
                "default_member_permissions": body.get("default_member_permissions"),
                "dm_permission": body.get("dm_permission", True),
                "nsfw": body.get("nsfw", False),
                "contexts": body.get("contexts"),
                "integration_types": body.get("integration_types") or [0],
                "name_localizations": body.get("name_localizations"),
                "description_localizations": body.get("description_localizations"),
            }
            if scope is not None:
                command["guild_id"] = str(scope)
            stored.append(command)
        self._commands[scope] = stored
        return copy.deepcopy(stored)

    # ------------------------------------------------------------------ handlers: interactions

    @_route("POST", "/interactions/{id}/{token}/callback", "interaction_callback", auth=False)
    async def _h_callback(self, req: _Request, m: re.Match[str]) -> Any:
        state = self._interactions.get(int(m.group(1)))
        if state is None or state.record.token != m.group(2):
            raise ApiError(404, 10062, "Unknown interaction")
        if state.responses:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - state.created > self.interaction_ack_deadline:
            raise ApiError(404, 10062, "Unknown interaction")
        body = req.body if isinstance(req.body, dict) else {}
        kind, data = body.get("type"), body.get("data")
        self._check_callback_type(state.record.type, kind, data)
        message = None
        if kind in (4, 5):
            message = self._interaction_message(state, kind, data or {}, req.files)
        elif kind == 7 and state.record.payload.get("message"):
            target = self._find_message(
                state.record.channel_id, int(state.record.payload["message"]["id"])
            )
            await self._edit(target, data or {})
        state.responses.append(InteractionResponse(kind, copy.deepcopy(data), time.monotonic()))
        if not _truthy(req.query.get("with_response")):
            return _Reply(None, 204)
        return self._callback_body(state, kind, message)

    @staticmethod
    def _check_callback_type(interaction_type: int, kind: Any, data: Any) -> None:
        allowed = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}[interaction_type]
        if kind not in allowed:
            raise ApiError(
                400, 40043, "Interaction response type not allowed for this interaction."
            )
        if kind == 8:
            choices = (data or {}).get("choices")
            if not isinstance(choices, list) or len(choices) > 25:
                raise _form_error(
                    "data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
            for choice in choices:
                if not 1 <= len(str(choice.get("name", ""))) <= 100:
                    raise _form_error(
                        "data.choices.name",
                        "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 100 in length.",
                    )

    def _interaction_message(
        self, state: InteractionState, kind: int, data: dict[str, Any], files: tuple[str, ...]
    ) -> _Message:
        flags = int(data.get("flags") or 0)
        if kind == 4:
            self._validate_message(data, files)
        else:
            flags |= 1 << 7  # LOADING: the "is thinking..." placeholder
        message = self._app_message(state, {**data, "flags": flags}, files)
        state.original_id = int(message.payload["id"])
        return message

    def _app_message(
        self, state: InteractionState, data: dict[str, Any], files: tuple[str, ...]
    ) -> _Message:
        """A message sent via the interaction webhook; an ephemeral one stays off the channel."""
        record = state.record
        message = self._new_message(
            record.channel_id, data, files, author_id=self.bot_user_id, kind=20
        )
        message.payload |= {
            "webhook_id": str(self.application_id),
            "application_id": str(self.application_id),
            "interaction_metadata": {
                "id": str(record.id),
                "type": record.type,
                "user": self._public_user(record.user_id),
                "authorizing_integration_owners": {"0": str(record.guild_id)},
                "name": record.payload["data"].get("name", ""),
                "command_type": 1,
            },
        }
        if message.payload["flags"] & 64:
            self._messages[record.channel_id].remove(message)
            self._ephemeral[int(message.payload["id"])] = message
        else:
            self._schedule(self._created(message))
        return message

    def _callback_body(
        self, state: InteractionState, kind: int, message: _Message | None
    ) -> dict[str, Any]:
        flags = message.payload["flags"] if message else 0
        body: dict[str, Any] = {
            "interaction": {
                "id": str(state.record.id),
                "type": state.record.type,
                "response_message_id": message.payload["id"] if message else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & 64),
            },
            "resource": {"type": kind},
        }
        if message is not None:
            body["resource"]["message"] = self._response_message(message)
        return body

    def _interaction_by_token(self, app_id: int, token: str) -> InteractionState:
        interaction_id = self._tokens.get(token)
        if app_id != self.application_id or interaction_id is None:
            raise _unknown_webhook()
        state = self._interactions[interaction_id]
        if time.monotonic() - state.created > self.interaction_token_lifetime:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return state

    def _interaction_message_lookup(self, state: InteractionState, message_ref: str) -> _Message:
        message_id = state.original_id if message_ref == "@original" else int(message_ref)
        if message_id is None or (
            message_ref != "@original" and message_id not in state.followup_ids
        ):
            raise _unknown_message()
        if message_id in self._ephemeral:
            return self._ephemeral[message_id]
        return self._find_message(state.record.channel_id, message_id)

    async def _interaction_webhook(
        self, req: _Request, app_id: int, token: str, message_ref: str | None
    ) -> Any:
        state = self._interaction_by_token(app_id, token)
        if message_ref is None:  # POST: a followup
            if not state.responses:
                raise _unknown_webhook()
            message = self._app_message(
                state, self._validate_message(req.body, req.files), req.files
            )
            state.followup_ids.append(int(message.payload["id"]))
            return self._response_message(message)
        message = self._interaction_message_lookup(state, message_ref)
        if req.method == "GET":
            return self._response_message(message)
        if req.method == "DELETE":
            self._remove_message(message)
            return _Reply(None, 204)
        body = dict(req.body or {})
        if message.payload["flags"] & (1 << 7):  # the first edit replaces the thinking placeholder
            body["flags"] = message.payload["flags"] & ~(1 << 7)
        return await self._edit(message, body)

    def _remove_message(self, message: _Message) -> None:
        channel_id = int(message.payload["channel_id"])
        if message in self._messages.get(channel_id, []):
            self._messages[channel_id].remove(message)
        self._ephemeral.pop(int(message.payload["id"]), None)
        data = {
            "id": message.payload["id"],
            "channel_id": str(channel_id),
            "guild_id": message.payload["guild_id"],
        }
        self._schedule(self._dispatch("MESSAGE_DELETE", data, INTENT_GUILD_MESSAGES))

    # ------------------------------------------------------------------ handlers: guilds

    def _guild(self, m: re.Match[str]) -> _Guild:
        guild = self._guilds.get(int(m.group(1)))
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild

    @_route("GET", "/guilds/{id}", "get_guild")
    async def _h_get_guild(self, req: _Request, m: re.Match[str]) -> Any:
        return self._guild_payload(self._guild(m))

    @_route("GET", "/guilds/{id}/channels", "get_guild_channels")
    async def _h_guild_channels(self, req: _Request, m: re.Match[str]) -> Any:
        guild = self._guild(m)
        return [copy.deepcopy(self._channels[c]) for c in guild.channel_ids if c in self._channels]

    @_route("GET", "/guilds/{id}/members/{id}", "get_member")
    async def _h_get_member(self, req: _Request, m: re.Match[str]) -> Any:
        guild = self._guild(m)
        if int(m.group(2)) not in guild.members:
            raise ApiError(404, 10007, "Unknown Member")
        return self._full_member(guild, int(m.group(2)))

    @_route("GET", "/guilds/{id}/threads/active", "get_active_threads")
    async def _h_active_threads(self, req: _Request, m: re.Match[str]) -> Any:
        guild = self._guild(m)
        threads = [
            copy.deepcopy(c)
            for c in self._channels.values()
            if c["type"] in THREAD_TYPES
            and c["guild_id"] == str(guild.id)
            and not c["thread_metadata"]["archived"]
        ]
        return {"threads": threads, "members": []}

    # ------------------------------------------------------------------ handlers: channels

    @_route("GET", "/channels/{id}", "get_channel")
    async def _h_get_channel(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        channel = self._channel(channel_id)
        self._require(channel_id)
        return copy.deepcopy(channel)

    @_route("PATCH", "/channels/{id}", "edit_channel")
    async def _h_edit_channel(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        channel = self._channel(channel_id)
        body = req.body if isinstance(req.body, dict) else {}
        if channel["type"] not in THREAD_TYPES:
            self._require(channel_id, MANAGE_CHANNELS)
            channel |= {
                k: body[k] for k in ("name", "topic", "nsfw", "rate_limit_per_user") if k in body
            }
            await self._dispatch("CHANNEL_UPDATE", copy.deepcopy(channel), INTENT_GUILDS)
            return copy.deepcopy(channel)
        return await self._edit_thread(channel, body)

    async def _edit_thread(self, thread: dict[str, Any], body: dict[str, Any]) -> Any:
        thread_id = int(thread["id"])
        meta = thread["thread_metadata"]
        perms = self._permissions(self.bot_user_id, thread_id)
        is_owner = thread["owner_id"] == str(self.bot_user_id)
        if "locked" in body and body["locked"] != meta["locked"] and not perms & MANAGE_THREADS:
            raise _missing_permissions()
        if "archived" in body and not (perms & MANAGE_THREADS or (is_owner and not meta["locked"])):
            raise _missing_permissions()
        if (
            meta["archived"]
            and body.get("archived") is not False
            and set(body) - {"archived", "locked"}
        ):
            raise _archived()
        if "name" in body:
            _validate_thread_name(body["name"])
            thread["name"] = body["name"]
        if "auto_archive_duration" in body:
            _validate_auto_archive(body["auto_archive_duration"])
            meta["auto_archive_duration"] = body["auto_archive_duration"]
        for key in ("locked", "invitable"):
            if key in body:
                meta[key] = body[key]
        if "archived" in body and body["archived"] != meta["archived"]:
            meta["archived"] = body["archived"]
            meta["archive_timestamp"] = _now_iso()
        await self._dispatch("THREAD_UPDATE", copy.deepcopy(thread), INTENT_GUILDS)
        return copy.deepcopy(thread)

    @_route("DELETE", "/channels/{id}", "delete_channel")
    async def _h_delete_channel(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        channel = copy.deepcopy(self._channel(channel_id))
        if channel["type"] in THREAD_TYPES:
            self._require(channel_id, MANAGE_THREADS)
            self.delete_thread(channel_id)
        else:
            self._require(channel_id, MANAGE_CHANNELS)
            self.delete_channel(channel_id)
        return channel

    @_route("POST", "/channels/{id}/typing", "typing")
    @_route("PUT", "/channels/{id}/thread-members/@me", "join_thread")
    async def _h_typing(self, req: _Request, m: re.Match[str]) -> Any:
        self._channel(int(m.group(1)))
        return _Reply(None, 204)

    @_route("GET", "/channels/{id}/messages", "get_messages")
    async def _h_get_messages(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        self._channel(channel_id)
        self._require(channel_id, READ_MESSAGE_HISTORY)
        limit = min(100, int(req.query.get("limit", 50)))
        newest_first = [
            self._response_message(x) for x in reversed(self._messages.get(channel_id, []))
        ]
        if "before" in req.query:
            newest_first = [x for x in newest_first if int(x["id"]) < int(req.query["before"])]
        if "after" in req.query:
            newest_first = [x for x in newest_first if int(x["id"]) > int(req.query["after"])]
        return newest_first[:limit]

    @_route("POST", "/channels/{id}/messages", "create_message")
    async def _h_create_message(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        channel = self._channel(channel_id)
        if channel["type"] == FORUM:
            raise ApiError(400, 40058, "Cannot send messages in a forum channel")
        is_thread = channel["type"] in THREAD_TYPES
        self._require(channel_id, SEND_MESSAGES_IN_THREADS if is_thread else SEND_MESSAGES)
        body = self._validate_message(req.body, req.files)
        if is_thread:
            self._send_into_thread(
                channel, manage=self._permissions(self.bot_user_id, channel_id) & MANAGE_THREADS
            )
        self._channel_hit(channel_id)
        message = self._new_message(channel_id, body, req.files, author_id=self.bot_user_id)
        await self._created(message)
        return self._response_message(message)

    def _send_into_thread(self, thread: dict[str, Any], *, manage: int) -> None:
        """Sending into an archived thread unarchives it, unless it is locked (then 50083)."""
        meta = thread["thread_metadata"]
        if not meta["archived"]:
            return
        if meta["locked"] and not manage:
            raise _archived()
        self._set_archived(thread, archived=False)

    @_route("GET", "/channels/{id}/messages/{id}", "get_message")
    async def _h_get_message(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        message = self._find_message(channel_id, int(m.group(2)))
        self._require(channel_id, READ_MESSAGE_HISTORY)
        return self._response_message(message)

    @_route("PATCH", "/channels/{id}/messages/{id}", "edit_message")
    async def _h_edit_message(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        message = self._find_message(channel_id, int(m.group(2)))
        if (
            message.payload["author"]["id"] != str(self.bot_user_id)
            or "webhook_id" in message.payload
        ):
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        channel = self._channel(channel_id)
        if channel["type"] in THREAD_TYPES and channel["thread_metadata"]["archived"]:
            raise _archived()
        return await self._edit(message, req.body)

    @_route("DELETE", "/channels/{id}/messages/{id}", "delete_message")
    async def _h_delete_message(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        message = self._find_message(channel_id, int(m.group(2)))
        if message.payload["author"]["id"] != str(self.bot_user_id):
            self._require(channel_id, MANAGE_MESSAGES)
        self._remove_message(message)
        return _Reply(None, 204)

    # ------------------------------------------------------------------ handlers: threads

    def _new_thread(
        self, parent: dict[str, Any], thread_id: int, kind: int, body: dict[str, Any], owner_id: int
    ) -> dict[str, Any]:
        name = body.get("name")
        _validate_thread_name(name)
        duration = body.get("auto_archive_duration") or parent.get(
            "default_auto_archive_duration", 1440
        )
        _validate_auto_archive(duration)
        now = _now_iso()
        thread: dict[str, Any] = {
            "id": str(thread_id),
            "type": kind,
            "guild_id": parent["guild_id"],
            "parent_id": parent["id"],
            "owner_id": str(owner_id),
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "rate_limit_per_user": body.get("rate_limit_per_user") or 0,
            "flags": 0,
            "applied_tags": list(body.get("applied_tags") or []),
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": duration,
                "archive_timestamp": now,
                "locked": False,
                "create_timestamp": now,
            },
        }
        if kind == PRIVATE_THREAD:
            thread["thread_metadata"]["invitable"] = body.get("invitable", True)
        self._channels[thread_id] = thread
        return thread

    async def _thread_created(self, thread: dict[str, Any]) -> None:
        member = {
            "id": thread["id"],
            "user_id": thread["owner_id"],
            "join_timestamp": thread["thread_metadata"]["create_timestamp"],
            "flags": 1,
        }
        event = {**copy.deepcopy(thread), "newly_created": True}
        if thread["owner_id"] == str(self.bot_user_id):
            event["member"] = member
        await self._dispatch("THREAD_CREATE", event, INTENT_GUILDS)

    @_route("POST", "/channels/{id}/messages/{id}/threads", "thread_from_message")
    async def _h_thread_from_message(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id, message_id = int(m.group(1)), int(m.group(2))
        channel = self._channel(channel_id)
        if channel["type"] != TEXT:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        self._require(channel_id, CREATE_PUBLIC_THREADS)
        message = self._find_message(channel_id, message_id)
        if message_id in self._channels or message_id in self._deleted_channels:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        body = req.body if isinstance(req.body, dict) else {}
        thread = self._new_thread(channel, message_id, PUBLIC_THREAD, body, self.bot_user_id)
        message.payload["flags"] |= 1 << 5  # HAS_THREAD
        message.payload["thread"] = copy.deepcopy(thread)
        await self._thread_created(thread)
        return copy.deepcopy(thread)

    @_route("POST", "/channels/{id}/threads", "create_thread")
    async def _h_create_thread(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        channel = self._channel(channel_id)
        body = req.body if isinstance(req.body, dict) else {}
        if channel["type"] == FORUM:
            return await self._forum_post(channel, body, req.files, author_id=self.bot_user_id)
        if channel["type"] != TEXT:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        # Discord's default for a thread without a message is PRIVATE (discord.py passes type).
        kind = body.get("type", PRIVATE_THREAD)
        if kind not in (PUBLIC_THREAD, PRIVATE_THREAD):
            raise _form_error("type", "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
        self._require(
            channel_id, CREATE_PUBLIC_THREADS if kind == PUBLIC_THREAD else CREATE_PRIVATE_THREADS
        )
        thread = self._new_thread(channel, self._ids(), kind, body, self.bot_user_id)
        await self._thread_created(thread)
        if kind == PUBLIC_THREAD:  # the "X started a thread" system message in the parent
            notice = self._new_message(
                channel_id, {"content": thread["name"]}, (), author_id=self.bot_user_id, kind=18
            )
            await self._created(notice)
        return copy.deepcopy(thread)

    async def _forum_post(
        self,
        forum: dict[str, Any],
        body: dict[str, Any],
        files: tuple[str, ...],
        *,
        author_id: int,
        webhook: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A forum post: a public thread whose starter message shares its id."""
        forum_id = int(forum["id"])
        if webhook is None:
            self._require(forum_id, SEND_MESSAGES)
            starter = self._validate_message(body.get("message"), files)
        else:
            starter = self._validate_message(body, files)
            body = {"name": body.get("thread_name"), "applied_tags": body.get("applied_tags")}
        self._channel_hit(forum_id)
        thread_id = self._ids()
        thread = self._new_thread(forum, thread_id, PUBLIC_THREAD, body, author_id)
        message = self._new_message(
            thread_id, starter, files, author_id=author_id, message_id=thread_id, webhook=webhook
        )
        forum["last_message_id"] = str(thread_id)
        await self._thread_created(thread)
        await self._created(message)
        return {**copy.deepcopy(thread), "message": self._response_message(message)}

    # ------------------------------------------------------------------ handlers: webhooks

    def _webhook_payload(self, hook: dict[str, Any], *, with_user: bool = True) -> dict[str, Any]:
        payload = copy.deepcopy(hook)
        if not with_user:
            payload.pop("user", None)
        return payload

    @_route("GET", "/channels/{id}/webhooks", "get_channel_webhooks")
    async def _h_channel_webhooks(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        self._channel(channel_id)
        self._require(channel_id, MANAGE_WEBHOOKS)
        return [
            self._webhook_payload(w)
            for w in self._webhooks.values()
            if w["channel_id"] == str(channel_id)
        ]

    @_route("POST", "/channels/{id}/webhooks", "create_webhook")
    async def _h_create_webhook(self, req: _Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        channel = self._channel(channel_id)
        if channel["type"] not in (TEXT, FORUM):
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        self._require(channel_id, MANAGE_WEBHOOKS)
        name = (req.body or {}).get("name")
        _validate_webhook_name("name", name)
        if (
            sum(w["channel_id"] == str(channel_id) for w in self._webhooks.values())
            >= MAX_WEBHOOKS_PER_CHANNEL
        ):
            raise ApiError(
                400, 30007, f"Maximum number of webhooks reached ({MAX_WEBHOOKS_PER_CHANNEL})"
            )
        webhook_id, token = self._ids(), secrets.token_urlsafe(51)
        hook = {
            "id": str(webhook_id),
            "type": 1,
            "guild_id": channel["guild_id"],
            "channel_id": channel["id"],
            "user": self._public_user(self.bot_user_id),
            "name": name,
            "avatar": None,
            "token": token,
            "application_id": str(self.application_id),
            "url": f"https://discord.com/api/webhooks/{webhook_id}/{token}",
        }
        self._webhooks[webhook_id] = hook
        await self._webhooks_update(hook)
        return self._webhook_payload(hook)

    async def _webhooks_update(self, hook: dict[str, Any]) -> None:
        data = {"guild_id": hook["guild_id"], "channel_id": hook["channel_id"]}
        await self._dispatch("WEBHOOKS_UPDATE", data, INTENT_GUILD_WEBHOOKS)

    def _webhook(self, m: re.Match[str], *, token: str | None) -> dict[str, Any]:
        hook = self._webhooks.get(int(m.group(1)))
        if hook is None:
            raise _unknown_webhook()
        if token is not None and token != hook["token"]:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return hook

    @_route("GET", "/webhooks/{id}", "get_webhook")
    @_route("GET", "/webhooks/{id}/{token}", "get_webhook_with_token", auth=False)
    async def _h_get_webhook(self, req: _Request, m: re.Match[str]) -> Any:
        token = m.group(2) if m.lastindex and m.lastindex >= 2 else None
        hook = self._webhook(m, token=token)
        if token is None:
            self._require(int(hook["channel_id"]), MANAGE_WEBHOOKS)
        return self._webhook_payload(hook, with_user=token is None)

    @_route("DELETE", "/webhooks/{id}", "delete_webhook")
    @_route("DELETE", "/webhooks/{id}/{token}", "delete_webhook_with_token", auth=False)
    async def _h_delete_webhook(self, req: _Request, m: re.Match[str]) -> Any:
        token = m.group(2) if m.lastindex and m.lastindex >= 2 else None
        hook = self._webhook(m, token=token)
        if token is None:
            self._require(int(hook["channel_id"]), MANAGE_WEBHOOKS)
        del self._webhooks[int(hook["id"])]
        await self._webhooks_update(hook)
        return _Reply(None, 204)

    @_route("POST", "/webhooks/{id}/{token}", "execute_webhook", auth=False)
    async def _h_execute(self, req: _Request, m: re.Match[str]) -> Any:
        if int(m.group(1)) == self.application_id:
            return await self._interaction_webhook(req, int(m.group(1)), m.group(2), None)
        hook = self._webhook(m, token=m.group(2))
        headers = self._webhook_hit(int(hook["id"]))
        body = self._validate_message(req.body, req.files)
        if body.get("username") is not None:
            _validate_webhook_name("username", body["username"])
        channel = self._channel(int(hook["channel_id"]))
        thread_id = req.query.get("thread_id")
        if channel["type"] == FORUM and thread_id is None:
            if not body.get("thread_name"):
                raise ApiError(
                    400,
                    220001,
                    "Webhooks posted to forum channels must have a thread_name or thread_id",
                )
            post = await self._forum_post(
                channel, body, req.files, author_id=self.bot_user_id, webhook=hook
            )
            reply = post["message"] if _truthy(req.query.get("wait")) else None
            return _Reply(reply, 200 if reply else 204, headers)
        if body.get("thread_name"):
            raise ApiError(400, 220003, "Webhooks can only create threads in forum channels")
        target_id = int(thread_id) if thread_id is not None else int(channel["id"])
        if thread_id is not None:
            thread = self._channel(target_id)
            if thread.get("parent_id") != hook["channel_id"]:
                raise _unknown_channel()
            self._send_into_thread(thread, manage=0)
        self._channel_hit(target_id)
        message = self._new_message(
            target_id, body, req.files, author_id=self.bot_user_id, webhook=hook
        )
        await self._created(message)
        if not _truthy(req.query.get("wait")):
            return _Reply(None, 204, headers)
        return _Reply(self._response_message(message), 200, headers)

    @_route("GET", "/webhooks/{id}/{token}/messages/{token}", "get_webhook_message", auth=False)
    @_route("PATCH", "/webhooks/{id}/{token}/messages/{token}", "edit_webhook_message", auth=False)
    @_route(
        "DELETE", "/webhooks/{id}/{token}/messages/{token}", "delete_webhook_message", auth=False
    )
    async def _h_webhook_message(self, req: _Request, m: re.Match[str]) -> Any:
        if int(m.group(1)) == self.application_id:
            return await self._interaction_webhook(req, int(m.group(1)), m.group(2), m.group(3))
        hook = self._webhook(m, token=m.group(2))
        headers = self._webhook_hit(int(hook["id"]))
        thread_id = req.query.get("thread_id")
        target_id = int(thread_id) if thread_id else int(hook["channel_id"])
        target = self._channel(target_id)
        if thread_id and target.get("parent_id") != hook["channel_id"]:
            raise _unknown_channel()
        if not m.group(3).isdigit():
            raise _unknown_message()
        message = self._find_message(target_id, int(m.group(3)))
        if message.payload.get("webhook_id") != hook["id"]:
            raise _unknown_message()
        if req.method == "GET":
            return _Reply(self._response_message(message), 200, headers)
        if target["type"] in THREAD_TYPES and target["thread_metadata"]["archived"]:
            raise _archived()
        if req.method == "DELETE":
            self._remove_message(message)
            return _Reply(None, 204, headers)
        return _Reply(await self._edit(message, req.body), 200, headers)


# --------------------------------------------------------------------------- request bodies


async def _read_body(request: web.Request) -> tuple[Any, tuple[str, ...]]:
    """The JSON body, or a multipart body's ``payload_json`` plus its file names."""
    if request.content_type.startswith("multipart/"):
        body: Any = None
        files: list[str] = []
        reader = await request.multipart()
        for _ in range(100):  # Discord allows 10 files; bound the loop anyway
            part = await reader.next()
            if part is None:
                break
            assert isinstance(part, BodyPartReader)
            if part.name == "payload_json":
                body = json.loads(await part.text())
            else:
                await part.read()
                files.append(part.filename or part.name or "")
        return body, tuple(files)
    raw = await request.read() if request.can_read_body else b""
    if not raw:
        return None, ()
    try:
        return json.loads(raw), ()
    except ValueError:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from None


# --------------------------------------------------------------------------- validation


def _validate_webhook_name(field_name: str, name: Any) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_USERNAME:
        raise _form_error(
            field_name, "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {MAX_USERNAME} in length."
        )
    lowered = name.lower()
    for part in FORBIDDEN_NAME_PARTS:
        if part in lowered:
            raise _form_error(
                field_name, "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{part}"'
            )


def _validate_thread_name(name: Any) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise _form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")


def _validate_auto_archive(duration: Any) -> None:
    if duration not in AUTO_ARCHIVE_DURATIONS:
        raise _form_error(
            "auto_archive_duration",
            "BASE_TYPE_CHOICES",
            "Value must be one of {60, 1440, 4320, 10080}.",
        )


def _validate_command(index: int, body: Any) -> None:
    def fail(key: str, message: str) -> ApiError:
        return ApiError(
            400,
            50035,
            "Invalid Form Body",
            errors={str(index): {key: {"_errors": [{"code": "INVALID", "message": message}]}}},
        )

    if not isinstance(body, dict):
        raise fail("_root", "Must be an object.")
    kind = body.get("type", 1)
    name = body.get("name")
    if (
        not isinstance(name, str)
        or not _COMMAND_NAME.match(name)
        or (kind == 1 and name != name.lower())
    ):
        raise fail("name", "Command name is invalid")
    if kind == 1 and not 1 <= len(body.get("description") or "") <= 100:
        raise fail("description", "Must be between 1 and 100 in length.")
    if len(body.get("options") or []) > 25:
        raise fail("options", "Must be 25 or fewer in length.")


# --------------------------------------------------------------------------- client patching


@contextlib.contextmanager
def configure_discord_py(fake: FakeDiscord) -> Iterator[None]:
    """Point the installed discord.py at ``fake`` (REST, webhooks and gateway); undo on exit."""
    import discord.gateway
    import discord.http
    import yarl

    route = discord.http.Route
    socket = discord.gateway.DiscordWebSocket
    saved = (route.BASE, socket.DEFAULT_GATEWAY)
    route.BASE = fake.rest_base
    socket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        route.BASE, socket.DEFAULT_GATEWAY = saved

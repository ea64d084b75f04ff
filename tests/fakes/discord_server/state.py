"""Everything the emulator knows, and the lookups every part of it shares: guilds, channels,
messages, webhooks, commands, interactions, gateway sessions; who may do what where (Discord's
permission rules); and handing events to the connected clients."""

from __future__ import annotations

import asyncio
import copy
import secrets
from collections import defaultdict
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from .constants import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    API_PREFIX,
    INTENT_MESSAGE_CONTENT,
    PRIVILEGED_INTENTS,
    THREAD_TYPES,
    VIEW_CHANNEL,
)
from .errors import (
    ApiError,
    missing_permissions,
    unknown_channel,
    unknown_message,
    wrong_channel_type,
)
from .records import Call, Guild, InteractionState, Message, Snowflakes
from .sessions import Session


class State:
    """Limits a test may change, counters it may read, and the world's data."""

    heartbeat_interval_ms: int = 41_250
    interaction_ack_deadline: float = 3.0
    interaction_token_lifetime: float = 15 * 60.0
    webhook_rate_limit: tuple[int, float] = (5, 2.0)
    channel_rate_limit: tuple[int, float] = (30, 60.0)
    # Discord's limit on editing old messages (error 30046, answered as a 429): a message older
    # than `old_message_age` seconds accepts `old_message_edits` edits, then every further one is
    # refused, each time for `old_message_retry_after` seconds. Discord does not publish the
    # numbers; None (the default) leaves edits unlimited.
    old_message_age: float = 3600.0
    old_message_edits: int | None = None
    old_message_retry_after: float = 20.0

    def __init__(self, *, host: str, token: str | None) -> None:
        self.host = host
        self.port = 0
        self.token = token or f"fake.{secrets.token_urlsafe(24)}"
        self.ids = Snowflakes()
        self.application_id = self.ids()
        self.bot_user_id = self.application_id  # like Discord: a bot's user id is its app id
        self.owner_user_id = self.ids()
        self.application_flags = 0
        self.enabled_privileged_intents = PRIVILEGED_INTENTS
        self.enforce_webhook_rate_limit = False
        self.enforce_channel_rate_limit = False
        self.rate_limited = 0
        self.internal_errors: list[str] = []
        self.identify_payloads: list[dict[str, Any]] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.resume_count = 0
        self.users: dict[int, dict[str, Any]] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.deleted_channels: set[int] = set()
        self.channel_messages: dict[int, list[Message]] = defaultdict(list)
        self.ephemeral: dict[int, Message] = {}  # seen only by the invoking user
        self.hooks: dict[int, dict[str, Any]] = {}
        self.command_sets: dict[int | None, list[dict[str, Any]]] = {}  # None: global commands
        self.interactions: dict[int, InteractionState] = {}
        self.tokens: dict[str, int] = {}  # interaction token -> interaction id
        self.call_log: list[Call | None] = []  # None: a call still being answered
        self.sessions: dict[str, Session] = {}
        self.sockets: set[web.WebSocketResponse] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Condition()  # notified after every recorded call
        self.ready = asyncio.Event()
        # Called with each new message (its REST shape) once it exists and before the answer
        # leaves: a test can kill the caller between Discord's answer and its bookkeeping.
        self.on_message: Callable[[dict[str, Any]], None] | None = None

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

    # -- lookups (each raises the ApiError Discord answers a missing thing with) ---------------

    def channel(self, channel_id: int) -> dict[str, Any]:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise unknown_channel()
        return channel

    def thread(self, thread_id: int) -> dict[str, Any]:
        channel = self.channel(thread_id)
        if channel["type"] not in THREAD_TYPES:
            raise wrong_channel_type()
        return channel

    def find_message(self, channel_id: int, message_id: int) -> Message:
        self.channel(channel_id)
        for message in self.channel_messages.get(channel_id, []):
            if message.payload["id"] == str(message_id):
                return message
        raise unknown_message()

    def public_user(self, user_id: int) -> dict[str, Any]:
        return copy.deepcopy(self.users[user_id])

    def full_member(self, guild: Guild, user_id: int) -> dict[str, Any]:
        return {
            **copy.deepcopy(guild.members[user_id]),
            "user": copy.deepcopy(self.users[user_id]),
        }

    def is_archived(self, channel: dict[str, Any]) -> bool:
        return channel["type"] in THREAD_TYPES and channel["thread_metadata"]["archived"]

    # -- permissions --------------------------------------------------------------------------

    def permissions(self, user_id: int, channel_id: int) -> int:
        """A member's permissions in a channel (a thread's are its parent's): guild roles, then
        the channel's @everyone, role and member overwrites."""
        channel = self.channel(channel_id)
        if channel["type"] in THREAD_TYPES:
            channel = self.channel(int(channel["parent_id"]))
        guild = self.guilds[int(channel["guild_id"])]
        if user_id == self.owner_user_id:
            return ALL_PERMISSIONS
        member = guild.members.get(user_id)
        if member is None:
            return 0
        perms = 0
        for role_id in [str(guild.id), *member["roles"]]:
            perms |= int(guild.roles[int(role_id)]["permissions"])
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        overwrites = {(o["type"], o["id"]): o for o in channel["permission_overwrites"]}
        if (everyone := overwrites.get((0, str(guild.id)))) is not None:
            perms = (perms & ~int(everyone["deny"])) | int(everyone["allow"])
        allow = deny = 0
        for role_id in member["roles"]:
            if (o := overwrites.get((0, role_id))) is not None:
                allow, deny = allow | int(o["allow"]), deny | int(o["deny"])
        perms = (perms & ~deny) | allow
        if (o := overwrites.get((1, str(user_id)))) is not None:
            perms = (perms & ~int(o["deny"])) | int(o["allow"])
        return perms if perms & VIEW_CHANNEL else 0

    def require(self, channel_id: int, *needed: int) -> None:
        """The bot may do this in the channel, or a 403."""
        perms = self.permissions(self.bot_user_id, channel_id)
        if not perms & VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        for bit in needed:
            if not perms & bit:
                raise missing_permissions()

    # -- events to the connected clients --------------------------------------------------------

    async def dispatch(self, event: str, data: Any, intent: int | None) -> None:
        """To every session that asked for ``intent`` (None: to every session)."""
        for session in list(self.sessions.values()):
            if intent is None or session.intents & intent:
                payload = data
                if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
                    payload = self._visible_content(session, data)
                await session.dispatch(event, payload)

    def _visible_content(self, session: Session, data: dict[str, Any]) -> dict[str, Any]:
        # Without MESSAGE_CONTENT a bot sees the content of its own messages only.
        if session.intents & INTENT_MESSAGE_CONTENT or data["author"]["id"] == str(
            self.bot_user_id
        ):
            return data
        return {**data, "content": "", "embeds": [], "attachments": [], "components": []}

    def schedule(self, coro: Coroutine[Any, Any, None]) -> None:
        """World changes made from sync test code reach connected clients as gateway events."""
        if not self.sessions:
            coro.close()  # nobody has identified yet: READY/GUILD_CREATE will carry the state
            return
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

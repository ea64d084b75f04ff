"""REST: threads. A thread made from a message shares its id; ``POST /channels/{id}/threads``
makes a PRIVATE thread unless asked for a public one (Discord's default); a forum post is a public
thread whose starter message shares its id. Sending into an archived thread unarchives it unless
it is locked (``400 50083``)."""

from __future__ import annotations

import copy
import re
from typing import Any

from . import validation
from .constants import (
    CREATE_PRIVATE_THREADS,
    CREATE_PUBLIC_THREADS,
    FORUM,
    INTENT_GUILDS,
    MANAGE_THREADS,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    SEND_MESSAGES,
    TEXT,
)
from .errors import ApiError, archived, form_error, missing_permissions, wrong_channel_type
from .faults import RateLimits
from .messages import Messages
from .records import now_iso
from .routing import Request, route
from .world import World

HAS_THREAD = 1 << 5  # a message flag


class Threads:
    def __init__(self, world: World, messages: Messages, limits: RateLimits) -> None:
        self.world = world
        self.messages = messages
        self.limits = limits

    @route("POST", "/channels/{id}/messages/{id}/threads", "thread_from_message")
    async def from_message(self, req: Request, m: re.Match[str]) -> Any:
        w = self.world
        channel_id, message_id = int(m.group(1)), int(m.group(2))
        channel = w.channel(channel_id)
        if channel["type"] != TEXT:
            raise wrong_channel_type()
        w.require(channel_id, CREATE_PUBLIC_THREADS)
        message = w.find_message(channel_id, message_id)
        if message_id in w.channels or message_id in w.deleted_channels:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        body = req.body if isinstance(req.body, dict) else {}
        thread = self._new(channel, message_id, PUBLIC_THREAD, body, w.bot_user_id)
        message.payload["flags"] |= HAS_THREAD
        message.payload["thread"] = copy.deepcopy(thread)
        await self._created(thread)
        return copy.deepcopy(thread)

    @route("POST", "/channels/{id}/threads", "create_thread")
    async def create(self, req: Request, m: re.Match[str]) -> Any:
        w = self.world
        channel_id = int(m.group(1))
        channel = w.channel(channel_id)
        body = req.body if isinstance(req.body, dict) else {}
        if channel["type"] == FORUM:
            return await self.forum_post(channel, body, req.files, author_id=w.bot_user_id)
        if channel["type"] != TEXT:
            raise wrong_channel_type()
        # Discord's default for a thread without a message is PRIVATE (discord.py passes type).
        kind = body.get("type", PRIVATE_THREAD)
        if kind not in (PUBLIC_THREAD, PRIVATE_THREAD):
            raise form_error("type", "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
        needed = CREATE_PUBLIC_THREADS if kind == PUBLIC_THREAD else CREATE_PRIVATE_THREADS
        w.require(channel_id, needed)
        thread = self._new(channel, w.ids(), kind, body, w.bot_user_id)
        await self._created(thread)
        if kind == PUBLIC_THREAD:  # the "X started a thread" system message in the parent
            notice = self.messages.new(
                channel_id, {"content": thread["name"]}, (), author_id=w.bot_user_id, kind=18
            )
            await self.messages.created(notice)
        return copy.deepcopy(thread)

    async def forum_post(
        self,
        forum: dict[str, Any],
        body: dict[str, Any],
        files: tuple[str, ...],
        *,
        author_id: int,
        webhook: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A forum post: a public thread whose starter message shares its id."""
        w = self.world
        forum_id = int(forum["id"])
        if webhook is None:
            w.require(forum_id, SEND_MESSAGES)
            starter = validation.message(body.get("message"), files)
        else:
            starter = validation.message(body, files)
            body = {"name": body.get("thread_name"), "applied_tags": body.get("applied_tags")}
        self.limits.channel_hit(forum_id)
        thread_id = w.ids()
        thread = self._new(forum, thread_id, PUBLIC_THREAD, body, author_id)
        message = self.messages.new(
            thread_id, starter, files, author_id=author_id, message_id=thread_id, webhook=webhook
        )
        forum["last_message_id"] = str(thread_id)
        await self._created(thread)
        await self.messages.created(message)
        return {**copy.deepcopy(thread), "message": self.messages.for_response(message)}

    def _new(
        self, parent: dict[str, Any], thread_id: int, kind: int, body: dict[str, Any], owner_id: int
    ) -> dict[str, Any]:
        name = body.get("name")
        validation.thread_name(name)
        duration = body.get("auto_archive_duration") or parent.get(
            "default_auto_archive_duration", 1440
        )
        validation.auto_archive(duration)
        now = now_iso()
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
        self.world.channels[thread_id] = thread
        return thread

    async def _created(self, thread: dict[str, Any]) -> None:
        event = {**copy.deepcopy(thread), "newly_created": True}
        if thread["owner_id"] == str(self.world.bot_user_id):
            event["member"] = {
                "id": thread["id"],
                "user_id": thread["owner_id"],
                "join_timestamp": thread["thread_metadata"]["create_timestamp"],
                "flags": 1,
            }
        await self.world.dispatch("THREAD_CREATE", event, INTENT_GUILDS)

    async def edit(self, thread: dict[str, Any], body: dict[str, Any]) -> Any:
        """PATCH /channels/{thread id}: rename, archive, lock."""
        w = self.world
        meta = thread["thread_metadata"]
        perms = w.permissions(w.bot_user_id, int(thread["id"]))
        is_owner = thread["owner_id"] == str(w.bot_user_id)
        if "locked" in body and body["locked"] != meta["locked"] and not perms & MANAGE_THREADS:
            raise missing_permissions()
        if "archived" in body and not (perms & MANAGE_THREADS or (is_owner and not meta["locked"])):
            raise missing_permissions()
        if (
            meta["archived"]
            and body.get("archived") is not False
            and set(body) - {"archived", "locked"}
        ):
            raise archived()
        if "name" in body:
            validation.thread_name(body["name"])
            thread["name"] = body["name"]
        if "auto_archive_duration" in body:
            validation.auto_archive(body["auto_archive_duration"])
            meta["auto_archive_duration"] = body["auto_archive_duration"]
        for key in ("locked", "invitable"):
            if key in body:
                meta[key] = body[key]
        if "archived" in body and body["archived"] != meta["archived"]:
            meta["archived"] = body["archived"]
            meta["archive_timestamp"] = now_iso()
        await w.dispatch("THREAD_UPDATE", copy.deepcopy(thread), INTENT_GUILDS)
        return copy.deepcopy(thread)

    def send_into(self, thread: dict[str, Any], *, manage: int) -> None:
        """Sending into an archived thread unarchives it, unless it is locked (then 50083)."""
        meta = thread["thread_metadata"]
        if not meta["archived"]:
            return
        if meta["locked"] and not manage:
            raise archived()
        self.world.set_archived(thread, archived=False)

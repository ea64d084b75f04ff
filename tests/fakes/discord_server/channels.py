"""REST: channels and their messages (a thread is a channel here too)."""

from __future__ import annotations

import copy
import re
from typing import Any

from . import validation
from .constants import (
    FORUM,
    INTENT_GUILDS,
    MANAGE_CHANNELS,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    THREAD_TYPES,
)
from .errors import ApiError, archived
from .faults import RateLimits
from .messages import Messages
from .routing import Reply, Request, route
from .threads import Threads
from .world import World


class Channels:
    def __init__(
        self, world: World, messages: Messages, threads: Threads, limits: RateLimits
    ) -> None:
        self.world = world
        self.messages = messages
        self.threads = threads
        self.limits = limits

    @route("GET", "/channels/{id}", "get_channel")
    async def get_channel(self, req: Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        channel = self.world.channel(channel_id)
        self.world.require(channel_id)
        return copy.deepcopy(channel)

    @route("PATCH", "/channels/{id}", "edit_channel")
    async def edit_channel(self, req: Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        channel = self.world.channel(channel_id)
        body = req.body if isinstance(req.body, dict) else {}
        if channel["type"] in THREAD_TYPES:
            return await self.threads.edit(channel, body)
        self.world.require(channel_id, MANAGE_CHANNELS)
        editable = ("name", "topic", "nsfw", "rate_limit_per_user")
        channel |= {k: body[k] for k in editable if k in body}
        await self.world.dispatch("CHANNEL_UPDATE", copy.deepcopy(channel), INTENT_GUILDS)
        return copy.deepcopy(channel)

    @route("DELETE", "/channels/{id}", "delete_channel")
    async def delete_channel(self, req: Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        channel = copy.deepcopy(self.world.channel(channel_id))
        if channel["type"] in THREAD_TYPES:
            self.world.require(channel_id, MANAGE_THREADS)
            self.world.delete_thread(channel_id)
        else:
            self.world.require(channel_id, MANAGE_CHANNELS)
            self.world.delete_channel(channel_id)
        return channel

    @route("POST", "/channels/{id}/typing", "typing")
    @route("PUT", "/channels/{id}/thread-members/@me", "join_thread")
    async def typing(self, req: Request, m: re.Match[str]) -> Any:
        self.world.channel(int(m.group(1)))
        return Reply(None, 204)

    # -- messages -------------------------------------------------------------------------------

    @route("GET", "/channels/{id}/messages", "get_messages")
    async def get_messages(self, req: Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        self.world.channel(channel_id)
        self.world.require(channel_id, READ_MESSAGE_HISTORY)
        limit = min(100, int(req.query.get("limit", 50)))
        stored = self.world.channel_messages.get(channel_id, [])
        newest_first = [self.messages.for_response(x) for x in reversed(stored)]
        if "before" in req.query:
            newest_first = [x for x in newest_first if int(x["id"]) < int(req.query["before"])]
        if "after" in req.query:
            newest_first = [x for x in newest_first if int(x["id"]) > int(req.query["after"])]
        return newest_first[:limit]

    @route("POST", "/channels/{id}/messages", "create_message")
    async def create_message(self, req: Request, m: re.Match[str]) -> Any:
        w = self.world
        channel_id = int(m.group(1))
        channel = w.channel(channel_id)
        if channel["type"] == FORUM:
            raise ApiError(400, 40058, "Cannot send messages in a forum channel")
        is_thread = channel["type"] in THREAD_TYPES
        w.require(channel_id, SEND_MESSAGES_IN_THREADS if is_thread else SEND_MESSAGES)
        body = validation.message(req.body, req.files)
        if is_thread:
            manage = w.permissions(w.bot_user_id, channel_id) & MANAGE_THREADS
            self.threads.send_into(channel, manage=manage)
        self.limits.channel_hit(channel_id)
        message = self.messages.new(channel_id, body, req.files, author_id=w.bot_user_id)
        await self.messages.created(message)
        return self.messages.for_response(message)

    @route("GET", "/channels/{id}/messages/{id}", "get_message")
    async def get_message(self, req: Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        message = self.world.find_message(channel_id, int(m.group(2)))
        self.world.require(channel_id, READ_MESSAGE_HISTORY)
        return self.messages.for_response(message)

    @route("PATCH", "/channels/{id}/messages/{id}", "edit_message")
    async def edit_message(self, req: Request, m: re.Match[str]) -> Any:
        w = self.world
        channel_id = int(m.group(1))
        message = w.find_message(channel_id, int(m.group(2)))
        author = message.payload["author"]["id"]
        if author != str(w.bot_user_id) or "webhook_id" in message.payload:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        if w.is_archived(w.channel(channel_id)):
            raise archived()
        return await self.messages.edit(message, req.body)

    @route("DELETE", "/channels/{id}/messages/{id}", "delete_message")
    async def delete_message(self, req: Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        message = self.world.find_message(channel_id, int(m.group(2)))
        if message.payload["author"]["id"] != str(self.world.bot_user_id):
            self.world.require(channel_id, MANAGE_MESSAGES)
        self.messages.remove(message)
        return Reply(None, 204)

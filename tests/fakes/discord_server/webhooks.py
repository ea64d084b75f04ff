"""REST: webhooks. At most 15 a channel (``400 30007``); executing one checks the username
(1-80 characters, no "discord" or "clyde") and the content (2,000 characters); a message in a
thread is found only with ``?thread_id=``; editing in an archived thread is ``400 50083``. The
application's own webhook (interaction followups) is handed to Interactions."""

from __future__ import annotations

import copy
import re
import secrets
from typing import Any

from . import validation
from .constants import FORUM, MANAGE_WEBHOOKS, MAX_WEBHOOKS_PER_CHANNEL, TEXT
from .errors import (
    ApiError,
    archived,
    unknown_channel,
    unknown_message,
    unknown_webhook,
    wrong_channel_type,
)
from .faults import RateLimits
from .interactions import Interactions
from .messages import Messages
from .records import truthy
from .routing import Reply, Request, route
from .threads import Threads
from .world import World


def _payload(hook: dict[str, Any], *, with_user: bool = True) -> dict[str, Any]:
    payload = copy.deepcopy(hook)
    if not with_user:
        payload.pop("user", None)
    return payload


class Webhooks:
    def __init__(
        self,
        world: World,
        messages: Messages,
        threads: Threads,
        interactions: Interactions,
        limits: RateLimits,
    ) -> None:
        self.world = world
        self.messages = messages
        self.threads = threads
        self.interactions = interactions
        self.limits = limits

    @route("GET", "/channels/{id}/webhooks", "get_channel_webhooks")
    async def of_channel(self, req: Request, m: re.Match[str]) -> Any:
        channel_id = int(m.group(1))
        self.world.channel(channel_id)
        self.world.require(channel_id, MANAGE_WEBHOOKS)
        hooks = self.world.hooks.values()
        return [_payload(h) for h in hooks if h["channel_id"] == str(channel_id)]

    @route("POST", "/channels/{id}/webhooks", "create_webhook")
    async def create(self, req: Request, m: re.Match[str]) -> Any:
        w = self.world
        channel_id = int(m.group(1))
        channel = w.channel(channel_id)
        if channel["type"] not in (TEXT, FORUM):
            raise wrong_channel_type()
        w.require(channel_id, MANAGE_WEBHOOKS)
        name = (req.body or {}).get("name")
        validation.webhook_name("name", name)
        if sum(h["channel_id"] == str(channel_id) for h in w.hooks.values()) >= (
            MAX_WEBHOOKS_PER_CHANNEL
        ):
            raise ApiError(
                400, 30007, f"Maximum number of webhooks reached ({MAX_WEBHOOKS_PER_CHANNEL})"
            )
        webhook_id, token = w.ids(), secrets.token_urlsafe(51)
        hook = {
            "id": str(webhook_id),
            "type": 1,
            "guild_id": channel["guild_id"],
            "channel_id": channel["id"],
            "user": w.public_user(w.bot_user_id),
            "name": name,
            "avatar": None,
            "token": token,
            "application_id": str(w.application_id),
            "url": f"https://discord.com/api/webhooks/{webhook_id}/{token}",
        }
        w.hooks[webhook_id] = hook
        await w.webhooks_update(hook)
        return _payload(hook)

    def _hook(self, m: re.Match[str], *, token: str | None) -> dict[str, Any]:
        hook = self.world.hooks.get(int(m.group(1)))
        if hook is None:
            raise unknown_webhook()
        if token is not None and token != hook["token"]:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return hook

    @route("GET", "/webhooks/{id}", "get_webhook")
    @route("GET", "/webhooks/{id}/{token}", "get_webhook_with_token", auth=False)
    async def get(self, req: Request, m: re.Match[str]) -> Any:
        token = m.group(2) if m.lastindex and m.lastindex >= 2 else None
        hook = self._hook(m, token=token)
        if token is None:
            self.world.require(int(hook["channel_id"]), MANAGE_WEBHOOKS)
        return _payload(hook, with_user=token is None)

    @route("DELETE", "/webhooks/{id}", "delete_webhook")
    @route("DELETE", "/webhooks/{id}/{token}", "delete_webhook_with_token", auth=False)
    async def delete(self, req: Request, m: re.Match[str]) -> Any:
        token = m.group(2) if m.lastindex and m.lastindex >= 2 else None
        hook = self._hook(m, token=token)
        if token is None:
            self.world.require(int(hook["channel_id"]), MANAGE_WEBHOOKS)
        del self.world.hooks[int(hook["id"])]
        await self.world.webhooks_update(hook)
        return Reply(None, 204)

    @route("POST", "/webhooks/{id}/{token}", "execute_webhook", auth=False)
    async def execute(self, req: Request, m: re.Match[str]) -> Any:
        w = self.world
        if int(m.group(1)) == w.application_id:
            return await self.interactions.webhook(req, m.group(2), None)
        hook = self._hook(m, token=m.group(2))
        headers = self.limits.webhook_hit(int(hook["id"]))
        body = validation.message(req.body, req.files)
        if body.get("username") is not None:
            validation.webhook_name("username", body["username"])
        channel = w.channel(int(hook["channel_id"]))
        thread_id = req.query.get("thread_id")
        if channel["type"] == FORUM and thread_id is None:
            return await self._forum_post(req, channel, body, hook, headers)
        if body.get("thread_name"):
            raise ApiError(400, 220003, "Webhooks can only create threads in forum channels")
        target_id = int(thread_id) if thread_id is not None else int(channel["id"])
        if thread_id is not None:
            thread = w.channel(target_id)
            if thread.get("parent_id") != hook["channel_id"]:
                raise unknown_channel()
            self.threads.send_into(thread, manage=0)
        self.limits.channel_hit(target_id)
        message = self.messages.new(
            target_id, body, req.files, author_id=w.bot_user_id, webhook=hook
        )
        await self.messages.created(message)
        if not truthy(req.query.get("wait")):
            return Reply(None, 204, headers)
        return Reply(self.messages.for_response(message), 200, headers)

    async def _forum_post(
        self,
        req: Request,
        forum: dict[str, Any],
        body: dict[str, Any],
        hook: dict[str, Any],
        headers: dict[str, str],
    ) -> Reply:
        if not body.get("thread_name"):
            raise ApiError(
                400,
                220001,
                "Webhooks posted to forum channels must have a thread_name or thread_id",
            )
        post = await self.threads.forum_post(
            forum, body, req.files, author_id=self.world.bot_user_id, webhook=hook
        )
        reply = post["message"] if truthy(req.query.get("wait")) else None
        return Reply(reply, 200 if reply else 204, headers)

    @route("GET", "/webhooks/{id}/{token}/messages/{token}", "get_webhook_message", auth=False)
    @route("PATCH", "/webhooks/{id}/{token}/messages/{token}", "edit_webhook_message", auth=False)
    @route(
        "DELETE", "/webhooks/{id}/{token}/messages/{token}", "delete_webhook_message", auth=False
    )
    async def message(self, req: Request, m: re.Match[str]) -> Any:
        w = self.world
        if int(m.group(1)) == w.application_id:
            return await self.interactions.webhook(req, m.group(2), m.group(3))
        hook = self._hook(m, token=m.group(2))
        headers = self.limits.webhook_hit(int(hook["id"]))
        thread_id = req.query.get("thread_id")
        target_id = int(thread_id) if thread_id else int(hook["channel_id"])
        target = w.channel(target_id)
        if thread_id and target.get("parent_id") != hook["channel_id"]:
            raise unknown_channel()
        if not m.group(3).isdigit():
            raise unknown_message()
        message = w.find_message(target_id, int(m.group(3)))
        if message.payload.get("webhook_id") != hook["id"]:
            raise unknown_message()
        if req.method == "GET":
            return Reply(self.messages.for_response(message), 200, headers)
        if w.is_archived(target):
            raise archived()
        if req.method == "DELETE":
            self.messages.remove(message)
            return Reply(None, 204, headers)
        return Reply(await self.messages.edit(message, req.body), 200, headers)

"""Messages as Discord stores them: who they ping under ``allowed_mentions``, their attachments,
edits, deletion, and the shapes they take in a REST answer and in a gateway event."""

from __future__ import annotations

import copy
import time
from typing import Any

from . import validation
from .constants import (
    INTENT_GUILD_MESSAGES,
    MAX_CONTENT,
    MENTION_EVERYONE,
    ROLE_MENTION,
    THREAD_TYPES,
    USER_MENTION,
)
from .errors import old_message_edits
from .records import Message, now_iso
from .world import World


class Messages:
    def __init__(self, world: World) -> None:
        self.world = world

    def mentions(self, message: dict[str, Any], allowed: dict[str, Any] | None) -> dict[str, Any]:
        """Who the content pings under ``allowed_mentions`` (omitted: parse everything)."""
        w = self.world
        guild = w.guilds[int(message["guild_id"])]
        content = message["content"]
        parse = (
            {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse") or [])
        )
        ok_users = set((allowed or {}).get("users") or [])
        ok_roles = set((allowed or {}).get("roles") or [])
        users = [
            w.public_user(int(u))
            for u in dict.fromkeys(USER_MENTION.findall(content))
            if int(u) in guild.members and ("users" in parse or u in ok_users)
        ]
        roles = [
            r
            for r in dict.fromkeys(ROLE_MENTION.findall(content))
            if int(r) in guild.roles and ("roles" in parse or r in ok_roles)
        ]
        everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
        if "webhook_id" not in message:  # a bot needs MENTION_EVERYONE; a webhook does not
            perms = w.permissions(w.bot_user_id, int(message["channel_id"]))
            everyone = everyone and bool(perms & MENTION_EVERYONE)
        return {"mentions": users, "mention_roles": roles, "mention_everyone": everyone}

    def new(
        self,
        channel_id: int,
        body: dict[str, Any],
        files: tuple[str, ...],
        *,
        author_id: int,
        message_id: int | None = None,
        webhook: dict[str, Any] | None = None,
        kind: int = 0,
    ) -> Message:
        """Store a message in a channel or thread (``webhook``: posted through it)."""
        w = self.world
        channel = w.channel(channel_id)
        message_id = message_id or w.ids()
        payload: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "guild_id": channel["guild_id"],
            "author": self._author(author_id, body, webhook),
            "content": body.get("content") or "",
            "timestamp": now_iso(),
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
            payload["application_id"] = str(w.application_id)
        payload |= self.mentions(payload, body.get("allowed_mentions"))
        if channel["type"] in THREAD_TYPES:
            payload["position"] = channel["total_message_sent"]
            channel["message_count"] += 1
            channel["total_message_sent"] += 1
        channel["last_message_id"] = str(message_id)
        message = Message(payload)
        w.channel_messages[channel_id].append(message)
        return message

    def _author(
        self, author_id: int, body: dict[str, Any], webhook: dict[str, Any] | None
    ) -> dict[str, Any]:
        if webhook is None:
            return self.world.public_user(author_id)
        author = {
            **self.world.public_user(self.world.bot_user_id),
            "id": webhook["id"],
            "username": body.get("username") or webhook["name"],
            "avatar": None,
            "global_name": None,
            "discriminator": "0000",
            "bot": True,
        }
        if body.get("avatar_url"):
            author["avatar_url"] = body["avatar_url"]  # recorded for tests; not Discord's
        return author

    def _attachment(self, channel_id: int, filename: str) -> dict[str, Any]:
        attachment_id = self.world.ids()
        url = f"{self.world.base_url}/attachments/{channel_id}/{attachment_id}/{filename}"
        return {
            "id": str(attachment_id),
            "filename": filename,
            "size": 0,
            "url": url,
            "proxy_url": url,
        }

    def for_gateway(self, message: Message) -> dict[str, Any]:
        payload = copy.deepcopy(message.payload)
        author_id = int(payload["author"]["id"])
        guild = self.world.guilds[int(payload["guild_id"])]
        if "webhook_id" not in payload and author_id in guild.members:
            payload["member"] = copy.deepcopy(guild.members[author_id])
        payload["author"].pop("avatar_url", None)
        return payload

    @staticmethod
    def for_response(message: Message) -> dict[str, Any]:
        payload = copy.deepcopy(message.payload)
        payload["author"].pop("avatar_url", None)
        return payload

    async def created(self, message: Message) -> None:
        if self.world.on_message is not None:
            self.world.on_message(self.for_response(message))
        await self.world.dispatch(
            "MESSAGE_CREATE", self.for_gateway(message), INTENT_GUILD_MESSAGES
        )

    async def edit(self, message: Message, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            body = {}
        content = body.get("content")
        if isinstance(content, str) and len(content) > MAX_CONTENT:
            raise validation.too_long()
        self._count_old_edit(message)
        payload = message.payload
        message.edits.append(
            {"time": time.monotonic(), "before": payload["content"], "body": copy.deepcopy(body)}
        )
        if "content" in body:
            payload["content"] = content or ""
            payload |= self.mentions(payload, body.get("allowed_mentions"))
        for key in ("embeds", "components", "flags"):
            if key in body and body[key] is not None:
                payload[key] = body[key]
        payload["edited_timestamp"] = now_iso()
        if not payload["flags"] & 64:  # an ephemeral message reaches nobody else
            await self.world.dispatch(
                "MESSAGE_UPDATE", self.for_gateway(message), INTENT_GUILD_MESSAGES
            )
        return self.for_response(message)

    def _count_old_edit(self, message: Message) -> None:
        """Refuse an edit of an old message past the limit (30046), else count it."""
        w = self.world
        if w.old_message_edits is None or message.age() < w.old_message_age:
            return
        if message.old_edits >= w.old_message_edits:
            raise old_message_edits(w.old_message_retry_after)
        message.old_edits += 1

    def remove(self, message: Message) -> None:
        w = self.world
        channel_id = int(message.payload["channel_id"])
        if message in w.channel_messages.get(channel_id, []):
            w.channel_messages[channel_id].remove(message)
        w.ephemeral.pop(int(message.payload["id"]), None)
        data = {
            "id": message.payload["id"],
            "channel_id": str(channel_id),
            "guild_id": message.payload["guild_id"],
        }
        w.schedule(w.dispatch("MESSAGE_DELETE", data, INTENT_GUILD_MESSAGES))

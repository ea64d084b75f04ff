"""Building the world a test needs (guilds, roles, members, channels) and the moderator actions a
test makes (deleting a thread, archiving one, removing a webhook). Changes made while a client is
connected reach it as gateway events."""

from __future__ import annotations

import copy
from typing import Any

from . import payloads
from .constants import (
    ALL_NEEDED,
    ALL_PERMISSIONS,
    FORUM,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_WEBHOOKS,
    INTENT_GUILDS,
    MEMBER_PERMISSIONS,
    TEXT,
    THREAD_TYPES,
)
from .records import Guild, now_iso
from .state import State


class World(State):
    def __init__(self, *, host: str, token: str | None) -> None:
        super().__init__(host=host, token=token)
        self._add_user(self.bot_user_id, "Backrooms Relay", bot=True)
        self._add_user(self.owner_user_id, "owner")

    def _add_user(self, user_id: int, name: str, *, bot: bool = False) -> None:
        self.users[user_id] = payloads.user(user_id, name, bot=bot)

    def add_guild(
        self, name: str, *, bot_permissions: int = ALL_NEEDED, everyone_permissions: int = 0
    ) -> int:
        """A guild the bot is in. The bot's guild-wide permissions are exactly
        ``bot_permissions | everyone_permissions`` (its managed role plus @everyone)."""
        guild_id, bot_role_id = self.ids(), self.ids()
        guild = Guild(guild_id, name, {}, {}, [], bot_role_id, now_iso())
        guild.roles[guild_id] = payloads.role(guild_id, "@everyone", everyone_permissions, 0)
        bot_name = self.users[self.bot_user_id]["username"]
        guild.roles[bot_role_id] = payloads.role(bot_role_id, bot_name, bot_permissions, 1) | {
            "managed": True,
            "tags": {"bot_id": str(self.bot_user_id)},
        }
        self.guilds[guild_id] = guild
        guild.members[self.owner_user_id] = payloads.member([], guild.joined_at)
        guild.members[self.bot_user_id] = payloads.member([bot_role_id], guild.joined_at)
        self.schedule(
            self.dispatch("GUILD_CREATE", self.guild_create_payload(guild_id), INTENT_GUILDS)
        )
        return guild_id

    def add_role(self, guild_id: int, name: str, permissions: int) -> int:
        guild = self.guilds[guild_id]
        role_id = self.ids()
        guild.roles[role_id] = payloads.role(role_id, name, permissions, len(guild.roles))
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
        guild = self.guilds[guild_id]
        user_id = self.ids()
        self._add_user(user_id, name)
        role_ids = list(roles)
        if permissions is not None:
            role_ids.append(self.add_role(guild_id, f"{name} permissions", permissions))
        guild.members[user_id] = payloads.member(role_ids, now_iso())
        member = {**guild.members[user_id], "user": self.users[user_id], "guild_id": str(guild_id)}
        self.schedule(self.dispatch("GUILD_MEMBER_ADD", member, INTENT_GUILD_MEMBERS))
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
        guild = self.guilds[guild_id]
        channel_id = self.ids()
        channel = payloads.channel(channel_id, guild_id, name, kind, len(guild.channel_ids))
        channel["parent_id"] = None if parent_id is None else str(parent_id)
        if kind == FORUM:
            channel |= copy.deepcopy(payloads.FORUM_FIELDS)
        self.channels[channel_id] = channel
        guild.channel_ids.append(channel_id)
        if bot_permissions is not None:
            self._set_bot_overwrite(channel, bot_permissions)
        self.schedule(self.dispatch("CHANNEL_CREATE", copy.deepcopy(channel), INTENT_GUILDS))
        return channel_id

    def set_bot_channel_permissions(self, channel_id: int, permissions: int) -> None:
        channel = self.channels[channel_id]
        self._set_bot_overwrite(channel, permissions)
        self.schedule(self.dispatch("CHANNEL_UPDATE", copy.deepcopy(channel), INTENT_GUILDS))

    def _set_bot_overwrite(self, channel: dict[str, Any], permissions: int) -> None:
        bot = str(self.bot_user_id)
        overwrites = [o for o in channel["permission_overwrites"] if o["id"] != bot]
        deny = str(ALL_PERMISSIONS & ~permissions)
        overwrites.append({"id": bot, "type": 1, "allow": str(permissions), "deny": deny})
        channel["permission_overwrites"] = overwrites

    def guild_create_payload(self, guild_id: int) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        channels = [
            copy.deepcopy(self.channels[c]) for c in guild.channel_ids if c in self.channels
        ]
        return {
            **payloads.guild(guild, self.owner_user_id),
            "joined_at": guild.joined_at,
            "large": False,
            "unavailable": False,
            "member_count": len(guild.members),
            "members": [self.full_member(guild, uid) for uid in guild.members],
            "channels": channels,
            "threads": self.active_threads(guild_id),
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "lazy": True,
            "application_command_counts": {},
        }

    def active_threads(self, guild_id: int) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(c)
            for c in self.channels.values()
            if c["type"] in THREAD_TYPES
            and c["guild_id"] == str(guild_id)
            and not c["thread_metadata"]["archived"]
        ]

    # -- moderator actions ----------------------------------------------------------------------

    def delete_thread(self, thread_id: int) -> None:
        """A moderator deletes a thread: THREAD_DELETE now, 404 10003 for every later call."""
        thread = self.channels.pop(thread_id)
        self.deleted_channels.add(thread_id)
        data = {k: thread[k] for k in ("id", "guild_id", "parent_id", "type")}
        self.schedule(self.dispatch("THREAD_DELETE", data, INTENT_GUILDS))

    send_thread_delete = delete_thread

    def archive_thread(self, thread_id: int, *, locked: bool = False) -> None:
        """A moderator (or Discord's auto-archive) archives a thread; THREAD_UPDATE follows."""
        self.set_archived(self.thread(thread_id), archived=True, locked=locked)

    def delete_channel(self, channel_id: int) -> None:
        channel = self.channels.pop(channel_id)
        self.deleted_channels.add(channel_id)
        for thread_id in [
            i for i, c in self.channels.items() if c.get("parent_id") == str(channel_id)
        ]:
            self.channels.pop(thread_id)
            self.deleted_channels.add(thread_id)
        for webhook_id in [i for i, w in self.hooks.items() if w["channel_id"] == str(channel_id)]:
            del self.hooks[webhook_id]
        self.schedule(self.dispatch("CHANNEL_DELETE", channel, INTENT_GUILDS))

    def delete_webhook(self, webhook_id: int) -> None:
        """Someone removes the webhook in the UI: later calls answer 404 10015 Unknown Webhook."""
        hook = self.hooks.pop(webhook_id)
        self.schedule(self.webhooks_update(hook))

    def set_archived(
        self, thread: dict[str, Any], *, archived: bool, locked: bool | None = None
    ) -> None:
        meta = thread["thread_metadata"]
        meta["archived"] = archived
        meta["archive_timestamp"] = now_iso()
        if locked is not None:
            meta["locked"] = locked
        self.schedule(self.dispatch("THREAD_UPDATE", copy.deepcopy(thread), INTENT_GUILDS))

    async def webhooks_update(self, hook: dict[str, Any]) -> None:
        data = {"guild_id": hook["guild_id"], "channel_id": hook["channel_id"]}
        await self.dispatch("WEBHOOKS_UPDATE", data, INTENT_GUILD_WEBHOOKS)

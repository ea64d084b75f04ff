"""Interactions a test sends to the bot, as a user clicking in Discord would: a slash command
(type 2), an autocomplete (type 4) or a component (type 3). Option types and the command's id
come from what the bot synced, so an unsynced command raises LookupError."""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .records import Interaction, InteractionState
from .world import World


class Injector:
    def __init__(self, world: World) -> None:
        self.world = world

    async def command(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        command: str,
        subcommand: str | None,
        options: Mapping[str, Any],
        *,
        focused: str | None = None,
    ) -> Interaction:
        """A slash command, or with ``focused`` the autocomplete of that option."""
        data = self._command_data(guild_id, command, subcommand, options, focused=focused)
        kind = 2 if focused is None else 4
        return await self._send(kind, guild_id, channel_id, user_id, data)

    async def component(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        message_id: int,
        custom_id: str,
        *,
        component_type: int,
        values: list[str] | None,
    ) -> Interaction:
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        message = self.world.find_message(channel_id, message_id).payload
        return await self._send(3, guild_id, channel_id, user_id, data, message=message)

    def _registered(self, guild_id: int, command: str) -> tuple[dict[str, Any], int | None]:
        """The synced command (a guild's first, then a global one) and its guild."""
        sets = self.world.command_sets
        for scope in (guild_id, None):
            found = next((c for c in sets.get(scope, []) if c["name"] == command), None)
            if found is not None:
                return found, scope
        raise LookupError(f"/{command} is not registered (the bot has not synced it)")

    def _command_data(
        self,
        guild_id: int,
        command: str,
        subcommand: str | None,
        options: Mapping[str, Any],
        *,
        focused: str | None,
    ) -> dict[str, Any]:
        registered, scope = self._registered(guild_id, command)
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

    async def _send(
        self,
        kind: int,
        guild_id: int,
        channel_id: int,
        user_id: int,
        data: dict[str, Any],
        *,
        message: dict[str, Any] | None = None,
    ) -> Interaction:
        w = self.world
        interaction_id, token = w.ids(), "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload = self._payload(kind, guild_id, channel_id, user_id, data)
        payload |= {"id": str(interaction_id), "token": token}
        if message is not None:
            payload["message"] = copy.deepcopy(message)
        record = Interaction(
            interaction_id, token, kind, guild_id, channel_id, user_id, MappingProxyType(payload)
        )
        w.interactions[interaction_id] = InteractionState(record, time.monotonic())
        w.tokens[token] = interaction_id
        await w.dispatch("INTERACTION_CREATE", payload, None)
        return record

    def _payload(
        self, kind: int, guild_id: int, channel_id: int, user_id: int, data: dict[str, Any]
    ) -> dict[str, Any]:
        w = self.world
        channel = w.channel(channel_id)
        member = w.full_member(w.guilds[guild_id], user_id)
        member["permissions"] = str(w.permissions(user_id, channel_id))
        return {
            "application_id": str(w.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
            "guild_locale": "en-US",
            "channel_id": str(channel_id),
            "channel": {**copy.deepcopy(channel), "permissions": member["permissions"]},
            "member": member,
            "version": 1,
            "app_permissions": str(w.permissions(w.bot_user_id, channel_id)),
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }

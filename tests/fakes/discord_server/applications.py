"""REST: the gateway's address, the bot's user and application, and application commands
(what ``tree.sync`` overwrites; commands keep their ids across syncs, like Discord's)."""

from __future__ import annotations

import copy
import re
from typing import Any

from . import validation
from .errors import ApiError, form_error
from .routing import Request, route
from .world import World


class Applications:
    def __init__(self, world: World) -> None:
        self.world = world

    @route("GET", "/gateway", "get_gateway", auth=False)
    async def gateway(self, req: Request, m: re.Match[str]) -> Any:
        return {"url": self.world.gateway_url}

    @route("GET", "/gateway/bot", "get_gateway_bot")
    async def gateway_bot(self, req: Request, m: re.Match[str]) -> Any:
        limits = {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}
        return {"url": self.world.gateway_url, "shards": 1, "session_start_limit": limits}

    @route("GET", "/users/@me", "get_current_user")
    async def me(self, req: Request, m: re.Match[str]) -> Any:
        return {
            **self.world.public_user(self.world.bot_user_id),
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "locale": "en-US",
        }

    @route("GET", "/oauth2/applications/@me", "get_application")
    @route("GET", "/applications/@me", "get_application")
    async def application(self, req: Request, m: re.Match[str]) -> Any:
        w = self.world
        bot = w.public_user(w.bot_user_id)
        return {
            "id": str(w.application_id),
            "name": bot["username"],
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": w.public_user(w.owner_user_id),
            "team": None,
            "flags": w.application_flags,
            "bot": bot,
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "tags": [],
            "approximate_guild_count": len(w.guilds),
            "integration_types_config": {"0": {}},
        }

    # -- application commands -------------------------------------------------------------------

    def _scope(self, m: re.Match[str]) -> int | None:
        """The guild of a guild command route, None for a global one."""
        if int(m.group(1)) != self.world.application_id:
            raise ApiError(403, 50001, "Missing Access")
        if m.lastindex and m.lastindex >= 2:
            guild_id = int(m.group(2))
            if guild_id not in self.world.guilds:
                raise ApiError(403, 50001, "Missing Access")
            return guild_id
        return None

    @route("GET", "/applications/{id}/commands", "get_global_commands")
    @route("GET", "/applications/{id}/guilds/{id}/commands", "get_guild_commands")
    async def get_commands(self, req: Request, m: re.Match[str]) -> Any:
        return copy.deepcopy(self.world.command_sets.get(self._scope(m), []))

    @route("PUT", "/applications/{id}/commands", "sync_global_commands")
    @route("PUT", "/applications/{id}/guilds/{id}/commands", "sync_guild_commands")
    async def put_commands(self, req: Request, m: re.Match[str]) -> Any:
        scope = self._scope(m)
        if not isinstance(req.body, list):
            raise form_error("_root", "LIST_TYPE_CONVERT", "Must be a list.")
        old = {(c["name"], c["type"]): c for c in self.world.command_sets.get(scope, [])}
        stored = []
        for index, body in enumerate(req.body):
            validation.command(index, body)
            previous = old.get((body["name"], body.get("type", 1)))
            stored.append(self._command(body, previous, scope))
        self.world.command_sets[scope] = stored
        return copy.deepcopy(stored)

    def _command(
        self, body: dict[str, Any], previous: dict[str, Any] | None, scope: int | None
    ) -> dict[str, Any]:
        w = self.world
        command = {
            "id": previous["id"] if previous else str(w.ids()),
            "application_id": str(w.application_id),
            "version": str(w.ids()),
            "type": body.get("type", 1),
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
        return command

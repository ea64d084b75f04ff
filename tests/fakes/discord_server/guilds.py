"""REST: guilds, their channels, members and active threads."""

from __future__ import annotations

import copy
import re
from typing import Any

from . import payloads
from .errors import ApiError
from .records import Guild
from .routing import Request, route
from .world import World


class Guilds:
    def __init__(self, world: World) -> None:
        self.world = world

    def _guild(self, m: re.Match[str]) -> Guild:
        guild = self.world.guilds.get(int(m.group(1)))
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild

    @route("GET", "/guilds/{id}", "get_guild")
    async def get_guild(self, req: Request, m: re.Match[str]) -> Any:
        return payloads.guild(self._guild(m), self.world.owner_user_id)

    @route("GET", "/guilds/{id}/channels", "get_guild_channels")
    async def channels(self, req: Request, m: re.Match[str]) -> Any:
        guild, channels = self._guild(m), self.world.channels
        return [copy.deepcopy(channels[c]) for c in guild.channel_ids if c in channels]

    @route("GET", "/guilds/{id}/members/{id}", "get_member")
    async def member(self, req: Request, m: re.Match[str]) -> Any:
        guild = self._guild(m)
        if int(m.group(2)) not in guild.members:
            raise ApiError(404, 10007, "Unknown Member")
        return self.world.full_member(guild, int(m.group(2)))

    @route("GET", "/guilds/{id}/threads/active", "get_active_threads")
    async def active_threads(self, req: Request, m: re.Match[str]) -> Any:
        guild = self._guild(m)
        return {"threads": self.world.active_threads(guild.id), "members": []}

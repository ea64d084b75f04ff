"""Where discord.py sends its requests: Discord itself, or another API base.

discord.py reads two class attributes, not a client option: every REST and webhook URL is built
from `discord.http.Route.BASE` (webhook sends, edits, interaction callbacks and followups too,
since `discord/webhook/async_.py` uses the same `Route`), and a `Client` that is not sharded opens
its gateway at `discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` without asking `GET /gateway`.

They are process-wide, so they are set in one place, by the composition root, before any bot is
built: `bot/cli.py` for a service, a test world for the emulator in tests/fakes/. No constructor
sets them.
"""

from __future__ import annotations

from dataclasses import dataclass

import discord.gateway
import discord.http
import yarl


@dataclass(frozen=True)
class Endpoints:
    """A REST base such as `https://discord.com/api/v10` and a gateway such as
    `wss://gateway.discord.gg/`."""

    api_base_url: str
    gateway_url: str


def current_endpoints() -> Endpoints:
    return Endpoints(discord.http.Route.BASE, str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY))


def point_discord_py_at(
    *, api_base_url: str | None = None, gateway_url: str | None = None
) -> Endpoints:
    """Send discord.py's REST (webhooks included) to `api_base_url` and its gateway connection
    to `gateway_url` (DISCORD_API_BASE_URL and DISCORD_GATEWAY_URL: a rate-limit proxy in
    production, a local emulator in tests). A value left out keeps what is there. Returns the
    endpoints it replaced, so a test can put them back."""
    previous = current_endpoints()
    if api_base_url:
        discord.http.Route.BASE = api_base_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    return previous

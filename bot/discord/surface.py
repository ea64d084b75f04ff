"""The Discord surface's lifecycle: log in, take slash commands, rebuild posters for resumed runs,
refuse politely while shutting down, close.

Where discord.py connects to (Discord, a proxy, a test emulator) is the composition root's choice,
made before this surface is built: see `endpoints.point_discord_py_at`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence

import aiohttp
import discord
from discord.ext import commands

from backrooms_engine.errors import ConfigError
from backrooms_engine.ports import Observer
from backrooms_engine.records import RunRecord

from ..failures import Unreachable
from ..runtime import Runtime
from ..settings import DiscordSettings, Settings
from .cog import BackroomsCog, stop_command
from .commands import Commands
from .poster import SURFACE
from .relay import Relay
from .webhooks import WebhookPool

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
CLOSE_TIMEOUT = 10.0


def make_bot() -> commands.Bot:
    return commands.Bot(
        command_prefix=commands.when_mentioned,  # no prefix commands: slash commands only
        intents=discord.Intents(guilds=True),
        allowed_mentions=discord.AllowedMentions.none(),
        help_command=None,
    )


def servers_shown(joined: Iterable[int], settings: DiscordSettings) -> frozenset[str]:
    """The servers whose runs this bot claims (as RunSpec.space spells them): those it is in,
    narrowed to DISCORD_GUILD_IDS and DISCORD_ALLOWED_GUILDS where they are set."""
    return frozenset(
        str(guild)
        for guild in joined
        if (not settings.guild_ids or guild in settings.guild_ids)
        and (not settings.allowed_guilds or guild in settings.allowed_guilds)
    )


class DiscordSurface:
    name = SURFACE

    def __init__(self, settings: Settings):
        if not settings.discord.token:
            raise ConfigError("DISCORD_TOKEN is not set: the Discord bot needs its token")
        self._settings = settings
        self._bot: commands.Bot | None = None
        self._relay: Relay | None = None
        self._commands: Commands | None = None
        self._connection: asyncio.Task[None] | None = None

    async def start(self, rt: Runtime) -> None:
        self._bot = bot = make_bot()
        try:
            await self._start(rt, bot)
        except BaseException:
            await self.close()
            raise

    async def _start(self, rt: Runtime, bot: commands.Bot) -> None:
        relay = self._relay = Relay(rt, self._settings, bot, WebhookPool(bot))
        self._commands = Commands(relay)
        bot.add_listener(relay.on_thread_delete, "on_raw_thread_delete")
        bot.add_listener(relay.on_thread_update, "on_raw_thread_update")
        await bot.add_cog(BackroomsCog(self._commands))
        bot.tree.add_command(stop_command(self._commands))
        try:
            await bot.login(self._settings.discord.token or "")
        except discord.LoginFailure:
            raise ConfigError("Discord refused DISCORD_TOKEN (401): check the bot token") from None
        except aiohttp.ClientConnectionError as exc:
            base = discord.http.Route.BASE
            raise Unreachable.at("Discord", base, "DISCORD_API_BASE_URL", exc) from None
        self._connection = asyncio.create_task(bot.connect(reconnect=True), name="discord")
        await self._wait_until_ready(bot, self._connection)
        await self._sync_commands(bot)

    @staticmethod
    async def _wait_until_ready(bot: commands.Bot, connection: asyncio.Task[None]) -> None:
        ready = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait(
            {ready, connection}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if connection.done():
                connection.result()  # raises what went wrong
            raise ConfigError(f"the Discord gateway did not get ready in {READY_TIMEOUT:.0f} s")

    async def _sync_commands(self, bot: commands.Bot) -> None:
        tree = bot.tree
        guild_ids = self._settings.discord.guild_ids
        if guild_ids:  # instant, for testing; global sync can take an hour
            for guild_id in guild_ids:
                guild = discord.Object(id=guild_id)
                tree.copy_global_to(guild=guild)
                await tree.sync(guild=guild)
        else:
            await tree.sync()

    # -- the Surface protocol ---------------------------------------------------------------

    async def observers_for(self, record: RunRecord) -> Sequence[Observer] | None:
        if self._relay is None:
            raise RuntimeError("the Discord surface is not started")
        return await self._relay.resumed_observers(record)

    def shows(self, record: RunRecord) -> bool:
        joined = [] if self._bot is None else [g.id for g in self._bot.guilds]
        return record.spec.space in servers_shown(joined, self._settings.discord)

    async def stop_accepting(self) -> None:
        """Close the gateway first, so that commands reach another copy of the service (a
        rolling deploy), and refuse politely any that were already on their way here. The REST
        client stays open: webhooks and edits go on posting what the runs still owe until
        `close`."""
        if self._commands is not None:
            self._commands.accepting = False
        await self._disconnect()

    async def _disconnect(self) -> None:
        # discord.py has no call that closes the gateway alone (Client.close also closes the
        # REST session the webhooks post through): end the connect loop, so it cannot
        # reconnect, then close its socket with 1000 (a normal close: the session ends).
        if self._connection is not None:
            self._connection.cancel()
            await asyncio.gather(self._connection, return_exceptions=True)
            self._connection = None
        ws = self._bot.ws if self._bot is not None else None
        if ws is not None:
            with contextlib.suppress(asyncio.TimeoutError, aiohttp.ClientError, OSError):
                await asyncio.wait_for(ws.close(code=1000), CLOSE_TIMEOUT)
        log.info("discord: gateway closed; posting goes on over REST")

    async def close(self) -> None:
        if self._relay is not None:
            await self._relay.close()
        if self._bot is not None:
            await self._bot.close()
        if self._connection is not None:
            with contextlib.suppress(asyncio.CancelledError, discord.DiscordException):
                await asyncio.wait_for(self._connection, CLOSE_TIMEOUT)

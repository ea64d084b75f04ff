"""The Discord surface: a discord.py client that takes slash commands and shows runs in threads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

import aiohttp
import discord
import yarl
from discord.ext import commands

from backrooms_engine.errors import ConfigError
from backrooms_engine.ports import Observer
from backrooms_engine.records import RunEnd, RunRecord

from .. import messages
from ..failures import Unreachable
from ..pacing import ChannelBudget, SlidingWindow
from ..runtime import Runtime
from ..settings import Settings
from ..text import persona_name
from .poster import SURFACE, Persona, ThreadPoster
from .webhooks import WebhookPool

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
# Discord: about 5 requests per 2 s per webhook, and an undocumented ~30 messages a minute per
# channel (answered with 40-45 s waits). Stay well under both; edits count as requests.
WEBHOOK_REQUESTS = (5, 2.0)
CHANNEL_MESSAGES = (20, 60.0)
# After a restart, how far back the thread is read for posts whose record a crash lost.
RECENT_HISTORY = 50


class DiscordSurface:
    name = SURFACE

    def __init__(self, settings: Settings):
        if not settings.discord.token:
            raise ConfigError("DISCORD_TOKEN is not set: the Discord bot needs its token")
        self.settings = settings
        self.config = settings.discord
        self.rt: Runtime | None = None
        self.accepting = True
        self.threads: dict[int, int] = {}  # thread id -> run id, for runs going here
        self._budgets: dict[int, ChannelBudget] = {}
        self._tasks: set[asyncio.Task] = set()
        self._connection: asyncio.Task | None = None
        self.bot = self._make_bot()
        self.webhooks = WebhookPool(self.bot)

    def _make_bot(self) -> commands.Bot:
        _point_at(self.config.api_base_url, self.config.gateway_url)
        bot = commands.Bot(
            command_prefix=commands.when_mentioned,  # no prefix commands: slash commands only
            intents=discord.Intents(guilds=True),
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
        )
        bot.add_listener(self._on_thread_delete, "on_raw_thread_delete")
        bot.add_listener(self._on_thread_update, "on_raw_thread_update")
        return bot

    # -- lifecycle (bot.service.Surface) ----------------------------------------------------

    async def start(self, rt: Runtime) -> None:
        from .commands import BackroomsCog, stop_command

        self.rt = rt
        await self.bot.add_cog(BackroomsCog(self))
        self.bot.tree.add_command(stop_command(self))
        try:
            await self.bot.login(self.config.token or "")
        except discord.LoginFailure:
            raise ConfigError("Discord refused DISCORD_TOKEN (401): check the bot token") from None
        except aiohttp.ClientConnectionError as exc:
            base = discord.http.Route.BASE
            raise Unreachable.at("Discord", base, "DISCORD_API_BASE_URL", exc) from None
        self._connection = asyncio.create_task(self.bot.connect(reconnect=True), name="discord")
        ready = asyncio.create_task(self.bot.wait_until_ready())
        done, _ = await asyncio.wait(
            {ready, self._connection}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if self._connection.done():
                self._connection.result()  # raises what went wrong
            raise ConfigError(f"the Discord gateway did not get ready in {READY_TIMEOUT:.0f} s")
        await self._sync_commands()

    async def _sync_commands(self) -> None:
        tree = self.bot.tree
        if self.config.guild_ids:  # instant, for testing; global sync can take an hour
            for guild_id in self.config.guild_ids:
                guild = discord.Object(id=guild_id)
                tree.copy_global_to(guild=guild)
                await tree.sync(guild=guild)
        else:
            await tree.sync()

    async def observers_for(self, record: RunRecord) -> Sequence[Observer] | None:
        assert self.rt is not None
        store = self.rt.store
        thread = await store.get_meta(record.id, "discord_thread")
        channel = await store.get_meta(record.id, "discord_channel")
        if thread is None or channel is None:
            # A crash between storing the run and opening its thread: it was never shown.
            await self.rt.manager.abandon(record, "the bot stopped before its thread was opened")
            return None
        hook_id = await store.get_meta(record.id, "discord_webhook_id")
        hook_token = await store.get_meta(record.id, "discord_webhook_token")
        if hook_id and hook_token:
            self.webhooks.adopt(int(channel), int(hook_id), hook_token)
        unclaimed = await self._unrecorded_posts(record, int(thread))
        return [await self.poster(record, int(thread), int(channel), unclaimed)]

    async def _unrecorded_posts(
        self, record: RunRecord, thread_id: int
    ) -> list[tuple[int, str, str]]:
        """Webhook messages in the thread that no stored post names (oldest first)."""
        assert self.rt is not None
        known = {int(v) for v in (await self.rt.store.posts(record.id, SURFACE)).values()}
        try:
            recent = await self.bot.http.logs_from(thread_id, RECENT_HISTORY)
        except discord.HTTPException as exc:
            log.info("run %s: thread history not read (%s)", record.id, exc.text)
            return []
        return [
            (int(m["id"]), m["author"]["username"], m["content"])
            for m in reversed(recent)
            if m.get("webhook_id") and int(m["id"]) not in known
        ]

    async def stop_accepting(self) -> None:
        self.accepting = False

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.bot.close()
        if self._connection is not None:
            with contextlib.suppress(asyncio.CancelledError, discord.DiscordException):
                await asyncio.wait_for(self._connection, 10)

    # -- runs ------------------------------------------------------------------------------

    def budget(self, channel_id: int) -> ChannelBudget:
        budget = self._budgets.get(channel_id)
        if budget is None:
            budget = self._budgets[channel_id] = ChannelBudget(
                SlidingWindow(*WEBHOOK_REQUESTS), SlidingWindow(*CHANNEL_MESSAGES)
            )
        return budget

    async def streaming(self, guild_id: str | None) -> bool:
        assert self.rt is not None
        if guild_id is not None:
            value = await self.rt.store.space_setting(guild_id, "discord_streaming")
            if value is not None:
                return value == "on"
        return self.config.streaming

    async def poster(
        self,
        record: RunRecord,
        thread_id: int,
        channel_id: int,
        unclaimed: Sequence[tuple[int, str, str]] = (),
    ) -> ThreadPoster:
        assert self.rt is not None
        rt = self.rt
        self.threads[thread_id] = record.id
        personas = {
            p.actor: Persona(
                persona_name(p.actor, platform="discord"),
                rt.registry.models[p.alias].avatar_url or None
                if p.alias in rt.registry.models
                else None,
            )
            for p in record.participants
        }

        async def record_post(seq: int, part: int, message_id: str) -> None:
            await rt.store.record_post(record.id, seq, part, SURFACE, message_id)

        async def on_gone(why: str) -> None:
            # Never await the stop here: the manager waits for this observer to drain first.
            self.spawn(rt.manager.stop(record.id, by="Discord", reason="gone", detail=why))

        async def on_end(end: RunEnd) -> None:
            await self.announce_end(record, thread_id, end)

        return ThreadPoster(
            run_id=record.id,
            thread_id=thread_id,
            channel_id=channel_id,
            webhooks=self.webhooks,
            budget=self.budget(channel_id),
            personas=personas,
            streaming=await self.streaming(record.spec.space),
            known_posts=await rt.store.posts(record.id, SURFACE),
            record_post=record_post,
            on_gone=on_gone,
            on_end=on_end,
            unclaimed=unclaimed,
        )

    async def announce_end(self, record: RunRecord, thread_id: int, end: RunEnd) -> None:
        """The closing line in the thread, and the outcome added to the starter message."""
        self.threads.pop(thread_id, None)
        if end.reason == "shutdown":
            text = f"Run {record.id} paused: the bot is restarting. It will go on by itself."
        else:
            text = messages.closing_text(record.id, end, self.settings.public_url)
        thread = self.bot.get_channel(thread_id)
        target = thread if isinstance(thread, discord.Thread) else discord.Object(id=thread_id)
        try:
            if isinstance(target, discord.Thread):
                await target.send(text, allowed_mentions=discord.AllowedMentions.none())
            else:
                await self.bot.http.send_message(thread_id, params=_plain(text))
        except discord.HTTPException as exc:
            log.info("run %s: closing line not posted (%s)", record.id, exc.text)
        if end.reason != "shutdown":
            await self._mark_starter(record, end)

    async def _mark_starter(self, record: RunRecord, end: RunEnd) -> None:
        assert self.rt is not None
        channel_id = await self.rt.store.get_meta(record.id, "discord_starter_channel")
        message_id = await self.rt.store.get_meta(record.id, "discord_starter_message")
        if not (channel_id and message_id):
            return
        try:
            message = await self.bot.http.get_message(int(channel_id), int(message_id))
            content = f"{message['content']}\n**Outcome:** {end.summary}"[:2000]
            await self.bot.http.edit_message(
                int(channel_id), int(message_id), params=_plain(content)
            )
        except discord.HTTPException as exc:
            log.info("run %s: starter message not updated (%s)", record.id, exc.text)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- moderators deleting or archiving a run's thread ------------------------------------

    async def _on_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        self._thread_gone(payload.thread_id, "its thread was deleted")

    async def _on_thread_update(self, payload: discord.RawThreadUpdateEvent) -> None:
        meta = payload.data.get("thread_metadata", {})
        if meta.get("archived"):
            self._thread_gone(payload.thread_id, "its thread was archived")

    def _thread_gone(self, thread_id: int, why: str) -> None:
        run_id = self.threads.pop(thread_id, None)
        if run_id is not None and self.rt is not None:
            log.info("run %s: %s", run_id, why)
            self.spawn(self.rt.manager.stop(run_id, by="a moderator", reason="gone", detail=why))


def _plain(content: str) -> discord.http.MultipartParameters:
    """Parameters of a plain bot message that pings nobody."""
    return discord.http.handle_message_parameters(
        content=content, allowed_mentions=discord.AllowedMentions.none()
    )


def _point_at(api_base_url: str | None, gateway_url: str | None) -> None:
    """DISCORD_API_BASE_URL / DISCORD_GATEWAY_URL: a rate-limit proxy in production, a local fake
    in tests. discord.py builds REST and webhook URLs from Route.BASE."""
    if api_base_url:
        discord.http.Route.BASE = api_base_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)

"""What the commands and the posters share once the bot is connected: the runtime, the bot, one
webhook and one pacing budget per channel, the threads runs go on in, and the tasks doing work
after an answer.

A run's place is remembered in the run's meta (its thread, channel, webhook, starter message and
starter), so a restart rebuilds its poster without asking Discord anything but the thread's recent
history.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import discord
from discord.ext import commands

from backrooms_engine.ports import Observer
from backrooms_engine.pricing import RunUsage
from backrooms_engine.records import RunEnd, RunRecord

from .. import messages
from ..pacing import ChannelBudget, SlidingWindow
from ..runtime import Runtime
from ..settings import Settings
from ..text import persona_name
from .poster import SURFACE, Persona, ThreadPoster
from .webhooks import WebhookPool

log = logging.getLogger(__name__)

# Discord: about 5 requests per 2 s per webhook, and an undocumented ~30 messages a minute per
# channel (answered with 40-45 s waits). Stay well under both; edits count as requests.
WEBHOOK_REQUESTS = (5, 2.0)
CHANNEL_MESSAGES = (20, 60.0)
# After a restart, how far back the thread is read for posts whose record a crash lost.
RECENT_HISTORY = 50
CLOSE_GRACE = 5.0  # seconds for cancelled tasks to finish at close
STREAMING = "discord_streaming"  # the per-server setting /backrooms streaming changes


@dataclass(frozen=True)
class Place:
    """Where a run is shown: its thread, the thread's channel, and who started it from which
    message (the starter message gets the outcome added when the run ends)."""

    thread: int
    channel: int
    guild: int
    starter_channel: int
    starter_message: int
    starter_user: int
    webhook_id: int
    webhook_token: str


_META = {
    "thread": "discord_thread",
    "channel": "discord_channel",
    "guild": "discord_guild",
    "starter_channel": "discord_starter_channel",
    "starter_message": "discord_starter_message",
    "starter_user": "discord_starter_user",
    "webhook_id": "discord_webhook_id",
    "webhook_token": "discord_webhook_token",
}


@dataclass
class Relay:
    rt: Runtime
    settings: Settings
    bot: commands.Bot
    webhooks: WebhookPool
    threads: dict[int, int] = field(default_factory=dict)  # thread id -> run id, runs going here
    budgets: dict[int, ChannelBudget] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def budget(self, channel_id: int) -> ChannelBudget:
        """One budget per channel, shared by every run posting there."""
        budget = self.budgets.get(channel_id)
        if budget is None:
            budget = self.budgets[channel_id] = ChannelBudget(
                SlidingWindow(*WEBHOOK_REQUESTS), SlidingWindow(*CHANNEL_MESSAGES)
            )
        return budget

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Work that goes on by itself; kept referenced until done, failures logged."""
        task = asyncio.create_task(work, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_GRACE)

    # -- what the store remembers -----------------------------------------------------------

    async def remember(self, run_id: int, place: Place) -> None:
        for attribute, key in _META.items():
            await self.rt.surface_state.set_meta(run_id, key, str(getattr(place, attribute)))

    async def place_of(self, run_id: int) -> Place | None:
        """The run's place, or None for a run whose thread was never opened."""
        values = {a: await self.rt.surface_state.get_meta(run_id, key) for a, key in _META.items()}
        if values["thread"] is None or values["channel"] is None:
            return None
        return Place(
            **{a: int(v or 0) for a, v in values.items() if a != "webhook_token"},
            webhook_token=values["webhook_token"] or "",
        )

    async def streaming(self, guild_id: str | None) -> bool:
        if guild_id is not None:
            value = await self.rt.surface_state.space_setting(guild_id, STREAMING)
            if value is not None:
                return value == "on"
        return self.settings.discord.streaming

    async def set_streaming(self, guild_id: str, on: bool) -> None:
        await self.rt.surface_state.set_space_setting(guild_id, STREAMING, "on" if on else "off")

    # -- posters ----------------------------------------------------------------------------

    async def resumed_observers(self, record: RunRecord) -> Sequence[Observer] | None:
        """The poster of a run resumed at start, rebuilt from the run's meta."""
        place = await self.place_of(record.id)
        if place is None:
            # A crash between storing the run and opening its thread: it was never shown.
            await self.rt.manager.abandon(record, "the bot stopped before its thread was opened")
            return None
        if place.webhook_id and place.webhook_token:
            self.webhooks.adopt(place.channel, place.webhook_id, place.webhook_token)
        unclaimed = await self._unrecorded_posts(record, place.thread)
        return [await self.poster(record, place.thread, place.channel, unclaimed)]

    async def _unrecorded_posts(
        self, record: RunRecord, thread_id: int
    ) -> list[tuple[int, str, str]]:
        """Webhook messages in the thread that no stored post names (oldest first)."""
        known = {int(v) for v in (await self.rt.surface_state.posts(record.id, SURFACE)).values()}
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

    async def poster(
        self,
        record: RunRecord,
        thread_id: int,
        channel_id: int,
        unclaimed: Sequence[tuple[int, str, str]] = (),
    ) -> ThreadPoster:
        self.threads[thread_id] = record.id
        return ThreadPoster(
            run_id=record.id,
            thread_id=thread_id,
            channel_id=channel_id,
            webhooks=self.webhooks,
            budget=self.budget(channel_id),
            personas=self.personas(record),
            streaming=await self.streaming(record.spec.space),
            known_posts=await self.rt.surface_state.posts(record.id, SURFACE),
            record_post=functools.partial(self._record_post, record.id),
            on_gone=functools.partial(self._gone, record.id),
            on_end=functools.partial(self.announce_end, record, thread_id),
            unclaimed=unclaimed,
        )

    def personas(self, record: RunRecord) -> Mapping[str, Persona]:
        models = self.rt.registry.models
        return {
            p.actor: Persona(
                persona_name(p.actor, platform="discord"),
                models[p.alias].avatar_url or None if p.alias in models else None,
            )
            for p in record.participants
        }

    async def _record_post(self, run_id: int, seq: int, part: int, message_id: str) -> None:
        await self.rt.surface_state.record_post(run_id, seq, part, SURFACE, message_id)

    async def _gone(self, run_id: int, why: str) -> None:
        # Never await the stop here: the manager waits for this observer to drain first.
        self.spawn(
            self.rt.manager.stop(run_id, by="Discord", reason="gone", detail=why),
            name=f"discord stop run {run_id} (gone)",
        )

    # -- the end of a run -------------------------------------------------------------------

    async def announce_end(
        self, record: RunRecord, thread_id: int, end: RunEnd, usage: RunUsage | None = None
    ) -> None:
        """The closing line in the thread (with what the run cost), and the outcome added to the
        starter message."""
        self.threads.pop(thread_id, None)
        if end.reason == "shutdown":
            text = f"Run {record.id} paused: the bot is restarting. It will go on by itself."
        else:
            text = messages.closing_text(record.id, end, self.settings.public_url, usage)
        thread = self.bot.get_channel(thread_id)
        try:
            if isinstance(thread, discord.Thread):
                await thread.send(text, allowed_mentions=discord.AllowedMentions.none())
            else:
                await self.bot.http.send_message(thread_id, params=plain(text))
        except discord.HTTPException as exc:
            log.info("run %s: closing line not posted (%s)", record.id, exc.text)
        if end.reason != "shutdown":
            await self._mark_starter(record, end)

    async def _mark_starter(self, record: RunRecord, end: RunEnd) -> None:
        place = await self.place_of(record.id)
        if place is None or not (place.starter_channel and place.starter_message):
            return
        channel_id, message_id = place.starter_channel, place.starter_message
        try:
            message = await self.bot.http.get_message(channel_id, message_id)
            content = f"{message['content']}\n**Outcome:** {end.summary}"[:2000]
            await self.bot.http.edit_message(channel_id, message_id, params=plain(content))
        except discord.HTTPException as exc:
            log.info("run %s: starter message not updated (%s)", record.id, exc.text)

    # -- moderators deleting or archiving a run's thread ------------------------------------

    async def on_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        self._thread_gone(payload.thread_id, "its thread was deleted")

    async def on_thread_update(self, payload: discord.RawThreadUpdateEvent) -> None:
        meta = payload.data.get("thread_metadata", {})
        if meta.get("archived"):
            self._thread_gone(payload.thread_id, "its thread was archived")

    def _thread_gone(self, thread_id: int, why: str) -> None:
        run_id = self.threads.pop(thread_id, None)
        if run_id is not None:
            log.info("run %s: %s", run_id, why)
            self.spawn(
                self.rt.manager.stop(run_id, by="a moderator", reason="gone", detail=why),
                name=f"discord stop run {run_id} (moderator)",
            )


def plain(content: str) -> discord.http.MultipartParameters:
    """Parameters of a plain bot message that pings nobody."""
    return discord.http.handle_message_parameters(
        content=content, allowed_mentions=discord.AllowedMentions.none()
    )

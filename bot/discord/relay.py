"""What the commands and the posters share once the bot is connected: the runtime, the bot, one
webhook and one pacing budget per channel, the threads runs go on in, and the tasks doing work
after an answer.

A run's place is remembered in the run's meta (its thread, channel, webhook, starter message and
starter), so a restart rebuilds its poster without asking Discord anything but the thread's recent
history.

Exactly once across a crash: recovery.py.
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

from .. import faces, messages
from ..pacing import ChannelBudget, SlidingWindow
from ..runtime import Runtime
from ..settings import Settings
from ..text import persona_name
from . import recovery
from .poster import SURFACE, Persona, ThreadPoster, Unrecorded
from .webhooks import WebhookPool

log = logging.getLogger(__name__)

# Discord: about 5 requests per 2 s per webhook, and an undocumented ~30 messages a minute per
# channel (answered with 40-45 s waits). Stay well under both; edits count as requests.
WEBHOOK_REQUESTS = (5, 2.0)
CHANNEL_MESSAGES = (20, 60.0)
CLOSE_GRACE = 5.0  # seconds for cancelled tasks to finish at close
STREAMING = "discord_streaming"  # the per-server setting /backrooms streaming changes
STARTER_EDIT_LIMIT = 15.0  # seconds the starter's outcome may take (discord.py waits out 429s)


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
        unrecorded = await recovery.unrecorded_post(
            self.bot.http, self.rt.surface_state, record.id, place.thread
        )
        return [await self.poster(record, place.thread, place.channel, unrecorded)]

    async def poster(
        self,
        record: RunRecord,
        thread_id: int,
        channel_id: int,
        unrecorded: Unrecorded | None = None,
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
            record_sending=functools.partial(self._record_sending, record.id),
            on_gone=functools.partial(self._gone, record.id),
            on_end=functools.partial(self.announce_end, record, thread_id),
            unrecorded=unrecorded,
        )

    def personas(self, record: RunRecord) -> Mapping[str, Persona]:
        """Each seat's name and face: the model's own avatar_url, else our picture of its company
        at BACKROOMS_PUBLIC_URL, else one of Discord's default avatars, a different one per seat
        (faces.py)."""
        companies, own = faces.seat_sources(self.rt.registry, record.participants)
        public = self.settings.public_url
        seats = zip(record.participants, faces.seat_faces(companies), own, strict=True)
        return {
            p.actor: Persona(
                persona_name(p.actor, platform="discord"),
                url or (face.url(public) if public else faces.discord_default_avatar(p.position)),
            )
            for p, face, url in seats
        }

    async def _record_post(self, run_id: int, seq: int, part: int, message_id: str) -> None:
        await self.rt.surface_state.record_post(run_id, seq, part, SURFACE, message_id)

    async def _record_sending(self, run_id: int, seq: int, part: int) -> None:
        await self.rt.surface_state.set_meta(run_id, recovery.SENDING, f"{seq}:{part}")

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
        """The closing line in the thread (once, even across a crash; with what the run cost),
        then the outcome added to the starter message."""
        self.threads.pop(thread_id, None)
        if end.reason == "shutdown":
            text = f"Run {record.id} paused: the bot is restarting. It will go on by itself."
            await self._say(record.id, thread_id, text)
            return
        text = messages.closing_text(record.id, end, self.settings.public_url, usage)
        stretch = f"{end.max_turns}:{end.turns}"  # a run given more turns ends once more
        state = self.rt.surface_state
        if not await recovery.closing_shown(
            self.bot.http, state, record.id, thread_id, text, stretch
        ):
            await state.set_meta(record.id, recovery.CLOSING, f"sending:{stretch}")
            if await self._say(record.id, thread_id, text):
                await state.set_meta(record.id, recovery.CLOSING, f"shown:{stretch}")
        try:
            await asyncio.wait_for(self._mark_starter(record, end), STARTER_EDIT_LIMIT)
        except TimeoutError:
            log.warning("run %s: starter message not updated (Discord kept it waiting)", record.id)

    async def _say(self, run_id: int, thread_id: int, text: str) -> bool:
        thread = self.bot.get_channel(thread_id)
        try:
            if isinstance(thread, discord.Thread):
                await thread.send(text, allowed_mentions=discord.AllowedMentions.none())
            else:
                await self.bot.http.send_message(thread_id, params=plain(text))
        except discord.HTTPException as exc:
            log.warning("run %s: closing line not posted (%s)", run_id, exc.text)
            return False
        return True

    async def _mark_starter(self, record: RunRecord, end: RunEnd) -> None:
        place = await self.place_of(record.id)
        if place is None or not (place.starter_channel and place.starter_message):
            return
        channel_id, message_id = place.starter_channel, place.starter_message
        outcome = f"\n**Outcome:** {end.summary}"
        try:
            message = await self.bot.http.get_message(channel_id, message_id)
            if message["content"].endswith(outcome):
                return  # given before a crash
            content = f"{message['content']}{outcome}"[:2000]
            await self.bot.http.edit_message(channel_id, message_id, params=plain(content))
        except discord.HTTPException as exc:
            # 30046: Discord limits edits of messages older than an hour; the closing line
            # in the thread already says how the run ended.
            log.warning("run %s: starter message not updated (%s)", record.id, exc)

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

"""The observer that shows one run in its Discord thread: every reply through the channel's webhook
under the participant's persona, streamed by editing, split at 2,000 characters, paced per channel.

Each reply part is remembered in the store by (run, seq, part), so a replay after a restart edits
what is already there instead of posting it again. Before a part is sent, the part it is (its seq
and index) is written down as the run's pending send; a process killed between Discord's answer and
the record leaves one webhook message newer than every recorded one, and the next start adopts it
as exactly that part (relay.py), whatever its text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import discord

from backrooms_engine.events import (
    Event,
    ReplyDelta,
    ReplyFinished,
    ReplyStarted,
    RunEnded,
)
from backrooms_engine.pricing import RunUsage
from backrooms_engine.records import RunEnd

from .. import messages
from ..faces import discord_default_avatar
from ..pacing import ChannelBudget
from ..text import prepare_for_discord
from .webhooks import WebhookPool

log = logging.getLogger(__name__)

SURFACE = "discord"
NO_MENTIONS = discord.AllowedMentions.none()
CUT_OFF = "*(cut off: the run ended here; this reply is not in the transcript)*"
EDIT_INTERVAL = 1.2  # seconds between streaming edits of one message: a reply is not a ticker
# Discord error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes)
UNKNOWN_WEBHOOK = 10015
UNKNOWN_CHANNEL = 10003
ARCHIVED_THREAD = 50083
MISSING_PERMISSIONS = 50013
OLD_MESSAGE_EDITS = 30046  # "Maximum number of edits to messages older than 1 hour reached"


@dataclass(frozen=True)
class Persona:
    username: str
    avatar_url: str | None


@dataclass(frozen=True)
class Unrecorded:
    """The webhook message a crash left without its record, and the part it was sent as."""

    seq: int
    part: int
    message_id: int
    content: str


@dataclass
class _Posting:
    """The messages showing one reply, part by part."""

    seq: int
    actor: str
    ids: list[int] = field(default_factory=list)
    position: int = 0  # the seat: without an avatar_url, it picks Discord's default avatar
    shown: list[str] = field(default_factory=list)
    last_edit: float = 0.0


class ThreadGone(Exception):
    """The run's thread was deleted or archived, or the bot lost a permission in it."""


class ThreadPoster:
    name = SURFACE
    durable = True  # shown from the store and its cursor; the run waits for it (delivery.py)

    def __init__(
        self,
        *,
        run_id: int,
        thread_id: int,
        channel_id: int,
        webhooks: WebhookPool,
        budget: ChannelBudget,
        personas: Mapping[str, Persona],
        streaming: bool,
        known_posts: Mapping[tuple[int, int], str],
        record_post: Callable[[int, int, str], Awaitable[None]],
        record_sending: Callable[[int, int], Awaitable[None]],
        on_gone: Callable[[str], Awaitable[None]],
        on_end: Callable[[RunEnd, RunUsage | None], Awaitable[None]],
        unrecorded: Unrecorded | None = None,
    ):
        """`record_sending(seq, part)` writes down the part about to be sent; `unrecorded` is the
        message a crash left between a send and its record, found after a restart: the replay
        adopts it when it reaches that part instead of posting the part twice."""
        self.run_id = run_id
        self.thread = discord.Object(id=thread_id)
        self._channel_id = channel_id
        self._webhooks = webhooks
        self._budget = budget
        self._personas = personas
        self._streaming = streaming
        self.wants_deltas = streaming  # without streaming, no wake-up per chunk
        self._known = dict(known_posts)
        self._record_post = record_post
        self._record_sending = record_sending
        self._on_gone = on_gone
        self._on_end = on_end
        self._current: _Posting | None = None
        self._gone = False
        self._unrecorded = unrecorded
        self._refused_edits = False  # Discord's 30046 on an old message: logged once

    async def handle(self, event: Event) -> None:
        if self._gone and not isinstance(event, RunEnded):
            return
        try:
            await self._dispatch(event)
        except ThreadGone as exc:
            self._gone = True
            await self._on_gone(str(exc))

    async def _dispatch(self, event: Event) -> None:
        match event:
            case ReplyStarted(seq=seq, actor=actor, position=position):
                current = self._current
                if current is None or current.seq != seq:  # a retry keeps the messages it has
                    self._current = _Posting(seq, actor, self._known_ids(seq), position=position)
            case ReplyDelta(seq=seq, text=text) if self._streaming:
                if self._current and self._current.seq == seq:
                    await self._show(self._current, text, final=False)
            case ReplyFinished(reply=reply):
                posting = self._current
                if posting is None or posting.seq != reply.seq:
                    posting = _Posting(
                        reply.seq, reply.actor, self._known_ids(reply.seq), position=reply.position
                    )
                await self._show(posting, messages.reply_text(reply), final=True)
                self._current = None
            case RunEnded(end=end, usage=usage):
                if self._current is not None and self._current.ids and not self._gone:
                    await self._mark_cut_off(self._current)
                if not self._gone or end.reason == "gone":
                    await self._on_end(end, usage)

    async def _mark_cut_off(self, posting: _Posting) -> None:
        """A reply the run ended in the middle of is not in the transcript: say so on it."""
        last = len(posting.ids) - 1
        shown = posting.shown[last] if last < len(posting.shown) else ""
        await self._budget.request()
        room = 2000 - len(CUT_OFF) - 1  # Discord's limit per message
        await self._edit(posting, last, f"{shown[:room]}\n{CUT_OFF}")
        self._current = None

    def _known_ids(self, seq: int) -> list[int]:
        ids = []
        while (seq, len(ids)) in self._known:
            ids.append(int(self._known[(seq, len(ids))]))
        return ids

    async def _show(self, posting: _Posting, text: str, *, final: bool) -> None:
        parts = prepare_for_discord(text)
        if not final and time.monotonic() - posting.last_edit < EDIT_INTERVAL and posting.ids:
            return
        for index, part in enumerate(parts):
            if index < len(posting.ids):
                if index < len(posting.shown) and posting.shown[index] == part:
                    continue
                if not final and not self._budget.try_edit():
                    continue  # the budget wins over streaming: this edit is skipped
                if final:
                    await self._budget.request()
                await self._edit(posting, index, part)
            else:
                await self._budget.message()
                await self._send(posting, index, part)
        if final:
            for index in range(len(parts), len(posting.ids)):  # the final text needs fewer
                await self._budget.request()
                await self._call(
                    lambda hook, i=index: hook.delete_message(posting.ids[i], thread=self.thread)
                )
            del posting.ids[len(parts) :]
        posting.last_edit = time.monotonic()

    async def _send(self, posting: _Posting, index: int, part: str) -> None:
        persona = self._personas.get(posting.actor) or Persona(posting.actor, None)

        async def send(hook: discord.Webhook) -> discord.WebhookMessage:
            return await hook.send(
                part,
                username=persona.username,
                avatar_url=persona.avatar_url or discord_default_avatar(posting.position),
                thread=self.thread,
                wait=True,
                allowed_mentions=NO_MENTIONS,
            )

        adopted = self._adopt(posting.seq, index)
        if adopted is None:
            await self._record_sending(posting.seq, index)
            message_id = (await self._call(send)).id
        else:
            message_id = adopted.message_id
        posting.ids.append(message_id)
        posting.shown.append(part if adopted is None else adopted.content)
        self._known[(posting.seq, index)] = str(message_id)
        await self._record_post(posting.seq, index, str(message_id))
        if adopted is not None and adopted.content != part:
            await self._edit(posting, index, part)  # it may hold a streamed beginning

    def _adopt(self, seq: int, part: int) -> Unrecorded | None:
        found = self._unrecorded
        if found is None or (found.seq, found.part) != (seq, part):
            return None
        self._unrecorded = None
        log.info(
            "run %s: message %s adopted as reply %s part %s",
            self.run_id,
            found.message_id,
            found.seq,
            found.part,
        )
        return found

    async def _edit(self, posting: _Posting, index: int, part: str) -> None:
        try:
            await self._call(
                lambda hook: hook.edit_message(
                    posting.ids[index],
                    content=part,
                    thread=self.thread,
                    allowed_mentions=NO_MENTIONS,
                )
            )
        except discord.HTTPException as exc:
            if exc.code != OLD_MESSAGE_EDITS:
                raise
            if not self._refused_edits:  # the message keeps its text; the run goes on
                self._refused_edits = True
                log.warning("run %s: Discord refused to edit an old message (%s)", self.run_id, exc)
            return
        while len(posting.shown) <= index:
            posting.shown.append("")
        posting.shown[index] = part

    async def _call(self, action: Callable[[discord.Webhook], Awaitable]):
        """Run a webhook request: recreate a deleted webhook once, retry server errors a few
        times, and turn a vanished thread or a lost permission into ThreadGone."""
        hook = await self._webhooks.get(self._channel_id)
        recreated = False
        for attempt in range(4):
            try:
                return await action(hook)
            except discord.HTTPException as exc:
                if exc.code == UNKNOWN_WEBHOOK and not recreated:
                    hook = await self._webhooks.recreate(self._channel_id, hook)
                    recreated = True
                    continue
                if exc.code == ARCHIVED_THREAD:
                    raise ThreadGone("its thread was archived") from exc
                if isinstance(exc, discord.NotFound):
                    raise ThreadGone("its thread was deleted") from exc
                if isinstance(exc, discord.Forbidden):
                    raise ThreadGone(
                        f"the bot lost a permission in its thread ({exc.text})"
                    ) from exc
                if exc.status < 500 or attempt == 3:
                    raise
                await asyncio.sleep(2**attempt)  # discord.py already retried; give it air
        raise AssertionError("unreachable")

"""The observer that shows one run in its Discord thread: every reply through the channel's webhook
under the participant's persona, streamed by editing, split at 2,000 characters, paced per channel.

Each reply part is remembered in the store by (run, seq, part), so a replay after a restart edits
what is already there instead of posting it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
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


@dataclass(frozen=True)
class Persona:
    username: str
    avatar_url: str | None


@dataclass
class _Posting:
    """The messages showing one reply, part by part."""

    seq: int
    actor: str
    ids: list[int] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    last_edit: float = 0.0


class ThreadGone(Exception):
    """The run's thread was deleted or archived, or the bot lost a permission in it."""


class ThreadPoster:
    name = SURFACE

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
        on_gone: Callable[[str], Awaitable[None]],
        on_end: Callable[[RunEnd, RunUsage | None], Awaitable[None]],
        unclaimed: Sequence[tuple[int, str, str]] = (),
    ):
        """`unclaimed`: (message id, username, content) of webhook messages found in the thread
        after a restart that no stored post names. A crash between a post and its record leaves
        such a message; the replay adopts it instead of posting the same part twice."""
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
        self._on_gone = on_gone
        self._on_end = on_end
        self._current: _Posting | None = None
        self._gone = False
        self._unclaimed = list(unclaimed)

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
            case ReplyStarted(seq=seq, actor=actor):
                current = self._current
                if current is None or current.seq != seq:  # a retry keeps the messages it has
                    self._current = _Posting(seq, actor, self._known_ids(seq))
            case ReplyDelta(seq=seq, text=text) if self._streaming:
                if self._current and self._current.seq == seq:
                    await self._show(self._current, text, final=False)
            case ReplyFinished(reply=reply):
                posting = self._current
                if posting is None or posting.seq != reply.seq:
                    posting = _Posting(reply.seq, reply.actor, self._known_ids(reply.seq))
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
                avatar_url=persona.avatar_url or discord.utils.MISSING,
                thread=self.thread,
                wait=True,
                allowed_mentions=NO_MENTIONS,
            )

        adopted = self._adopt(persona.username, part)
        message_id = adopted if adopted is not None else (await self._call(send)).id
        posting.ids.append(message_id)
        posting.shown.append(part)
        self._known[(posting.seq, index)] = str(message_id)
        await self._record_post(posting.seq, index, str(message_id))

    def _adopt(self, username: str, part: str) -> int | None:
        for i, (message_id, author, content) in enumerate(self._unclaimed):
            if author == username and content == part:
                del self._unclaimed[i]
                return message_id
        return None

    async def _edit(self, posting: _Posting, index: int, part: str) -> None:
        await self._call(
            lambda hook: hook.edit_message(
                posting.ids[index], content=part, thread=self.thread, allowed_mentions=NO_MENTIONS
            )
        )
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

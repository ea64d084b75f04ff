"""The observer that shows one run in its Slack thread: every reply as thread messages under the
participant's persona (username and icon, scope chat:write.customize), split under 3,500
characters, paced per channel, and at the end the outcome on the root message.

Each reply part is remembered in the store by (run, seq, part), so a replay after a restart skips
(or, when streaming, corrects) what is already there instead of posting it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from backrooms_engine.events import (
    Event,
    ReplyDelta,
    ReplyFinished,
    ReplyStarted,
    RunEnded,
    RunStarted,
)
from backrooms_engine.pricing import RunUsage
from backrooms_engine.records import RunEnd, RunRecord

from .. import messages
from ..pacing import SlidingWindow, Spacing
from ..text import persona_name, prepare_for_slack
from . import marks, texts

log = logging.getLogger(__name__)

SURFACE = "slack"
# Seconds between streaming edits of one message: chat.update is tier 3 (about 50 a minute per
# workspace), shared by every run, so a reply is shown in a few steps, not as a ticker.
STREAM_INTERVAL = 2.0


@dataclass(frozen=True)
class Persona:
    username: str
    icon_url: str | None
    icon_emoji: str | None = None  # when there is no picture to point at (faces.py)


@dataclass(frozen=True)
class Thread:
    channel: str
    root_ts: str


class ThreadGone(Exception):
    """The run's channel vanished, was archived, or the bot lost access to it."""


@dataclass
class _Streaming:
    """The reply being streamed into its first message."""

    seq: int
    actor: str
    last_edit: float = -float("inf")


class SlackPoster:
    name = SURFACE
    durable = True  # shown from the store and its cursor; the run waits for it (delivery.py)

    def __init__(
        self,
        *,
        record: RunRecord,
        thread: Thread,
        client: AsyncWebClient,
        spacing: Spacing,
        personas: Mapping[str, Persona],
        known_posts: Mapping[tuple[int, int], str],
        record_post: Callable[[int, int, str], Awaitable[None]],
        on_gone: Callable[[str], Awaitable[None]],
        public_url: str | None = None,
        streaming: bool = False,
        edits: SlidingWindow | None = None,
        reopen_root: bool = False,
        closings: frozenset[tuple[int | None, int]] = frozenset(),
    ):
        """`known_posts` are the parts already in the thread (stored, or found by their marks
        after a crash); `closings` the closing lines found there by their marks."""
        self.record = record
        self.thread = thread
        self._client = client
        self._spacing = spacing
        self._personas = personas
        self._known = dict(known_posts)
        self._shown: dict[tuple[int, int], str] = {}  # what this process put in each message
        self._record_post = record_post
        self._on_gone = on_gone
        self._public_url = public_url
        self._streaming = streaming
        self.wants_deltas = streaming  # without streaming, no wake-up per chunk
        self._edits = edits or SlidingWindow(50, 60.0)
        self._reopen_root = reopen_root
        self._current: _Streaming | None = None
        self._gone = False
        self._closings = closings

    async def handle(self, event: Event) -> None:
        if isinstance(event, RunEnded):
            await self._end(event.end, event.usage)
            return
        if self._gone:
            return
        try:
            await self._dispatch(event)
        except ThreadGone as exc:
            self._gone = True
            await self._on_gone(str(exc))

    async def _dispatch(self, event: Event) -> None:
        match event:
            case RunStarted(run=record):
                self.record = record
                if self._reopen_root:  # an ended run given more turns: its Stop button is back
                    self._reopen_root = False
                    await self._update_root(texts.root_text(record, *self._root_args()), True)
            case ReplyStarted(seq=seq, actor=actor) if self._streaming:
                if self._current is None or self._current.seq != seq:
                    self._current = _Streaming(seq, actor)
            case ReplyDelta(seq=seq, text=text) if self._streaming:
                if self._current is not None and self._current.seq == seq:
                    await self._stream(self._current, text)
            case ReplyFinished(reply=reply):
                await self._finish(reply.seq, reply.actor, messages.reply_text(reply))
                self._current = None

    def _root_args(self) -> tuple[str, str | None]:
        return self.record.spec.started_by, self._public_url

    # -- replies ------------------------------------------------------------------------------

    async def _stream(self, current: _Streaming, text: str) -> None:
        """Show the reply so far in its first message; later parts wait for the final text, so
        a streamed reply never has more messages than its final text needs."""
        if time.monotonic() - current.last_edit < STREAM_INTERVAL:
            return
        key = (current.seq, 0)
        part = prepare_for_slack(text)[0]
        if key not in self._known:
            await self._post(key, part, current.actor)
        elif self._shown.get(key) != part and self._take_edit():
            await self._update(key, part)
        current.last_edit = time.monotonic()

    def _take_edit(self) -> bool:
        """A streaming edit only when the workspace's chat.update budget has room right now."""
        if self._edits.delay() > 0:
            return False
        self._edits.take()
        return True

    async def _finish(self, seq: int, actor: str, text: str) -> None:
        for index, part in enumerate(prepare_for_slack(text)):
            key = (seq, index)
            if key not in self._known:
                await self._post(key, part, actor)
            elif self._needs_update(key, part):
                await self._update(key, part)

    def _needs_update(self, key: tuple[int, int], part: str) -> bool:
        shown = self._shown.get(key)
        if shown is None:
            # Posted before a restart. Without streaming every post carried its final text;
            # with streaming it may have been cut short, so it is set to the final text again.
            return self._streaming
        return shown != part

    async def _post(self, key: tuple[int, int], part: str, actor: str) -> None:
        persona = self._personas.get(actor) or Persona(persona_name(actor, platform="slack"), None)
        identity: dict[str, Any] = {"username": persona.username}
        if persona.icon_url:
            identity["icon_url"] = persona.icon_url
        elif persona.icon_emoji:
            identity["icon_emoji"] = persona.icon_emoji
        async with self._spacing:
            response = await self._call(
                self._client.chat_postMessage(
                    channel=self.thread.channel,
                    thread_ts=self.thread.root_ts,
                    text=part,
                    unfurl_links=False,
                    unfurl_media=False,
                    metadata=marks.part_mark(self.record.id, *key),
                    **identity,
                )
            )
        ts = str(response["ts"])
        self._known[key], self._shown[key] = ts, part
        await self._record_post(key[0], key[1], ts)

    async def _update(self, key: tuple[int, int], part: str) -> None:
        await self._call(
            self._client.chat_update(channel=self.thread.channel, ts=self._known[key], text=part)
        )
        self._shown[key] = part

    @staticmethod
    async def _call(request: Awaitable[Any]) -> Any:
        try:
            return await request
        except SlackApiError as exc:
            why = texts.GONE.get(texts.error_code(exc))
            if why is not None:
                raise ThreadGone(why) from exc
            raise

    # -- the end ------------------------------------------------------------------------------

    async def _end(self, end: RunEnd, usage: RunUsage | None = None) -> None:
        """The outcome on the root message, whose Stop button goes, and as the thread's last
        line. A shutdown is a pause, not an end: the next start continues the same thread."""
        if end.reason == "shutdown":
            return
        outcome = texts.outcome_text(self.record.id, end, self._public_url, usage)
        ended = texts.ended_root_text(self.record, *self._root_args(), outcome)
        await self._update_root(ended, False)
        if self._gone:
            return
        await self._cut_off()
        stretch = (self.record.spec.max_turns, end.turns)
        if stretch in self._closings:  # posted before a crash that lost its record
            return
        try:
            async with self._spacing:
                await self._client.chat_postMessage(
                    channel=self.thread.channel,
                    thread_ts=self.thread.root_ts,
                    text=outcome,
                    unfurl_links=False,
                    unfurl_media=False,
                    metadata=marks.closing_mark(self.record.id, *stretch),
                )
        except SlackApiError as exc:
            log.warning("run %s: closing line refused: %s", self.record.id, texts.error_code(exc))

    async def _cut_off(self) -> None:
        """A reply being streamed when the run ended is not in the transcript: say so."""
        key = (self._current.seq, 0) if self._current is not None else None
        if key is None or key not in self._shown:
            return
        try:
            await self._update(key, self._shown[key] + "\n_(cut off: the run ended here)_")
        except (SlackApiError, ThreadGone) as exc:
            log.warning("run %s: cut-off reply not marked: %s", self.record.id, exc)

    async def _update_root(self, text: str, stop_button: bool) -> None:
        try:
            await self._client.chat_update(
                channel=self.thread.channel,
                ts=self.thread.root_ts,
                text=text,
                blocks=texts.root_blocks(text, self.record.id, stop_button=stop_button),
            )
        except SlackApiError as exc:
            log.warning(
                "run %s: root message not updated: %s", self.record.id, texts.error_code(exc)
            )

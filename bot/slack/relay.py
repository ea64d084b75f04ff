"""What the commands and the posters share once the surface is connected: the runtime, the Web API
client, one pacing gate per channel, the workspace's edit budget, and the tasks doing work after
an ack.

A run's thread is remembered in the run's meta (channel, root message ts, the starter's user id,
the workspace), so a restart rebuilds its poster without asking Slack anything.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from backrooms_engine.records import RunRecord

from .. import faces
from ..pacing import SlidingWindow, Spacing
from ..runtime import Runtime
from ..settings import Settings
from ..text import persona_name
from . import marks, texts
from .poster import SURFACE, Persona, SlackPoster, Thread

log = logging.getLogger(__name__)

CHANNEL, ROOT_TS, STARTER, TEAM = "slack_channel", "slack_root_ts", "slack_starter_user", "team"
# chat.update is a tier 3 method: about 50 calls a minute per workspace; streaming keeps under it.
EDITS_PER_MINUTE = 45


@dataclass
class Relay:
    rt: Runtime
    settings: Settings
    client: AsyncWebClient
    bot_name: str
    post_interval: float = 1.0  # Slack: about one message per second per channel
    spacings: dict[str, Spacing] = field(default_factory=dict)
    edits: SlidingWindow = field(default_factory=lambda: SlidingWindow(EDITS_PER_MINUTE, 60.0))
    tasks: set[asyncio.Task] = field(default_factory=set)

    def spacing(self, channel: str) -> Spacing:
        """One gate per channel, shared by every run posting there."""
        gate = self.spacings.get(channel)
        if gate is None:
            gate = self.spacings[channel] = Spacing(self.post_interval)
        return gate

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        """Work that goes on after an ack; kept referenced until done, failures logged."""
        task = asyncio.create_task(work, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    # -- threads ----------------------------------------------------------------------------

    async def post_root(self, channel: str, record: RunRecord) -> Thread:
        """The run's root message in `channel`, with its Stop button. Raises SlackApiError."""
        text = texts.root_text(record, record.spec.started_by, self.settings.public_url)
        async with self.spacing(channel):
            response = await self.client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=texts.root_blocks(text, record.id, stop_button=True),
                unfurl_links=False,
                unfurl_media=False,
                metadata=marks.root_mark(record.id),
            )
        return Thread(str(response["channel"]), str(response["ts"]))

    async def recover_thread(self, record: RunRecord) -> Thread | None:
        """The thread of a run whose root message was posted but not recorded (a crash right
        then), found by the root's mark in the channel; None when there is no such root."""
        channel = record.spec.place
        if not channel:
            return None
        root_ts = await marks.find_root(self.client, record.id, channel)
        if root_ts is None:
            return None
        thread = Thread(channel, root_ts)
        await self.remember_thread(record.id, thread)
        log.info("run %s: found its unrecorded root message %s", record.id, root_ts)
        return thread

    async def remember_starter(self, run_id: int, *, team: str, starter: str) -> None:
        await self.rt.surface_state.set_meta(run_id, STARTER, starter)
        await self.rt.surface_state.set_meta(run_id, TEAM, team)

    async def remember_thread(self, run_id: int, thread: Thread) -> None:
        await self.rt.surface_state.set_meta(run_id, CHANNEL, thread.channel)
        await self.rt.surface_state.set_meta(run_id, ROOT_TS, thread.root_ts)

    async def thread_of(self, run_id: int) -> Thread | None:
        channel = await self.rt.surface_state.get_meta(run_id, CHANNEL)
        root_ts = await self.rt.surface_state.get_meta(run_id, ROOT_TS)
        return Thread(channel, root_ts) if channel and root_ts else None

    async def starter_of(self, run_id: int) -> str | None:
        return await self.rt.surface_state.get_meta(run_id, STARTER)

    # -- posters ----------------------------------------------------------------------------

    async def poster(
        self, record: RunRecord, thread: Thread, *, reopen_root: bool = False
    ) -> SlackPoster:
        """The poster of a run shown before: it knows which reply parts are posted already,
        from the store and from the marks of posts a crash left unrecorded."""
        known = await self.rt.surface_state.posts(record.id, SURFACE)
        found = await marks.read_thread(self.client, record.id, thread.channel, thread.root_ts)
        for key, ts in found.parts.items():
            if key not in known:
                log.info("run %s: adopting unrecorded post %s of reply %s", record.id, key, ts)
                await self._record_post(record.id, key[0], key[1], ts)
                known[key] = ts
        if reopen_root:  # a reply cut short while streaming keeps its message above the end
            known = {key: ts for key, ts in known.items() if key[0] < record.replies}
        return self.new_poster(
            record, thread, known, reopen_root=reopen_root, closings=found.closings
        )

    def new_poster(
        self,
        record: RunRecord,
        thread: Thread,
        known: Mapping[tuple[int, int], str],
        *,
        reopen_root: bool = False,
        closings: frozenset[tuple[int | None, int]] = frozenset(),
    ) -> SlackPoster:
        return SlackPoster(
            record=record,
            thread=thread,
            client=self.client,
            spacing=self.spacing(thread.channel),
            personas=self.personas(record),
            known_posts=known,
            record_post=functools.partial(self._record_post, record.id),
            on_gone=functools.partial(self._gone, record.id),
            public_url=self.settings.public_url,
            streaming=self.settings.slack.streaming,
            edits=self.edits,
            reopen_root=reopen_root,
            closings=closings,
        )

    def personas(self, record: RunRecord) -> dict[str, Persona]:
        """Each seat's name and face: the model's own avatar_url, else our picture of its company
        at BACKROOMS_PUBLIC_URL, else the company's emoji (faces.py)."""
        companies, icons = faces.seat_sources(self.rt.registry, record.participants)
        public = self.settings.public_url
        personas = {}
        for p, face, icon in zip(
            record.participants, faces.seat_faces(companies), icons, strict=True
        ):
            url = icon or (face.url(public) if public else None)
            personas[p.actor] = Persona(
                persona_name(p.actor, platform="slack"), url, None if url else face.emoji()
            )
        return personas

    async def _record_post(self, run_id: int, seq: int, part: int, ts: str) -> None:
        await self.rt.surface_state.record_post(run_id, seq, part, SURFACE, ts)

    async def _gone(self, run_id: int, why: str) -> None:
        # Never awaited inside the poster: stop() waits for the poster's queue to drain.
        log.warning("run %s: %s; stopping it", run_id, why)
        self.spawn(
            self.rt.manager.stop(run_id, by="slack", reason="gone", detail=why),
            name=f"slack stop run {run_id} (gone)",
        )

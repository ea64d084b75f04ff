"""Small pieces several tests share: an observer that records events, and a runtime on the fakes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from backrooms_engine.events import Event, ReplyFinished
from backrooms_engine.records import RunEnd, RunSpec
from bot.runtime import Runtime, open_runtime
from bot.settings import Settings


class RecordingObserver:
    def __init__(self, name: str = "recorder"):
        self.name = name
        self.events: list[Event] = []

    async def handle(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def texts(self) -> list[str]:
        return [e.reply.text for e in self.of(ReplyFinished)]


@contextlib.asynccontextmanager
async def runtime(
    env: Mapping[str, str], templates_dir: Path | None = None
) -> AsyncIterator[Runtime]:
    async with open_runtime(Settings.from_mapping(env), templates_dir=templates_dir) as rt:
        yield rt


async def run_to_end(rt: Runtime, spec: RunSpec, *observers) -> tuple[int, RunEnd]:
    handle = await rt.manager.start(spec, list(observers))
    end = await rt.manager.wait(handle.id)
    return handle.id, end

"""The web viewer served for real: a runtime on the fake model server, the WebSurface's uvicorn on
127.0.0.1 (a free port), and an aiohttp client. Every wait in these tests is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backrooms_engine.records import RunEnd, RunSpec
from bot.runtime import Runtime
from bot.web import WebSurface
from tests.conftest import fake_env
from tests.fakes.model_server import FakeModelServer
from tests.helpers import runtime

TOKEN = "correct horse battery staple"
OPUS = "claude-opus-5-5"  # the api id of the `opus` alias: what the fake server is scripted by
WAIT = 15.0  # the most any one wait in these tests may take


@dataclass
class Site:
    rt: Runtime
    surface: WebSurface
    http: aiohttp.ClientSession
    models: FakeModelServer

    @property
    def url(self) -> str:
        return self.surface.url

    async def run(self, *texts: str, turns: int = 1, wait: bool = True) -> int:
        """A run of two `opus` participants in the `cli` template saying `texts` in order."""
        for text in texts:
            self.models.queue_reply(OPUS, text)
        spec = RunSpec(models=("opus", "opus"), template="cli", max_turns=turns, surface="web")
        handle = await self.rt.manager.start(spec)
        if wait:
            await self.wait(handle.id)
        return handle.id

    async def wait(self, run_id: int) -> RunEnd:
        return await asyncio.wait_for(self.rt.manager.wait(run_id), WAIT)


@contextlib.asynccontextmanager
async def serve(models: FakeModelServer, tmp_path: Path, **extra: str) -> AsyncIterator[Site]:
    env = {**fake_env(models, tmp_path), **extra}
    async with runtime(env) as rt:
        surface = WebSurface(rt.settings, host="127.0.0.1", port=0)
        await surface.start(rt)
        try:
            timeout = aiohttp.ClientTimeout(total=WAIT)
            async with aiohttp.ClientSession(surface.url, timeout=timeout) as http:
                yield Site(rt, surface, http, models)
        finally:
            await surface.stop_accepting()
            await rt.manager.shutdown(5.0)
            await surface.close()


@pytest.fixture
async def site(model_server: FakeModelServer, tmp_path: Path) -> AsyncIterator[Site]:
    async with serve(model_server, tmp_path, BACKROOMS_WEB_TOKEN=TOKEN) as s:
        yield s


@pytest.fixture
async def read_only_site(model_server: FakeModelServer, tmp_path: Path) -> AsyncIterator[Site]:
    async with serve(model_server, tmp_path) as s:
        yield s


async def until(predicate: Callable[[], object], what: str) -> None:
    """Poll `predicate` (every 20 ms) until it holds; fail naming `what` after WAIT seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {WAIT} s waiting for {what}")
        await asyncio.sleep(0.02)


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """(event name, parsed data) for each server-sent event, until the stream ends."""
    kind, data = "message", []
    async for raw in response.content:
        line = raw.decode("utf-8").rstrip("\n")
        if not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []
        elif line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])

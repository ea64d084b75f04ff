"""The web surface inside the service: it leaves SIGTERM to bot/service.py, reports a taken port
clearly, and shuts down with the service."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
import uvicorn

from backrooms_engine.errors import ConfigError
from bot.service import serve
from bot.settings import Settings
from bot.web import WebSurface
from tests.conftest import fake_env
from tests.fakes.model_server import FakeModelServer
from tests.helpers import runtime
from tests.web.conftest import WAIT


async def test_sigterm_stops_the_service_with_the_viewer_in_it(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = Settings.from_mapping(fake_env(model_server, tmp_path))
    surface = WebSurface(settings, host="127.0.0.1", port=0)
    service = asyncio.create_task(serve(settings, [surface]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not surface.listening:
        assert not service.done(), service.result()
        assert loop.time() < deadline, "the viewer did not start"
        await asyncio.sleep(0.02)
    async with aiohttp.ClientSession() as http, http.get(surface.url + "/") as response:
        assert response.status == 200
    # uvicorn would have put its own handler here (and re-raised the signal on exit).
    handler = signal.getsignal(signal.SIGTERM)
    assert not isinstance(getattr(handler, "__self__", None), uvicorn.Server)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(service, WAIT) == 0
    assert not surface.listening
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", surface.port), timeout=1).close()


async def test_a_taken_port_is_a_clear_error(model_server: FakeModelServer, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with runtime(fake_env(model_server, tmp_path)) as rt:
            surface = WebSurface(rt.settings, host="127.0.0.1", port=port)
            with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}.*set PORT"):
                await surface.start(rt)
            await surface.close()


def test_the_port_comes_from_settings_with_8000_by_default(tmp_path: Path) -> None:
    assert WebSurface(Settings.from_mapping({})).port == 8000
    assert WebSurface(Settings.from_mapping({"PORT": "5123"})).port == 5123


async def test_the_demo_starts_an_offline_run_to_watch_live(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = {**fake_env(model_server, tmp_path), "BACKROOMS_OFFLINE_DELAY": "0.01"}
    async with runtime(env) as rt:
        surface = WebSurface(rt.settings, host="127.0.0.1", port=0, demo_turns=2)
        await surface.start(rt)
        try:
            assert surface.demo_url == f"{surface.url}/runs/1"
            async with aiohttp.ClientSession() as http, http.get(surface.demo_url) as response:
                assert 'data-live="1"' in await response.text()
            end = await asyncio.wait_for(rt.manager.wait(1), WAIT)
            assert (end.reason, end.turns) == ("max_turns", 2)  # ^C^C needs 6 own replies
            record = await rt.archive.get_run(1)
            assert (record.spec.surface, record.spec.started_by) == ("web", "demo")
        finally:
            await rt.manager.shutdown(5)
            await surface.close()

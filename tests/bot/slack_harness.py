"""The Slack surface running for real (bolt, slack_sdk, Socket Mode or HTTP) against the Slack
emulator in tests/fakes and the fake model server, with helpers that wait on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backrooms_engine.records import RunEnd
from bot.runtime import Runtime, open_runtime
from bot.settings import Settings
from bot.slack import SlackSurface
from tests.conftest import fake_env
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_server import GENERAL_CHANNEL_ID, USER_ID, USER_NAME, FakeSlack

STEP = 10.0  # no single wait may hang the suite
INTERVAL = 0.05  # seconds between posts per channel in tests that do not measure pacing
CLAUDE_ICON = "https://example.invalid/claude.png"
# Lays an avatar over the shipped `opus` alias (a table replaces the shipped one whole).
MODELS_TOML = f"""
[models.opus]
provider = "anthropic"
api_id = "claude-opus-5-5"
display_name = "Claude"
company = "anthropic"
max_tokens = 1024
avatar_url = "{CLAUDE_ICON}"
"""


def slack_env(
    model_server: FakeModelServer, fake: FakeSlack, tmp_path: Path, **extra: str
) -> dict[str, str]:
    models = tmp_path / "models.toml"
    models.write_text(MODELS_TOML, encoding="utf-8")
    env = fake_env(model_server, tmp_path)
    env.update(
        SLACK_BOT_TOKEN=fake.bot_token,
        SLACK_APP_TOKEN=fake.app_token,
        SLACK_API_URL=fake.api_url,
        BACKROOMS_MODELS=str(models),
        BACKROOMS_SHUTDOWN_DEADLINE="5",
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    rt: Runtime
    surface: SlackSurface
    fake: FakeSlack

    async def command(
        self,
        text: str,
        *,
        user: str = USER_ID,
        name: str = USER_NAME,
        channel: str = GENERAL_CHANNEL_ID,
    ) -> dict[str, Any] | None:
        """Send `/backrooms text` over Socket Mode; the ack's payload (None for a bare ack)."""
        envelope = await self.fake.send_slash_command(
            text=text, user_id=user, user_name=name, channel_id=channel
        )
        return await self.fake.wait_ack(envelope, STEP)

    async def start(self, text: str, *, channel: str = GENERAL_CHANNEL_ID) -> int:
        """Start a run and return its id, read from the Stop button of its new root message."""
        before = len(self.fake.messages(channel))
        await self.command(f"start {text}", channel=channel)
        await self.fake.wait_for(
            lambda: len(self.fake.messages(channel)) > before, STEP, "a root message"
        )
        run_id = run_id_of(self.fake.messages(channel)[before])
        assert run_id is not None
        await self.wait_launched(run_id)
        return run_id

    async def wait_launched(self, run_id: int) -> None:
        """Until the run is going here or has ended (its root shows a moment before)."""
        async with asyncio.timeout(STEP):
            while self.rt.manager.get(run_id) is None:
                if (await self.rt.archive.get_run(run_id)).end is not None:
                    return
                await asyncio.sleep(0.01)

    async def wait_end(self, run_id: int) -> RunEnd:
        """The run's end, once it ended (it may not be launched yet when its root appears)."""
        await self.wait_launched(run_id)
        end = await asyncio.wait_for(self.rt.manager.wait(run_id), STEP)
        return end

    async def wait_ephemeral(self, fragment: str) -> str:
        def found() -> bool:
            return any(fragment in e.text for e in self.fake.ephemerals)

        await self.fake.wait_for(found, STEP, f"an ephemeral with {fragment!r}")
        return next(e.text for e in self.fake.ephemerals if fragment in e.text)

    def thread(self, run_root: dict[str, Any], channel: str = GENERAL_CHANNEL_ID):
        return self.fake.thread(channel, run_root["ts"])

    def root(self, run_id: int, channel: str = GENERAL_CHANNEL_ID) -> dict[str, Any]:
        return next(m for m in self.fake.messages(channel) if run_id_of(m) == run_id)


def run_id_of(root: Mapping[str, Any]) -> int | None:
    for block in root.get("blocks") or []:
        for element in block.get("elements", []):
            if element.get("action_id") == "stop_run":
                return int(element["value"])
    text = str(root.get("text", ""))
    if text.startswith("*Backrooms run "):
        return int(text.removeprefix("*Backrooms run ").split("*")[0])
    return None


@contextlib.asynccontextmanager
async def serving(
    env: Mapping[str, str],
    fake: FakeSlack,
    *,
    post_interval: float = INTERVAL,
    resume: bool = False,
) -> AsyncIterator[Service]:
    """The surface started as `backrooms slack` starts it; on exit, paused as on SIGTERM."""
    settings = Settings.from_mapping(env)
    async with open_runtime(settings) as rt:
        await rt.providers.warm()  # as bot.service.serve does
        surface = SlackSurface(settings, host="127.0.0.1", post_interval=post_interval)
        sockets = fake.socket_connections
        await asyncio.wait_for(surface.start(rt), STEP)
        try:
            if settings.slack.http_port is None:
                await fake.wait_socket_connected(STEP, count=sockets + 1)
            if resume:
                await rt.manager.resume_all(surface.observers_for)
            yield Service(rt, surface, fake)
        finally:
            await surface.stop_accepting()
            await rt.manager.shutdown(settings.shutdown_deadline)
            await asyncio.wait_for(surface.close(), STEP)

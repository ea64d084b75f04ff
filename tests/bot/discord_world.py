"""A Discord server of our own (the emulator), the fake model server and the real bot, wired."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from backrooms_engine.records import RunRecord
from bot.discord import DiscordSurface
from bot.runtime import Runtime, open_runtime
from bot.settings import Settings
from tests.conftest import fake_env
from tests.fakes.discord_server import FakeDiscord, configure_discord_py
from tests.fakes.model_server import FakeModelServer


@dataclass
class World:
    fake: FakeDiscord
    guild: int
    channel: int
    rt: Runtime
    surface: DiscordSurface
    env: dict[str, str]

    async def command(
        self,
        sub: str,
        options: dict | None = None,
        *,
        user: int | None = None,
        channel: int | None = None,
    ):
        return await self.fake.send_interaction(
            self.guild,
            channel or self.channel,
            user or self.fake.owner_user_id,
            "backrooms",
            sub,
            options or {},
        )

    async def followup_text(self, interaction, seconds: float = 10.0) -> str:
        """The ephemeral answer: the first followup, or an immediate message response."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            for call in self.fake.calls:
                if call.route == "interaction_followup" and str(interaction.token) in call.path:
                    return call.json["content"]
            for response in self.fake.interaction_responses(interaction.id):
                if response.type == 4:
                    return response.data["content"]
            await asyncio.sleep(0.02)
        raise AssertionError("no answer to the interaction")

    async def run_ended(self, run_id: int, seconds: float = 20.0) -> RunRecord:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            record = await self.rt.archive.get_run(run_id)
            if record.status == "ended" and self.rt.manager.get(run_id) is None:
                await asyncio.wait_for(self.rt.manager.drain(run_id), deadline - loop.time())
                return record
            await asyncio.sleep(0.05)
        raise AssertionError(f"run {run_id} did not end")

    async def thread_of(self, run_id: int) -> int:
        return int(await self.rt.surface_state.get_meta(run_id, "discord_thread"))


@contextlib.asynccontextmanager
async def discord_world(
    model_server: FakeModelServer,
    tmp_path: Path,
    *,
    fake: FakeDiscord | None = None,
    guild: int | None = None,
    channel: int | None = None,
    **env_extra: str,
) -> AsyncIterator[World]:
    async with contextlib.AsyncExitStack() as stack:
        if fake is None:
            fake = await stack.enter_async_context(FakeDiscord())
        if guild is None:
            guild = fake.add_guild("Backrooms")
            channel = fake.add_text_channel(guild, "relay")
        env = (
            fake_env(model_server, tmp_path)
            | {
                "DISCORD_TOKEN": fake.token,
                "DISCORD_API_BASE_URL": fake.rest_base,
                "DISCORD_GATEWAY_URL": fake.gateway_url,
                "DISCORD_GUILD_IDS": str(guild),
            }
            | env_extra
        )
        settings = Settings.from_mapping(env)
        stack.enter_context(configure_discord_py(fake))
        rt = await stack.enter_async_context(open_runtime(settings))
        await rt.providers.warm()  # as bot.service.serve does
        surface = DiscordSurface(settings)
        await surface.start(rt)
        await rt.manager.resume_all(surface.observers_for)
        try:
            yield World(fake, guild, channel, rt, surface, env)
        finally:
            # As the service does: pause the runs, then close the bot.
            await surface.stop_accepting()
            await rt.manager.shutdown(5)
            await asyncio.wait_for(surface.close(), 15)

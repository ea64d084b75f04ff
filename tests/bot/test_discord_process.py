"""The real bot process, `backrooms discord`, against the Discord emulator: it takes a command,
survives a SIGKILL (the next process goes on in the same thread without reposting) and exits 0
on SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from backrooms_engine.store import SqliteStore
from tests.conftest import fake_env
from tests.fakes.discord_server import FakeDiscord
from tests.helpers import backrooms, by_message_count, spawn_backrooms, until


async def test_bot_process_survives_sigkill_and_stops_on_sigterm(model_server, tmp_path):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 0.05
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Backrooms")
        channel = fake.add_text_channel(guild, "relay")
        env = fake_env(model_server, tmp_path) | {
            "DISCORD_TOKEN": fake.token,
            "DISCORD_API_BASE_URL": fake.rest_base,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            "DISCORD_GUILD_IDS": str(guild),
            "DISCORD_STREAMING": "false",
        }
        first = await spawn_backrooms("discord", env=env, cwd=tmp_path, merge_stderr=True)
        await until(lambda: fake.commands(guild), 60)
        await fake.send_interaction(
            guild,
            channel,
            fake.owner_user_id,
            "backrooms",
            "start",
            {"models": "opus gpt4o", "max_turns": 3},
        )
        await until(lambda: len(fake.webhook_executes()) >= 2, 60)
        first.send_signal(signal.SIGKILL)
        await asyncio.wait_for(first.wait(), 10)

        second = await spawn_backrooms("discord", env=env, cwd=tmp_path, merge_stderr=True)
        await until(
            lambda: any(
                "Reached maximum number of turns (3)" in m["content"]
                for t in fake.threads
                for m in fake.messages(t)
            ),
            60,
        )
        posts = [c.json["content"] for c in fake.webhook_executes()]
        second.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(second.communicate(), 30)

    assert second.returncode == 0, out.decode()[-2000:]
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        replies = await store.replies(1)
    assert posts == [r.text for r in replies] and len(posts) == 6  # each once, in order
    assert fake.token not in out.decode()  # the token never reaches the log


async def test_invite_url_asks_for_exactly_the_needed_permissions(tmp_path):
    code, out, _ = await backrooms(
        "discord", "--invite-url", env={"DISCORD_APPLICATION_ID": "1234"}, cwd=tmp_path
    )
    assert code == 0
    assert "client_id=1234" in out and "scope=bot+applications.commands" in out
    # View Channel, Send Messages, Send in Threads, Create Public Threads, Manage Webhooks,
    # Read Message History, Embed Links, Manage Threads
    expected = (
        (1 << 10)
        | (1 << 11)
        | (1 << 38)
        | (1 << 35)
        | (1 << 29)
        | (1 << 16)
        | (1 << 14)
        | (1 << 34)
    )
    assert f"permissions={expected}" in out


async def test_discord_without_token_says_which_variable(tmp_path):
    code, _, err = await backrooms("discord", env={}, cwd=tmp_path)
    assert code == 2 and "DISCORD_TOKEN" in err

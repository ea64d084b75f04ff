"""The real `backrooms discord` process against the Discord emulator, killed (SIGKILL) at the
exact points where a message exists in Discord but not yet in our store: the next process shows
every part of every reply exactly once, in order, and the closing line once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio

from backrooms_engine.store import SqliteStore
from bot.text import prepare_for_discord
from tests.conftest import fake_env
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.model_server import FakeModelServer
from tests.helpers import spawn_backrooms, until

LIMIT = 60.0


# The closing line, with the run's cost ("at least": the fake's OpenAI side reports no cache).
ENDED = re.compile(
    r"Run 1: Reached maximum number of turns \(1\)\. Conversation ended\. Cost: (at least )?\$\d+\.\d{4}\."
)


@dataclass(frozen=True)
class Server:
    fake: FakeDiscord
    guild: int
    channel: int


@pytest_asyncio.fixture
async def server():
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Backrooms")
        yield Server(fake, guild, fake.add_text_channel(guild, "relay"))


def discord_env(model_server: FakeModelServer, server: Server, tmp_path: Path, **extra: str):
    return (
        fake_env(model_server, tmp_path)
        | {
            "DISCORD_TOKEN": server.fake.token,
            "DISCORD_API_BASE_URL": server.fake.rest_base,
            "DISCORD_GATEWAY_URL": server.fake.gateway_url,
            "DISCORD_GUILD_IDS": str(server.guild),
        }
        | extra
    )


def kill_when(proc_of: Callable[[], asyncio.subprocess.Process], hit: Callable[[dict], bool]):
    """An on_message hook that SIGKILLs the bot the first time `hit(message)` holds: Discord
    has the message, the bot never hears the answer, so its id is never recorded."""
    fired = False

    def on_message(message: dict[str, Any]) -> None:
        nonlocal fired
        if not fired and hit(message):
            fired = True
            os.kill(proc_of().pid, signal.SIGKILL)

    return on_message


def nth_webhook_message(n: int) -> Callable[[dict], bool]:
    seen = 0

    def hit(message: dict) -> bool:
        nonlocal seen
        seen += bool(message.get("webhook_id"))
        return bool(message.get("webhook_id")) and seen == n

    return hit


def closing_line(message: dict) -> bool:
    return not message.get("webhook_id") and message["content"].startswith("Run 1: ")


async def crash_then_finish(
    server: Server, env: dict[str, str], tmp_path: Path, hit, *, turns: int, after_kill=None
) -> int:
    """Start a run, kill the bot when `hit`, start it again, wait for the run's outcome on the
    starter message; the run's thread."""
    fake = server.fake
    first = await spawn_backrooms("discord", env=env, cwd=tmp_path, merge_stderr=True)
    fake.on_message = kill_when(lambda: first, hit)
    await until(lambda: fake.commands(server.guild), LIMIT, "the commands")
    options = {"models": "opus gpt4o", "max_turns": turns}
    await fake.send_interaction(
        server.guild, server.channel, fake.owner_user_id, "backrooms", "start", options
    )
    await asyncio.wait_for(first.wait(), LIMIT)
    assert first.returncode == -signal.SIGKILL
    fake.on_message = None
    if after_kill is not None:
        after_kill()

    second = await spawn_backrooms("discord", env=env, cwd=tmp_path, merge_stderr=True)
    try:
        await until(lambda: "Outcome" in starter(server)["content"], LIMIT, "the outcome")
        await asyncio.sleep(1.0)  # room for a repost, were one coming
    finally:
        second.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(second.communicate(), LIMIT)
    assert second.returncode == 0, out.decode()[-2000:]
    return int(starter(server)["id"])  # a public thread made from the starter: the same id


def starter(server: Server) -> dict:
    return next(
        m for m in server.fake.messages(server.channel) if "Backrooms run 1" in m["content"]
    )


async def every_part(tmp_path: Path) -> list[str]:
    """Each part of each stored reply, in order: what the thread must show, once each."""
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        replies = await store.replies(1)
    return [part for reply in replies for part in prepare_for_discord(reply.text)]


def shown(fake: FakeDiscord, thread: int) -> list[str]:
    return [m["content"] for m in fake.messages(thread) if m.get("webhook_id")]


def long_reply(api: str, body: dict) -> str:
    """About 3,000 characters, the same for the same request: two Discord messages a reply."""
    return f"{body.get('model', 'world')} at {len(body.get('messages', []))}: " + "word " * 600


async def test_a_kill_between_a_part_landing_and_its_record_does_not_post_it_twice(
    model_server, server, tmp_path
):
    model_server.set_responder(long_reply)
    env = discord_env(model_server, server, tmp_path, DISCORD_STREAMING="false")
    thread = await crash_then_finish(server, env, tmp_path, nth_webhook_message(2), turns=1)
    parts = await every_part(tmp_path)
    assert len(parts) == 4  # two replies of two parts
    assert (
        shown(server.fake, thread) == parts
    )  # the unrecorded second part was adopted, in its place
    assert len(server.fake.webhook_executes(thread)) == 4  # nothing posted again, nothing deleted
    closing = [m["content"] for m in server.fake.messages(thread) if closing_line(m)]
    assert len(closing) == 1 and ENDED.fullmatch(closing[0]), closing


async def test_an_orphan_streamed_beginning_is_adopted_by_its_part_not_its_text(
    model_server, server, tmp_path
):
    """Every reply begins the same way; the kill lands on the first streamed message of reply
    2, and after the restart reply 2 is written afresh and begins differently. Its orphan
    beginning must become reply 2, not the later reply whose beginning it matches."""
    model_server.chunk_delay = 0.1
    model_server.chunk_count = 4

    def same_opening(api: str, body: dict) -> str:
        return f"The same opening words for everyone, then {len(body.get('messages', []))}."

    changed = iter(["A changed mind, written after the crash."])

    def after_the_crash(api: str, body: dict) -> str:
        return next(changed, None) or same_opening(api, body)

    model_server.set_responder(same_opening)
    env = discord_env(model_server, server, tmp_path, DISCORD_STREAMING="true")
    thread = await crash_then_finish(
        server,
        env,
        tmp_path,
        nth_webhook_message(3),
        turns=2,
        after_kill=lambda: model_server.set_responder(after_the_crash),
    )
    parts = await every_part(tmp_path)
    assert parts[2] == "A changed mind, written after the crash."
    assert shown(server.fake, thread) == parts  # one message per reply, in order
    assert len(server.fake.webhook_executes(thread)) == 4


async def test_a_kill_after_the_closing_line_landed_does_not_post_it_again(
    model_server, server, tmp_path
):
    model_server.set_responder(long_reply)
    env = discord_env(model_server, server, tmp_path, DISCORD_STREAMING="false")
    thread = await crash_then_finish(server, env, tmp_path, closing_line, turns=1)
    assert shown(server.fake, thread) == await every_part(tmp_path)
    closing = [m["content"] for m in server.fake.messages(thread) if closing_line(m)]
    assert len(closing) == 1 and ENDED.fullmatch(closing[0]), closing
    assert starter(server)["content"].count("**Outcome:**") == 1

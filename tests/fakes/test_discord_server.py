"""The fake Discord, proven against the real discord.py 2.7 client over loopback.

Each test logs a real ``commands.Bot`` in to a fresh :class:`FakeDiscord` and asserts on what the
fake received (the wire), not on mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import discord
import pytest
import pytest_asyncio
from discord import app_commands
from discord.ext import commands

from .discord_server import ALL_NEEDED, MANAGE_WEBHOOKS, FakeDiscord, configure_discord_py

pytestmark = pytest.mark.asyncio

STEP = 5.0  # no single await in these tests may hang the suite
TEMPLATES = ("backrooms", "banana-room", "cli-world")
AVATAR = "https://example.invalid/opus.png"


@dataclass
class World:
    fake: FakeDiscord
    bot: commands.Bot
    guild_id: int
    channel_id: int
    locked_channel_id: int  # no MANAGE_WEBHOOKS for the bot here
    forum_id: int
    outcomes: asyncio.Queue[int | BaseException]


def _relay_group(outcomes: asyncio.Queue[int | BaseException]) -> app_commands.Group:
    """A miniature of the relay's /backrooms start: defer, starter message, thread, webhook turn."""
    group = app_commands.Group(name="backrooms", description="AI-to-AI runs")

    @group.command(name="start", description="Start a run")
    async def start(interaction: discord.Interaction, template: str) -> None:
        try:
            await interaction.response.defer()
            channel = interaction.channel
            assert isinstance(channel, discord.TextChannel)
            starter = await channel.send(
                f"Run: {template}", allowed_mentions=discord.AllowedMentions.none()
            )
            thread = await starter.create_thread(name=f"{template} run", auto_archive_duration=1440)
            hook = await channel.create_webhook(name="backrooms relay")
            turn = await hook.send(
                "hello from the other model",
                username="Claude Opus",
                avatar_url=AVATAR,
                thread=thread,
                wait=True,
                allowed_mentions=discord.AllowedMentions.none(),
            )
            await turn.edit(content="hello from the other model (edited)")
            await interaction.edit_original_response(content=f"Started in {thread.mention}")
            outcomes.put_nowait(thread.id)
        except Exception as exc:  # handed to the test, which re-raises it
            outcomes.put_nowait(exc)

    @start.autocomplete("template")
    async def complete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=t, value=t) for t in TEMPLATES if t.startswith(current)]

    return group


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    outcomes: asyncio.Queue[int | BaseException] = asyncio.Queue()
    async with FakeDiscord() as fake:
        guild_id = fake.add_guild("Backrooms Lab")
        channel_id = fake.add_text_channel(guild_id, "relay")
        locked_id = fake.add_text_channel(
            guild_id, "no-hooks", bot_permissions=ALL_NEEDED & ~MANAGE_WEBHOOKS
        )
        forum_id = fake.add_forum_channel(guild_id, "runs")
        with configure_discord_py(fake):
            bot = commands.Bot(
                command_prefix="!",
                intents=discord.Intents.none() | discord.Intents(guilds=True),
                guild_ready_timeout=0.05,
            )
            bot.tree.add_command(_relay_group(outcomes), guild=discord.Object(guild_id))
            await asyncio.wait_for(bot.login(fake.token), STEP)
            task = asyncio.create_task(bot.connect(reconnect=True))
            try:
                await fake.wait_ready(STEP)
                await asyncio.wait_for(bot.wait_until_ready(), STEP)
                yield World(fake, bot, guild_id, channel_id, locked_id, forum_id, outcomes)
            finally:
                await asyncio.wait_for(bot.close(), STEP)
                with contextlib.suppress(asyncio.CancelledError, discord.ConnectionClosed):
                    await asyncio.wait_for(task, STEP)
        assert fake.internal_errors == []


async def _synced(world: World) -> list[app_commands.AppCommand]:
    return await asyncio.wait_for(world.bot.tree.sync(guild=discord.Object(world.guild_id)), STEP)


async def _outcome(world: World) -> int:
    result = await asyncio.wait_for(world.outcomes.get(), STEP)
    if isinstance(result, BaseException):
        raise result
    return result


def _channel(world: World, channel_id: int | None = None) -> discord.TextChannel:
    channel = world.bot.get_channel(channel_id or world.channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def _thread(world: World, name: str = "a run") -> discord.Thread:
    starter = await _channel(world).send("starter")
    return await starter.create_thread(name=name)


# --------------------------------------------------------------------------- login and gateway


async def test_bot_sees_its_guild_channels_and_permissions(world: World) -> None:
    guild = world.bot.get_guild(world.guild_id)
    assert guild is not None and guild.name == "Backrooms Lab"
    assert {c.name for c in guild.channels} == {"relay", "no-hooks", "runs"}
    assert isinstance(guild.get_channel(world.forum_id), discord.ForumChannel)
    assert guild.me.guild_permissions.manage_webhooks
    assert not _channel(world, world.locked_channel_id).permissions_for(guild.me).manage_webhooks


async def test_identify_carries_the_guilds_intent_and_zlib_stream_is_served(world: World) -> None:
    assert world.fake.identify_payloads[0]["intents"] == discord.Intents(guilds=True).value
    # discord.py asked for transport compression and decoded our zlib frames to get this far.
    assert world.fake.gateway_queries[0] == {
        "v": "10",
        "encoding": "json",
        "compress": "zlib-stream",
    }


async def test_a_wrong_token_is_a_login_failure() -> None:
    async with FakeDiscord() as fake:
        with configure_discord_py(fake):
            client = discord.Client(intents=discord.Intents.none())
            with pytest.raises(discord.LoginFailure):
                await asyncio.wait_for(client.login("not-the-token"), STEP)
            await client.close()
        assert fake.calls[0].status == 401


async def test_dropped_gateway_resumes_and_replays_missed_events(world: World) -> None:
    thread = await _thread(world)
    await world.fake.drop_gateway(4000)
    world.fake.delete_thread(thread.id)  # dispatched while the client is away
    event = await world.bot.wait_for("raw_thread_delete", timeout=STEP)
    assert event.thread_id == thread.id
    assert world.fake.resume_count == 1


# --------------------------------------------------------------------------- slash commands


async def test_guild_sync_is_recorded_and_answered_with_ids(world: World) -> None:
    synced = await _synced(world)
    registered = world.fake.commands(world.guild_id)
    assert [c["name"] for c in registered] == ["backrooms"]
    assert synced[0].id == int(registered[0]["id"])
    start = registered[0]["options"][0]
    assert (start["name"], start["type"], start["options"][0]["type"]) == ("start", 1, 3)


async def test_slash_command_runs_the_relay_sequence_on_the_wire(world: World) -> None:
    await _synced(world)
    fake = world.fake
    before = len(fake.calls)
    record = await fake.send_interaction(
        world.guild_id,
        world.channel_id,
        fake.owner_user_id,
        "backrooms",
        "start",
        {"template": "backrooms"},
    )
    thread_id = await _outcome(world)

    wire = fake.calls[before:]
    assert [c.route for c in wire] == [
        "interaction_callback",
        "create_message",
        "thread_from_message",
        "create_webhook",
        "execute_webhook",
        "edit_webhook_message",
        "interaction_edit_message",
    ]
    assert [r.type for r in fake.interaction_responses(record.id)] == [5]
    reply, starter = fake.messages(world.channel_id)  # the deferred reply is a channel message
    assert (reply["type"], reply["content"]) == (20, f"Started in <#{thread_id}>")
    assert int(starter["id"]) == thread_id  # a thread from a message shares its id
    (execute,) = fake.webhook_executes(thread_id)
    assert execute.query["wait"] == "1"
    assert execute.json["username"] == "Claude Opus"
    assert execute.json["avatar_url"] == AVATAR
    assert execute.json["allowed_mentions"] == {"parse": []}
    assert fake.webhook_edits(thread_id)[0].query["thread_id"] == str(thread_id)
    (turn,) = fake.messages(thread_id)
    assert turn["content"] == "hello from the other model (edited)"
    assert turn["edits"][0]["before"] == "hello from the other model"
    assert turn["webhook_id"] == next(iter(fake.webhooks.values()))["id"]


async def test_autocomplete_answer_is_recorded(world: World) -> None:
    await _synced(world)
    fake = world.fake
    record = await fake.send_autocomplete(
        world.guild_id,
        world.channel_id,
        fake.owner_user_id,
        "backrooms",
        "start",
        {"template": "b"},
        "template",
    )
    response = await fake.wait_for_response(record.id, STEP)
    assert response.type == 8
    assert [c["value"] for c in response.data["choices"]] == ["backrooms", "banana-room"]


async def test_an_ack_later_than_three_seconds_is_unknown_interaction_10062(world: World) -> None:
    await _synced(world)
    world.fake.interaction_ack_deadline = 0.0  # stands in for a handler that dawdled for 3 s
    await world.fake.send_interaction(
        world.guild_id,
        world.channel_id,
        world.fake.owner_user_id,
        "backrooms",
        "start",
        {"template": "x"},
    )
    with pytest.raises(discord.NotFound) as caught:
        await _outcome(world)
    assert caught.value.code == 10062


async def test_interaction_for_an_unsynced_command_is_refused_by_the_fake(world: World) -> None:
    with pytest.raises(LookupError):
        await world.fake.send_interaction(
            world.guild_id, world.channel_id, world.fake.owner_user_id, "backrooms"
        )


# --------------------------------------------------------------------------- errors and limits


async def test_a_429_with_via_is_retried_after_retry_after(world: World) -> None:
    world.fake.fail_next("POST", r"^/channels/\d+/messages$", 429, retry_after=0.3)
    message = await asyncio.wait_for(_channel(world).send("paced"), STEP)
    first, second = world.fake.find_calls("POST", r"^/channels/\d+/messages$")
    assert (first.status, second.status) == (429, 200)
    assert second.time - first.time >= 0.3
    assert world.fake.messages(world.channel_id)[-1]["id"] == str(message.id)


async def test_missing_manage_webhooks_is_forbidden_50013(world: World) -> None:
    with pytest.raises(discord.Forbidden) as caught:
        await _channel(world, world.locked_channel_id).create_webhook(name="relay")
    assert caught.value.code == 50013


async def test_a_deleted_webhook_is_not_found_10015(world: World) -> None:
    hook = await _channel(world).create_webhook(name="relay")
    world.fake.delete_webhook(hook.id)
    with pytest.raises(discord.NotFound) as caught:
        await hook.send("anyone there?", wait=True)
    assert caught.value.code == 10015


async def test_webhook_usernames_and_long_content_are_rejected_like_discord(world: World) -> None:
    hook = await _channel(world).create_webhook(name="relay")
    with pytest.raises(discord.HTTPException) as bad_name:
        await hook.send("hi", username="Discord Official", wait=True)
    with pytest.raises(discord.HTTPException) as too_long:
        await hook.send("x" * 2001, username="Claude", wait=True)
    assert (bad_name.value.status, bad_name.value.code) == (400, 50035)
    assert "username" in bad_name.value.text
    assert too_long.value.code == 50035


async def test_webhook_rate_limit_headers_let_discord_py_pace_itself(world: World) -> None:
    fake = world.fake
    fake.enforce_webhook_rate_limit = True
    fake.webhook_rate_limit = (2, 0.3)
    hook = await _channel(world).create_webhook(name="relay")
    thread = await _thread(world)
    for n in range(5):
        await asyncio.wait_for(hook.send(f"turn {n}", thread=thread, wait=True), STEP)
    assert fake.rate_limited == 0
    assert len(fake.webhook_executes(thread.id)) == 5


async def test_channel_message_limit_answers_429_without_warning_headers(world: World) -> None:
    fake = world.fake
    fake.enforce_channel_rate_limit = True
    fake.channel_rate_limit = (2, 0.3)
    for n in range(3):
        await asyncio.wait_for(_channel(world).send(f"status {n}"), STEP)
    assert fake.rate_limited == 1  # discord.py cannot see this limit coming; it waits it out
    assert [c.status for c in fake.find_calls(route="create_message")] == [200, 200, 429, 200]


async def test_allowed_mentions_none_keeps_model_output_from_pinging(world: World) -> None:
    hook = await _channel(world).create_webhook(name="relay")
    text = f"<@{world.fake.owner_user_id}> look @everyone"
    await hook.send(
        text, username="Claude", allowed_mentions=discord.AllowedMentions.none(), wait=True
    )
    await hook.send(text, username="Claude", wait=True)  # no allowed_mentions: Discord parses all
    safe, loud = world.fake.messages(world.channel_id)
    assert (safe["mentions"], safe["mention_everyone"]) == ([], False)
    assert ([u["id"] for u in loud["mentions"]], loud["mention_everyone"]) == (
        [str(world.fake.owner_user_id)],
        True,
    )


async def test_unknown_routes_answer_404_json_and_are_recorded(world: World) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{world.fake.rest_base}/no/such/route") as response:
            assert response.status == 404
            assert response.headers["Content-Type"] == "application/json"
            assert (await response.json())["code"] == 0
    assert world.fake.calls[-1].route is None


# --------------------------------------------------------------------------- threads


async def test_a_deleted_thread_reaches_the_bot_and_later_sends_fail_10003(world: World) -> None:
    hook = await _channel(world).create_webhook(name="relay")
    thread = await _thread(world)
    world.fake.delete_thread(thread.id)
    event = await world.bot.wait_for("raw_thread_delete", timeout=STEP)
    assert (event.thread_id, event.parent_id) == (thread.id, world.channel_id)
    with pytest.raises(discord.NotFound) as caught:
        await hook.send("into the void", thread=thread, wait=True)
    assert caught.value.code == 10003


async def test_a_webhook_send_unarchives_an_archived_thread(world: World) -> None:
    hook = await _channel(world).create_webhook(name="relay")
    thread = await _thread(world)
    world.fake.archive_thread(thread.id)
    await world.bot.wait_for("raw_thread_update", timeout=STEP)
    await hook.send("still here", thread=thread, wait=True)
    assert world.fake.threads[thread.id]["thread_metadata"]["archived"] is False


async def test_a_locked_archived_thread_refuses_sends_50083(world: World) -> None:
    hook = await _channel(world).create_webhook(name="relay")
    thread = await _thread(world)
    world.fake.archive_thread(thread.id, locked=True)
    with pytest.raises(discord.HTTPException) as caught:
        await hook.send("let me in", thread=thread, wait=True)
    assert caught.value.code == 50083


async def test_a_forum_post_shares_its_id_with_its_starter_message(world: World) -> None:
    forum = world.bot.get_channel(world.forum_id)
    assert isinstance(forum, discord.ForumChannel)
    post = await forum.create_thread(name="run 7", content="Run 7 begins")
    assert post.thread.id == post.message.id
    assert world.fake.messages(post.thread.id)[0]["content"] == "Run 7 begins"


async def test_bot_archives_and_locks_its_thread_on_stop(world: World) -> None:
    thread = await _thread(world)
    started = time.monotonic()
    edited = await thread.edit(archived=True, locked=True)
    assert edited.archived and edited.locked
    meta = world.fake.threads[thread.id]["thread_metadata"]
    assert (meta["archived"], meta["locked"]) == (True, True)
    assert time.monotonic() - started < STEP


async def test_old_messages_refuse_edits_past_the_limit_with_30046(world: World) -> None:
    fake = world.fake
    fake.old_message_age, fake.old_message_edits, fake.old_message_retry_after = 0.0, 1, 0.01
    message = await _channel(world).send("Backrooms run 1")
    hook = await _channel(world).create_webhook(name="relay")
    persona = await hook.send("a reply", username="Claude", wait=True)
    await message.edit(content="one edit is allowed")
    with pytest.raises(discord.HTTPException) as starter:
        await message.edit(content="a second is not")
    await persona.edit(content="its own allowance")
    with pytest.raises(discord.HTTPException) as webhook:
        await persona.edit(content="then refused too")
    assert (starter.value.status, starter.value.code) == (429, 30046)
    assert webhook.value.code == 30046
    assert fake.messages(message.channel.id)[0]["content"] == "one edit is allowed"
    refusals = fake.find_calls("PATCH", rf"/messages/{message.id}$")
    assert [c.status for c in refusals] == [200, 429, 429, 429, 429, 429]  # discord.py tried 5


async def test_on_message_sees_each_new_message_before_the_answer_leaves(world: World) -> None:
    seen: list[tuple[str, int]] = []
    world.fake.on_message = lambda m: seen.append((m["content"], len(world.fake.calls)))
    hook = await _channel(world).create_webhook(name="relay")
    calls_before = len(world.fake.calls)
    await hook.send("part 0", username="Claude", wait=True)
    await _channel(world).send("closing line")
    assert seen == [("part 0", calls_before), ("closing line", calls_before + 1)]

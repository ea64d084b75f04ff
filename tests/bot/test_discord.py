"""The Discord relay end to end: the real bot against our Discord emulator and the fake models.
Everything is asserted on what the emulator received."""

from __future__ import annotations

import ast
import asyncio
import graphlib
from pathlib import Path

import discord.gateway
import discord.http

import bot.discord
from bot import messages
from bot.settings import Settings
from tests.bot.discord_world import discord_world
from tests.fakes.discord_server import ALL_NEEDED, MANAGE_THREADS, MANAGE_WEBHOOKS, FakeDiscord
from tests.helpers import until

OPUS = "claude-opus-5-5"
GPT4O = "gpt-4o-2024-08-06"


def executes(world, thread):
    return [c for c in world.fake.webhook_executes(thread)]


async def test_start_opens_a_thread_where_each_model_posts_as_itself(model_server, tmp_path):
    for text in ["ls -la", "total 0", "cd /dev/null", "no such thing"]:
        model_server.queue_reply("*", text)
    async with discord_world(model_server, tmp_path) as w:
        hit = await w.command("start", {"models": "opus gpt4o cli", "max_turns": 2})
        answer = await w.followup_text(hit)
        record = await w.run_ended(1)
        thread = await w.thread_of(1)
        posts = executes(w, thread)
        thread_messages = w.fake.messages(thread)
        await until(lambda: "Outcome" in w.fake.messages(w.channel)[-1]["content"])
        channel_messages = w.fake.messages(w.channel)
        first_response = w.fake.interaction_responses(hit.id)[0]

    assert first_response.type == 5  # deferred within the 3 s window
    assert answer == f"Run 1 started in <#{thread}>."
    starter = next(m for m in channel_messages if "Backrooms run 1" in m["content"])
    assert "Claude 1 (`opus`), GPT4o 2 (`gpt4o`)" in starter["content"]
    assert "Template `cli`, up to 2 turns" in starter["content"]
    assert f"<@{w.fake.owner_user_id}>" in starter["content"]  # named, never pinged
    assert starter["mentions"] == []
    assert thread == int(starter["id"])  # a public thread made from the starter message
    assert [c.json["username"] for c in posts] == ["Claude 1", "GPT4o 2", "Claude 1", "GPT4o 2"]
    shown = [m["content"] for m in thread_messages if m.get("webhook_id")]
    assert shown == ["ls -la", "total 0", "cd /dev/null", "no such thing"]
    assert all(c.json["allowed_mentions"] == {"parse": []} for c in posts)
    assert record.end.reason == "max_turns"
    assert thread_messages[-1]["content"].startswith(
        "Run 1: Reached maximum number of turns (2). Conversation ended."
    )
    assert starter["content"].endswith(
        "**Outcome:** Reached maximum number of turns (2). Conversation ended."
    )


async def test_model_text_pings_nobody(model_server, tmp_path):
    model_server.queue_reply(OPUS, "@everyone @here <@123> <@&456> look")
    async with discord_world(model_server, tmp_path) as w:
        await w.followup_text(await w.command("start", {"models": "opus gpt4o", "max_turns": 1}))
        await w.run_ended(1)
        thread = await w.thread_of(1)
        post = executes(w, thread)[0]
        stored = w.fake.messages(thread)[0]
        replies = await w.rt.archive.replies(1)
    assert post.json["allowed_mentions"] == {"parse": []}
    assert stored["mention_everyone"] is False and stored["mentions"] == []
    assert stored["mention_roles"] == []
    assert replies[0].text == "@everyone @here <@123> <@&456> look"  # stored exactly


async def test_long_reply_is_split_with_fences_reopened(model_server, tmp_path):
    code = "\n".join(f"line {i:04d} = {'x' * 40}" for i in range(120))
    reply = "Here is the program:\n```python\n" + code + "\n```\nDone."
    model_server.queue_reply(OPUS, reply)
    async with discord_world(model_server, tmp_path, DISCORD_STREAMING="false") as w:
        await w.followup_text(await w.command("start", {"models": "opus gpt4o", "max_turns": 1}))
        await w.run_ended(1)
        thread = await w.thread_of(1)
        parts = [c.json["content"] for c in executes(w, thread) if c.json["username"] == "Claude 1"]
        stored = (await w.rt.archive.replies(1))[0].text
    assert len(parts) >= 3 and all(len(p) <= 2000 for p in parts)
    assert parts[0].startswith("Here is the program:\n```python\n")
    assert all(p.rstrip().endswith("```") for p in parts[:-1])  # closed at each cut
    assert all(p.startswith("```python\n") for p in parts[1:])  # reopened with its language
    assert stored == reply


async def test_replies_stream_by_editing_and_end_exact(model_server, tmp_path):
    model_server.chunk_count = 12
    model_server.chunk_delay = 0.25
    model_server.queue_reply(OPUS, " ".join(f"word{i}" for i in range(60)))
    async with discord_world(model_server, tmp_path) as w:
        await w.followup_text(await w.command("start", {"models": "opus gpt4o", "max_turns": 1}))
        await w.run_ended(1, seconds=30)
        thread = await w.thread_of(1)
        first = executes(w, thread)[0]
        edits = [c for c in w.fake.webhook_edits(thread) if str(first.response["id"]) in c.path]
        final = w.fake.messages(thread)[0]
        reply = (await w.rt.archive.replies(1))[0]
    assert len(first.json["content"]) < len(reply.text)  # it appeared before the reply was done
    assert edits, "the message grew by edits"
    assert final["content"] == reply.text
    assert all(e.json["allowed_mentions"] == {"parse": []} for e in edits)


async def test_streaming_off_posts_each_reply_once(model_server, tmp_path):
    model_server.chunk_delay = 0.05
    async with discord_world(model_server, tmp_path, DISCORD_STREAMING="false") as w:
        await w.followup_text(await w.command("start", {"models": "opus gpt4o", "max_turns": 2}))
        await w.run_ended(1)
        thread = await w.thread_of(1)
        assert w.fake.webhook_edits(thread) == []
        assert len(executes(w, thread)) == 4


async def test_a_server_can_turn_streaming_off(model_server, tmp_path):
    model_server.chunk_delay = 0.1
    async with discord_world(model_server, tmp_path) as w:
        text = await w.followup_text(await w.command("streaming", {"on": False}))
        await w.followup_text(await w.command("start", {"models": "opus gpt4o", "max_turns": 1}))
        await w.run_ended(1)
        assert "Streaming is off" in text
        assert w.fake.webhook_edits(await w.thread_of(1)) == []


async def test_stop_in_the_thread_by_the_starter(model_server, tmp_path):
    model_server.chunk_delay = 0.2
    model_server.chunk_count = 50
    async with discord_world(model_server, tmp_path) as w:
        await w.followup_text(await w.command("start", {"models": "opus gpt4o"}))
        thread = await w.thread_of(1)
        hit = await w.fake.send_interaction(w.guild, thread, w.fake.owner_user_id, "stop")
        answer = await w.followup_text(hit)
        record = await w.run_ended(1)
        closing = w.fake.messages(thread)[-1]["content"]
    assert record.end.reason == "stopped"
    assert "stopped by" in answer
    assert closing.startswith("Run 1: Conversation stopped by") and "after 0 turns" in closing


async def test_only_the_starter_or_a_thread_manager_may_stop(model_server, tmp_path):
    model_server.chunk_delay = 0.2
    model_server.chunk_count = 50
    async with discord_world(model_server, tmp_path) as w:
        stranger = w.fake.add_member(w.guild, "stranger")
        moderator = w.fake.add_member(w.guild, "mod", permissions=ALL_NEEDED | MANAGE_THREADS)
        await w.followup_text(await w.command("start", {"models": "opus gpt4o"}))
        refused = await w.followup_text(await w.command("stop", {"run": 1}, user=stranger))
        assert w.rt.manager.get(1) is not None
        allowed = await w.followup_text(await w.command("stop", {"run": 1}, user=moderator))
        record = await w.run_ended(1)
    assert "Only the person who started run 1 or someone with Manage Threads" in refused
    assert "stopped by mod" in allowed and record.end.by == "mod"


async def test_missing_permission_is_named_and_nothing_runs(model_server, tmp_path):
    async with discord_world(model_server, tmp_path) as w:
        bare = w.fake.add_text_channel(
            w.guild, "locked", bot_permissions=ALL_NEEDED & ~MANAGE_WEBHOOKS
        )
        await asyncio.sleep(0.2)  # the CHANNEL_CREATE reaches the bot
        text = await w.followup_text(
            await w.command("start", {"models": "opus gpt4o"}, channel=bare)
        )
        runs = await w.rt.archive.list_runs()
    assert "Manage Webhooks" in text and f"<#{bare}>" in text
    assert runs == [] and model_server.requests == []


async def test_bad_start_requests_get_clear_ephemeral_answers(model_server, tmp_path):
    async with discord_world(model_server, tmp_path) as w:
        unknown = await w.followup_text(await w.command("start", {"models": "opus gpt9"}))
        count = await w.followup_text(await w.command("start", {"models": "opus gpt4o sonnet cli"}))
        ceiling = await w.followup_text(
            await w.command("start", {"models": "opus gpt4o", "max_turns": 99})
        )
    assert "unknown model 'gpt9'" in unknown and "gpt4o" in unknown
    assert "template 'cli' takes 2 participants, got 3" in count
    assert "at most 50 turns" in ceiling and "BACKROOMS_CHAT_MAX_TURNS" in ceiling


async def test_a_429_is_honoured_and_nothing_is_lost_or_reordered(model_server, tmp_path):
    async with discord_world(model_server, tmp_path, DISCORD_STREAMING="false") as w:
        w.fake.fail_next("POST", r"/webhooks/\d+/", 429, retry_after=0.3, count=2)
        await w.followup_text(await w.command("start", {"models": "opus gpt4o", "max_turns": 2}))
        await w.run_ended(1)
        thread = await w.thread_of(1)
        contents = [c.json["content"] for c in executes(w, thread)]
        texts = [r.text for r in await w.rt.archive.replies(1)]
    assert contents == texts


async def test_pacing_keeps_under_the_webhook_limit(model_server, tmp_path):
    async with discord_world(model_server, tmp_path) as w:
        w.fake.enforce_webhook_rate_limit = True
        for _ in range(3):
            await w.followup_text(
                await w.command("start", {"models": "opus gpt4o", "max_turns": 2})
            )
        for run_id in (1, 2, 3):
            await w.run_ended(run_id, seconds=40)
        limited = w.fake.rate_limited
        counts = [len(executes(w, await w.thread_of(r))) for r in (1, 2, 3)]
    assert limited == 0
    assert counts == [4, 4, 4]


async def test_a_deleted_webhook_is_recreated_once(model_server, tmp_path):
    model_server.chunk_delay = 0.1
    async with discord_world(model_server, tmp_path, DISCORD_STREAMING="false") as w:
        await w.followup_text(await w.command("start", {"models": "opus gpt4o", "max_turns": 2}))
        thread = await w.thread_of(1)
        await until(lambda: len(executes(w, thread)) >= 1)
        first_hook = int(await w.rt.surface_state.get_meta(1, "discord_webhook_id"))
        w.fake.delete_webhook(first_hook)
        record = await w.run_ended(1)
        posts = executes(w, thread)
    assert record.end.reason == "max_turns"
    assert len(posts) == 4
    assert len({c.path.split("/")[2] for c in posts}) == 2  # a second webhook took over


async def test_a_deleted_thread_ends_the_run_with_that_reason(model_server, tmp_path):
    model_server.chunk_delay = 0.1
    async with discord_world(model_server, tmp_path) as w:
        await w.followup_text(await w.command("start", {"models": "opus gpt4o"}))
        thread = await w.thread_of(1)
        await until(lambda: len(executes(w, thread)) >= 1)
        w.fake.delete_thread(thread)
        record = await w.run_ended(1)
    assert record.end.reason == "gone" and "deleted" in record.end.detail


async def test_list_templates_models_help(model_server, tmp_path):
    model_server.chunk_delay = 0.2
    async with discord_world(model_server, tmp_path) as w:
        await w.followup_text(await w.command("start", {"models": "opus gpt4o"}))
        listing = await w.followup_text(await w.command("list"))
        tpl = await w.followup_text(await w.command("templates"))
        models = await w.followup_text(await w.command("models"))
        helptext = await w.followup_text(await w.command("help"))
        thread = await w.thread_of(1)
    assert "run 1: opus gpt4o, `cli`" in listing and f"<#{thread}>" in listing
    assert "`cli` (2)" in tpl and "`trio_cli` (3)" in tpl
    assert "`opus`" in models
    assert "/backrooms start" in helptext


async def test_allow_lists_and_role_refuse_clearly(model_server, tmp_path):
    async with discord_world(model_server, tmp_path, DISCORD_STARTER_ROLE="pilots") as w:
        text = await w.followup_text(await w.command("start", {"models": "opus gpt4o"}))
    assert "needs the role `pilots`" in text


async def test_after_a_restart_the_run_goes_on_in_its_thread_without_reposting(
    model_server, tmp_path
):
    model_server.chunk_delay = 0.05
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Backrooms")
        channel = fake.add_text_channel(guild, "relay")
        where = {"fake": fake, "guild": guild, "channel": channel, "DISCORD_STREAMING": "false"}
        async with discord_world(model_server, tmp_path, **where) as w:
            await w.followup_text(
                await w.command("start", {"models": "opus gpt4o", "max_turns": 3})
            )
            thread = await w.thread_of(1)
            await until(lambda: len(executes(w, thread)) >= 2)
        # Leaving the block paused the run, as a SIGTERM does; a new process picks it up.
        async with discord_world(model_server, tmp_path, **where) as again:
            record = await again.run_ended(1, seconds=30)
            posts = executes(again, thread)
            replies = await again.rt.archive.replies(1)
            starters = [m for m in fake.messages(channel) if "Backrooms run 1" in m["content"]]
            closing = fake.messages(thread)
    assert record.end.reason == "max_turns"
    assert [c.json["content"] for c in posts] == [r.text for r in replies]  # once each, in order
    assert len(starters) == 1
    assert any("paused" in m["content"] for m in closing)


async def test_in_a_forum_a_run_is_a_new_post(model_server, tmp_path):
    async with discord_world(model_server, tmp_path, DISCORD_STREAMING="false") as w:
        forum = w.fake.add_forum_channel(w.guild, "runs")
        await asyncio.sleep(0.2)  # the CHANNEL_CREATE reaches the bot
        answer = await w.followup_text(
            await w.command("start", {"models": "opus gpt4o", "max_turns": 1}, channel=forum)
        )
        await w.run_ended(1)
        thread = await w.thread_of(1)
        post = w.fake.threads[thread]
        first = w.fake.messages(thread)[0]
    assert answer == f"Run 1 started in <#{thread}>."
    assert post["parent_id"] == str(forum)
    assert "Backrooms run 1" in first["content"]  # the starter is the post's first message
    assert [c.json["username"] for c in executes(w, thread)] == ["Claude 1", "GPT4o 2"]


async def test_resume_after_a_deleted_thread_goes_on_in_a_new_thread(model_server, tmp_path):
    model_server.chunk_delay = 0.05
    async with discord_world(model_server, tmp_path, DISCORD_STREAMING="false") as w:
        await w.followup_text(await w.command("start", {"models": "opus gpt4o", "max_turns": 2}))
        old = await w.thread_of(1)
        await until(lambda: len(executes(w, old)) >= 1)
        w.fake.delete_thread(old)
        await w.run_ended(1)
        answer = await w.followup_text(await w.command("resume", {"run": 1}))
        record = await w.run_ended(1)
        new = await w.thread_of(1)
        replies = await w.rt.archive.replies(1)
        shown_new = [c.json["content"] for c in executes(w, new)]
    assert new != old and answer == f"Run 1 goes on in <#{new}>."
    assert record.end.reason == "max_turns" and len(replies) == 4
    assert shown_new[-1] == replies[-1].text


async def test_starter_and_closing_lines_link_to_the_run_page(model_server, tmp_path):
    url = "https://relay.example.org"
    async with discord_world(model_server, tmp_path, BACKROOMS_PUBLIC_URL=url) as w:
        await w.followup_text(await w.command("start", {"models": "opus gpt4o", "max_turns": 1}))
        await w.run_ended(1)
        thread = await w.thread_of(1)
        await until(lambda: "Transcript" in w.fake.messages(thread)[-1]["content"])
        starter = next(m for m in w.fake.messages(w.channel) if "Backrooms run 1" in m["content"])
        closing = w.fake.messages(thread)[-1]["content"]
    assert f"{url}/runs/1" in starter["content"]
    assert closing.endswith(f"Transcript: {url}/runs/1")


async def test_the_closing_line_says_the_cost_and_a_reply_cut_at_max_tokens_is_marked(
    model_server, tmp_path
):
    model_server.queue_reply(OPUS, "half a thou", stop_reason="max_tokens", input_tokens=1000,
                             output_tokens=250)  # fmt: skip
    model_server.queue_reply(OPUS, "whole", input_tokens=1000, output_tokens=250)
    async with discord_world(model_server, tmp_path) as w:
        await w.followup_text(await w.command("start", {"models": "opus opus", "max_turns": 1}))
        await w.run_ended(1)
        thread = await w.thread_of(1)
        await until(lambda: "Cost" in w.fake.messages(thread)[-1]["content"])
        shown = [m["content"] for m in w.fake.messages(thread) if m.get("webhook_id")]
        closing = w.fake.messages(thread)[-1]["content"]
    assert shown == [f"half a thou\n\n{messages.REPLY_CUT_OFF}", "whole"]
    # 2 x (1000 in at $4 + 250 out at $20 per million tokens)
    assert (
        closing == "Run 1: Reached maximum number of turns (1). Conversation ended. Cost: $0.0180."
    )


def test_the_discord_package_has_no_import_cycle():
    """Every import between bot/discord/'s modules counts, those under TYPE_CHECKING too."""
    package = Path(bot.discord.__file__).parent
    graph = {path.stem: _sibling_imports(path) for path in package.glob("*.py")}
    order = graphlib.TopologicalSorter(graph)
    order.prepare()  # raises CycleError naming the cycle
    assert graph["commands"] and "surface" not in graph["commands"]


def _sibling_imports(path: Path) -> set[str]:
    """Modules of the same package that `path` imports: `from . import x`, `from .x import y`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("bot.discord.")
        ):
            found.add(node.module.split(".")[2])
    return {name.split(".")[0] for name in found} - {"__init__"}


def test_building_the_surface_leaves_discord_py_pointed_where_it_was(tmp_path):
    """Only the composition root points discord.py elsewhere (bot.discord.point_discord_py_at)."""
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    settings = Settings.from_mapping(
        {
            "BACKROOMS_DB": str(tmp_path / "b.db"),
            "DISCORD_TOKEN": "fake.token",
            "DISCORD_API_BASE_URL": "http://127.0.0.1:9/api/v10",
            "DISCORD_GATEWAY_URL": "ws://127.0.0.1:9/gateway",
        }
    )
    bot.discord.DiscordSurface(settings)
    after = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    assert after == before

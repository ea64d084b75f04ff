"""The Slack relay end to end: the real bolt app and slack_sdk against the Slack emulator in
tests/fakes, the real engine against the fake model server. Assertions are on the wire."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from backrooms_engine.errors import ConfigError
from backrooms_engine.records import RunSpec
from backrooms_engine.store import SqliteStore
from bot import costs, messages
from bot.runtime import open_runtime
from bot.settings import Settings
from bot.slack import SlackSurface
from bot.slack.replay import ReplayGuard
from bot.slack.surface import NEEDED_SCOPES, connection_mode
from bot.text import SLACK_LIMIT
from tests.bot.slack_harness import CLAUDE_ICON, STEP, free_port, run_id_of, serving, slack_env
from tests.fakes.slack_server import GENERAL_CHANNEL_ID as GENERAL
from tests.fakes.slack_server import TEAM_ID, USER_ID, FakeSlack, sign_request, slash_command_form

CLAUDE, GPT = "claude-opus-5-5", "gpt-4o-2024-08-06"  # the fake model server's model keys
ADMIN, OTHER = "U0TESTADM1", "U0TESTOTH1"
NAMES = {ADMIN: "admin", OTHER: "other"}
SECRET = "fake-signing-secret"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        for user_id, name in NAMES.items():
            server.add_user(user_id, name)
        yield server


def has_stop_button(message: dict) -> bool:
    return any(b["type"] == "actions" for b in message["blocks"] or [])


COST = re.compile(r" Cost: [^.]*\.\d+\.$")  # the closing line's last sentence


def replies(thread: list[dict], *, cost: bool = False) -> list[tuple[str | None, str]]:
    """(username, text) of each thread message; the closing line without its cost unless asked
    (the tests that are about the cost say it in full)."""
    return [(m["username"], m["text"] if cost else COST.sub("", m["text"])) for m in thread]


# --------------------------------------------------------------------------- a run in a thread


async def test_root_message_then_each_reply_in_its_thread_as_its_model(
    model_server, fake, tmp_path
):
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        assert await svc.command("start opus gpt4o cli 2") is None  # a bare ack: no error
        await fake.wait_for(lambda: fake.messages(GENERAL), STEP)
        [root] = fake.messages(GENERAL)
        assert root["text"].splitlines() == [
            "*Backrooms run 1*: Claude 1 (`opus`), GPT4o 2 (`gpt4o`)",
            "Template `cli`, up to 2 turns. Started by tester.",
            "Press *Stop* below or type `/backrooms stop 1` to end it.",
        ]
        [button] = root["blocks"][1]["elements"]
        assert (button["action_id"], button["value"]) == ("stop_run", "1")
        assert root["unfurl_links"] is False

        end = await svc.wait_end(1)
        assert end.reason == "max_turns"
        thread = fake.thread(GENERAL, root["ts"])
        cost = costs.cost_text(await svc.rt.archive.get_run(1))
        assert cost.startswith("at least $0.0")  # Claude's part; OpenAI's cache use untold
        assert replies(thread, cost=True) == [
            ("Claude 1", f"{CLAUDE} reply 1"),
            ("GPT4o 2", f"{GPT} reply 1"),
            ("Claude 1", f"{CLAUDE} reply 2"),
            ("GPT4o 2", f"{GPT} reply 2"),
            # Claude's replies are priced; the fake's OpenAI replies report no cached tokens.
            (
                None,
                f"Run 1: Reached maximum number of turns (2). Conversation ended. Cost: {cost}.",
            ),
        ]
        assert [m["icon_url"] for m in thread[:2]] == [CLAUDE_ICON, None]
        assert all(m["unfurl_links"] is False and m["unfurl_media"] is False for m in thread)
        stored = await svc.rt.surface_state.posts(1, "slack")
        assert list(stored.values()) == [m["ts"] for m in thread[:4]]

    [root] = fake.messages(GENERAL)
    assert not has_stop_button(root)
    assert root["text"].endswith(
        f"*Run 1: Reached maximum number of turns (2). Conversation ended. Cost: {cost}.*"
    )
    assert "Press *Stop*" not in root["text"]
    assert [a.latency < 1.0 for a in fake.acks] == [True]


async def test_long_reply_is_split_with_its_code_block_closed_and_reopened(
    model_server, fake, tmp_path
):
    lines = [f"{i:04d} " + "#" * 45 for i in range(160)]  # about 8,000 characters of output
    text = "```\n" + "\n".join(lines) + "\n```"
    model_server.queue_reply(CLAUDE, text)
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        run_id = await svc.start("opus gpt4o cli 1")
        await svc.wait_end(run_id)
        parts = [m["text"] for m in svc.thread(svc.root(run_id)) if m["username"] == "Claude 1"]
        [stored, _] = await svc.rt.archive.replies(run_id)
        assert stored.text == text  # stored exactly
        assert len(await svc.rt.surface_state.posts(run_id, "slack")) == len(parts) + 1
    assert len(parts) >= 3
    for part in parts:
        assert len(part) <= SLACK_LIMIT
        assert part.startswith("```") and part.rstrip().endswith("```")
    shown = [line for part in parts for line in part.splitlines() if not line.startswith("```")]
    assert shown == lines


async def test_mentions_are_escaped_terminal_output_fenced_and_ctrl_c_names_the_actor(
    model_server, fake, tmp_path
):
    mentions = "Hello <!channel> and <!here>, meet <@U123> & <#C999>."
    terminal = "guest@openai:~$ ls -l\ntotal 8\ndrwxr-xr-x 2 guest guest 4096 <home>\n^C^C"
    model_server.queue_reply(CLAUDE, mentions)
    model_server.queue_reply(GPT, terminal)
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        run_id = await svc.start("opus gpt4o cli")
        end = await svc.wait_end(run_id)
        assert (end.reason, end.actor) == ("ctrl_c", "GPT4o 2")
        assert [r.text for r in await svc.rt.archive.replies(run_id)] == [mentions, terminal]
        thread = svc.thread(svc.root(run_id))
    assert replies(thread) == [
        (
            "Claude 1",
            "Hello &lt;!channel&gt; and &lt;!here&gt;, meet &lt;@U123&gt; &amp; &lt;#C999&gt;.",
        ),
        (
            "GPT4o 2",
            "```\nguest@openai:~$ ls -l\ntotal 8\ndrwxr-xr-x 2 guest guest 4096 &lt;home&gt;\n```\n^C^C",
        ),
        (None, "Run 1: GPT4o 2 has ended the conversation with ^C^C."),
    ]
    root = svc.root(run_id)
    assert re.search(
        r"\*Run 1: GPT4o 2 has ended the conversation with \^C\^C\. Cost: .+\*$", root["text"]
    )
    assert not has_stop_button(root)


async def test_streaming_edits_the_reply_message_and_posts_each_part_once(
    model_server, fake, tmp_path
):
    model_server.chunk_delay = 0.02
    env = slack_env(model_server, fake, tmp_path, SLACK_STREAMING="true")
    async with serving(env, fake) as svc:
        run_id = await svc.start("opus gpt4o cli 1")
        await svc.wait_end(run_id)
        thread = svc.thread(svc.root(run_id))
    assert replies(thread)[:2] == [("Claude 1", f"{CLAUDE} reply 1"), ("GPT4o 2", f"{GPT} reply 1")]
    for message in thread[:2]:
        assert message["edits"], "posted while streaming, then set to the final text"
        assert message["edits"][0]["text"] != message["text"]


async def test_a_reply_cut_at_max_tokens_is_marked_and_the_cost_closes_the_thread(
    model_server, fake, tmp_path
):
    model_server.queue_reply(CLAUDE, "half a", stop_reason="max_tokens", input_tokens=1000,
                             output_tokens=250)  # fmt: skip
    model_server.queue_reply(CLAUDE, "whole", input_tokens=1000, output_tokens=250)
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        await svc.command("start opus opus cli 1")
        await fake.wait_for(lambda: fake.messages(GENERAL), STEP)
        [root] = fake.messages(GENERAL)
        await svc.wait_end(1)
        thread = fake.thread(GENERAL, root["ts"])
    assert [text for _, text in replies(thread, cost=True)] == [
        f"half a\n\n{messages.REPLY_CUT_OFF}",
        "whole",
        "Run 1: Reached maximum number of turns (1). Conversation ended. Cost: $0.0180.",
    ]


async def test_a_reply_cut_short_while_streaming_is_marked(model_server, fake, tmp_path):
    model_server.chunk_delay = 0.4
    env = slack_env(model_server, fake, tmp_path, SLACK_STREAMING="true")
    async with serving(env, fake) as svc:
        run_id = await svc.start("opus gpt4o cli")
        root = svc.root(run_id)
        await fake.wait_for(lambda: svc.thread(root), STEP, "the streamed first message")
        await svc.command(f"stop {run_id}")
        await svc.wait_end(run_id)
        assert await svc.rt.archive.replies(run_id) == []
    [partial, closing] = svc.thread(root)
    assert partial["text"].endswith("_(cut off: the run ended here)_")
    assert closing["text"].startswith("Run 1: Conversation stopped by tester")


# --------------------------------------------------------------------------- stopping


async def test_stop_button_refuses_others_and_stops_for_the_starter(model_server, fake, tmp_path):
    model_server.chunk_delay = 0.1
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        run_id = await svc.start("opus gpt4o cli")
        envelope = await fake.send_block_action(
            "stop_run", str(run_id), user_id=OTHER, user_name="other"
        )
        assert await fake.wait_ack(envelope, STEP) is None
        refusal = await svc.wait_ephemeral("Only the person who started run 1")
        assert "SLACK_ADMINS" in refusal
        assert svc.rt.manager.get(run_id) is not None

        envelope = await fake.send_block_action("stop_run", str(run_id), user_id=USER_ID)
        await fake.wait_ack(envelope, STEP)
        end = await svc.wait_end(run_id)
    assert (end.reason, end.by) == ("stopped", "tester")
    root = svc.root(run_id)
    assert not has_stop_button(root)
    assert "*Run 1: Conversation stopped by tester after" in root["text"]


async def test_slash_stop_needs_the_starter_or_an_admin(model_server, fake, tmp_path):
    model_server.chunk_delay = 0.1
    env = slack_env(model_server, fake, tmp_path, SLACK_ADMINS=ADMIN)
    async with serving(env, fake) as svc:
        run_id = await svc.start("opus gpt4o cli")
        assert await svc.command(f"stop {run_id}", user=OTHER, name="other") is None
        await svc.wait_ephemeral("Only the person who started run 1")
        assert svc.rt.manager.get(run_id) is not None

        await svc.command("stop", user=ADMIN, name="admin")  # the one run in this channel
        end = await svc.wait_end(run_id)
        await svc.wait_ephemeral("run 1: Conversation stopped by admin")
    assert (end.reason, end.by) == ("stopped", "admin")


async def test_a_vanished_channel_ends_the_run_as_gone(model_server, fake, tmp_path):
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        run_id = await svc.start("opus gpt4o cli")
        fake.fail_next("chat.postMessage", "channel_not_found")
        end = await svc.wait_end(run_id)
        assert (end.reason, end.detail) == (
            "gone",
            "its Slack channel was deleted or is no longer visible to the bot",
        )
        run = await svc.rt.archive.get_run(run_id)
    assert run.end is not None and run.end.reason == "gone"
    assert "/backrooms resume 1" in svc.root(run_id)["text"]


# --------------------------------------------------------------------------- limits and faults


async def test_posts_in_one_channel_are_paced_across_runs(model_server, fake, tmp_path):
    fake.enforce_channel_rate = True
    fake.min_interval = 0.3
    env = slack_env(model_server, fake, tmp_path)
    async with serving(env, fake, post_interval=0.3) as svc:
        for _ in range(3):
            await svc.command("start opus gpt4o cli 1")
        await fake.wait_for(lambda: len(fake.messages(GENERAL)) == 3, STEP)
        for run_id in (1, 2, 3):
            await svc.wait_end(run_id)
    assert fake.rate_limited == 0
    posts = [c.at for c in fake.calls_to("chat.postMessage")]
    assert len(posts) == 12  # three roots, six replies, three closing lines
    assert min(b - a for a, b in itertools.pairwise(posts)) >= 0.3
    for root in fake.messages(GENERAL):
        assert [u for u, _ in replies(fake.thread(GENERAL, root["ts"]))] == [
            "Claude 1",
            "GPT4o 2",
            None,
        ]


async def test_a_429_is_retried_after_retry_after_and_nothing_is_lost(model_server, fake, tmp_path):
    model_server.first_byte_delay = 0.2
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        run_id = await svc.start("opus gpt4o cli 1")
        fake.fail_next("chat.postMessage", status=429, retry_after=1)  # the first reply's post
        await svc.wait_end(run_id)
        thread = svc.thread(svc.root(run_id))
    limited = [c for c in fake.calls_to("chat.postMessage") if c.status == 429]
    assert len(limited) == 1
    retried = next(c for c in fake.calls_to("chat.postMessage") if c.at > limited[0].at)
    assert retried.at - limited[0].at >= 1.0
    assert replies(thread) == [
        ("Claude 1", f"{CLAUDE} reply 1"),
        ("GPT4o 2", f"{GPT} reply 1"),
        (None, "Run 1: Reached maximum number of turns (1). Conversation ended."),
    ]


async def test_not_in_channel_asks_for_an_invite_and_leaves_no_run(model_server, fake, tmp_path):
    random = fake.add_channel("random", member=False)
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        assert await svc.command("start opus gpt4o cli", channel=random) is None
        text = await svc.wait_ephemeral("/invite @backrooms")
        await svc.wait_end(1)
        assert await svc.rt.transcript.running_runs() == []
        [run] = await svc.rt.archive.list_runs()
    assert "not in this channel" in text
    assert run.end is not None and run.end.reason == "error"
    assert fake.messages(random) == []


async def test_a_missing_scope_is_named(model_server, fake, tmp_path):
    fake.scopes.discard("chat:write")
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        await svc.command("start opus gpt4o cli")
        text = await svc.wait_ephemeral("scope")
        await svc.wait_end(1)
        assert await svc.rt.transcript.running_runs() == []
    assert "`chat:write`" in text


async def test_start_errors_are_ephemeral_and_start_nothing(model_server, fake, tmp_path):
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        await svc.command("start opus nosuchmodel")
        text = await svc.wait_ephemeral("Cannot start")
        assert "nosuchmodel" in text
        await svc.command("start opus gpt4o cli 500")
        await svc.wait_ephemeral("BACKROOMS_CHAT_MAX_TURNS")
        assert await svc.rt.archive.list_runs() == []
    assert fake.messages(GENERAL) == []


# --------------------------------------------------------------------------- HTTP mode


async def test_http_mode_takes_signed_commands_and_rejects_bad_or_stale_ones(
    model_server, fake, tmp_path
):
    env = slack_env(model_server, fake, tmp_path, SLACK_SIGNING_SECRET=SECRET)
    env.pop("SLACK_APP_TOKEN")
    env["SLACK_HTTP_PORT"] = str(free_port())
    async with serving(env, fake) as svc, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{svc.surface.http_port}/slack/events"

        async def post(secret: str, age: int = 0) -> int:
            hook = fake.response_url("commands", channel_id=GENERAL, user_id=USER_ID)
            body = slash_command_form(text="start opus gpt4o cli 1", response_url=hook)
            headers = sign_request(secret, body, int(time.time()) - age)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            async with http.post(url, data=body, headers=headers) as response:
                return response.status

        assert await post("not-the-secret") == 401
        assert await post(SECRET, age=600) == 401
        assert fake.messages(GENERAL) == []
        started = time.monotonic()
        assert await post(SECRET) == 200
        assert time.monotonic() - started < 3.0
        await fake.wait_for(lambda: fake.messages(GENERAL), STEP)
        assert (await svc.wait_end(1)).reason == "max_turns"
    assert fake.socket_connections == 0


async def test_http_mode_refuses_commands_politely_once_shutting_down(model_server, fake, tmp_path):
    env = slack_env(model_server, fake, tmp_path, SLACK_SIGNING_SECRET=SECRET)
    env.pop("SLACK_APP_TOKEN")
    env["SLACK_HTTP_PORT"] = str(free_port())
    async with serving(env, fake) as svc, aiohttp.ClientSession() as http:
        await svc.surface.stop_accepting()
        hook = fake.response_url("commands", channel_id=GENERAL, user_id=USER_ID)
        body = slash_command_form(text="start opus gpt4o cli 1", response_url=hook)
        headers = sign_request(SECRET, body, int(time.time()))
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        url = f"http://127.0.0.1:{svc.surface.http_port}/slack/events"
        async with http.post(url, data=body, headers=headers) as response:
            assert response.status == 200
            assert "restarting" in await response.text()
    assert fake.messages(GENERAL) == []


async def test_http_mode_ignores_a_replayed_signed_start(model_server, fake, tmp_path):
    """An attacker who captured one signed `/backrooms start` sends it again within Slack's
    five minutes: the signature still verifies, but only the first one starts a run."""
    env = slack_env(model_server, fake, tmp_path, SLACK_SIGNING_SECRET=SECRET)
    env.pop("SLACK_APP_TOKEN")
    env["SLACK_HTTP_PORT"] = str(free_port())
    async with serving(env, fake) as svc, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{svc.surface.http_port}/slack/events"

        def signed(trigger: str) -> tuple[str, dict[str, str]]:
            hook = fake.response_url("commands", channel_id=GENERAL, user_id=USER_ID)
            body = slash_command_form(
                text="start opus gpt4o cli 1", response_url=hook, trigger_id=trigger
            )
            headers = sign_request(SECRET, body, int(time.time()))
            return body, {**headers, "Content-Type": "application/x-www-form-urlencoded"}

        async def post(body: str, headers: dict[str, str]) -> tuple[int, str]:
            async with http.post(url, data=body, headers=headers) as response:
                return response.status, await response.text()

        captured = signed("1000000001.1000000001.first")
        assert (await post(*captured))[0] == 200
        assert await post(*captured) == (200, "")  # answered, harmlessly
        # The command is acknowledged first and the run created after: wait for its root.
        await fake.wait_for(lambda: len(fake.messages(GENERAL)) == 1, STEP, "the first root")
        assert (await svc.wait_end(1)).reason == "max_turns"
        assert await post(*captured) == (200, "")  # and again, after the run ended
        # A new command (its own trigger id, so its own signature) still starts a run, and it is
        # run 2: no run was ever made for the replays.
        assert (await post(*signed("1000000002.1000000002.second")))[0] == 200
        await fake.wait_for(lambda: len(fake.messages(GENERAL)) == 2, STEP, "a second root")
        assert (await svc.wait_end(2)).reason == "max_turns"
        assert [r.id for r in await svc.rt.archive.list_runs()] == [2, 1]
    roots = fake.messages(GENERAL)
    assert [run_id_of(root) for root in roots] == [1, 2]
    for root in roots:
        thread = fake.thread(GENERAL, root["ts"])
        assert [m["username"] for m in thread] == ["Claude 1", "GPT4o 2", None]


def test_the_replay_memory_forgets_what_slack_would_refuse_anyway():
    now = [1_700_000_000.0]
    guard = ReplayGuard(clock=lambda: now[0], most=3)
    stamp = str(int(now[0]))
    assert guard.first_time("v0=a", stamp) and not guard.first_time("v0=a", stamp)
    now[0] += 299
    assert not guard.first_time("v0=a", stamp)  # still inside the five minutes
    now[0] += 2  # now bolt refuses the timestamp itself, so the memory lets it go
    assert guard.first_time("v0=a", stamp)
    for name in "bcde":  # and it never holds more than its bound
        assert guard.first_time(f"v0={name}", str(int(now[0])))
    assert guard.first_time("v0=b", str(int(now[0])))  # the oldest went first


def test_missing_tokens_are_named():
    def mode(**env: str) -> str:
        return connection_mode(Settings.from_mapping(env).slack)

    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        mode()
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
        mode(SLACK_BOT_TOKEN="xoxb-1")
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        mode(SLACK_BOT_TOKEN="xoxb-1", SLACK_HTTP_PORT="3000")
    assert mode(SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xapp-1") == "socket"
    assert (
        mode(SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s", SLACK_HTTP_PORT="3000") == "http"
    )


async def test_refused_tokens_fail_the_start_naming_the_variable(model_server, fake, tmp_path):
    for name, bad in (("SLACK_BOT_TOKEN", "xoxb-wrong"), ("SLACK_APP_TOKEN", "xapp-wrong")):
        settings = Settings.from_mapping(slack_env(model_server, fake, tmp_path, **{name: bad}))
        async with open_runtime(settings) as rt:
            with pytest.raises(ConfigError, match=name):
                await asyncio.wait_for(SlackSurface(settings).start(rt), STEP)
    assert fake.socket_connections == 0


def test_the_manifest_asks_for_the_command_and_every_scope_a_run_needs():
    manifest = (Path(__file__).parents[2] / "slack-manifest.yml").read_text(encoding="utf-8")
    assert "- command: /backrooms" in manifest
    for scope in NEEDED_SCOPES:
        assert f"- {scope} " in manifest
    assert "socket_mode_enabled: true" in manifest


# --------------------------------------------------------------------------- restarts


async def test_after_a_restart_the_run_goes_on_in_its_thread_without_reposting(
    model_server, fake, tmp_path
):
    model_server.chunk_delay = 0.03
    env = slack_env(model_server, fake, tmp_path)
    async with serving(env, fake) as svc:
        run_id = await svc.start("opus gpt4o cli 3")
        root = svc.root(run_id)
        await fake.wait_for(lambda: len(svc.thread(root)) >= 3, STEP, "three replies")
    # Paused (as on SIGTERM), then the delivery cursor is lost as in a crash between a post and
    # its bookkeeping: the restart replays every stored reply, and none may be posted again.
    async with await SqliteStore.open(tmp_path / "backrooms.db") as store:
        assert (await store.get_run(run_id)).status == "running"
        assert store.leases is not None
        await store.leases.claim(run_id)  # a driver writes only for a run it holds
        await store.mark_delivered(run_id, "slack", 0)
        await store.leases.release(run_id)
    posted_before = len(svc.thread(root))

    async with serving(env, fake, resume=True) as svc:
        end = await svc.wait_end(run_id)
        stored = await svc.rt.archive.replies(run_id)
    assert end.reason == "max_turns"
    thread = svc.thread(root)
    assert posted_before >= 3
    assert replies(thread) == [
        *[(("Claude 1", "GPT4o 2")[r.position], r.text) for r in stored],
        (None, "Run 1: Reached maximum number of turns (3). Conversation ended."),
    ]
    assert len(fake.messages(GENERAL)) == 1


async def test_resume_gives_an_ended_run_more_turns_in_the_same_thread(
    model_server, fake, tmp_path
):
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        run_id = await svc.start("opus gpt4o cli 1")
        await svc.wait_end(run_id)
        assert await svc.command(f"resume {run_id} 1") is None
        await fake.wait_for(lambda: len(svc.thread(svc.root(run_id))) == 6, STEP)
        end = await svc.wait_end(run_id)
    assert (end.reason, end.max_turns) == ("max_turns", 2)
    root = svc.root(run_id)
    assert [u for u, _ in replies(svc.thread(root))] == [
        "Claude 1",
        "GPT4o 2",
        None,
        "Claude 1",
        "GPT4o 2",
        None,
    ]
    assert any(has_stop_button(e) for e in root["edits"])  # the button came back meanwhile
    assert not has_stop_button(root) and "up to 2 turns" in root["text"]


# --------------------------------------------------------------------------- the other commands


async def test_help_models_templates_list_and_restart_answers(model_server, fake, tmp_path):
    model_server.chunk_delay = 0.1
    async with serving(slack_env(model_server, fake, tmp_path), fake) as svc:
        assert "*/backrooms start*" in (await svc.command("help"))["text"]
        assert "*/backrooms start*" in (await svc.command(""))["text"]
        assert "don't know" in (await svc.command("frobnicate"))["text"]
        assert "`opus`" in (await svc.command("models"))["text"]
        await svc.command("templates")
        await svc.wait_ephemeral("`cli` (2)")
        run_id = await svc.start("opus gpt4o cli")
        await svc.command("list")
        listing = await svc.wait_ephemeral(f"run {run_id}:")
        assert "https://backrooms-test.slack.com/archives/C0TEST0001/p1700000000000100" in listing
        await svc.surface.stop_accepting()
        # Socket Mode is handed back at once, so that commands reach another copy (a rolling
        # deploy); one that still reaches this copy is refused politely (see the HTTP mode test).
        assert fake.open_sockets == 0
    assert all(not a.late for a in fake.acks)


# --------------------------------------------------------------------------- durable delivery


def long_reply(api: str, body: dict) -> str:
    """About 5,000 characters: two Slack messages a reply, produced at once."""
    return f"{body.get('model', 'world')} at {len(body.get('messages', []))}: " + "word " * 1000


def marked(thread: list[dict]) -> list[tuple[int, int]]:
    """(reply, part) of every reply part in a thread, in the order they appear."""
    out = []
    for m in thread:
        meta = m.get("metadata") or {}
        if meta.get("event_type") == "backrooms_part":
            out.append((meta["event_payload"]["reply"], meta["event_payload"]["part"]))
    return out


def closing_lines(thread: list[dict]) -> list[str]:
    return [m["text"] for m in thread if m["username"] is None]


def shown_replies(thread: list[dict]) -> int:
    """Replies whose last part (part 1 of a two-part reply) is in the thread."""
    return sum(1 for _, part in marked(thread) if part == 1)


async def test_three_lagging_runs_show_every_part_once_in_order_and_never_run_ahead(
    model_server, fake, tmp_path
):
    model_server.set_responder(long_reply)
    env = slack_env(model_server, fake, tmp_path)
    worst = 0
    async with serving(env, fake, post_interval=0.1) as svc:
        ids = [await svc.start("opus gpt4o cli 3") for _ in range(3)]
        roots = [svc.root(r) for r in ids]

        async def lag() -> int:
            behind = []
            for run_id, root in zip(ids, roots, strict=True):
                committed = len(await svc.rt.archive.replies(run_id))
                behind.append(committed - shown_replies(svc.thread(root)))
            return max(behind)

        ended = asyncio.gather(*(svc.wait_end(r) for r in ids))
        while not ended.done():
            worst = max(worst, await lag())
            await asyncio.sleep(0.05)
        await ended
    for index, root in enumerate(roots):
        thread = svc.thread(root)
        assert marked(thread) == [(seq, part) for seq in range(6) for part in (0, 1)]
        assert closing_lines(thread) == [thread[-1]["text"]]
        assert not has_stop_button(fake.messages(GENERAL)[index])
    # BACKROOMS_CHAT_LAG=1: reply N is asked for once N-1 is being shown; N's commit may land
    # while N-1's parts are still going out, so at most two replies are ever unseen.
    assert worst <= 2


async def test_a_stop_is_answered_at_once_and_ends_the_posting_with_the_outcome(
    model_server, fake, tmp_path
):
    model_server.set_responder(long_reply)
    async with serving(slack_env(model_server, fake, tmp_path), fake, post_interval=0.3) as svc:
        run_id = await svc.start("opus gpt4o cli 10")
        root = svc.root(run_id)
        await fake.wait_for(lambda: shown_replies(svc.thread(root)) >= 2, STEP, "two replies")
        asked = time.monotonic()
        await svc.command(f"stop {run_id}")
        await svc.wait_ephemeral("Conversation stopped by tester")
        answered = time.monotonic() - asked
        requests_at_stop = len(model_server.requests)
        posted_at_stop = len(svc.thread(root))
        await svc.wait_end(run_id)
        stored = await svc.rt.archive.replies(run_id)
    assert answered < 3.0
    assert len(model_server.requests) == requests_at_stop  # no model request after the stop
    thread = svc.thread(root)
    assert marked(thread) == [(r.seq, part) for r in stored for part in (0, 1)]
    assert len(thread) - posted_at_stop <= 2 * 2 + 1  # at most LAG + 1 replies, then the end
    assert closing_lines(thread) == [thread[-1]["text"]]
    assert thread[-1]["text"].startswith(f"Run {run_id}: Conversation stopped by tester")
    assert not has_stop_button(svc.root(run_id))


async def test_a_shutdown_leaves_the_rest_of_an_ended_run_to_the_next_start(
    model_server, fake, tmp_path
):
    model_server.set_responder(long_reply)
    env = slack_env(model_server, fake, tmp_path, BACKROOMS_SHUTDOWN_DEADLINE="0")
    async with serving(env, fake, post_interval=0.4) as svc:
        run_id = await svc.start("opus gpt4o cli 2")
        root = svc.root(run_id)
        async with asyncio.timeout(STEP):
            while (await svc.rt.archive.get_run(run_id)).end is None:  # noqa: ASYNC110 (the store)
                await asyncio.sleep(0.02)
    # The run ended in the store while its thread was still behind; the shutdown left it so.
    assert closing_lines(svc.thread(root)) == []
    assert has_stop_button(svc.root(run_id))

    async with serving(env, fake, resume=True) as svc:
        end = await svc.wait_end(run_id)
        cost = costs.cost_text(await svc.rt.archive.get_run(run_id))
    thread = svc.thread(root)
    assert marked(thread) == [(seq, part) for seq in range(4) for part in (0, 1)]
    # Shown after the restart, the closing line still says what the stored replies cost.
    assert cost.startswith("at least $0.0")
    assert closing_lines(thread) == [
        f"Run {run_id}: Reached maximum number of turns (2). Conversation ended. Cost: {cost}."
    ]
    assert end.reason == "max_turns" and not has_stop_button(svc.root(run_id))


async def test_slash_stop_ends_a_run_another_process_drives(model_server, fake, tmp_path):
    """The run is driven by a second runtime on the same folder (another process, as after a
    takeover): `/backrooms stop` here asks it through the store, and it ends."""
    model_server.chunk_delay = 0.1
    env = slack_env(model_server, fake, tmp_path, SLACK_ADMINS=ADMIN)
    async with serving(env, fake) as svc:
        async with open_runtime(Settings.from_mapping(env)) as other:
            spec = RunSpec(
                models=("opus", "gpt4o"),
                template="cli",
                max_turns=20,
                started_by="someone",
                surface="slack",
                space=TEAM_ID,
                place=GENERAL,
            )
            handle = await other.manager.start(spec)
            assert svc.rt.manager.get(handle.id) is None  # not driven by the Slack service
            await svc.command("stop", user=ADMIN, name="admin")  # the one run in this channel
            end = await asyncio.wait_for(other.manager.wait(handle.id), STEP)
            answer = await svc.wait_ephemeral(f"run {handle.id}: Conversation stopped by admin")
    assert (end.reason, end.by) == ("stopped", "admin")
    assert "No run" not in answer
    stored = await _stored_end(tmp_path, handle.id)
    assert (stored.reason, stored.by) == ("stopped", "admin")


async def _stored_end(tmp_path: Path, run_id: int):
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        end = (await store.get_run(run_id)).end
    assert end is not None
    return end

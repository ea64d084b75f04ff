"""The real `backrooms slack` process against the Slack emulator, killed (SIGKILL) at the exact
points where a post exists in Slack but not yet in our store: the next process must show every
part exactly once, in order, and give the root message its outcome."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Callable
from typing import Any

import pytest_asyncio

from tests.bot.slack_harness import slack_env
from tests.bot.test_slack import closing_lines, has_stop_button, long_reply, marked
from tests.fakes.slack_server import GENERAL_CHANNEL_ID as GENERAL
from tests.fakes.slack_server import FakeSlack
from tests.helpers import spawn_backrooms, until

LIMIT = 60.0


# The closing line, with the run's cost ("at least": the fake's OpenAI side reports no cache).
ENDED = re.compile(
    r"Run 1: Reached maximum number of turns \(1\)\. Conversation ended\. Cost: (at least )?\$\d+\.\d{4}\."
)


@pytest_asyncio.fixture
async def fake():
    async with FakeSlack() as server:
        yield server


async def start_process(fake: FakeSlack, env: dict[str, str], cwd) -> asyncio.subprocess.Process:
    sockets = fake.socket_connections
    proc = await spawn_backrooms("slack", env=env, cwd=cwd, merge_stderr=True)
    await fake.wait_socket_connected(LIMIT, count=sockets + 1)
    return proc


def kill_when(proc_of: Callable[[], asyncio.subprocess.Process], hit: Callable[[dict], bool]):
    """An on_post hook that SIGKILLs the bot the first time `hit(message)` holds: Slack has the
    message, the bot never hears the answer, so its ts is never recorded."""
    fired = False

    def on_post(message: dict[str, Any]) -> None:
        nonlocal fired
        if not fired and hit(message):
            fired = True
            os.kill(proc_of().pid, signal.SIGKILL)

    return on_post


def event(message: dict) -> tuple[str | None, dict]:
    meta = message.get("metadata") or {}
    return meta.get("event_type"), meta.get("event_payload") or {}


async def crash_then_finish(fake: FakeSlack, env: dict[str, str], tmp_path, hit) -> str:
    """Start a run, kill the bot when `hit`, start it again, wait for the closing line; the
    root's ts."""
    first = await start_process(fake, env, tmp_path)
    fake.on_post = kill_when(lambda: first, hit)
    await fake.send_slash_command(text="start opus gpt4o cli 1")
    await asyncio.wait_for(first.wait(), LIMIT)
    assert first.returncode == -signal.SIGKILL
    fake.on_post = None

    second = await start_process(fake, env, tmp_path)
    try:
        await until(lambda: len(fake.messages(GENERAL)) == 1, LIMIT, "the root")
        root = fake.messages(GENERAL)[0]["ts"]
        await until(lambda: closing_lines(fake.thread(GENERAL, root)), LIMIT, "the closing line")
        await until(lambda: not has_stop_button(fake.messages(GENERAL)[0]), LIMIT, "the outcome")
    finally:
        second.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(second.communicate(), LIMIT)
    assert second.returncode == 0, out.decode()[-2000:]
    return root


EVERY_PART = [(seq, part) for seq in range(2) for part in (0, 1)]


async def test_a_kill_between_a_part_landing_and_its_record_does_not_post_it_twice(
    model_server, fake, tmp_path
):
    model_server.set_responder(long_reply)
    env = slack_env(model_server, fake, tmp_path)

    def second_part_of_the_first_reply(message: dict) -> bool:
        kind, payload = event(message)
        return kind == "backrooms_part" and (payload["reply"], payload["part"]) == (0, 1)

    root = await crash_then_finish(fake, env, tmp_path, second_part_of_the_first_reply)
    thread = fake.thread(GENERAL, root)
    assert marked(thread) == EVERY_PART  # the unrecorded part was adopted, not posted again
    closing = closing_lines(thread)
    assert len(closing) == 1 and ENDED.fullmatch(closing[0]), closing
    outcome = fake.messages(GENERAL)[0]["text"].rsplit("\n", 1)[-1]  # the root's last line
    assert ENDED.fullmatch(outcome.strip("*")), outcome


async def test_a_kill_right_after_the_root_message_still_gives_it_its_run_and_outcome(
    model_server, fake, tmp_path
):
    model_server.set_responder(long_reply)
    env = slack_env(model_server, fake, tmp_path)

    def root_message(message: dict) -> bool:
        return event(message)[0] == "backrooms_root"

    root = await crash_then_finish(fake, env, tmp_path, root_message)
    assert len(fake.messages(GENERAL)) == 1  # the same root, found by its mark
    thread = fake.thread(GENERAL, root)
    assert marked(thread) == EVERY_PART
    assert len(closing_lines(thread)) == 1


async def test_a_kill_after_the_closing_line_landed_does_not_post_it_again(
    model_server, fake, tmp_path
):
    model_server.set_responder(long_reply)
    env = slack_env(model_server, fake, tmp_path)

    def closing(message: dict) -> bool:
        return event(message)[0] == "backrooms_closing"

    first = await start_process(fake, env, tmp_path)
    fake.on_post = kill_when(lambda: first, closing)
    await fake.send_slash_command(text="start opus gpt4o cli 1")
    await asyncio.wait_for(first.wait(), LIMIT)
    fake.on_post = None
    root = fake.messages(GENERAL)[0]

    second = await start_process(fake, env, tmp_path)
    try:
        # The root was given its outcome before the closing line went out.
        await until(lambda: fake.calls_to("conversations.replies"), LIMIT, "the thread read")
        await asyncio.sleep(1.5)  # what a repost would need to arrive (one post per second)
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.communicate(), LIMIT)
    thread = fake.thread(GENERAL, root["ts"])
    assert marked(thread) == EVERY_PART
    assert len(closing_lines(thread)) == 1
    assert not has_stop_button(fake.messages(GENERAL)[0])

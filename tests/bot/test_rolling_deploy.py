"""A rolling deploy: the new `backrooms discord` (or `slack`) starts while the old one drives a
run, then the old one gets SIGTERM. It closes its gateway (Socket Mode) first, while it still owes
the chat posts, so the commands sent from then on are answered by the new copy; it posts what it
owes over REST, then releases its run (not paused), which the new copy claims at once, long before
a lease would lapse, and goes on with in the same thread: each reply posted once, in order, the
transcript that of an uninterrupted run. Real processes and signals against the emulators; every
wait is bounded."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from backrooms_engine.store import SqliteStore
from tests.bot.slack_harness import slack_env
from tests.bot.test_slack import closing_lines, has_stop_button, marked
from tests.conftest import fake_env
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import GENERAL_CHANNEL_ID as SLACK_GENERAL
from tests.fakes.slack_server import FakeSlack
from tests.helpers import backrooms, by_message_count, spawn_backrooms, until

LEASE = 60.0  # seconds: long, so a claim within it can only be a released lease
DEADLINE = 20.0  # BACKROOMS_SHUTDOWN_DEADLINE
RESTARTING = "The bot is restarting"
HELD = 8.0  # seconds a rate limit holds a post of the old process back


class Log:
    """A process's merged output, line by line as it comes, each line with when it came."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append((time.monotonic(), line.decode(errors="replace")))

    def when(self, text: str) -> float | None:
        return next((t for t, line in self.lines if text in line), None)

    def index(self, text: str) -> int:
        return next(i for i, (_, line) in enumerate(self.lines) if text in line)

    @property
    def text(self) -> str:
        return "".join(line for _, line in self.lines)

    async def closed(self) -> None:
        await asyncio.wait_for(self._task, 10)


def _env(model_server, tmp_path: Path, fake: FakeDiscord, guild: int) -> dict[str, str]:
    return fake_env(model_server, tmp_path) | {
        "DISCORD_TOKEN": fake.token,
        "DISCORD_API_BASE_URL": fake.rest_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "DISCORD_GUILD_IDS": str(guild),
        "DISCORD_STREAMING": "false",
        "BACKROOMS_LEASE_SECONDS": str(LEASE),
        "BACKROOMS_SHUTDOWN_DEADLINE": str(DEADLINE),
    }


async def _service(env: dict[str, str], cwd: Path) -> Log:
    log = Log(await spawn_backrooms("discord", env=env, cwd=cwd, merge_stderr=True))
    await until(lambda: log.when("discord surface ready") is not None, 60, "a ready service")
    return log


def _ended(fake: FakeDiscord) -> bool:
    return any(
        "Reached maximum number of turns (3)" in m["content"]
        for t in fake.threads
        for m in fake.messages(t)
    )


def _held(fake: FakeDiscord) -> bool:
    return any(c.status == 429 and c.path.startswith("/webhooks/") for c in fake.calls)


def _answers(fake: FakeDiscord, interaction) -> list[str]:
    """Every answer the interaction got, from any process: responses and followups."""
    texts = [
        str((r.data or {}).get("content", "")) for r in fake.interaction_responses(interaction.id)
    ]
    texts += [
        str(c.json.get("content", ""))
        for c in fake.calls
        if c.route == "interaction_followup" and str(interaction.token) in c.path
    ]
    return texts


async def _uninterrupted_texts(
    model_server, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> list[str]:
    """The same conversation run start to end by `backrooms run --lm ARGS`, in a folder of its
    own."""
    calm = tmp_path / "calm"
    calm.mkdir()
    env = (env or {}) | fake_env(model_server, calm)
    code, _, err = await backrooms("run", "--lm", *args, env=env, cwd=calm, limit=90)
    assert code == 0, err
    async with await SqliteStore.open(calm / "backrooms.db", owner=False) as store:
        return [r.text for r in await store.replies(1)]


async def test_a_draining_bot_hands_its_gateway_and_its_run_to_the_new_copy(model_server, tmp_path):
    model_server.set_responder(by_message_count)
    model_server.chunk_delay = 0.05
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Backrooms")
        channel = fake.add_text_channel(guild, "relay")
        env = _env(model_server, tmp_path, fake, guild)
        old = new = None
        try:
            old = await _service(env, tmp_path)
            await fake.send_interaction(
                guild, channel, fake.owner_user_id, "backrooms", "start",
                {"models": "opus gpt4o", "max_turns": 3},
            )  # fmt: skip
            await until(lambda: len(fake.webhook_executes()) >= 2, 60, "two posts")
            model_server.chunk_delay = 2.0  # the third reply is being written meanwhile
            new = await _service(env, tmp_path)
            await until(lambda: len(fake.sockets) == 2, 10, "both gateways connected")
            # The next post is held back by a rate limit: at the SIGTERM the old
            # process still owes the chat replies the store holds.
            fake.fail_next("POST", r"^/webhooks/", 429, retry_after=HELD)
            model_server.chunk_delay = 0.05
            await until(lambda: _held(fake), 60, "a post held back")
            shown_at_term = len(fake.webhook_executes())
            old.proc.send_signal(signal.SIGTERM)
            term = time.monotonic()
            await until(lambda: len(fake.sockets) == 1, 30, "the old gateway closed")
            shown_at_close = len(fake.webhook_executes())
            asked = await fake.send_interaction(
                guild, channel, fake.owner_user_id, "backrooms", "models"
            )
            await until(lambda: bool(_answers(fake, asked)), 30, "an answer to /backrooms models")
            await asyncio.wait_for(old.proc.wait(), DEADLINE + 15)
            await until(lambda: _ended(fake), 60, "the run's end in its thread")
            await until(lambda: new.when("run 1: claimed") is not None, 10, "the claim logged")
            posts = [c.json["content"] for c in fake.webhook_executes()]
            threads = {c.query.get("thread_id") for c in fake.webhook_executes()}
            new.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(new.proc.wait(), DEADLINE + 15)
            await old.closed()
            await new.closed()
        finally:
            for log in (old, new):
                if log is not None and log.proc.returncode is None:
                    log.proc.kill()
                    await log.proc.wait()

    assert old.proc.returncode == 0, old.text[-3000:]
    assert new.proc.returncode == 0, new.text[-3000:]
    # The gateway went first, while the old process still owed the chat posts (which it made
    # over REST, its gateway closed); commands were the new copy's from then on.
    assert shown_at_close == shown_at_term < 6
    assert old.index("gateway closed") < old.index("run 1: Conversation interrupted"), old.text
    answers = _answers(fake, asked)
    assert len(answers) == 1 and RESTARTING not in answers[0], answers
    # Released, not paused: claimed at once, long before the old lease would have lapsed.
    claimed = new.when("run 1: claimed")
    assert claimed is not None and claimed - term < LEASE / 2, new.text[-3000:]
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        run, replies = await store.get_run(1), await store.replies(1)
    assert run.end is not None and run.end.reason == "max_turns"
    assert posts == [r.text for r in replies] and len(posts) == 6  # each once, in order
    assert len(threads) == 1  # all in the run's one thread
    assert [r.text for r in replies] == await _uninterrupted_texts(
        model_server, tmp_path, "opus", "gpt4o", "--max-turns", "3"
    )


def _long_by_count(api: str, body: dict) -> str:
    """Two Slack messages a reply, depending only on the request (see by_message_count)."""
    return by_message_count(api, body) + ": " + "word " * 1000


async def test_a_draining_slack_bot_hands_its_socket_and_its_run_to_the_new_copy(
    model_server, tmp_path
):
    model_server.set_responder(_long_by_count)
    model_server.chunk_delay = 0.05
    async with FakeSlack() as fake:
        env = slack_env(
            model_server,
            fake,
            tmp_path,
            BACKROOMS_LEASE_SECONDS=str(LEASE),
            BACKROOMS_SHUTDOWN_DEADLINE=str(DEADLINE),
        )
        old = new = None

        def parts() -> list[tuple[int, int]]:
            roots = fake.messages(SLACK_GENERAL)
            return marked(fake.thread(SLACK_GENERAL, roots[0]["ts"])) if roots else []

        try:
            old = await _slack_service(fake, env, tmp_path)
            await fake.send_slash_command(text="start opus gpt4o cli 3")
            await until(lambda: len(parts()) >= 2, 60, "the first reply shown")
            model_server.chunk_delay = 2.0  # a reply is being written meanwhile
            new = await _slack_service(fake, env, tmp_path)
            # The next post is held back by a rate limit: at the SIGTERM the old process still
            # owes the thread parts the store holds.
            fake.fail_next("chat.postMessage", status=429, retry_after=int(HELD))
            model_server.chunk_delay = 0.05
            await until(lambda: any(c.status == 429 for c in fake.calls), 60, "a post held")
            shown_at_term = len(parts())
            old.proc.send_signal(signal.SIGTERM)
            term = time.monotonic()
            await until(lambda: fake.open_sockets == 1, 30, "the old socket closed")
            shown_at_close = len(parts())
            await asyncio.wait_for(old.proc.wait(), DEADLINE + 15)
            await until(lambda: len(closing_lines(_thread(fake))) == 1, 60, "the closing line")
            await until(lambda: new.when("run 1: claimed") is not None, 10, "the claim logged")
            new.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(new.proc.wait(), DEADLINE + 15)
            await old.closed()
            await new.closed()
        finally:
            for log in (old, new):
                if log is not None and log.proc.returncode is None:
                    log.proc.kill()
                    await log.proc.wait()
        roots = fake.messages(SLACK_GENERAL)
        thread = _thread(fake)

    assert old.proc.returncode == 0, old.text[-3000:]
    assert new.proc.returncode == 0, new.text[-3000:]
    # Socket Mode went first, while the old process still owed the thread posts.
    assert shown_at_close == shown_at_term < 12
    assert old.index("Socket Mode closed") < old.index("run 1: Conversation interrupted"), old.text
    claimed = new.when("run 1: claimed")
    assert claimed is not None and claimed - term < LEASE / 2, new.text[-3000:]
    assert len(roots) == 1 and not has_stop_button(roots[0])  # one root, given its outcome
    assert marked(thread) == [(seq, part) for seq in range(6) for part in (0, 1)]  # once, in order
    async with await SqliteStore.open(tmp_path / "backrooms.db", owner=False) as store:
        run, replies = await store.get_run(1), await store.replies(1)
    assert run.end is not None and run.end.reason == "max_turns" and len(replies) == 6
    assert [r.text for r in replies] == await _uninterrupted_texts(
        model_server, tmp_path, "opus", "gpt4o", "--max-turns", "3", "--template", "cli",
        env={"BACKROOMS_MODELS": env["BACKROOMS_MODELS"]},
    )  # fmt: skip


def _thread(fake: FakeSlack) -> list[dict]:
    roots = fake.messages(SLACK_GENERAL)
    return fake.thread(SLACK_GENERAL, roots[0]["ts"]) if roots else []


async def _slack_service(fake: FakeSlack, env: dict[str, str], cwd: Path) -> Log:
    sockets = fake.socket_connections
    log = Log(await spawn_backrooms("slack", env=env, cwd=cwd, merge_stderr=True))
    await fake.wait_socket_connected(60, count=sockets + 1)
    await until(lambda: log.when("slack surface ready") is not None, 60, "a ready service")
    return log

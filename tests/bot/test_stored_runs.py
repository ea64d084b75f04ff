"""Stored runs as a user meets them: what the database and the log file hold after a run ends each
way, `backrooms runs`, `show` and `export`, the offline demo with the network disabled, and bad
input (an unknown run, a file that is not a database, paths that cannot be written,
Ctrl-C) answered with clear errors and nothing lost.

Commands run as real subprocesses (as tests/bot/test_cli.py does) against the fake model server,
every one with a bounded timeout."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from backrooms_engine.events import ReplyDelta, ReplyFinished
from backrooms_engine.logfile import transcript_text
from backrooms_engine.records import Reply, RunRecord, RunSpec
from backrooms_engine.store import SqliteStore
from tests.conftest import fake_env
from tests.helpers import RecordingObserver, run_to_end, runtime
from tests.unprivileged import command as unprivileged_command
from tests.unprivileged import give, workspace

OPUS = "claude-opus-5-5"
GPT4O = "gpt-4o-2024-08-06"
ROOT = Path(__file__).resolve().parents[2]
ENTRY = "import sys; from bot.cli import main; sys.exit(main())"
LIMIT = 60.0  # seconds any one command may take
NETWORK_DISABLED = "network disabled in this test"


# --- running the command ------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    code: int
    raw: bytes  # stdout exactly as written
    err: str

    @property
    def out(self) -> str:
        return self.raw.decode("utf-8")


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    # The autouse fixture has already scrubbed keys and proxies from os.environ.
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "OPENAI"))}
    full.update(env)
    return full


async def spawn(
    *args: str, env: Mapping[str, str], cwd: Path, unprivileged: bool = False
) -> asyncio.subprocess.Process:
    """The console script in a child; `unprivileged`: as a user whom file permissions bind, even
    when the tests run as root (tests/unprivileged.py)."""
    argv = [sys.executable, "-c", ENTRY, *args]
    return await asyncio.create_subprocess_exec(
        *(unprivileged_command(argv) if unprivileged else argv),
        env=_child_env(env),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, head: bytes = b"") -> Result:
    """Collect the rest of a child's output (after `head`, already read), within LIMIT."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), LIMIT)
    finally:
        await _reap(proc)
    assert proc.returncode is not None
    return Result(proc.returncode, head + out, err.decode("utf-8", "replace"))


async def _reap(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


@asynccontextmanager
async def running(*args: str, env: Mapping[str, str], cwd: Path):
    """A child that is killed on the way out if the test left it running."""
    proc = await spawn(*args, env=env, cwd=cwd)
    try:
        yield proc
    finally:
        await _reap(proc)


async def backrooms(
    *args: str, env: Mapping[str, str], cwd: Path, unprivileged: bool = False
) -> Result:
    return await finish(await spawn(*args, env=env, cwd=cwd, unprivileged=unprivileged))


async def read_until(
    proc: asyncio.subprocess.Process, needle: bytes, count: int = 1, limit: float = 30
) -> bytes:
    """Read the child's stdout until `needle` has appeared `count` times."""
    assert proc.stdout is not None
    seen = b""
    async with asyncio.timeout(limit):
        while seen.count(needle) < count:
            chunk = await proc.stdout.read(4096)
            if not chunk:
                raise AssertionError(f"output ended before {needle!r} x{count}: {seen!r}")
            seen += chunk
    return seen


# --- reading what was stored --------------------------------------------------------------------


async def stored(db: Path) -> list[tuple[RunRecord, list[Reply]]]:
    """Every run in the database, oldest first, with its replies (read as a viewer)."""
    async with await SqliteStore.open(db, owner=False) as store:
        runs = sorted(await store.list_runs(limit=1000), key=lambda r: r.id)
        return [(run, await store.replies(run.id)) for run in runs]


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.err, result.err
    assert "Traceback" not in result.out


def workdir(tmp_path: Path, name: str = "work") -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


# --- store contents after runs that end each way (in process) ----------------------------------


async def test_a_ctrl_c_run_keeps_every_reply_including_the_last(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_reply(OPUS, "ls", input_tokens=11, output_tokens=1)
    model_server.queue_reply(GPT4O, "bin etc home", input_tokens=13, output_tokens=3)
    model_server.queue_reply(OPUS, "enough for today ^C^C", input_tokens=17, output_tokens=4)
    async with runtime(env) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=10))
        record = await rt.archive.get_run(run_id)
        replies = await rt.archive.replies(run_id)

    assert record.status == "ended" and record.ended_at is not None
    assert record.end == end
    assert (end.reason, end.actor, end.turns) == ("ctrl_c", "Claude 1", 1)
    rows = [(r.seq, r.turn, r.position, r.actor, r.text) for r in replies]
    assert rows == [
        (0, 1, 0, "Claude 1", "ls"),
        (1, 1, 1, "GPT4o 2", "bin etc home"),
        (2, 2, 0, "Claude 1", "enough for today ^C^C"),
    ]
    assert [(r.usage.input_tokens, r.usage.output_tokens) for r in replies] == [
        (11, 1),
        (13, 3),
        (17, 4),
    ]
    assert (record.replies, record.input_tokens, record.output_tokens) == (3, 41, 8)
    assert all(r.started_at <= r.finished_at for r in replies)
    log = Path(record.log_path).read_text(encoding="utf-8")
    assert log.endswith(
        "\n### Claude 1 ###\nenough for today ^C^C\n"
        "\nClaude 1 has ended the conversation with ^C^C.\n"
    )
    assert log == transcript_text(replies, record.end)
    assert len(model_server.requests) == 3  # nobody spoke after ^C^C


async def test_a_max_turns_run_stores_every_turn(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    async with runtime(env) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=2))
        record = await rt.archive.get_run(run_id)
        replies = await rt.archive.replies(run_id)

    assert record.status == "ended"
    assert (end.reason, end.turns, end.max_turns, end.actor, end.by) == (
        "max_turns",
        2,
        2,
        None,
        None,
    )
    assert [(r.turn, r.position, r.actor, r.text) for r in replies] == [
        (1, 0, "Claude 1", f"{OPUS} reply 1"),
        (1, 1, "GPT4o 2", f"{GPT4O} reply 1"),
        (2, 0, "Claude 1", f"{OPUS} reply 2"),
        (2, 1, "GPT4o 2", f"{GPT4O} reply 2"),
    ]
    # The fake counts output tokens as words, and always reports input tokens.
    assert all(r.usage.output_tokens == 3 and r.usage.input_tokens for r in replies)
    assert record.turns == 2
    log = Path(record.log_path).read_text(encoding="utf-8")
    assert log.endswith(
        f"\n{GPT4O} reply 2\n\nReached maximum number of turns (2). Conversation ended.\n"
    )
    assert log == transcript_text(replies, record.end)


async def test_an_error_run_stores_the_reason_and_what_was_said_before(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.queue_reply(OPUS, "hello?", input_tokens=5, output_tokens=1)
    model_server.queue_error(GPT4O, 401)
    async with runtime(env) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=5))
        record = await rt.archive.get_run(run_id)
        replies = await rt.archive.replies(run_id)

    reason = "gpt4o (openai): the API key was refused (401); check OPENAI_API_KEY"
    assert record.status == "ended"
    assert (end.reason, end.detail, end.turns) == ("error", reason, 0)
    assert record.end == end
    assert [(r.turn, r.position, r.actor, r.text) for r in replies] == [
        (1, 0, "Claude 1", "hello?")
    ]
    assert (replies[0].usage.input_tokens, replies[0].usage.output_tokens) == (5, 1)
    assert len(model_server.requests) == 2  # a permanent error is not retried
    log = Path(record.log_path).read_text(encoding="utf-8")
    assert log == f"\n### Claude 1 ###\nhello?\n\nConversation ended by an error: {reason}\n"


class MidReply(RecordingObserver):
    """Records events, and says when reply `seq` has streamed its first text."""

    def __init__(self, seq: int):
        super().__init__()
        self.seq = seq
        self.streaming = asyncio.Event()

    async def handle(self, event) -> None:
        await super().handle(event)
        if isinstance(event, ReplyDelta) and event.seq == self.seq:
            self.streaming.set()


async def test_a_stopped_run_keeps_finished_replies_and_drops_the_cut_one(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.chunk_delay = 0.2
    model_server.queue_reply(OPUS, "one two three four five", input_tokens=3, output_tokens=5)
    model_server.queue_reply(
        GPT4O, "never finished because stopped", input_tokens=4, output_tokens=4
    )
    rec = MidReply(seq=1)
    async with runtime(env) as rt:
        handle = await rt.manager.start(RunSpec(models=("opus", "gpt4o")), [rec])
        await asyncio.wait_for(rec.streaming.wait(), 20)  # GPT4o 2 is mid-reply
        result = await asyncio.wait_for(rt.manager.stop(handle.id, by="tester"), 20)
        record = await rt.archive.get_run(handle.id)
        replies = await rt.archive.replies(handle.id)

    assert result.stopped
    assert record.status == "ended"
    assert (record.end.reason, record.end.by, record.end.turns) == ("stopped", "tester", 0)
    assert [(r.seq, r.turn, r.position, r.actor, r.text) for r in replies] == [
        (0, 1, 0, "Claude 1", "one two three four five")
    ]
    assert (replies[0].usage.input_tokens, replies[0].usage.output_tokens) == (3, 5)
    assert len(rec.of(ReplyFinished)) == 1
    log = Path(record.log_path).read_text(encoding="utf-8")
    assert log == (
        "\n### Claude 1 ###\none two three four five\n"
        "\nConversation stopped by tester after 0 turns.\n"
    )
    assert "never" not in log


# --- backrooms runs / show / export --------------------------------------------------------------


async def test_runs_lists_every_run_newest_first(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    cwd = workdir(tmp_path)
    model_server.queue_reply(OPUS, "a b", input_tokens=10, output_tokens=2)
    model_server.queue_reply(GPT4O, "c d e", input_tokens=20, output_tokens=3)
    model_server.queue_reply(GPT4O, "bye ^C^C", input_tokens=7, output_tokens=2)
    async with runtime(env) as rt:
        await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=1))
        await run_to_end(rt, RunSpec(models=("gpt4o", "opus")))

    listing = await backrooms("runs", env=env, cwd=cwd)
    assert listing.code == 0, listing.err
    header, *rows = listing.out.splitlines()
    assert header.split() == [
        "id",
        "participants",
        "template",
        "status",
        "turns",
        "tokens",
        "cost",
        "started",
        "owner",
    ]
    assert len(rows) == 2
    runs = {run.id: run for run, _ in await stored(tmp_path / "backrooms.db")}

    def started(run_id: int) -> str:
        return runs[run_id].created_at.astimezone().strftime("%Y-%m-%d %H:%M")

    assert rows[0].split() == [
        "2",
        "gpt4o",
        "opus",
        "cli",
        "^C^C",
        "by",
        "GPT4o",
        "1",
        "0",
        "9",
        "unknown",  # gpt4o's cached tokens were not reported: its price cannot be applied
        *started(2).split(),
    ]
    assert rows[1].split() == [
        "1",
        "opus",
        "gpt4o",
        "cli",
        "max_turns",
        "1",
        "35",
        "≥$0.0001",  # opus's 10 in, 2 out at $4 / $20 a million; gpt4o's part unknown
        *started(1).split(),
    ]
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}$", rows[0])


async def test_runs_on_an_empty_database_says_how_to_start(tmp_path):
    result = await backrooms("runs", env={}, cwd=workdir(tmp_path))
    assert result.code == 0, result.err
    assert result.out == "no runs yet in backrooms.db; try: backrooms demo\n"


async def test_show_prints_the_transcript_as_the_run_printed_it(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    cwd = workdir(tmp_path)
    model_server.queue_reply(OPUS, "ls -la\n")
    model_server.queue_reply(GPT4O, "total 0\ndrwxr-xr-x  .")
    model_server.queue_reply(OPUS, "that is all ^C^C")
    ran = await backrooms("run", "--lm", "opus", "gpt4o", env=env, cwd=cwd)
    assert ran.code == 0, ran.err

    shown = await backrooms("show", "1", env=env, cwd=cwd)
    assert shown.code == 0, shown.err
    assert shown.out == ran.out
    # What it cost goes to stderr (stdout stays the transcript): Claude's part is priced, the
    # fake's OpenAI replies report no cached tokens, so the total is a lower bound.
    cost_line = next(line for line in shown.err.splitlines() if line.startswith("cost: "))
    assert cost_line.startswith("cost: at least $0.0")
    assert cost_line in ran.err
    assert shown.out == (
        "run 1 started: Claude 1 GPT4o 2, template cli\n"
        "\n### Claude 1 ###\nls -la\n\n"
        "\n### GPT4o 2 ###\ntotal 0\ndrwxr-xr-x  .\n"
        "\n### Claude 1 ###\nthat is all ^C^C\n"
        "\nClaude 1 has ended the conversation with ^C^C.\n"
    )


async def test_show_of_an_error_run_ends_with_the_error_line(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    cwd = workdir(tmp_path)
    model_server.queue_reply(OPUS, "hello?")
    model_server.queue_error(GPT4O, 401)
    ran = await backrooms("run", "--lm", "opus", "gpt4o", env=env, cwd=cwd)
    assert ran.code == 1, ran.err

    shown = await backrooms("show", "1", env=env, cwd=cwd)
    assert shown.code == 0, shown.err
    assert shown.out.endswith(
        "\n### Claude 1 ###\nhello?\n\nConversation ended by an error: gpt4o (openai): "
        "the API key was refused (401); check OPENAI_API_KEY\n"
    )


TRICKY = {
    # Backticks, non-ASCII, a blank line, a trailing newline, a carriage return: kept verbatim.
    OPUS: "```\ncat café.txt\n```\n\nnaïve ✓ ``inline`` \u00a0end\n",
    GPT4O: "first\r\nsecond\n\n    indented — done",
}


async def _tricky_run(model_server, tmp_path) -> tuple[dict[str, str], Path, Path]:
    """One stored run of tricky replies (made in this process: export only needs the store)."""
    env = fake_env(model_server, tmp_path)
    cwd = workdir(tmp_path)
    model_server.queue_reply(OPUS, TRICKY[OPUS], input_tokens=12, output_tokens=8)
    model_server.queue_reply(GPT4O, TRICKY[GPT4O], input_tokens=30, output_tokens=5)
    async with runtime(env) as rt:
        run_id, end = await run_to_end(rt, RunSpec(models=("opus", "gpt4o"), max_turns=1))
        record = await rt.archive.get_run(run_id)
    assert (run_id, end.reason) == (1, "max_turns")
    return env, cwd, Path(record.log_path)


async def test_export_txt_is_byte_identical_to_the_log_file(model_server, tmp_path):
    env, cwd, log = await _tricky_run(model_server, tmp_path)
    expected = log.read_bytes()
    assert TRICKY[GPT4O].encode() in expected

    to_stdout = await backrooms("export", "1", "--format", "txt", env=env, cwd=cwd)
    assert to_stdout.code == 0, to_stdout.err
    assert to_stdout.raw == expected

    default = await backrooms("export", "1", env=env, cwd=cwd)
    assert default.raw == expected  # txt is the default

    to_file = await backrooms("export", "1", "--format", "txt", "-o", "out.txt", env=env, cwd=cwd)
    assert to_file.code == 0, to_file.err
    assert to_file.raw == b""
    assert "out.txt" in to_file.err
    assert (cwd / "out.txt").read_bytes() == expected


async def test_export_md_has_a_heading_and_a_fence_per_reply(model_server, tmp_path):
    env, cwd, _ = await _tricky_run(model_server, tmp_path)
    result = await backrooms("export", "1", "--format", "md", env=env, cwd=cwd)
    assert result.code == 0, result.err
    md = result.out
    assert md.startswith("# Backrooms run 1: cli\n")
    assert "Claude 1 (`opus`)" in md and "GPT4o 2 (`gpt4o`)" in md
    assert md.count("\n## ") == 2
    # The fence is longer than any backtick run in the reply, so the text shows verbatim.
    claude = "## Claude 1\n\n````\n" + TRICKY[OPUS] + "\n````\n"
    gpt = "## GPT4o 2\n\n```\n" + TRICKY[GPT4O] + "\n```\n"
    assert claude in md and gpt in md
    assert md.index(claude) < md.index(gpt)

    to_file = await backrooms("export", "1", "--format", "md", "-o", "run.md", env=env, cwd=cwd)
    assert to_file.code == 0, to_file.err
    assert (cwd / "run.md").read_bytes() == result.raw


async def test_export_json_holds_participants_replies_usage_and_end(model_server, tmp_path):
    env, cwd, _ = await _tricky_run(model_server, tmp_path)
    result = await backrooms("export", "1", "--format", "json", env=env, cwd=cwd)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["id"] == 1 and data["template"] == "cli" and data["status"] == "ended"
    assert [
        (p["position"], p["alias"], p["actor"], p["api_id"], p["provider"])
        for p in data["participants"]
    ] == [
        (0, "opus", "Claude 1", OPUS, "anthropic"),
        (1, "gpt4o", "GPT4o 2", GPT4O, "openai"),
    ]
    assert [
        (r["seq"], r["turn"], r["position"], r["actor"], r["text"]) for r in data["replies"]
    ] == [
        (0, 1, 0, "Claude 1", TRICKY[OPUS]),
        (1, 1, 1, "GPT4o 2", TRICKY[GPT4O]),
    ]
    assert [(r["input_tokens"], r["output_tokens"]) for r in data["replies"]] == [(12, 8), (30, 5)]
    assert [r["cost_usd"] for r in data["replies"]] == [
        pytest.approx((12 * 4 + 8 * 20) / 1e6),
        None,
    ]
    assert [(r["cache_read_tokens"], r["cache_write_tokens"]) for r in data["replies"]] == [
        (0, 0),  # Anthropic reported no cache use
        (None, None),  # the OpenAI reply did not say what it read from its cache
    ]
    assert data["usage"] == {
        "input_tokens": 42,
        "output_tokens": 13,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_usd": pytest.approx((12 * 4 + 8 * 20) / 1e6),
        "complete": False,
    }
    assert data["end"]["reason"] == "max_turns" and data["end"]["turns"] == 1
    assert data["end"]["summary"] == "Reached maximum number of turns (1). Conversation ended."

    to_file = await backrooms("export", "1", "--format", "json", "-o", "run.json", env=env, cwd=cwd)
    assert to_file.code == 0, to_file.err
    assert json.loads((cwd / "run.json").read_text(encoding="utf-8")) == data


async def test_export_to_a_file_that_cannot_be_written_is_a_clear_error(model_server, tmp_path):
    env, cwd, _ = await _tricky_run(model_server, tmp_path)
    result = await backrooms("export", "1", "-o", "no/such/dir/out.txt", env=env, cwd=cwd)
    assert result.code == 2, result.err
    no_traceback(result)
    assert "no/such/dir/out.txt" in result.err
    assert not (cwd / "no").exists()


# --- the offline demo, with the network disabled --------------------------------------------------

SITECUSTOMIZE = textwrap.dedent(
    f"""
    import os
    import socket

    def _refuse(*args, **kwargs):
        log = os.environ.get("NETWORK_ATTEMPTS_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(repr(args[:3]) + "\\n")
        raise OSError({NETWORK_DISABLED!r})

    socket.socket.connect = _refuse
    socket.socket.connect_ex = _refuse
    socket.create_connection = _refuse
    socket.getaddrinfo = _refuse
    """
)


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """A child environment whose Python cannot open a network connection, and records any try."""
    hook = tmp_path / "netoff"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    path = os.pathsep.join([str(hook), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(":")
    return {
        "PYTHONPATH": path,
        "NETWORK_ATTEMPTS_LOG": str(tmp_path / "network-attempts.log"),
        "BACKROOMS_OFFLINE_DELAY": "0",
        "NO_COLOR": "1",
    }


async def test_the_network_guard_really_refuses_connections(offline_env, tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import socket; socket.create_connection(('127.0.0.1', 9), timeout=1)",
        env=_child_env(offline_env),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    result = await finish(proc)
    assert result.code != 0 and NETWORK_DISABLED in result.err
    assert (tmp_path / "network-attempts.log").exists()


async def test_demo_runs_end_to_end_with_the_network_disabled(offline_env, tmp_path):
    cwd = workdir(tmp_path, "fresh")
    result = await backrooms("demo", env=offline_env, cwd=cwd)
    assert result.code == 0, result.err
    no_traceback(result)
    assert not (tmp_path / "network-attempts.log").exists()

    logs = list((cwd / "BackroomsLogs" / "OfflineExplorations").glob("offline_offline_cli_*.txt"))
    assert len(logs) == 1
    log = logs[0].read_text(encoding="utf-8")
    # The terminal shows exactly what the log file holds, after the start line.
    assert result.out == "run 1 started: Offline 1 Offline 2, template cli\n" + log
    assert log.count("\n### Offline 1 ###\n") == 3 and log.count("\n### Offline 2 ###\n") == 3
    assert log.endswith("\nReached maximum number of turns (3). Conversation ended.\n")

    [(run, replies)] = await stored(cwd / "backrooms.db")
    assert len(replies) == 6
    assert (run.status, run.end.reason, run.spec.started_by) == ("ended", "max_turns", "demo")
    assert [r.actor for r in replies] == ["Offline 1", "Offline 2"] * 3
    assert log == transcript_text(replies, run.end)

    assert "Reached maximum number of turns (3)" in result.err  # the summary line
    assert "backrooms show 1" in result.err and "backrooms runs" in result.err
    assert str(Path("BackroomsLogs") / "OfflineExplorations") in result.err


async def test_the_demo_is_deterministic_per_seed(offline_env, tmp_path):
    async def demo(seed: str, name: str) -> str:
        result = await backrooms(
            "demo", env={**offline_env, "BACKROOMS_SEED": seed}, cwd=workdir(tmp_path, name)
        )
        assert result.code == 0, result.err
        return result.out  # stdout holds no timestamp and no path

    first, again, other = await asyncio.gather(demo("7", "a"), demo("7", "b"), demo("8", "c"))
    assert first == again
    assert first != other
    assert first.count("### Offline") == other.count("### Offline") == 6
    assert not (tmp_path / "network-attempts.log").exists()


# --- bad input ----------------------------------------------------------------------------------


async def test_show_and_export_of_an_unknown_run_name_it_and_how_to_list(tmp_path):
    cwd = workdir(tmp_path)
    demo = await backrooms("demo", env={}, cwd=cwd)
    assert demo.code == 0, demo.err
    for command in ("show", "export"):
        result = await backrooms(command, "999", env={}, cwd=cwd)
        assert result.code == 2, (command, result.err)
        no_traceback(result)
        assert "999" in result.err and "backrooms runs" in result.err
        assert result.out == ""
    assert len(await stored(cwd / "backrooms.db")) == 1


@pytest.mark.parametrize("command", [["runs"], ["show", "1"], ["export", "1"], ["demo"]])
async def test_a_database_that_is_a_text_file_is_refused_and_left_untouched(tmp_path, command):
    cwd = workdir(tmp_path)
    notes = cwd / "notes.txt"
    content = ("my notes, not a database\n" * 40).encode()
    notes.write_bytes(content)
    result = await backrooms(*command, env={"BACKROOMS_DB": str(notes)}, cwd=cwd)
    assert result.code == 2, result.err
    no_traceback(result)
    assert "not a backrooms database" in result.err and str(notes) in result.err
    assert "BACKROOMS_DB" in result.err
    assert notes.read_bytes() == content
    assert not (cwd / "BackroomsLogs").exists()  # the demo did not start
    assert sorted(p.name for p in cwd.iterdir() if p.name.startswith("notes.txt-")) == []


@pytest.mark.parametrize("command", [["runs"], ["demo"]])
async def test_a_database_under_a_regular_file_is_a_clear_error(tmp_path, command):
    cwd = workdir(tmp_path)
    (cwd / "plain").write_text("a file\n")
    db = cwd / "plain" / "sub" / "backrooms.db"
    result = await backrooms(*command, env={"BACKROOMS_DB": str(db)}, cwd=cwd)
    assert result.code == 2, result.err
    no_traceback(result)
    assert str(db) in result.err and "BACKROOMS_DB" in result.err
    assert (cwd / "plain").read_text() == "a file\n"


async def test_a_log_dir_that_cannot_be_created_stores_no_half_run(tmp_path):
    cwd = workdir(tmp_path)
    (cwd / "plain").write_text("a file\n")
    result = await backrooms("demo", env={"BACKROOMS_LOG_DIR": "plain/logs"}, cwd=cwd)
    assert result.code == 2, result.err
    no_traceback(result)
    assert "plain/logs" in result.err and "BACKROOMS_LOG_DIR" in result.err
    assert await stored(cwd / "backrooms.db") == []


# These two run their commands as a user whom directory permissions bind, also under CI, which
# runs as root (tests/unprivileged.py), in a folder that user owns.


@pytest.fixture
def own_workdir() -> Iterator[Path]:
    with workspace() as path:
        yield path


async def test_a_read_only_directory_without_a_database_has_no_runs_to_list(own_workdir):
    locked = own_workdir / "locked"
    locked.mkdir()
    give(locked)
    locked.chmod(0o555)
    try:
        env = {"BACKROOMS_DB": str(locked / "backrooms.db")}
        result = await backrooms("runs", env=env, cwd=own_workdir, unprivileged=True)
        assert result.code == 0, result.err
        assert result.raw.decode().startswith("no runs yet in ")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize(
    "command", [["demo"], ["run", "--lm", "offline", "offline", "--max-turns", "1"]]
)
async def test_a_database_in_a_read_only_directory_is_a_clear_error(own_workdir, command):
    cwd = own_workdir
    locked = cwd / "locked"
    locked.mkdir()
    give(locked)
    locked.chmod(0o555)
    try:
        db = locked / "backrooms.db"
        env = {"BACKROOMS_DB": str(db)}
        result = await backrooms(*command, env=env, cwd=cwd, unprivileged=True)
        assert result.code == 2, result.err
        no_traceback(result)
        assert str(db) in result.err and "permission denied" in result.err
        assert "BACKROOMS_DB" in result.err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


async def test_a_database_whose_directory_became_read_only_loses_nothing(own_workdir):
    cwd = own_workdir
    db = cwd / "store" / "backrooms.db"
    env = {"BACKROOMS_DB": str(db)}
    demo = await backrooms("demo", env=env, cwd=cwd, unprivileged=True)
    assert demo.code == 0, demo.err
    before = db.read_bytes()
    db.parent.chmod(0o555)
    try:
        for command in (["runs"], ["show", "1"], ["demo"]):
            result = await backrooms(*command, env=env, cwd=cwd, unprivileged=True)
            no_traceback(result)
            if result.code != 0:
                assert result.code == 2 and str(db) in result.err, (command, result.err)
            assert db.read_bytes() == before
    finally:
        db.parent.chmod(0o755)
    [(_, replies)] = await stored(db)
    assert len(replies) == 6


async def test_ctrl_c_stops_the_run_and_keeps_the_transcript(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    cwd = workdir(tmp_path)
    model_server.chunk_delay = 0.05
    async with running("run", "--lm", "opus", "gpt4o", env=env, cwd=cwd) as proc:
        # Claude 1 starts its third reply: two whole turns are stored.
        head = await read_until(proc, b"### Claude 1 ###", count=3)
        model_server.chunk_delay = 3.0  # this reply will not finish before the Ctrl-C
        proc.send_signal(signal.SIGINT)
        done = await finish(proc, head)

    assert done.code == 130, done.err  # 128 + SIGINT, as shells report a Ctrl-C
    no_traceback(done)
    closing = "\nConversation stopped by terminal (Ctrl-C) after 2 turns.\n"
    assert done.out.endswith(closing)
    [(run, replies)] = await stored(tmp_path / "backrooms.db")
    assert (run.status, run.end.reason, run.end.by, run.end.turns) == (
        "ended",
        "stopped",
        "terminal (Ctrl-C)",
        2,
    )
    assert [r.text for r in replies] == [
        f"{OPUS} reply 1",
        f"{GPT4O} reply 1",
        f"{OPUS} reply 2",
        f"{GPT4O} reply 2",
    ]
    log = Path(run.log_path).read_text(encoding="utf-8")
    assert log.endswith(f"\n{GPT4O} reply 2\n{closing}")
    assert log == transcript_text(replies, run.end)
    assert f"{OPUS} reply 3" not in log

    listing = await backrooms("runs", env=env, cwd=cwd)
    assert listing.code == 0, listing.err
    [row] = listing.out.splitlines()[1:]
    assert row.split()[:6] == ["1", "opus", "gpt4o", "cli", "stopped", "2"]
    exported = await backrooms("export", "1", env=env, cwd=cwd)
    assert exported.raw == Path(run.log_path).read_bytes()

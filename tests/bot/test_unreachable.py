"""A model server that is not running, as a terminal user meets it (issue 13.3): a few seconds of
retries, one header per reply however many attempts, retry notes on lines of their own, no log
line in the transcript, then one line that names the URL and the setting that holds it."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

from tests.conftest import fake_env
from tests.helpers import backrooms, spawn_backrooms

OPUS = "claude-opus-5-5"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def free_port() -> int:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_transcript_is_clean(out: str, header: str) -> None:
    assert out.count(header) == 1, out
    assert not TIMESTAMP.search(out), out
    for line in out.splitlines():
        if "retrying in" in line:
            assert line.startswith("[") and line.endswith("]"), line  # a note alone on its line


async def timed_run(
    args: tuple[str, ...], env: dict[str, str], cwd: Path
) -> tuple[int | None, str, str, float]:
    """`backrooms ARGS` to its end: exit code, stdout, stderr, and the seconds from the reply's
    header to the transcript's last line, as the user watching it sees them (the process's own
    start and exit are not counted: they are slow on a busy machine)."""
    proc = await spawn_backrooms(*args, env=env, cwd=cwd)
    assert proc.stdout is not None and proc.stderr is not None
    loop = asyncio.get_running_loop()
    lines: list[str] = []
    header_at = ended_at = None
    for _ in range(1000):  # bounded; a line at a time until the output ends
        raw = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not raw:
            break
        lines.append(raw.decode())
        if lines[-1].startswith("###") and header_at is None:
            header_at = loop.time()
        if lines[-1].startswith("Conversation ended"):
            ended_at = loop.time()
    err = (await asyncio.wait_for(proc.stderr.read(), 60)).decode()
    await asyncio.wait_for(proc.wait(), 60)
    assert header_at is not None and ended_at is not None, "".join(lines) + err
    return proc.returncode, "".join(lines), err, ended_at - header_at


async def test_an_ollama_that_is_not_running_ends_the_run_in_one_line(model_server, tmp_path):
    url = f"http://localhost:{free_port()}/v1"
    env = fake_env(model_server, tmp_path) | {
        "OLLAMA_BASE_URL": url,
        "BACKROOMS_RETRY_BASE_DELAY": "1",  # the default: the 10 s bound is what is measured
    }
    code, out, err, took = await timed_run(
        ("run", "--lm", "ollama-llama", "opus", "--max-turns", "1"), env, tmp_path
    )
    line = (
        f"Conversation ended by an error: ollama-llama (ollama): cannot connect to {url} "
        "(connection refused); is the server running? (OLLAMA_BASE_URL)"
    )
    assert out.count(line) == 1, out + err  # the transcript's last line
    assert [x for x in (out + err).splitlines() if x.startswith("Conversation ended")] == [line]
    assert_transcript_is_clean(out, "### Llama 1 ###")
    assert not TIMESTAMP.search(err), err  # stderr shares the terminal with the transcript
    assert "retrying in" in out  # it was retried, a few times
    assert "Traceback" not in err
    assert took < 10 + 3  # at most 10 s of retries, plus a little for a busy machine
    assert code != 0
    assert model_server.requests == []  # Claude was never asked: the run ended first


async def test_a_world_interface_that_is_not_running_ends_the_run_in_one_line(
    model_server, tmp_path
):
    url = f"http://127.0.0.1:{free_port()}"
    env = fake_env(model_server, tmp_path) | {"WORLD_INTERFACE_URL": url}
    code, out, err = await backrooms(
        "run",
        "--lm",
        "opus",
        "cli",
        "--template",
        "cli_with_world_interface",
        "--max-turns",
        "1",
        env=env,
        cwd=tmp_path,
    )
    line = (
        f"Conversation ended by an error: cli (world): cannot connect to {url} "
        "(connection refused); is the server running? (WORLD_INTERFACE_URL)"
    )
    assert [x for x in (out + err).splitlines() if x.startswith("Conversation ended")] == [line]
    assert_transcript_is_clean(out, "### CLI ###")
    assert not TIMESTAMP.search(err), err
    assert code != 0


async def test_a_reply_cut_and_asked_again_keeps_one_header(model_server, tmp_path):
    model_server.chunk_count = 4
    model_server.chunk_delay = 0.02
    model_server.queue_drop(OPUS, after_chunks=2)
    model_server.queue_reply(OPUS, "the whole reply")
    env = fake_env(model_server, tmp_path)
    code, out, err = await backrooms(
        "run", "--lm", "opus", "gpt4o", "--max-turns", "1", env=env, cwd=tmp_path
    )
    assert code == 0, err
    assert_transcript_is_clean(out, "### Claude 1 ###")
    after_header = out.split("### Claude 1 ###\n", 1)[1].splitlines()
    # What the cut attempt showed, then the note on a line of its own, then the reply again.
    assert after_header[1].startswith("[opus (anthropic): connection lost")
    assert after_header[2] == "the whole reply"

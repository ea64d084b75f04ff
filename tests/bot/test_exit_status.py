"""How `backrooms` ends, as a shell sees it: real processes, real signals, bounded waits.

run/demo/resume/continue: Ctrl-C 130 (a second one during the drain quits at once), SIGTERM 143
(the run paused), an error 1, bad input 2. Services: 0 after SIGTERM. A signal at any moment, from
the first imports to the last cleanup, ends with that status, never by the signal itself.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path

import pytest

from tests.conftest import fake_env
from tests.helpers import backrooms, spawn_backrooms, until

OPUS = "claude-opus-5-5"
LINUX_ONLY = pytest.mark.skipif(
    not Path("/proc/self/status").is_file(), reason="reads handled signals from /proc (Linux)"
)
LIMIT = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has its SIGTERM handler in place (Linux: SigCgt in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


async def _signal_after(delay: float, *args: str, env, cwd: Path, sig=signal.SIGTERM):
    """Start `backrooms ARGS`, send `sig` `delay` s after its first line of code took SIGTERM
    (before that the interpreter is still starting: no program can answer a signal then);
    (exit code, stderr, whether the signal was sent)."""
    proc = await spawn_backrooms(*args, env=env, cwd=cwd)
    await until(lambda: _catches_sigterm(proc.pid) or proc.returncode is not None, LIMIT)
    await asyncio.sleep(delay)
    sent = proc.returncode is None
    if sent:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:  # it ended between the check and the signal
            sent = False
    _, err = await asyncio.wait_for(proc.communicate(), LIMIT)
    return proc.returncode, err.decode(), sent


async def test_a_run_ended_by_an_error_exits_1(model_server, tmp_path):
    model_server.queue_error(OPUS, 401, message="invalid x-api-key")
    code, out, err = await backrooms("run", env=fake_env(model_server, tmp_path), cwd=tmp_path)
    assert code == 1, err
    assert "Conversation ended by an error" in out and "Traceback" not in err


async def test_bad_input_exits_2(tmp_path):
    code, _, err = await backrooms("run", "--max-turns", "zero", env={}, cwd=tmp_path)
    assert code == 2 and "--max-turns" in err


@LINUX_ONLY
async def test_sigterm_at_any_moment_of_a_run_ends_143_never_by_the_signal(tmp_path):
    env = {"BACKROOMS_OFFLINE_DELAY": "0.01", "BACKROOMS_DB": str(tmp_path / "b.db")}
    run = ("run", "--lm", "offline", "offline", "--max-turns", "2")
    sent_count = 0
    # From the first imports, through the store opening, into the run.
    for delay in (0.0, 0.02, 0.1, 0.3, 0.6, 1.0, 1.5):
        code, err, sent = await _signal_after(delay, *run, env=env, cwd=tmp_path)
        assert "Traceback" not in err, err
        if sent:
            sent_count += 1
            assert code == 143, (delay, err)
        else:
            assert code == 0, (delay, err)
    assert sent_count >= 4  # the signals did land during start-up and the run


async def test_sigterm_during_the_final_cleanup_ends_143(tmp_path):
    env = {"BACKROOMS_OFFLINE_DELAY": "0", "BACKROOMS_DB": str(tmp_path / "b.db")}
    proc = await spawn_backrooms(
        "run", "--lm", "offline", "offline", "--max-turns", "1", env=env, cwd=tmp_path
    )
    assert proc.stdout is not None
    # The closing line is printed as the run ends; the store and providers close after it.
    await asyncio.wait_for(proc.stdout.readuntil(b"Conversation ended."), LIMIT)
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    _, err = await asyncio.wait_for(proc.communicate(), LIMIT)
    assert proc.returncode in (0, 143), err.decode()  # 0 only if it had already left
    assert proc.returncode >= 0 and "Traceback" not in err.decode()


async def test_a_second_ctrl_c_during_the_drain_quits_at_once_with_130(model_server, tmp_path):
    # A reply far bigger than a pipe holds, and nobody reading stdout: the printer blocks, so
    # the first Ctrl-C's orderly stop cannot finish. The second one must not wait for it.
    model_server.queue_reply(OPUS, "word " * 60_000)
    env = fake_env(model_server, tmp_path)
    proc = await spawn_backrooms("run", "--max-turns", "1", env=env, cwd=tmp_path)
    await until(lambda: model_server.requests, LIMIT, "the first model request")
    await asyncio.sleep(1.0)
    try:
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(1.0)
        assert proc.returncode is None  # stuck in the drain: what the second Ctrl-C is for
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 5)  # reading lets the pipes close
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert proc.returncode == 130
    assert b"quitting now" in err


async def test_a_run_paused_by_sigterm_is_listed_and_exported_as_paused(model_server, tmp_path):
    env = fake_env(model_server, tmp_path)
    model_server.chunk_delay = 0.2
    proc = await spawn_backrooms("run", "--lm", "opus", "opus", env=env, cwd=tmp_path)
    await until(lambda: model_server.requests, LIMIT, "the first model request")
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.communicate(), LIMIT)
    assert proc.returncode == 143

    code, out, _ = await backrooms("runs", env=env, cwd=tmp_path)
    row = out.splitlines()[1].split()
    assert code == 0 and row[0] == "1" and row[4] == "paused"
    code, out, _ = await backrooms("export", "1", "--format", "json", env=env, cwd=tmp_path)
    exported = json.loads(out)
    assert (exported["status"], exported["end"], exported["ended_at"]) == ("paused", None, None)


@LINUX_ONLY
async def test_the_web_service_exits_0_after_sigterm_even_while_starting(tmp_path):
    env = {"BACKROOMS_DB": str(tmp_path / "b.db"), "PORT": str(_free_port())}
    for delay in (0.0, 0.3, 4.0):
        code, err, sent = await _signal_after(
            delay, "serve", "--host", "127.0.0.1", env=env, cwd=tmp_path
        )
        assert sent and code == 0, (delay, err)
        assert "Traceback" not in err

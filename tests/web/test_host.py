"""Where the viewer listens, as a user starts it: `backrooms serve` on this machine only,
`backrooms bot` (a Procfile platform's process) on every address, BACKROOMS_HOST over both.

"Every address" is seen from the loopback alone: a socket bound to 127.0.0.1 refuses a connection
to 127.0.0.2, one bound to 0.0.0.0 takes it, so no test traffic leaves the machine."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import pytest

from bot.web import WebSurface
from bot.web.surface import ALL_HOSTS, LOCAL_HOST
from tests.conftest import fake_env
from tests.fakes.model_server import FakeModelServer
from tests.helpers import runtime, spawn_backrooms

STARTUP = 60.0  # a fresh interpreter importing the SDKs, on a busy two-core machine
OTHER = "127.0.0.2"  # another address of this machine, as a neighbour's request would arrive


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            return conn.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


async def listening_line(*args: str, env: dict[str, str], cwd: Path) -> tuple[str, list[bool]]:
    """Start `backrooms ARGS`, read the line naming the viewer's address, try 127.0.0.1 and
    127.0.0.2, then stop it with SIGTERM: (the line, [answered on each])."""
    proc = await spawn_backrooms(*args, env=env, cwd=cwd, merge_stderr=True)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(STARTUP):
            while b"web viewer on" not in (line := await proc.stdout.readline()):
                assert line, "the service ended before the viewer listened"
        port = int(env["PORT"])
        reached = [await asyncio.to_thread(answers, h, port) for h in ("127.0.0.1", OTHER)]
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), STARTUP)
    assert proc.returncode == 0
    return line.decode().strip(), reached


LOCAL_HINT = " (this machine only; BACKROOMS_HOST=0.0.0.0 opens it)"


@pytest.mark.parametrize(
    ("command", "reached", "hint"),
    [("serve", [True, False], LOCAL_HINT), ("bot", [True, True], "")],
)
async def test_serve_is_for_this_machine_and_bot_for_everyone(
    model_server: FakeModelServer, tmp_path: Path, command: str, reached: list[bool], hint: str
) -> None:
    env = {**fake_env(model_server, tmp_path), "PORT": str(free_port())}
    line, answered = await listening_line(command, env=env, cwd=tmp_path)
    assert answered == reached
    assert line.endswith(f"web viewer on http://127.0.0.1:{env['PORT']}{hint}")


@pytest.mark.parametrize(
    ("flag", "setting", "default", "reached"),
    [
        (None, "0.0.0.0", LOCAL_HOST, [True, True]),  # serve, opened to others
        (None, "127.0.0.1", ALL_HOSTS, [True, False]),  # bot, kept to this machine
        (None, OTHER, LOCAL_HOST, [False, True]),
        ("127.0.0.1", OTHER, LOCAL_HOST, [True, False]),  # --host wins over the setting
    ],
)
async def test_backrooms_host_overrides_the_default_and_host_overrides_it(
    model_server: FakeModelServer,
    tmp_path: Path,
    flag: str | None,
    setting: str,
    default: str,
    reached: list[bool],
) -> None:
    env = {**fake_env(model_server, tmp_path), "BACKROOMS_HOST": setting}
    async with runtime(env) as rt:
        surface = WebSurface(rt.settings, host=flag, port=0, default_host=default)
        await surface.start(rt)
        try:
            hosts = ("127.0.0.1", OTHER)
            answered = [await asyncio.to_thread(answers, h, surface.port) for h in hosts]
        finally:
            await rt.manager.shutdown(5)
            await surface.close()
    assert answered == reached


async def test_a_host_that_is_not_here_is_one_clear_line(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = {**fake_env(model_server, tmp_path), "PORT": str(free_port())}
    env["BACKROOMS_HOST"] = "192.0.2.1"  # TEST-NET-1: an address no interface of ours has
    proc = await spawn_backrooms("serve", env=env, cwd=tmp_path)
    out, err = await asyncio.wait_for(proc.communicate(), STARTUP)
    lines = [line for line in err.decode().splitlines() if "192.0.2.1" in line]
    assert lines == [
        f"backrooms: error: the web viewer cannot listen on 192.0.2.1:{env['PORT']}: "
        "cannot assign requested address; check BACKROOMS_HOST (or --host)"
    ]
    assert "Traceback" not in err.decode() + out.decode()
    assert proc.returncode != 0

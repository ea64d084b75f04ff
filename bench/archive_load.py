"""Benchmark the web archive when it is busy: index and search pages under live viewers.

    python bench/archive_load.py [--runs 1000] [--live 10] [--viewers 50] [--rate 200]
                                 [--duration 15] [--timeout 10] [--code DIR]

A server process of its own (this file with `--serve`) builds the service as `backrooms serve`
does (`open_runtime` and `WebSurface` on 127.0.0.1), fills a fresh database with `--runs` ended
runs, and starts `--live` offline runs that never end. This process then holds `--viewers` live
event streams on those runs (spread evenly) and sends `--rate` requests a second, open loop, for
`--duration` seconds: three in four are index pages (the first page or an older one), one in four
a search for a made-up word that about seventy replies (of 6,000) hold. A request's latency counts from when it was due, so queueing anywhere is counted; one
that takes over `--timeout` seconds counts as timed out. It prints p50 and p99 of each kind.
Before the load, with the live runs going but no viewer, it sends 100 index pages and 100 searches
one at a time and prints the server's CPU per page (what the live runs used meanwhile taken off).

`--code DIR` runs the server on another checkout (the code before a change, extracted with
`git archive`); the load and the figures stay the same. Everything is on 127.0.0.1; bench/README.md
has the figures and how to read them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import itertools
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from bot.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
COMMON = (
    "lighthouse harbour signal static mirror corridor lantern archive ember tide orbit cipher "
    "meadow glacier echo vessel quartz hollow beacon drift lattice marrow thimble solace"
).split()
# Made-up words, each in about 70 of the 6,000 replies: what someone searches an archive for.
RARE = [
    a + b + c
    for a in ("ka", "lo", "mi", "nu", "re")
    for b in "bdfgklmnprstvz"
    for c in ("ar", "en", "ix", "om", "ul", "yth", "ast", "orn", "ide", "ure", "ola", "esk")
]
REPLIES_PER_RUN = 6
COMMON_PER_REPLY, RARE_PER_REPLY = 50, 10
READY_TIMEOUT = 120.0
CALIBRATION_PAGES = 100


# --- the server, in its own process --------------------------------------------------------------


async def _fill(db: Path, runs: int) -> None:
    from datetime import UTC, datetime, timedelta

    from backrooms_engine.records import ParticipantInfo, Reply, RunEnd, RunSpec
    from backrooms_engine.store import SqliteStore

    rng = random.Random(7)

    def text() -> str:
        words = rng.choices(COMMON, k=COMMON_PER_REPLY) + rng.choices(RARE, k=RARE_PER_REPLY)
        rng.shuffle(words)
        return " ".join(words)

    texts = [[text() for _ in range(REPLIES_PER_RUN)] for _ in range(runs)]
    cast = (
        ParticipantInfo(0, "opus", "Claude 1", "claude-opus", "anthropic"),
        ParticipantInfo(1, "gpt4o", "GPT 2", "gpt-4o", "openai"),
    )
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    end = RunEnd(reason="max_turns", turns=3, max_turns=3)

    async def one(n: int) -> None:
        spec = RunSpec(models=("opus", "gpt4o"), template=("cli", "gallery")[n % 2])
        record = await store.create_run(spec, cast, f"BackroomsLogs/run-{n}.txt", t0)
        for seq, text in enumerate(texts[n]):
            at = t0 + timedelta(seconds=seq)
            actor = cast[seq % 2].actor
            await store.append_reply(
                Reply(record.id, seq, seq // 2 + 1, seq % 2, actor, text, at, at)
            )
        await store.finish_run(record.id, end, t0)

    store = await SqliteStore.open(db)
    try:
        for first in range(0, runs, 100):  # runs written together share their commits
            await asyncio.gather(*(one(n) for n in range(first, min(runs, first + 100))))
    finally:
        await store.close()


def _env(workdir: Path, live: int) -> dict[str, str]:
    return {
        "BACKROOMS_DB": str(workdir / "backrooms.db"),
        "BACKROOMS_LOG_DIR": str(workdir / "BackroomsLogs"),
        "BACKROOMS_OFFLINE_DELAY": "0.05",  # 20 words a second: each live run streams all along
        "BACKROOMS_MAX_RUNS": str(max(20, live + 1)),
        "NO_COLOR": "1",
    }


def _stop_signal() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _start_live(rt: Runtime, live: int) -> str:
    from backrooms_engine.records import RunSpec

    spec = RunSpec(models=("offline", "offline"), template="cli", started_by="bench")
    ids = [(await rt.manager.start(spec)).id for _ in range(live)]
    return ",".join(map(str, ids)) or "-"


async def _serve(workdir: Path, runs: int, live: int, profile: str | None = None) -> None:
    from bot.runtime import open_runtime
    from bot.settings import Settings
    from bot.web import WebSurface

    await _fill(workdir / "backrooms.db", runs)
    stop = _stop_signal()
    async with open_runtime(Settings.from_mapping(_env(workdir, live))) as rt:
        surface = WebSurface(rt.settings, host="127.0.0.1", port=0)
        await surface.start(rt)
        try:
            ids = await _start_live(rt, live)
            gc.collect()  # as bot/service.py does once the service is up
            gc.freeze()
            profiler = _profiler(profile)
            print(f"READY {surface.url} {ids}", flush=True)
            await stop.wait()
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(profile))
        finally:
            await surface.stop_accepting()
            await rt.manager.shutdown(5.0)
            await surface.close()


async def _drive(workdir: Path, live: int) -> None:
    """`--elsewhere`: the live runs in a process of their own on the same database, as a
    `backrooms worker` beside the web process; the web process follows them through the store."""
    from bot.runtime import open_runtime
    from bot.settings import Settings

    stop = _stop_signal()
    async with open_runtime(Settings.from_mapping(_env(workdir, live))) as rt:
        try:
            print(f"READY - {await _start_live(rt, live)}", flush=True)
            await stop.wait()
        finally:
            await rt.manager.shutdown(5.0)


def _profiler(path: str | None) -> cProfile.Profile | None:
    """`--profile FILE`: the server's event-loop thread under cProfile from READY to the end
    (calibration and load), its stats written to FILE (read them with `python -m pstats`)."""
    if path is None:
        return None
    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


# --- the load, from this process -----------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    live_ids: list[int]


@contextlib.contextmanager
def server(args: argparse.Namespace, workdir: Path) -> Iterator[Server]:
    here = args.live * (not args.elsewhere)  # live runs in the web process
    cmd = ["--serve", str(workdir), "--runs", str(args.runs), "--live", str(here)]
    if args.profile:
        cmd += ["--profile", str(Path(args.profile).resolve())]
    with _process(args, cmd, workdir / "server.stderr") as (proc, url, ids):
        if not args.elsewhere:
            yield Server(proc, url, ids)
            return
        drive = ["--serve", str(workdir), "--drive", "--live", str(args.live)]
        with _process(args, drive, workdir / "driver.stderr") as (_, _, ids):
            yield Server(proc, url, ids)


@contextlib.contextmanager
def _process(
    args: argparse.Namespace, argv: list[str], errors: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, list[int]]]:
    code = Path(args.code).resolve() if args.code else ROOT
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), *args.server_path])}
    with errors.open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.PIPE, stderr=err)
        try:
            url, ids = _await_ready(proc, errors)
            yield proc, url, ids
        finally:
            _stop(proc)


def _await_ready(proc: subprocess.Popen[bytes], errors: Path) -> tuple[str, list[int]]:
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stdout], [], [], left)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if line.startswith("READY "):
            _, url, ids = line.split()
            return url, [int(i) for i in ids.split(",") if i != "-"]
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {errors.read_text()[-2000:]}")
    raise RuntimeError(f"the server was not ready within {READY_TIMEOUT} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"index": [], "search": []})
    failures: dict[str, int] = field(default_factory=lambda: {"index": 0, "search": 0})
    viewer_events: int = 0
    cpu_per_page: dict[str, float] = field(default_factory=dict)  # ms, one request at a time
    background: float = 0.0  # share of a core the live runs use with no viewer and no page


async def _calibrate(
    http: aiohttp.ClientSession, pid: int, out: Results, rng: random.Random
) -> None:
    """Server CPU per page with one request at a time, less what the live runs use meanwhile:
    a figure that other work on the machine moves much less than latency under load."""
    c0, t0 = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(2.0)
    background = out.background = (_cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    for kind in ("index", "search"):
        c0, t0 = _cpu_seconds(pid), time.monotonic()
        for _ in range(CALIBRATION_PAGES):
            path = "/" if kind == "index" else f"/?q={rng.choice(RARE)}"
            async with http.get(path) as response:
                await response.read()
        used = _cpu_seconds(pid) - c0 - background * (time.monotonic() - t0)
        out.cpu_per_page[kind] = 1000 * used / CALIBRATION_PAGES


async def _viewer(http: aiohttp.ClientSession, url: str, results: Results, until: float) -> None:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with http.get(
            url, timeout=aiohttp.ClientTimeout(total=until - time.monotonic())
        ) as r:
            async for line in r.content:
                if line.startswith(b"event: "):
                    results.viewer_events += 1


async def _request(
    http: aiohttp.ClientSession, path: str, kind: str, due: float, t: float, out: Results
) -> None:
    await asyncio.sleep(max(0.0, due - time.monotonic()))
    try:
        async with http.get(path, timeout=aiohttp.ClientTimeout(total=t)) as response:
            await response.read()
            ok = response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        ok = False
    if ok:
        out.latencies[kind].append(time.monotonic() - due)
    else:
        out.failures[kind] += 1


def _paths(args: argparse.Namespace, rng: random.Random) -> Iterator[tuple[str, str]]:
    for n in itertools.count():
        if n % 4 == 3:
            yield "search", f"/?q={rng.choice(RARE)}"
        elif n % 2:
            yield "index", f"/?before={rng.randint(60, args.runs)}"
        else:
            yield "index", "/"


async def _load(args: argparse.Namespace, srv: Server) -> tuple[Results, float]:
    results, rng = Results(), random.Random(11)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(srv.url, connector=connector) as http:
        await _calibrate(http, srv.proc.pid, results, rng)
        until = time.monotonic() + args.duration + args.timeout + 5
        viewers = [
            asyncio.create_task(
                _viewer(http, f"/runs/{srv.live_ids[i % len(srv.live_ids)]}/events", results, until)
            )
            for i in range(args.viewers)
        ]
        await asyncio.sleep(1.0)  # the streams are open before the load starts
        start, total = time.monotonic(), int(args.rate * args.duration)
        paths = _paths(args, rng)
        requests = [
            _request(http, path, kind, start + i / args.rate, args.timeout, results)
            for i, (kind, path) in zip(range(total), paths, strict=False)
        ]
        await asyncio.gather(*requests)
        wall = time.monotonic() - start
        for task in viewers:
            task.cancel()
        await asyncio.gather(*viewers, return_exceptions=True)
    return results, wall


def _cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _report(args: argparse.Namespace, results: Results, wall: float, cpu: float) -> None:
    load = os.getloadavg()
    print(f"Command: python bench/archive_load.py {' '.join(sys.argv[1:])}")
    print(
        f"Server code: {Path(args.code).resolve() if args.code else ROOT}; "
        f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"{args.runs} runs stored, {args.live} live"
        f"{' (driven by another process)' if args.elsewhere else ''}, {args.viewers} live viewers; "
        f"{args.rate} requests/s for {args.duration} s (3/4 index, 1/4 search)"
    )
    for kind, values in results.latencies.items():
        if values:
            line = (
                f"p50 {1000 * statistics.median(values):8.1f} ms   "
                f"p99 {1000 * _quantile(values, 0.99):8.1f} ms"
            )
        else:
            line = "no request answered"
        failed = results.failures[kind]
        print(
            f"  {kind:6}  {len(values):5} answered  {line}   failed or over {args.timeout} s: {failed}"
        )
    per_page = ", ".join(f"{k} {v:.1f} ms" for k, v in results.cpu_per_page.items())
    print(
        f"  server CPU per page, one request at a time (live runs' share taken off): {per_page}; "
        f"the live runs alone: {100 * results.background:.0f}% of a core"
    )
    answered = sum(len(values) for values in results.latencies.values())
    print(
        f"  wall {wall:.1f} s; server CPU {100 * cpu / wall:.0f}% of a core, "
        f"{1000 * cpu / max(1, answered):.1f} ms per page answered (live runs included); "
        f"live events the viewers received: {results.viewer_events}"
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="ended runs in the archive")
    parser.add_argument("--live", type=int, default=10, help="live runs the viewers watch")
    parser.add_argument("--viewers", type=int, default=50, help="live event streams held open")
    parser.add_argument("--rate", type=float, default=200.0, help="page requests a second")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load")
    parser.add_argument("--timeout", type=float, default=10.0, help="the most a request may take")
    parser.add_argument("--code", default=None, help="run the server on this checkout")
    parser.add_argument(
        "--server-path",
        action="append",
        default=[],
        help="a folder added to the server's PYTHONPATH (e.g. a `pip install --target` of a "
        "package to try)",
    )
    parser.add_argument("--profile", default=None, help="write the server's cProfile stats here")
    parser.add_argument(
        "--elsewhere",
        action="store_true",
        help="drive the live runs in a process of their own (the web process polls the store)",
    )
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)  # the server process
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)  # the driver
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.serve is not None:
        from bot import eventloop

        # On the loop `backrooms serve` runs on (uvloop where it is installed).
        if args.drive:
            eventloop.run(_drive(Path(args.serve), args.live))
        else:
            eventloop.run(_serve(Path(args.serve), args.runs, args.live, args.profile))
        return 0
    with tempfile.TemporaryDirectory(prefix="archive-load-") as tmp, server(args, Path(tmp)) as srv:
        cpu0 = _cpu_seconds(srv.proc.pid)
        results, wall = asyncio.run(_load(args, srv))
        _report(args, results, wall, _cpu_seconds(srv.proc.pid) - cpu0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the relay service: many concurrent runs, real SDKs, a fake model server in its own process.

    python bench/run_service.py [--runs 200] [--turns 5] [--search-max 2000] [--skip-search] [--quick]

What it measures (bench/README.md explains how to read every figure):

1. calibration: one run alone gives the honest time of one reply, hence the ideal wall time
   (turns x participants x reply time) that a run would take if concurrency cost nothing;
2. headline: `--runs` runs started at once, each `opus gpt4o` or `sonnet o1-mini` (so both SDKs
   stream), `--turns` turns: wall time, efficiency = ideal / wall (target >= 0.9), CPU ms per
   reply, peak RSS (target < 300 MB), retries, and any run that did not end with max_turns;
3. search: the largest number of concurrent runs that keeps efficiency >= 0.9 (ladder, then
   bisection between the last pass and the first fail), up to `--search-max`;
4. zero latency: a second fake server with no delay between chunks; CPU per reply without a
   profiler, then with cProfile (thread CPU time) split into SDK, store, log and engine/other.

Everything talks to 127.0.0.1 only. The service is built exactly as `backrooms` builds it:
`open_runtime(Settings.from_mapping(env))`, warmed as the chat service warms it
(`bot.service.warm(rt.providers)`), runs started through `rt.manager.start(RunSpec(...))`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import itertools
import logging
import os
import platform
import pstats
import resource
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python bench/run_service.py` from a checkout imports the checkout

from backrooms_engine.manager import RunHandle  # noqa: E402
from backrooms_engine.ports import Archive  # noqa: E402
from backrooms_engine.records import RunEnd, RunSpec  # noqa: E402
from backrooms_engine.registry import load_registry  # noqa: E402
from bot import eventloop  # noqa: E402
from bot.runtime import Runtime, open_runtime  # noqa: E402
from bot.service import warm  # noqa: E402
from bot.settings import Settings  # noqa: E402

PAIRS = (("opus", "gpt4o"), ("sonnet", "o1-mini"))  # Anthropic then OpenAI SDK, in both orders
PARTICIPANTS = 2
CHUNKS, CHUNK_DELAY, WORDS = 40, 0.05, 400  # the issue's reply: ~400 tokens in 40 chunks over 2 s
NOMINAL_REPLY = 2.0  # the issue's round figure; the fake sleeps 39 x 0.05 = 1.95 s between chunks
TARGET_EFFICIENCY, TARGET_RSS_MB = 0.9, 300.0
LADDER = (200, 400, 800, 1200, 1600, 2000)
BISECT_STEPS = 6
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the fake model server, in its own process ---------------------------------------------------


@dataclass
class FakeServer:
    proc: subprocess.Popen[bytes]
    base_url: str

    def cpu_seconds(self) -> float:
        """user + sys of the server process, from /proc/<pid>/stat (fields 14 and 15)."""
        text = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = text[text.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK


@contextlib.contextmanager
def fake_server(chunk_delay: float, workdir: Path) -> Iterator[FakeServer]:
    cmd = [sys.executable, "-m", "tests.fakes.model_server", "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--chunks", str(CHUNKS), "--chunk-delay", str(chunk_delay), "--words", str(WORDS)]
    errors = workdir / f"server-delay-{chunk_delay}.stderr"
    with errors.open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
        try:
            yield FakeServer(proc, _await_ready(proc, errors, timeout=30.0))
        finally:
            _stop(proc)


def _await_ready(proc: subprocess.Popen[bytes], errors: Path, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stdout], [], [], left)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if line.startswith("READY "):
            return line.split()[1]
        if proc.poll() is not None:
            raise RuntimeError(f"fake server exited: {errors.read_text()[-2000:]}")
    raise RuntimeError(f"fake server not ready within {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --- one measured batch of runs ------------------------------------------------------------------


def service_env(server: FakeServer, db_dir: Path) -> dict[str, str]:
    """Every provider at the fake, dummy keys, caps far above the load (as tests/conftest.py)."""
    base = server.base_url
    env = {
        "BACKROOMS_DB": str(db_dir / "backrooms.db"),
        "BACKROOMS_LOG_DIR": str(db_dir / "BackroomsLogs"),
        "BACKROOMS_MAX_RUNS": "100000",
        "BACKROOMS_MAX_RUNS_PER_SPACE": "100000",
        "BACKROOMS_CHAT_MAX_TURNS": "10000",
        "BACKROOMS_RETRY_BASE_DELAY": "0.05",
        "BACKROOMS_SHUTDOWN_DEADLINE": "10",
        "NO_COLOR": "1",
        "WORLD_INTERFACE_URL": f"{base}/world",
    }
    for provider in load_registry().providers.values():
        if provider.kind == "anthropic" and provider.base_url_env:
            env[provider.base_url_env] = f"{base}/anthropic"
        elif provider.kind == "openai" and provider.base_url_env:
            env[provider.base_url_env] = f"{base}/openai/v1"
        if provider.key_env and provider.kind != "world_interface":
            env[provider.key_env] = f"bench-key-for-{provider.name}"
    return env


@dataclass
class Phase:
    label: str
    runs: int
    turns: int
    wall: float = 0.0
    start_wall: float = 0.0  # until every manager.start() had returned
    cpu: float = 0.0  # this process, user + sys, all threads
    server_cpu: float = 0.0
    peak_rss_mb: float = 0.0
    ends: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    lag_max: float = 0.0  # event-loop lag: how late a 0.25 s sleep woke up, worst case
    fds_max: int = 0
    stream: list[float] = field(default_factory=list)  # per reply: started -> finished
    gap: list[float] = field(default_factory=list)  # finished -> next reply started (commit)
    run_span: list[float] = field(default_factory=list)  # created -> last reply finished

    @property
    def replies(self) -> int:
        return len(self.stream)

    @property
    def ok(self) -> bool:
        return self.ends["max_turns"] == self.runs

    def ideal(self, reply_time: float) -> float:
        return self.turns * PARTICIPANTS * reply_time


class _RetryCounter(logging.Handler):
    """The engine logs every retry at INFO ("...; retrying in"); count them without printing."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.msg:
            self.retries += 1


def specs_for(runs: int, turns: int) -> list[RunSpec]:
    return [RunSpec(models=PAIRS[i % 2], template="cli", max_turns=turns) for i in range(runs)]


async def run_phase(
    label: str,
    server: FakeServer,
    runs: int,
    turns: int,
    workdir: Path,
    limit: float,
    profiler: cProfile.Profile | None = None,
) -> Phase:
    phase = Phase(label, runs, turns)
    db_dir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=workdir))
    counter = _RetryCounter()
    engine_log = logging.getLogger("backrooms_engine.engine")
    engine_log.addHandler(counter)
    engine_log.setLevel(logging.INFO)
    _reset_peak_rss()
    try:
        async with open_runtime(Settings.from_mapping(service_env(server, db_dir))) as rt:
            await warm(rt.providers)  # as bot.service.serve does before it takes commands
            await _measure(phase, rt, server, limit, profiler)
    finally:
        engine_log.removeHandler(counter)
    phase.retries = counter.retries
    phase.peak_rss_mb = _peak_rss_kb() / 1024
    return phase


async def _measure(
    phase: Phase, rt: Runtime, server: FakeServer, limit: float, profiler: cProfile.Profile | None
) -> None:
    """`limit` bounds the wait for the runs, in seconds; the unfinished count as timed out."""
    sampler = asyncio.create_task(_sample(phase, limit=limit + 60))
    cpu0, srv0, t0 = _cpu(), server.cpu_seconds(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    started = await asyncio.gather(
        *(rt.manager.start(s) for s in specs_for(phase.runs, phase.turns)), return_exceptions=True
    )
    phase.start_wall = time.perf_counter() - t0
    handles = [h for h in started if not isinstance(h, BaseException)]
    phase.ends["start failed"] = len(started) - len(handles)
    done, _ = await asyncio.wait([h.task for h in handles], timeout=limit) if handles else ((), ())
    if profiler is not None:
        profiler.disable()
    phase.wall = time.perf_counter() - t0
    phase.cpu, phase.server_cpu = _cpu() - cpu0, server.cpu_seconds() - srv0
    sampler.cancel()
    for h in handles:  # the unfinished are stopped by open_runtime's shutdown on exit
        phase.ends[_end_reason(h, done)] += 1
    phase.ends = +phase.ends  # drop zero counts
    await _reply_timings(phase, rt.archive, handles)


def _end_reason(handle: RunHandle, done: set[asyncio.Task[RunEnd]]) -> str:
    if handle.task not in done:
        return "timed out"
    if handle.task.cancelled() or handle.task.exception() is not None:
        return "crashed"
    return handle.task.result().reason


async def _sample(phase: Phase, limit: float, period: float = 0.25) -> None:
    for _ in range(int(limit / period)):  # bounded; normally cancelled when the phase ends
        before = time.perf_counter()
        await asyncio.sleep(period)
        phase.lag_max = max(phase.lag_max, time.perf_counter() - before - period)
        phase.fds_max = max(phase.fds_max, len(os.listdir("/proc/self/fd")))


async def _reply_timings(phase: Phase, store: Archive, handles: Sequence[RunHandle]) -> None:
    """From the store, after the clock stopped: per-reply stream time and commit gap."""
    for h in handles:
        replies = await store.replies(h.id)
        for prev, cur in itertools.pairwise(replies):
            phase.gap.append((cur.started_at - prev.finished_at).total_seconds())
        phase.stream += [(r.finished_at - r.started_at).total_seconds() for r in replies]
        if replies:
            span = replies[-1].finished_at - h.record.created_at
            phase.run_span.append(span.total_seconds())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reset_peak_rss() -> None:
    """Linux resets VmHWM when "5" is written to clear_refs; each phase then has its own peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux


def measure(
    label: str,
    server: FakeServer,
    runs: int,
    turns: int,
    workdir: Path,
    limit: float,
    profiler: cProfile.Profile | None = None,
) -> Phase:
    gc.collect()  # the previous phase's garbage is not this phase's cost
    # The loop `backrooms` runs on (uvloop where installed, unless BACKROOMS_EVENT_LOOP says not).
    choice = Settings.from_mapping(os.environ).event_loop
    return eventloop.run(run_phase(label, server, runs, turns, workdir, limit, profiler), choice)


# --- printing ------------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


HEADER = (
    f"{'phase':<12}{'runs':>6}{'replies':>8}{'wall s':>8}{'ideal s':>8}{'eff':>6}{'start s':>8}"
    f"{'cpu ms/rep':>11}{'cpu core%':>10}{'srv core%':>10}{'rss MB':>8}{'lag s':>7}"
    f"{'fds':>6}  ends"
)


def row(p: Phase, reply_time: float) -> str:
    per_reply = 1000 * p.cpu / p.replies if p.replies else float("nan")
    ideal = (
        f"{p.ideal(reply_time):>8.2f}{p.ideal(reply_time) / p.wall:>6.3f}"
        if reply_time
        else f"{'-':>8}{'-':>6}"  # zero latency: no ideal
    )
    ends = ", ".join(f"{k} {v}" for k, v in sorted(p.ends.items())) + f", retries {p.retries}"
    return (
        f"{p.label:<12}{p.runs:>6}{p.replies:>8}{p.wall:>8.2f}{ideal}"
        f"{p.start_wall:>8.2f}{per_reply:>11.2f}"
        f"{100 * p.cpu / p.wall:>10.0f}{100 * p.server_cpu / p.wall:>10.0f}"
        f"{p.peak_rss_mb:>8.0f}{p.lag_max:>7.2f}{p.fds_max:>6}  {ends}"
    )


def detail(p: Phase, reply_time: float) -> str:
    run_eff = [p.ideal(reply_time) / s for s in p.run_span if s > 0]
    per_run = (
        f" | per-run efficiency mean {_mean(run_eff):.3f} min {min(run_eff, default=0):.3f}"
        if reply_time
        else ""
    )
    return (
        f"{'':<12}reply stream s: mean {_mean(p.stream):.3f} p95 {_pct(p.stream, 0.95):.3f} "
        f"max {_pct(p.stream, 1.0):.3f} | commit gap ms: mean {1000 * _mean(p.gap):.1f} "
        f"p95 {1000 * _pct(p.gap, 0.95):.1f} max {1000 * _pct(p.gap, 1.0):.1f}{per_run}"
    )


def print_phase(p: Phase, reply_time: float) -> None:
    print(row(p, reply_time))
    print(detail(p, reply_time), flush=True)


# --- the search for the largest passing concurrency ----------------------------------------------


def passes(p: Phase, reply_time: float) -> bool:
    return p.ok and p.ideal(reply_time) / p.wall >= TARGET_EFFICIENCY


def search(
    server: FakeServer,
    args: argparse.Namespace,
    reply_time: float,
    workdir: Path,
    known: Phase | None,
) -> tuple[int, list[Phase], str]:
    """Ladder up until a step fails, then bisect; returns (largest passing, steps, note)."""
    steps: list[Phase] = []
    deadline = time.monotonic() + args.search_budget
    good, bad = 0, None
    ladder = sorted({n for n in (*args.ladder, args.runs) if n <= args.search_max})
    ladder = ladder or [args.search_max]
    for n in ladder:
        phase = _step(n, known, server, args, reply_time, workdir, steps)
        if not passes(phase, reply_time):
            bad = n
            break
        good = n
        if time.monotonic() > deadline:
            return good, steps, f"stopped early: search budget {args.search_budget:.0f} s spent"
    first_bad = bad
    for _ in range(BISECT_STEPS if bad is not None else 0):
        n = (good + bad) // 2
        if bad - good <= max(5, good // 20) or time.monotonic() > deadline:
            break
        if passes(_step(n, None, server, args, reply_time, workdir, steps), reply_time):
            good = n
        else:
            bad = n
    if bad is None:
        return good, steps, f"every count up to {ladder[-1]} passed"
    return good, steps, f"{first_bad} failed, so no larger count was tried"


def _step(
    n: int,
    known: Phase | None,
    server: FakeServer,
    args: argparse.Namespace,
    reply_time: float,
    workdir: Path,
    steps: list[Phase],
) -> Phase:
    if known is not None and known.runs == n and known.turns == args.search_turns:
        phase = known  # the headline already measured this very workload
    else:
        phase = measure(f"search-{n}", server, n, args.search_turns, workdir, args.timeout)
    steps.append(phase)
    print_phase(phase, reply_time)
    return phase


# --- zero model latency, profiled ----------------------------------------------------------------

# The SDKs and what only they use here: their HTTP stack (aiohttp under them), async layer and
# model library. The world interface also uses aiohttp, but no benchmark run has a `cli` seat.
_SDK_PACKAGES = frozenset(
    "anthropic openai httpx2 httpcore2 httpx httpcore anyio h11 sniffio pydantic pydantic_core "
    "jiter distro typing_extensions aiohttp aiohappyeyeballs yarl multidict propcache".split()
)
BUCKETS = ("sdk", "store", "log", "engine", "event loop", "other")


def classify(func: tuple[str, int, str]) -> str | None:
    """The bucket of a function's own time; None: charge it to whoever called it."""
    filename, _, name = func
    if filename == "~":  # a builtin: sqlite3's C calls are the store, the rest go to the caller
        return "store" if "sqlite3" in name else None
    path = filename.replace(os.sep, "/")
    if "/site-packages/" in path:
        package = path.split("/site-packages/", 1)[1].split("/", 1)[0]
        return "sdk" if package in _SDK_PACKAGES else "store" if package == "aiosqlite" else "other"
    if "/backrooms_engine/store/" in path or path.endswith("backrooms_engine/batching.py"):
        return "store"
    if path.endswith("backrooms_engine/logfile.py"):
        return "log"
    if "/backrooms_engine/" in path or "/bot/" in path:
        return "engine"
    if "/asyncio/" in path or path.endswith("/selectors.py"):
        return "event loop"
    if path == str(Path(__file__).resolve()):
        return "other"
    return None  # the rest of the standard library (json, re, datetime, pathlib, socket, ...)


def attribute(stats: pstats.Stats) -> dict[str, float]:
    """Own CPU time per bucket; unclassified own time flows up the caller edges, split by the
    time spent under each caller, until it reaches a classified function (bounded passes)."""
    table = stats.stats  # type: ignore[attr-defined]
    totals: dict[str, float] = defaultdict(float)
    pending: dict[tuple, float] = {}
    for func, (_, _, own, _, _) in table.items():
        bucket = classify(func)
        if bucket is None:
            pending[func] = own
        else:
            totals[bucket] += own
    for _ in range(100):
        pending = _push_up(table, pending, totals)
        if sum(pending.values()) < 1e-9:
            break
    totals["other"] += sum(pending.values())
    return {b: totals.get(b, 0.0) for b in BUCKETS}


def _push_up(table: dict, pending: dict[tuple, float], totals: dict[str, float]) -> dict:
    moved: dict[tuple, float] = defaultdict(float)
    for func, amount in pending.items():
        callers = table[func][4] if func in table else {}
        weight = sum(edge[3] for edge in callers.values())
        if not callers or weight <= 0:
            totals["other"] += amount
            continue
        for caller, edge in callers.items():
            share = amount * edge[3] / weight
            bucket = classify(caller)
            if bucket is None:
                moved[caller] += share
            else:
                totals[bucket] += share
    return moved


class ThreadProfiles:
    """cProfile sees only the thread that enabled it; the store runs SQLite in aiosqlite's worker
    thread, so every thread started while this is active gets a profiler of its own."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def _hook(self, frame, event, arg) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile(time.thread_time)
        self.profiles.append(profile)
        profile.enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]


def zero_latency(args: argparse.Namespace, workdir: Path) -> tuple[Phase, Phase, pstats.Stats]:
    with fake_server(0.0, workdir) as server:
        measure("zero-warmup", server, 10, 1, workdir, args.timeout)  # imports, first connections
        plain = measure("zero", server, args.zero_runs, args.zero_turns, workdir, args.timeout)
        print_phase(plain, 0.0)
        main = cProfile.Profile(time.thread_time)  # CPU time, not wall: waiting costs nothing
        with ThreadProfiles() as threads:
            prof = measure(
                "zero-prof",
                server,
                args.zero_runs,
                args.zero_turns,
                workdir,
                4 * args.timeout,
                main,
            )
        print_phase(prof, 0.0)
    stats = pstats.Stats(main)  # first: create_stats() disables profiling in the calling thread
    for profile in threads.profiles:
        stats.add(profile)
    return plain, prof, stats


def print_profile(plain: Phase, prof: Phase, stats: pstats.Stats) -> dict[str, float]:
    """Print the split; returns ms per reply per bucket scaled to the un-profiled CPU."""
    split = attribute(stats)
    total = sum(split.values()) or 1.0
    plain_ms = 1000 * plain.cpu / plain.replies
    print(
        f"\nprofiled CPU (cProfile, thread time, all threads): {total:.2f} s for {prof.replies}"
        f" replies; process CPU meanwhile {prof.cpu:.2f} s; un-profiled {plain_ms:.2f} ms/reply"
    )
    print(f"{'bucket':<12}{'share':>8}{'profiled ms/rep':>17}{'scaled ms/rep':>15}")
    scaled = {}
    for bucket, seconds in split.items():
        scaled[bucket] = plain_ms * seconds / total
        print(
            f"{bucket:<12}{100 * seconds / total:>7.1f}%{1000 * seconds / prof.replies:>17.2f}"
            f"{scaled[bucket]:>15.2f}"
        )
    rest = scaled["engine"] + scaled["event loop"] + scaled["other"]
    print(f"{'engine/other':<12}{100 * rest / plain_ms:>7.1f}%{'':>17}{rest:>15.2f}")
    print("\ntop functions by own CPU time (profiled run):")
    print(f"{'own s':>8}{'cum s':>8}{'calls':>10}  bucket      function")
    table = stats.stats  # type: ignore[attr-defined]
    for func, (_, calls, own, cum, _) in sorted(table.items(), key=lambda kv: -kv[1][2])[:25]:
        where = f"{_short(func[0])}:{func[1]}({func[2]})"
        print(f"{own:>8.3f}{cum:>8.3f}{calls:>10}  {classify(func) or '(caller)':<11} {where}")
    return scaled


def _short(filename: str) -> str:
    for marker in ("/site-packages/", str(ROOT) + "/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=200, help="concurrent runs of the headline")
    p.add_argument("--turns", type=int, default=5, help="turns per run (2 replies each)")
    p.add_argument("--search-max", type=int, default=2000, help="most concurrent runs tried")
    p.add_argument("--search-turns", type=int, default=None, help="turns per search run (--turns)")
    p.add_argument("--search-budget", type=float, default=300.0, help="seconds; no new rung after")
    p.add_argument("--skip-search", action="store_true")
    p.add_argument("--zero-runs", type=int, default=100, help="runs of the zero-latency phase")
    p.add_argument("--zero-turns", type=int, default=5)
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per phase, at most")
    p.add_argument("--quick", action="store_true", help="a smoke run under ~2 minutes")
    args = p.parse_args(argv)
    args.ladder = LADDER
    args.calibration_turns = 2
    if args.quick:
        args.runs, args.turns, args.search_max, args.search_budget = 40, 2, 80, 60.0
        args.ladder, args.zero_runs, args.zero_turns, args.calibration_turns = (40, 80), 20, 2, 1
    args.search_turns = args.search_turns or args.turns
    return args


def environment_notes(args: argparse.Namespace) -> list[str]:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    notes = [
        f"python {platform.python_version()}, {os.cpu_count()} cores, {platform.platform()}",
        f"open-files limit {soft} (a run holds one socket while it streams)",
        f"load average {_load()} (other processes on these cores make the figures noisy)",
    ]
    if os.getloadavg()[0] > 0.5:
        notes.append("WARNING: this machine is busy; the service shares its cores, so expect lower")
        notes.append("  efficiency and a smaller search result than on an idle machine")
    if soft < 2 * max(args.search_max, args.runs) + 100:
        notes.append("WARNING: the open-files limit may cap the search (ulimit -n)")
    return notes


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def calibrate(server: FakeServer, args: argparse.Namespace, workdir: Path) -> tuple[float, Phase]:
    """One run alone, after a warm-up that pays for the SDK imports and the first connections:
    its time per reply (created -> last reply stored, over its replies) is the honest ideal."""
    print_phase(measure("warm-up", server, 2, 1, workdir, args.timeout), 0.0)
    lone = measure("calibration", server, 1, args.calibration_turns, workdir, args.timeout)
    return lone.run_span[0] / lone.replies, lone


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM as SystemExit, so the `finally` blocks stop the fake servers instead of orphaning them
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for name in _PROXY_VARS:  # httpx2 honours proxy variables; every byte must stay on 127.0.0.1
        os.environ.pop(name, None)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="backrooms-bench-") as tmp:
        report = run_all(args, Path(tmp))
    print_summary(args, report, time.perf_counter() - began)
    return 0


@dataclass
class Report:
    notes: list[str]
    load_start: str = field(default_factory=_load)
    reply_time: float = 0.0
    headline: Phase | None = None
    largest: int | None = None
    search_note: str = ""
    search_steps: list[Phase] = field(default_factory=list)
    zero_plain: Phase | None = None
    zero_split: dict[str, float] = field(default_factory=dict)


def run_all(args: argparse.Namespace, workdir: Path) -> Report:
    report = Report(environment_notes(args))
    print("\n".join(report.notes))
    with fake_server(CHUNK_DELAY, workdir) as server:
        print(
            f"fake server pid {server.proc.pid} at {server.base_url}: {WORDS} words, {CHUNKS}"
            f" chunks, {CHUNK_DELAY} s apart\n"
        )
        print(HEADER)
        report.reply_time, lone = calibrate(server, args, workdir)
        print_phase(lone, report.reply_time)
        report.headline = measure("headline", server, args.runs, args.turns, workdir, args.timeout)
        print_phase(report.headline, report.reply_time)
        if not args.skip_search:
            print(f"\nsearch: {args.search_turns} turns per run, efficiency >= {TARGET_EFFICIENCY}")
            print(HEADER)
            report.largest, report.search_steps, report.search_note = search(
                server, args, report.reply_time, workdir, report.headline
            )
    print(f"\nzero model latency: {args.zero_runs} runs x {PARTICIPANTS} x {args.zero_turns} turns")
    print(HEADER)
    plain, prof, stats = zero_latency(args, workdir)
    report.zero_plain, report.zero_split = plain, print_profile(plain, prof, stats)
    return report


def print_summary(args: argparse.Namespace, r: Report, took: float) -> None:
    h = r.headline
    assert h is not None and r.zero_plain is not None
    ideal = h.ideal(r.reply_time)
    eff, nominal = ideal / h.wall, args.turns * PARTICIPANTS * NOMINAL_REPLY
    cmd = "python bench/run_service.py " + " ".join(sys.argv[1:])
    z, s = r.zero_plain, r.zero_split
    lines = [
        "",
        "---- summary (paste into README) ----",
        f"Command: `{cmd.strip()}` (took {took:.0f} s)",
        f"Machine: {r.notes[0]}; load average at start {r.load_start}, at end {_load()}",
        f"Fake model server in its own process: {WORDS} words in {CHUNKS} chunks "
        f"{CHUNK_DELAY} s apart; one run alone takes {r.reply_time:.3f} s per reply",
        f"{h.runs} runs x {PARTICIPANTS} participants x {h.turns} turns ({h.replies} replies): "
        f"wall {h.wall:.2f} s, ideal {ideal:.2f} s (nominal {nominal:.0f} s): efficiency "
        f"{eff:.3f} against the measured ideal "
        f"({'PASS' if eff >= TARGET_EFFICIENCY else 'FAIL'}), {nominal / h.wall:.3f} against "
        f"the issue's nominal {nominal:.0f} s "
        f"({'PASS' if nominal / h.wall >= TARGET_EFFICIENCY else 'FAIL'}) - target >= "
        f"{TARGET_EFFICIENCY}",
        f"CPU {1000 * h.cpu / max(h.replies, 1):.2f} ms per reply ({100 * h.cpu / h.wall:.0f}% of "
        f"one core); peak RSS {h.peak_rss_mb:.0f} MB - target < {TARGET_RSS_MB:.0f} MB: "
        f"{'PASS' if h.peak_rss_mb < TARGET_RSS_MB else 'FAIL'}",
        f"Runs that did not end with max_turns: {h.runs - h.ends['max_turns']} "
        f"({dict(h.ends)}); retries: {h.retries}",
        f"Where the time went: reply stream mean {_mean(h.stream):.2f} s (p95 "
        f"{_pct(h.stream, 0.95):.2f} s), wait between a reply and the next mean "
        f"{1000 * _mean(h.gap):.0f} ms, starting all runs {h.start_wall:.1f} s, worst event-loop "
        f"lag {h.lag_max:.2f} s; "
        f"fake server {100 * h.server_cpu / h.wall:.0f}% of a core",
    ]
    if r.largest is not None:
        tried = ", ".join(
            f"{p.runs} -> {p.ideal(r.reply_time) / p.wall:.3f}" for p in r.search_steps
        )
        lines.append(
            f"Largest concurrent runs with efficiency >= {TARGET_EFFICIENCY}: {r.largest} "
            f"(search up to {args.search_max}, {args.search_turns} turns each; {r.search_note}; "
            f"runs -> efficiency: {tried})"
        )
    lines.append(
        f"Zero model latency, {z.runs} runs x {PARTICIPANTS} x {z.turns} turns: CPU "
        f"{1000 * z.cpu / z.replies:.2f} ms per reply = SDK {s['sdk']:.2f} + store "
        f"{s['store']:.2f} + log {s['log']:.2f} + engine/other "
        f"{s['engine'] + s['event loop'] + s['other']:.2f} (of which event loop "
        f"{s['event loop']:.2f}); split by cProfile shares"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())

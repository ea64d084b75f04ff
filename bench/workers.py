"""Benchmark runs driven by `backrooms worker` processes over one PostgreSQL store (issue 15).

    python bench/workers.py [--runs 60] [--turns 5] [--repeat 1] [--stops 30] [--cli-stops 10]
                            [--database-url postgresql://postgres@127.0.0.1:5432/test]

The load of bench/run_service.py (half the runs `opus gpt4o`, half `sonnet o1-mini`, so every
turn streams through both SDKs from the fake model server in its own process, 400 words in 40
chunks 0.05 s apart), but queued into a PostgreSQL store, as `backrooms start` queues a run, and
driven by real `backrooms worker` processes (subprocesses, the console script of this checkout).
Each variant gets a schema of its own, dropped after it. Everything talks to 127.0.0.1 only.

1. calibration: one worker, one run of 2 turns alone (after a 1-turn warm-up run): the time of
   one reply, from its first reply's start to its last reply's end, hence the ideal wall time
   of a load (turns x 2 x reply time);
2. load, with 1 and then with 2 workers (`--repeat` times, alternating): `--runs` runs queued at
   once, each worker allowed `ceil(runs / workers)` of them (`backrooms worker --max-runs`), so
   the first to look does not claim them all. Wall time from the first queue call to the last
   end stored; efficiency = ideal / wall; per worker: CPU ms per reply it drove (user + system
   from /proc/PID/stat over the load), peak RSS (VmHWM of /proc/PID/status, reset before the load
   through /proc/PID/clear_refs), how many runs each of its claim rounds took (its log lines);
   and from the store: every run must end `max_turns` with exactly turns x 2 replies, one per
   (turn, seat): the rest are counted as lost or doubled;
3. stop latency across processes: `--stops + --cli-stops` long runs going on 2 workers; the
   bench asks `--stops` of them to stop through the store's `request_stop` (what any process's
   stop writes), a random 0.05-0.3 s apart, then `backrooms stop N` (a subprocess) for
   `--cli-stops` more, one after another. For each: stored `desired_at` to stored `ended_at`,
   and for the command its wall time (process start included).

Takeover (SIGKILL to the next reply committed by the new owner) is bench/takeover.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from run_service import (  # noqa: E402
    CHUNK_DELAY,
    PAIRS,
    PARTICIPANTS,
    FakeServer,
    fake_server,
    service_env,
)

from backrooms_engine.records import RunSpec, now  # noqa: E402
from backrooms_engine.store import open_store  # noqa: E402
from bot.runtime import open_runtime  # noqa: E402
from bot.settings import Settings  # noqa: E402

SERVER = "postgresql://postgres@127.0.0.1:5432/test"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_CLAIMED = re.compile(r"run (\d+): claimed")
_CLAIM_LINE = re.compile(r"^(\S+ \S+) INFO \S+: run \d+: claimed", re.M)
_CLI = "import sys; from bot.cli import main; sys.exit(main())"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- the store: a schema per variant --------------------------------------------------------------


@contextlib.asynccontextmanager
async def schema(server: str) -> AsyncIterator[str]:
    """The URL of a new, empty schema on `server` (tests/postgres.py's way); dropped after."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    joiner = "&" if "?" in server else "?"
    async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield f"{server}{joiner}options=-csearch_path%3D{name}"
        finally:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


async def queue(env: dict[str, str], runs: int, turns: int) -> tuple[list[int], float, float]:
    """Queue `runs` runs as `backrooms start` does (RunManager.queue on a store opened as a
    process that drives nothing): their ids, the wall clock before the first, and the seconds
    queueing took."""
    settings = Settings.from_mapping(env)
    async with open_runtime(settings, drives=False) as rt:  # its store has no leases
        manager = rt.manager
        specs = [
            RunSpec(
                models=PAIRS[i % 2],
                template="cli",
                max_turns=turns,
                started_by="bench/workers.py",
                surface="terminal",
            )
            for i in range(runs)
        ]
        t0, m0 = time.time(), time.monotonic()
        records = await asyncio.gather(*(manager.queue(s) for s in specs))
        took = time.monotonic() - m0
    return [r.id for r in records], t0, took


def _ts(text: str) -> float:
    stamp = datetime.fromisoformat(text)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


async def wait_ended(url: str, ids: Sequence[int], limit: float) -> int:
    """Poll every 0.25 s, at most `limit` s, until the runs have ended; how many have."""
    ended = 0
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(int(limit / 0.25)):
            cur = await conn.execute(
                "SELECT count(*) FROM runs WHERE status = 'ended' AND id = ANY(%s)", (list(ids),)
            )
            row = await cur.fetchone()
            ended = int(row[0]) if row else 0
            if ended == len(ids):
                break
            await asyncio.sleep(0.25)
    return ended


async def wait_replies(url: str, ids: Sequence[int], each: int, limit: float) -> bool:
    """Until every run in `ids` has at least `each` replies stored (polled every 0.25 s)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(int(limit / 0.25)):
            cur = await conn.execute(
                "SELECT count(*) FROM (SELECT run_id FROM replies WHERE run_id = ANY(%s) "
                "GROUP BY run_id HAVING count(*) >= %s) AS enough",
                (list(ids), each),
            )
            row = await cur.fetchone()
            if row and int(row[0]) == len(ids):
                return True
            await asyncio.sleep(0.25)
    return False


# --- worker processes -----------------------------------------------------------------------------


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    cpu0: float = 0.0

    def stat_cpu(self) -> float:
        text = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = text[text.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def reset_peak(self) -> bool:
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def claimed(self) -> set[int]:
        return {int(m) for m in _CLAIMED.findall(self.text())}

    def rounds(self) -> list[int]:
        """How many runs each of its claim rounds took: its "claimed" log lines, a new round
        after a gap of 0.5 s or more."""
        stamps = [
            datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for t in _CLAIM_LINE.findall(self.text())
        ]
        sizes: list[int] = []
        for prev, cur in zip([-math.inf, *stamps], stamps, strict=False):
            if cur - prev >= 0.5:
                sizes.append(0)
            sizes[-1] += 1
        return sizes


def worker_env(server: FakeServer, folder: Path, url: str) -> dict[str, str]:
    env = service_env(server, folder)
    env.pop("BACKROOMS_DB")
    env["BACKROOMS_DATABASE_URL"] = url
    return env


def child_env(env: dict[str, str]) -> dict[str, str]:
    """As tests/helpers.py spawns `backrooms`: no real keys, no proxy, this checkout imported."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "OPENAI"))}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        full.pop(name, None)
    return full | env | {"PYTHONPATH": str(ROOT)}


def spawn(env: dict[str, str], folder: Path, max_runs: int, index: int) -> Worker:
    full = child_env(env)
    log = folder / f"worker-{index}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CLI, "worker", "--max-runs", str(max_runs)],
            env=full,
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Worker(proc, log)


async def ready(workers: Sequence[Worker], limit: float = 180.0) -> None:
    for _ in range(int(limit / 0.2)):
        if all("worker ready" in w.text() for w in workers):
            return
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"a worker exited early:\n{w.text()[-2000:]}")
        await asyncio.sleep(0.2)
    raise RuntimeError(f"workers not ready within {limit:g} s")


def stop_workers(workers: Sequence[Worker]) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait(timeout=10)


@contextlib.contextmanager
def running(env: dict[str, str], folder: Path, count: int, max_runs: int) -> Iterator[list[Worker]]:
    workers = [spawn(env, folder, max_runs, i) for i in range(count)]
    try:
        yield workers
    finally:
        stop_workers(workers)


# --- one load -------------------------------------------------------------------------------------


@dataclass
class Load:
    label: str
    workers: int
    runs: int
    turns: int
    load_start: str = ""
    load_end: str = ""
    wall: float = 0.0
    queue_s: float = 0.0
    ended: int = 0
    ends: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    doubled: int = 0
    bad_runs: list[int] = field(default_factory=list)
    claim_wait: list[float] = field(default_factory=list)  # created -> first reply started
    first_start: float = math.inf  # the wall clock when the first reply of the load started
    per_worker: list[tuple[int, int, float, float, bool]] = field(default_factory=list)
    # (runs claimed, replies, cpu s, peak rss MB, whether the peak was reset before the load)
    rounds: list[list[int]] = field(default_factory=list)  # per worker: runs claimed per round
    server_cpu: float = 0.0
    t0: float = 0.0  # the wall clock before the first queue call
    reply_span: float = 0.0  # calibration: first reply started -> last finished, per reply

    @property
    def replies(self) -> int:
        return sum(w[1] for w in self.per_worker)


async def check(url: str, ids: Sequence[int], turns: int, load: Load) -> dict[int, int]:
    """Read the runs back: how they ended, lost and doubled replies; replies per run."""
    per_run: dict[int, int] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT id, status, end_reason, created_at FROM runs WHERE id = ANY(%s)", (list(ids),)
        )
        runs = {r[0]: r for r in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT run_id, turn, position, started_at, finished_at FROM replies "
            "WHERE run_id = ANY(%s) ORDER BY run_id, seq",
            (list(ids),),
        )
        replies = await cur.fetchall()
    by_run: dict[int, list[tuple[int, int, str, str]]] = {i: [] for i in ids}
    for run_id, turn, position, started, finished in replies:
        by_run[run_id].append((turn, position, started, finished))
    # Every (turn, seat) once: turns and seats counted from the lowest stored (0 or 1).
    first_turn = min((r[1] for r in replies), default=0)
    first_seat = min((r[2] for r in replies), default=0)
    expected = {(first_turn + t, first_seat + p) for t in range(turns) for p in range(PARTICIPANTS)}
    for run_id in ids:
        status, reason, created = runs[run_id][1], runs[run_id][2], runs[run_id][3]
        key = reason if status == "ended" else "not ended"
        load.ends[key] = load.ends.get(key, 0) + 1
        got = [(t, p) for t, p, _, _ in by_run[run_id]]
        load.lost += len(expected - set(got))
        load.doubled += len(got) - len(set(got))
        if reason != "max_turns" or set(got) != expected or len(got) != len(expected):
            load.bad_runs.append(run_id)
        if by_run[run_id]:
            started = _ts(by_run[run_id][0][2])
            load.claim_wait.append(started - _ts(created))
            load.first_start = min(load.first_start, started)
        per_run[run_id] = len(got)
    if len(ids) == 1 and by_run[ids[0]]:
        rows = by_run[ids[0]]
        load.reply_span = (_ts(rows[-1][3]) - _ts(rows[0][2])) / len(rows)
    return per_run


async def ended_at(url: str, ids: Sequence[int]) -> float:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SELECT max(ended_at) FROM runs WHERE id = ANY(%s)", (list(ids),))
        row = await cur.fetchone()
    return _ts(row[0]) if row and row[0] else float("nan")


async def run_load(
    label: str,
    server: FakeServer,
    server_url: str,
    workdir: Path,
    workers: int,
    runs: int,
    turns: int,
    limit: float,
    warm_up: bool = False,
) -> Load:
    result = Load(label, workers, runs, turns, load_start=load())
    folder = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=workdir))
    async with schema(server_url) as url:
        env = worker_env(server, folder, url)
        with running(env, folder, workers, math.ceil(runs / workers)) as procs:
            await ready(procs)
            if warm_up:  # the first connections and requests of this worker
                warm_ids, _, _ = await queue(env, 1, 1)
                await wait_ended(url, warm_ids, limit)
            resets = [w.reset_peak() for w in procs]
            for w in procs:
                w.cpu0 = w.stat_cpu()
            srv0 = server.cpu_seconds()
            ids, t0, result.queue_s = await queue(env, runs, turns)
            result.ended = await wait_ended(url, ids, limit)
            cpus = [w.stat_cpu() - w.cpu0 for w in procs]
            result.server_cpu = server.cpu_seconds() - srv0
            peaks = [w.status_kb("VmHWM") / 1024 for w in procs]
            result.t0 = t0
            result.wall = await ended_at(url, ids) - t0
            per_run = await check(url, ids, turns, result)
            for w, cpu, peak, reset in zip(procs, cpus, peaks, resets, strict=True):
                mine = w.claimed() & set(ids)
                replies = sum(per_run.get(i, 0) for i in mine)
                result.per_worker.append((len(mine), replies, cpu, peak, reset))
                result.rounds.append(w.rounds())
    result.load_end = load()
    return result


# --- stop latency ---------------------------------------------------------------------------------


@dataclass
class Stops:
    load_start: str = ""
    load_end: str = ""
    store: list[float] = field(default_factory=list)  # request_stop: desired_at -> ended_at
    cli_store: list[float] = field(default_factory=list)  # `backrooms stop`: the same
    cli_wall: list[float] = field(default_factory=list)  # `backrooms stop`: the command's wall
    cli_failed: int = 0
    not_stopped: list[int] = field(default_factory=list)
    not_asked: int = 0


async def stop_latency(
    server: FakeServer, server_url: str, workdir: Path, api: int, cli: int, limit: float
) -> Stops:
    result = Stops(load_start=load())
    folder = Path(tempfile.mkdtemp(prefix="stops-", dir=workdir))
    runs = api + cli
    rng = random.Random(15)
    async with schema(server_url) as url:
        env = worker_env(server, folder, url)
        with running(env, folder, 2, math.ceil(runs / 2)) as procs:
            await ready(procs)
            ids, _, _ = await queue(env, runs, 1000)  # far longer than the phase
            if not await wait_replies(url, ids, 2, limit):
                raise RuntimeError("the long runs did not all get going")
            async with await open_store(Settings.from_mapping(env).store, owner=False) as store:
                for run_id in ids[:api]:
                    if not await store.transcript.request_stop(run_id, "bench", now()):
                        result.not_asked += 1
                    await asyncio.sleep(rng.uniform(0.05, 0.3))
            full = child_env(env)
            for run_id in ids[api:]:
                m0 = time.monotonic()
                done = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", _CLI, "stop", str(run_id), "--by", "bench cli",
                    env=full, cwd=folder,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                await asyncio.wait_for(done.communicate(), 60)
                result.cli_wall.append(time.monotonic() - m0)
                result.cli_failed += done.returncode != 0
            await wait_ended(url, ids, 30)
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                cur = await conn.execute(
                    "SELECT id, end_reason, desired_at, ended_at FROM runs WHERE id = ANY(%s)",
                    (list(ids),),
                )
                rows = {r[0]: r for r in await cur.fetchall()}
            for n, run_id in enumerate(ids):
                _, reason, desired, ended = rows[run_id]
                if reason != "stopped" or not desired or not ended:
                    result.not_stopped.append(run_id)
                    continue
                (result.store if n < api else result.cli_store).append(_ts(ended) - _ts(desired))
    result.load_end = load()
    return result


# --- printing -------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def print_load(p: Load, reply_time: float) -> None:
    ideal = p.turns * PARTICIPANTS * reply_time
    going = p.wall - (p.first_start - p.t0)
    ends = ", ".join(f"{k} {v}" for k, v in sorted(p.ends.items()))
    print(
        f"{p.label}: {p.runs} runs x {p.turns} turns on {p.workers} worker(s): wall {p.wall:.2f} s,"
        f" ideal {ideal:.2f} s, efficiency {ideal / p.wall:.3f} ({ideal / going:.3f} from the first"
        f" reply's start to the last end, {going:.2f} s); queueing took {p.queue_s:.2f} s;"
        f" claim wait (queued -> first reply started) median {statistics.median(p.claim_wait):.2f}"
        f" s, max {max(p.claim_wait):.2f} s"
    )
    print(
        f"  ends: {ends}; replies lost {p.lost}, doubled {p.doubled}; runs not as expected: "
        f"{p.bad_runs or 'none'}; fake server {100 * p.server_cpu / p.wall:.0f}% of a core;"
        f" load average {p.load_start} at start, {p.load_end} at end"
    )
    for n, (claimed, replies, cpu, peak, reset) in enumerate(p.per_worker):
        per_reply = 1000 * cpu / replies if replies else float("nan")
        print(
            f"  worker {n}: {claimed} runs, {replies} replies, CPU {per_reply:.2f} ms per reply "
            f"({100 * cpu / p.wall:.0f}% of a core), peak RSS {peak:.0f} MB"
            f"{'' if reset else ' (process lifetime: VmHWM could not be reset)'}; runs claimed"
            f" per claim round: {p.rounds[n]}"
        )
    total_cpu = sum(w[2] for w in p.per_worker)
    if p.replies:
        print(f"  all workers: CPU {1000 * total_cpu / p.replies:.2f} ms per reply", flush=True)


def print_stops(s: Stops) -> None:
    def line(name: str, values: Sequence[float]) -> str:
        if not values:
            return f"  {name}: none"
        return (
            f"  {name} (n={len(values)}): p50 {pct(values, 0.5):.3f} s, p99 {pct(values, 0.99):.3f}"
            f" s, min {min(values):.3f} s, max {max(values):.3f} s"
        )

    print("stop latency across processes (runs on 2 workers, asked from another process):")
    print(line("request_stop, stored desired_at -> ended_at", s.store))
    print(line("`backrooms stop`, stored desired_at -> ended_at", s.cli_store))
    print(line("`backrooms stop`, the command's wall time", s.cli_wall))
    print(
        f"  not stopped: {s.not_stopped or 'none'}; requests refused (run ended): {s.not_asked};"
        f" commands that failed: {s.cli_failed}; load average {s.load_start} at start,"
        f" {s.load_end} at end",
        flush=True,
    )


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=60, help="runs in each load (default 60)")
    p.add_argument("--turns", type=int, default=5, help="turns per run (default 5)")
    p.add_argument("--repeat", type=int, default=1, help="1-then-2-worker pairs (default 1)")
    p.add_argument("--stops", type=int, default=30, help="stops through request_stop")
    p.add_argument("--cli-stops", type=int, default=10, help="stops through `backrooms stop`")
    p.add_argument("--skip-stops", action="store_true")
    p.add_argument("--timeout", type=float, default=300, help="the most one load may take, s")
    p.add_argument("--database-url", default=SERVER, help=f"a PostgreSQL server (default {SERVER})")
    return p.parse_args(argv)


async def run_all(args: argparse.Namespace, workdir: Path) -> int:
    with fake_server(CHUNK_DELAY, workdir) as server:
        cal = await run_load(
            "calibration", server, args.database_url, workdir, 1, 1, 2, 120, warm_up=True
        )
        reply_time = cal.reply_span
        print(
            f"calibration: one run alone on one worker, 2 turns: {reply_time:.3f} s per reply "
            f"(first reply started to last finished); claim wait {cal.claim_wait[0]:.2f} s; "
            f"ends {cal.ends}; load average {cal.load_start}",
            flush=True,
        )
        bad = 0
        for rep in range(args.repeat):
            for count in (1, 2):
                label = f"load-{count}w" + (f"-{rep + 1}" if args.repeat > 1 else "")
                p = await run_load(
                    label, server, args.database_url, workdir, count, args.runs, args.turns,
                    args.timeout,
                )  # fmt: skip
                print_load(p, reply_time)
                bad += len(p.bad_runs)
        if not args.skip_stops:
            print_stops(
                await stop_latency(
                    server, args.database_url, workdir, args.stops, args.cli_stops, 120
                )
            )
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"Command: python bench/workers.py {' '.join(sys.argv[1:])}\n"
        f"Machine: python {platform.python_version()}, {os.cpu_count()} cores; load average "
        f"{load()}; store {args.database_url}, a schema per variant",
        flush=True,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as scratch:
        code = asyncio.run(run_all(args, Path(scratch)))
    print(f"took {time.monotonic() - started:.0f} s; load average at end {load()}")
    return code


if __name__ == "__main__":
    sys.exit(main())

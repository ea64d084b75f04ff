"""What a Slack channel shows of runs, measured against the Slack emulator (tests/fakes).

Three scenarios, each printed as figures:

* lag: three runs in one channel, a fast model with long replies (about 5,000 characters, two
  Slack messages each, one reply a second), Slack's pacing of one post a second: parts never
  shown, closing lines, and the lag (replies committed minus shown, sampled every 0.25 s; and per
  reply, seconds from its commit to its last part in the thread), max and median.
* stop: one such run stopped after two replies are shown: how long the stopper waits for the
  answer, posts after the stop was asked, model requests after it, whether the closing line and the
  root's outcome arrive.
* kill: the real `backrooms slack` process SIGKILLed at random moments, right after a reply part
  landed in Slack (before its ts is recorded) and right after the root message; the next process
  finishes the run. Duplicated, missing and misplaced parts, and closing lines.

Parts are matched to the transcript by their text (every part of every reply is unique), so the
same script measures code that marks its posts and code that does not.

    python bench/chat_delivery.py [--turns 8] [--trials 3] [--only lag,stop,kill]

`--surface discord` measures a Discord channel instead (bench/chat_discord.py: the real bot
process, so `--before TREE` also measures an older checkout, alternating with this one):

    git worktree add --detach /tmp/chat17-before d451611   # before issue 17's delivery work
    python bench/chat_delivery.py --surface discord --before /tmp/chat17-before [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.text import prepare_for_slack  # noqa: E402
from tests.bot.slack_harness import serving, slack_env  # noqa: E402
from tests.fakes.model_server import FakeModelServer  # noqa: E402
from tests.fakes.slack_server import GENERAL_CHANNEL_ID as GENERAL  # noqa: E402
from tests.fakes.slack_server import FakeSlack  # noqa: E402
from tests.helpers import spawn_backrooms  # noqa: E402

LIMIT = 600.0


def unique_reply(api: str, body: dict) -> str:
    """About 5,000 characters, every word unique to its reply and place."""
    n = len(body.get("messages", []))
    model = body.get("model", "world")
    return f"{model} at {n}: " + " ".join(f"{model[:3]}{n}w{i}" for i in range(560))


def expected_parts(replies: list) -> dict[str, tuple[int, int]]:
    return {text: (r.seq, i) for r in replies for i, text in enumerate(prepare_for_slack(r.text))}


def tally(thread: list[dict], replies: list) -> dict[str, int]:
    """Duplicated, missing and misplaced parts of a thread, and its closing lines."""
    want = expected_parts(replies)
    seen = [want[m["text"]] for m in thread if m.get("username") and m["text"] in want]
    order = sorted(want.values())
    counts = {key: seen.count(key) for key in order}
    first = list(dict.fromkeys(seen))
    return {
        "parts": len(order),
        "duplicated": sum(c - 1 for c in counts.values() if c > 1),
        "missing": sum(1 for c in counts.values() if c == 0),
        "misplaced": len(first) - _increasing(first),
        "closing": sum(1 for m in thread if not m.get("username") and m["text"].startswith("Run ")),
    }


def _increasing(items: list[tuple[int, int]]) -> int:
    """Length of the longest increasing subsequence (parts not in it are out of place)."""
    tails: list[tuple[int, int]] = []
    for item in items:
        lo, hi = 0, len(tails)
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if tails[mid] < item else (lo, mid)
        tails[lo : lo + 1] = [item]
    return len(tails)


def shown(thread: list[dict], replies: list) -> set[int]:
    """Replies whose last part is in the thread."""
    want = expected_parts(replies)
    last = {seq: max(p for s, p in want.values() if s == seq) for seq, _ in want.values()}
    return {
        want[m["text"]][0]
        for m in thread
        if m["text"] in want and want[m["text"]][1] == last[want[m["text"]][0]]
    }


async def _end_of(svc: Any, run_id: int) -> None:
    """The run's end, once its chat has shown all (the harness's own waits are for tests)."""
    await svc.wait_launched(run_id)
    await asyncio.wait_for(svc.rt.manager.wait(run_id), LIMIT)


def env_for(models: FakeModelServer, fake: FakeSlack, tmp: Path) -> dict[str, str]:
    return slack_env(models, fake, tmp, BACKROOMS_SHUTDOWN_DEADLINE="10")


async def lag_scenario(turns: int) -> None:
    async with FakeModelServer(chunk_count=5, chunk_delay=0.2) as models, FakeSlack() as fake:
        models.set_responder(unique_reply)
        tmp = Path(tempfile.mkdtemp(prefix="bench-lag-"))
        samples: list[int] = []
        landed: dict[tuple[int, int], float] = {}
        async with serving(env_for(models, fake, tmp), fake, post_interval=1.0) as svc:
            ids = [await svc.start(f"opus gpt4o cli {turns}") for _ in range(3)]
            roots = {r: svc.root(r)["ts"] for r in ids}
            ends = asyncio.gather(*(_end_of(svc, r) for r in ids))
            while not ends.done():
                for r in ids:
                    replies = await svc.rt.archive.replies(r)
                    done = shown(fake.thread(GENERAL, roots[r]), replies)
                    samples.append(len(replies) - len(done))
                    for seq in done:
                        landed.setdefault((r, seq), time.time())
                await asyncio.sleep(0.25)
            await asyncio.gather(ends, return_exceptions=True)
            transcripts = {r: await svc.rt.archive.replies(r) for r in ids}
        seconds = [
            landed[(r, x.seq)] - x.finished_at.timestamp()
            for r, rs in transcripts.items()
            for x in rs
            if (r, x.seq) in landed
        ]
        totals = [tally(fake.thread(GENERAL, roots[r]), transcripts[r]) for r in ids]
        print(f"lag: 3 runs x {turns} turns in one channel, 1 post/s")
        print(
            f"  parts never shown: {sum(t['missing'] for t in totals)} of {sum(t['parts'] for t in totals)}"
        )
        print(
            f"  duplicated: {sum(t['duplicated'] for t in totals)}, misplaced: {sum(t['misplaced'] for t in totals)}"
        )
        print(f"  closing lines: {sum(min(t['closing'], 1) for t in totals)} of 3")
        print(f"  lag in replies: max {max(samples)}, median {statistics.median(samples)}")
        if seconds:
            print(
                f"  lag in seconds (commit to last part shown): max {max(seconds):.1f}, median {statistics.median(seconds):.1f}"
            )


async def stop_scenario() -> None:
    async with FakeModelServer(chunk_count=5, chunk_delay=0.2) as models, FakeSlack() as fake:
        models.set_responder(unique_reply)
        tmp = Path(tempfile.mkdtemp(prefix="bench-stop-"))
        async with serving(env_for(models, fake, tmp), fake, post_interval=1.0) as svc:
            run_id = await svc.start("opus gpt4o cli 20")
            root = svc.root(run_id)["ts"]
            async with asyncio.timeout(LIMIT):
                while (  # noqa: ASYNC110 (polls the store and the fake)
                    len(shown(fake.thread(GENERAL, root), await svc.rt.archive.replies(run_id))) < 2
                ):
                    await asyncio.sleep(0.1)
            asked = time.monotonic()
            await svc.command(f"stop {run_id}")
            await svc.wait_ephemeral("stopped by")
            answered = time.monotonic()
            requests = len(models.requests)
            await _end_of(svc, run_id)
            after = [c.at for c in fake.calls_to("chat.postMessage") if c.at > asked]
            replies = await svc.rt.archive.replies(run_id)
        thread = fake.thread(GENERAL, root)
        counts = tally(thread, replies)
        buttons = any(b.get("type") == "actions" for b in fake.messages(GENERAL)[0]["blocks"] or [])
        print("stop: one run stopped after two replies are shown")
        print(f"  answer to the stopper after {answered - asked:.1f} s")
        print(
            f"  posts after the stop was asked: {len(after)}, the last "
            f"{max(after, default=asked) - asked:.1f} s after it"
        )
        print(f"  model requests after the answer: {len(models.requests) - requests}")
        print(
            f"  missing parts: {counts['missing']}, closing lines: {counts['closing']}, Stop button left: {buttons}"
        )


async def kill_trial(where: str, seed: int) -> dict[str, int]:
    async with FakeModelServer(chunk_count=5, chunk_delay=0.2) as models, FakeSlack() as fake:
        models.set_responder(unique_reply)
        tmp = Path(tempfile.mkdtemp(prefix="bench-kill-"))
        env = env_for(models, fake, tmp)
        first = await _process(fake, env, tmp)
        if where == "random":
            delay = random.Random(seed).uniform(2.0, 12.0)
            asyncio.get_running_loop().call_later(delay, _kill, first)
        else:
            fake.on_post = _window(first, where)
        await fake.send_slash_command(text="start opus gpt4o cli 3")
        await asyncio.wait_for(first.wait(), LIMIT)
        fake.on_post = None
        second = await _process(fake, env, tmp)
        try:
            closed = await _until_closed(fake)
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.communicate(), LIMIT)
        from backrooms_engine.store import SqliteStore

        async with await SqliteStore.open(tmp / "backrooms.db", owner=False) as store:
            replies = await store.replies(1)
        roots = fake.messages(GENERAL)
        if not roots:
            return {"parts": len(replies) * 2, "missing": len(replies) * 2, "unfinished": 1}
        counts = tally(fake.thread(GENERAL, roots[0]["ts"]), replies)
        return counts | {"roots": len(roots), "unfinished": int(not closed)}


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGKILL)


def _window(proc: asyncio.subprocess.Process, where: str):
    """Kill once a reply part (the third post) or the root has landed, before its answer."""
    posts = 0

    def on_post(message: dict[str, Any]) -> None:
        nonlocal posts
        posts += 1
        if (where == "root" and posts == 1) or (where == "part" and posts == 4):
            _kill(proc)

    return on_post


async def _process(fake: FakeSlack, env: dict[str, str], tmp: Path):
    count = fake.socket_connections
    proc = await spawn_backrooms("slack", env=env, cwd=tmp, merge_stderr=True)
    await fake.wait_socket_connected(LIMIT, count=count + 1)
    return proc


async def _until_closed(fake: FakeSlack, seconds: float = 90.0) -> bool:
    """Until the run's closing line is in its thread (False if it never came)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        roots = fake.messages(GENERAL)
        if roots and any(
            not m.get("username") and m["text"].startswith("Run ")
            for m in fake.thread(GENERAL, roots[0]["ts"])
        ):
            await asyncio.sleep(2.0)  # a duplicate closing line would land within this
            return True
        await asyncio.sleep(0.2)
    return False


async def kill_scenario(trials: int) -> None:
    for where in ("random", "part", "root"):
        results = []
        for seed in range(trials if where == "random" else 1):
            results.append(await kill_trial(where, seed))
        keys = ("parts", "duplicated", "missing", "misplaced", "closing", "unfinished")
        sums = {k: sum(r.get(k, 0) for r in results) for k in keys}
        print(
            f"kill ({where}, {len(results)} trial(s)): "
            + ", ".join(f"{k} {v}" for k, v in sums.items())
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surface", choices=("slack", "discord"), default="slack")
    parser.add_argument("--turns", type=int, default=None, help="default: 8 (Slack), 4 (Discord)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--only", default="lag,stop,kill")
    parser.add_argument(
        "--before", type=lambda p: Path(p).resolve(), default=None, help="Discord: an older tree"
    )
    parser.add_argument("--rounds", type=int, default=1, help="Discord: before/after rounds")
    args = parser.parse_args()
    for env_name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(env_name, None)  # slack_sdk reads them and ignores NO_PROXY
    only = set(args.only.split(","))
    if args.surface == "discord":
        import chat_discord

        await chat_discord.main(only, args.turns or 4, args.trials, args.before, args.rounds)
        return
    args.turns = args.turns or 8
    if "lag" in only:
        await lag_scenario(args.turns)
    if "stop" in only:
        await stop_scenario()
    if "kill" in only:
        await kill_scenario(args.trials)


if __name__ == "__main__":
    asyncio.run(main())

"""What a Discord channel shows of runs: the real `backrooms discord` process, of the code tree
given (its PYTHONPATH), against the Discord emulator in tests/fakes with its webhook rate limit
(5 requests per 2 s) and channel rate limit (30 messages a minute) on. bench/chat_delivery.py
runs these for the code before issue 17's delivery work and after, alternating.

* lag: three runs in one channel, a fast model, long replies (about 4,500 characters: three
  Discord messages each): parts never shown, closing lines, the lag (replies committed minus
  shown, sampled every 0.5 s; per reply, seconds from its commit to its last part shown).
* stop: one run stopped after two replies are shown: the answer to the stopper, posts after the
  stop was asked, whether the closing line and the starter's outcome arrive.
* kill: SIGKILL at random moments, and at the two windows where a message exists in Discord but
  not yet in the store (a reply part just posted; with streaming, a reply's first message just
  posted); the next process finishes the run. Duplicated, missing, misplaced and stray messages.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.text import prepare_for_discord
from tests.conftest import fake_env
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.model_server import FakeModelServer
from tests.helpers import spawn_backrooms

LIMIT = 420.0  # seconds any one wait may take
QUIET = 75.0  # seconds without a request to Discord after which a channel is done (> 60 s limit)


OPENING = "simulator@backrooms:~$ "  # replies of a backrooms run often begin alike


def replies_by(salt: str = ""):
    """About 4,500 characters a reply, every word unique to its reply and place in the run;
    another `salt` gives other words, as a model asked again answers otherwise."""

    def reply(api: str, body: dict) -> str:
        n = len(body.get("messages", []))
        model = body.get("model", "world")
        words = " ".join(f"{model[:3]}{n}{salt}w{i}" for i in range(540))
        return f"{OPENING}{model} at {n}: {words}"

    return reply


unique_reply = replies_by()


class Trial:
    """The emulator, one guild and channel, a model server, a folder: one trial."""

    def __init__(self, fake: FakeDiscord, models: FakeModelServer, tree: Path) -> None:
        self.fake, self.models, self.tree = fake, models, tree
        self.guild = fake.add_guild("Backrooms")
        self.channel = fake.add_text_channel(self.guild, "relay")
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-discord-"))
        fake.enforce_webhook_rate_limit = True
        fake.enforce_channel_rate_limit = True

    def env(self, streaming: bool = False) -> dict[str, str]:
        return fake_env(self.models, self.tmp) | {
            "PYTHONPATH": str(self.tree),
            "DISCORD_TOKEN": self.fake.token,
            "DISCORD_API_BASE_URL": self.fake.rest_base,
            "DISCORD_GATEWAY_URL": self.fake.gateway_url,
            "DISCORD_GUILD_IDS": str(self.guild),
            "DISCORD_STREAMING": "true" if streaming else "false",
            "BACKROOMS_SHUTDOWN_DEADLINE": "10",
        }

    async def service(self, streaming: bool = False) -> asyncio.subprocess.Process:
        sessions = len(self.fake.sessions)
        proc = await spawn_backrooms("discord", env=self.env(streaming), cwd=self.tmp)
        await wait_for(
            lambda: len(self.fake.sessions) > sessions and self.fake.commands(self.guild)
        )
        return proc

    async def start(self, turns: int) -> Any:
        options = {"models": "opus gpt4o", "max_turns": turns}
        return await self.fake.send_interaction(
            self.guild, self.channel, self.fake.owner_user_id, "backrooms", "start", options
        )

    def thread(self, run_id: int) -> int | None:
        for tid, thread in self.fake.threads.items():
            if thread.get("name", "").startswith(f"#{run_id} "):
                return tid
        return None

    def messages(self, run_id: int) -> list[dict[str, Any]]:
        tid = self.thread(run_id)
        return self.fake.messages(tid) if tid is not None else []

    def replies(self, run_id: int) -> list[tuple[int, str, float]]:
        """(seq, text, committed at) of the run's stored replies, read as any reader would."""
        db = self.tmp / "backrooms.db"
        if not db.exists():
            return []
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute(
                "SELECT seq, text, finished_at FROM replies WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        return [(seq, text, datetime.fromisoformat(at).timestamp()) for seq, text, at in rows]

    def closing(self, run_id: int) -> int:
        return sum(
            1
            for m in self.messages(run_id)
            if not m.get("webhook_id") and m["content"].startswith(f"Run {run_id}: ")
        )


async def wait_for(predicate: Any, seconds: float = LIMIT) -> bool:
    """Poll until `predicate()` holds; False if it never did within `seconds`."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def tally(messages: list[dict[str, Any]], replies: list[tuple[int, str, float]]) -> dict[str, int]:
    """Duplicated, missing, misplaced and stray reply messages of a thread."""
    want = {
        part: (seq, i)
        for seq, text, _ in replies
        for i, part in enumerate(prepare_for_discord(text))
    }
    posted = [m["content"] for m in messages if m.get("webhook_id")]
    seen = [want[c] for c in posted if c in want]
    counts = {key: seen.count(key) for key in want.values()}
    first = list(dict.fromkeys(seen))
    return {
        "parts": len(want),
        "duplicated": sum(c - 1 for c in counts.values() if c > 1),
        "missing": sum(1 for c in counts.values() if c == 0),
        "misplaced": len(first) - _increasing(first),
        "stray": sum(1 for c in posted if c not in want),
    }


def _increasing(items: list[tuple[int, int]]) -> int:
    tails: list[tuple[int, int]] = []
    for item in items:
        lo, hi = 0, len(tails)
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if tails[mid] < item else (lo, mid)
        tails[lo : lo + 1] = [item]
    return len(tails)


def shown(messages: list[dict[str, Any]], replies: list[tuple[int, str, float]]) -> set[int]:
    """Replies whose last part is in the thread."""
    posted = {m["content"] for m in messages if m.get("webhook_id")}
    return {seq for seq, text, _ in replies if prepare_for_discord(text)[-1] in posted}


# -- the scenarios -----------------------------------------------------------------------------


async def lag(tree: Path, turns: int) -> dict[str, Any]:
    async with FakeModelServer(chunk_count=5, chunk_delay=0.2) as models, FakeDiscord() as fake:
        models.set_responder(unique_reply)
        w = Trial(fake, models, tree)
        proc = await w.service()
        samples: list[int] = []
        landed: dict[tuple[int, int], float] = {}
        ids = (1, 2, 3)
        try:
            for _ in ids:
                await w.start(turns)
            deadline = time.monotonic() + LIMIT
            posted, changed = 0, time.monotonic()
            while time.monotonic() < deadline:
                for r in ids:
                    replies = w.replies(r)
                    done = shown(w.messages(r), replies)
                    samples.append(len(replies) - len(done))
                    for seq in done:
                        landed.setdefault((r, seq), time.time())
                if (now := len(fake.calls)) != posted:
                    posted, changed = now, time.monotonic()
                if all(w.closing(r) for r in ids) or time.monotonic() - changed > QUIET:
                    break  # all closed, or Discord heard nothing for longer than a rate limit
                await asyncio.sleep(0.5)
        finally:
            await stop(proc)
        totals = [tally(w.messages(r), w.replies(r)) for r in ids]
        seconds = [
            landed[(r, seq)] - at for r in ids for seq, _, at in w.replies(r) if (r, seq) in landed
        ]
        return {
            "parts": sum(t["parts"] for t in totals),
            "missing": sum(t["missing"] for t in totals),
            "duplicated": sum(t["duplicated"] for t in totals),
            "closing": sum(min(w.closing(r), 1) for r in ids),
            "lag": (max(samples), statistics.median(samples)),
            "seconds": (max(seconds), statistics.median(seconds)) if seconds else (0.0, 0.0),
        }


async def stopping(tree: Path) -> dict[str, Any]:
    async with FakeModelServer(chunk_count=5, chunk_delay=0.2) as models, FakeDiscord() as fake:
        models.set_responder(unique_reply)
        w = Trial(fake, models, tree)
        proc = await w.service()
        try:
            await w.start(20)
            await wait_for(lambda: len(shown(w.messages(1), w.replies(1))) >= 2)
            asked = time.monotonic()
            inter = await fake.send_interaction(
                w.guild, w.channel, fake.owner_user_id, "backrooms", "stop", {"run": 1}
            )
            await wait_for(lambda: _answered(fake, inter), 60)
            answered = time.monotonic()
            closed = await wait_for(lambda: w.closing(1) > 0, 60)
            await asyncio.sleep(2.0)
            thread = w.thread(1)
            after = [c.time for c in fake.webhook_executes(thread) if c.time > asked]
            starter = next(
                (m for m in fake.messages(w.channel) if "Backrooms run 1" in m["content"]), {}
            )
        finally:
            await stop(proc)
        counts = tally(w.messages(1), w.replies(1))
        return {
            "answer": answered - asked,
            "posts_after": len(after),
            "last_after": max(after, default=asked) - asked,
            "closing": int(closed),
            "outcome": "Outcome" in starter.get("content", ""),
            "missing": counts["missing"],
        }


def _answered(fake: FakeDiscord, inter: Any) -> bool:
    if any(r.type == 4 for r in fake.interaction_responses(inter.id)):
        return True
    return any(c.route == "interaction_followup" and str(inter.token) in c.path for c in fake.calls)


async def kill(tree: Path, where: str, seed: int) -> dict[str, int]:
    async with FakeModelServer(chunk_count=5, chunk_delay=0.2) as models, FakeDiscord() as fake:
        models.set_responder(unique_reply)
        w = Trial(fake, models, tree)
        streaming = where == "stream"
        first = await w.service(streaming)
        if where == "random":
            delay = random.Random(seed).uniform(2.0, 12.0)
            asyncio.get_running_loop().call_later(delay, _kill, first)
        else:
            fake.on_message = _window(first, 4 if where == "part" else 3)
        await w.start(3)
        try:
            await asyncio.wait_for(first.wait(), LIMIT)
        finally:
            fake.on_message = None
        models.set_responder(replies_by("again"))  # the reply cut by the kill is written anew
        second = await w.service(streaming)
        try:
            closed = await wait_for(lambda: w.closing(1) > 0, 120)
            await asyncio.sleep(2.0)  # a duplicate would land within this
        finally:
            await stop(second)
        return tally(w.messages(1), w.replies(1)) | {
            "closing": w.closing(1),
            "unfinished": int(not closed),
        }


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGKILL)


def _window(proc: asyncio.subprocess.Process, nth: int):
    """Kill once the nth webhook message has landed, before the bot hears Discord's answer."""
    seen = 0

    def on_message(message: dict[str, Any]) -> None:
        nonlocal seen
        if message.get("webhook_id"):
            seen += 1
            if seen == nth:
                _kill(proc)

    return on_message


# -- the report --------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


async def main(only: set[str], turns: int, trials: int, before: Path | None, rounds: int) -> None:
    """Each scenario for each tree in turn (before, after, before, ...), so that a noisy
    machine slows both alike; then the figures per tree."""
    trees = {"before": before, "after": ROOT} if before else {"after": ROOT}
    found: dict[str, dict[str, list[Any]]] = {label: {} for label in trees}

    def keep(label: str, key: str, value: Any) -> None:
        found[label].setdefault(key, []).append(value)

    for _ in range(rounds):
        for label, tree in trees.items():
            if "lag" in only:
                keep(label, "lag", await lag(tree, turns))
            if "stop" in only:
                keep(label, "stop", await stopping(tree))
            if "kill" in only:
                for where in ("random", "part", "stream"):
                    for seed in range(trials if where == "random" else 1):
                        keep(label, f"kill {where}", await kill(tree, where, seed))
            print(f"[{label} done]", flush=True)
    for label, results in found.items():
        print(f"{label} ({trees[label]}):")
        for key, runs in results.items():
            print(f"  {key}: {_summary(key, runs)}")


def _summary(key: str, runs: list[dict[str, Any]]) -> str:
    if key == "lag":
        return "; ".join(
            f"parts never shown {r['missing']} of {r['parts']}, duplicated {r['duplicated']}, "
            f"closing lines {r['closing']} of 3, lag in replies max {r['lag'][0]} median "
            f"{r['lag'][1]}, in seconds max {r['seconds'][0]:.1f} median {r['seconds'][1]:.1f}"
            for r in runs
        )
    if key == "stop":
        return "; ".join(
            f"answer after {r['answer']:.1f} s, posts after the stop {r['posts_after']} (the last "
            f"{r['last_after']:.1f} s after), closing line {r['closing']}, outcome "
            f"{r['outcome']}, missing {r['missing']}"
            for r in runs
        )
    keys = ("parts", "duplicated", "missing", "misplaced", "stray", "closing", "unfinished")
    sums = {k: sum(r.get(k, 0) for r in runs) for k in keys}
    return f"{len(runs)} trial(s): " + ", ".join(f"{k} {v}" for k, v in sums.items())

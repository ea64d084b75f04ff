"""What a run costs, with and without prompt caching: the figures of the README's "What it costs".

    python bench/cost.py [--turns 10] [--words 400] [--models opus sonnet]

A run of two Claude seats is driven exactly as `backrooms run` drives it
(`open_runtime(Settings.from_mapping(env))`, `rt.manager.start(RunSpec(...))`), through the real
anthropic SDK, against the fake model server of tests/fakes/model_server.py on 127.0.0.1, whose
prompt cache keeps Anthropic's accounting (tests/fakes/anthropic_cache.py: the prefix up to each
breakpoint, at most four, the model's minimum, the five-minute lifetime). Every reply is `--words`
words long. The same run goes twice: BACKROOMS_PROMPT_CACHE on, then off. It prints:

- the share of input tokens read from the cache, against the best possible share (every seat's
  request reading all of its previous request);
- the run's cost as stored (each reply priced when it was made, at models.toml's prices), and
  with caching off.

The fake counts a token per 4 characters, and replies come back at once: the share and the ratio
of costs are what the markers achieve; the dollars are those of a run with these token counts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repo

from backrooms_engine.records import Reply, RunRecord, RunSpec
from bot.runtime import open_runtime
from bot.settings import Settings
from tests.conftest import fake_env
from tests.fakes.model_server import FakeModelServer, filler_responder


@dataclass(frozen=True)
class Figures:
    input_tokens: int  # every input token: uncached, read from and written to the cache
    read_tokens: int
    best_read_tokens: int
    cost_usd: float | None

    @property
    def share(self) -> float:
        return self.read_tokens / self.input_tokens if self.input_tokens else 0.0

    @property
    def best_share(self) -> float:
        return self.best_read_tokens / self.input_tokens if self.input_tokens else 0.0


def figures(run: RunRecord, replies: list[Reply]) -> Figures:
    """Best possible: each request after a seat's first reads all of that seat's previous one."""
    last: dict[int, int] = {}
    best = 0
    for reply in replies:
        best += last.get(reply.position, 0)
        last[reply.position] = reply.usage.all_input
    return Figures(
        input_tokens=sum(r.usage.all_input for r in replies),
        read_tokens=run.cache_read_tokens or 0,
        best_read_tokens=best,
        cost_usd=run.cost_usd,
    )


async def one_run(args: argparse.Namespace, cache: bool) -> Figures:
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeModelServer() as server:
            server.set_responder(filler_responder(args.words))
            env = fake_env(server, Path(tmp)) | {"BACKROOMS_PROMPT_CACHE": "1" if cache else "0"}
            async with open_runtime(Settings.from_mapping(env)) as rt:
                spec = RunSpec(models=tuple(args.models), max_turns=args.turns)
                handle = await rt.manager.start(spec)
                await rt.manager.wait(handle.id)
                run = await rt.archive.get_run(handle.id)
                replies = await rt.archive.replies(handle.id)
    return figures(run, replies)


def usd(amount: float | None) -> str:
    return "cost unknown" if amount is None else f"${amount:.4f}"


async def main(args: argparse.Namespace) -> None:
    cached = await one_run(args, cache=True)
    plain = await one_run(args, cache=False)
    who = " + ".join(args.models)
    print(
        f"{args.turns} turns of {who}, {args.words}-word replies ({cached.input_tokens} input tokens)"
    )
    print(
        f"  read from the cache: {cached.share:.1%} of input tokens "
        f"(best possible {cached.best_share:.1%})"
    )
    print(f"  cost with caching:    {usd(cached.cost_usd)}")
    print(f"  cost without caching: {usd(plain.cost_usd)}")
    if cached.cost_usd is not None and plain.cost_usd:
        print(f"  caching saves {1 - cached.cost_usd / plain.cost_usd:.0%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--words", type=int, default=400, help="words per reply")
    parser.add_argument("--models", nargs="+", default=["opus", "sonnet"])
    asyncio.run(main(parser.parse_args()))

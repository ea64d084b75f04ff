"""The service's warm-up (bot/service.py): what a process does once before it takes commands."""

from __future__ import annotations

import subprocess
import sys


def test_after_warming_the_collector_no_longer_walks_the_sdks():
    # In a fresh process: warm() imports both SDKs (some 200,000 objects that live as long as the
    # process), then takes what is alive out of the collector's sight, so that a full collection,
    # which stops every run while it lasts, walks only what the runs themselves create.
    script = (
        "import asyncio, gc\n"
        "from backrooms_engine.providers import ProviderPool\n"
        "from bot.service import warm\n"
        "before = len(gc.get_objects())\n"
        "asyncio.run(warm(ProviderPool({})))\n"
        "import anthropic, openai\n"
        "print(before, len(gc.get_objects()), gc.get_freeze_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    before, after, frozen = map(int, done.stdout.split())
    assert frozen > 100_000  # the SDKs' objects, and everything else alive at that point
    assert after < before  # walked by a full collection: fewer than before the SDKs came in


def test_the_engine_alone_leaves_the_collector_as_it_was():
    # Process-wide tuning belongs to the application: a program that uses the engine as a
    # library and warms its providers keeps its garbage collector untouched.
    script = (
        "import asyncio, gc\n"
        "from backrooms_engine.providers import ProviderPool\n"
        "asyncio.run(ProviderPool({}).warm())\n"
        "import anthropic, openai\n"
        "print(gc.get_freeze_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(done.stdout) == 0

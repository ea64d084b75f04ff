"""The event loop every `backrooms` command runs on: uvloop where it is installed, else asyncio's.

The service is CPU-bound in its event loop under load (bench/): every streamed chunk of every
reply is a socket read and a wake-up. uvloop (libuv, the loop uvicorn uses too) does that work in
C; in the benchmark it took a tenth to a fifth off the CPU per reply. It does not exist on
Windows, where asyncio's loop is used. BACKROOMS_EVENT_LOOP=asyncio opts out anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from backrooms_engine.errors import ConfigError

T = TypeVar("T")
CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """None means asyncio's own loop."""
    if choice not in CHOICES:
        raise ConfigError(
            f"BACKROOMS_EVENT_LOOP must be one of {', '.join(CHOICES)}, got {choice!r}"
        )
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "BACKROOMS_EVENT_LOOP=uvloop, but uvloop is not installed here "
                "(pip install uvloop; it does not exist on Windows)"
            ) from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """asyncio.run on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()  # never awaited: close it so Python does not warn about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)

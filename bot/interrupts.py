"""How a `backrooms` command ends on Ctrl-C and SIGTERM, whenever they arrive.

The handlers are installed once, before anything else, and never removed, so no moment of the
process (importing the SDKs, opening the store, the final cleanup) is left to the default action
that would kill it by the signal. Outside a running event loop a signal raises `Quit`, which
`main` turns into the command's exit status; while a loop runs, the signal is handed to the
callback that loop's command registered (a terminal run stops or pauses its run). A second signal
quits at once: the transcript is committed reply by reply, so only the drain is skipped.

Exit statuses (README, "Exit status"): a terminal run ends 130 after Ctrl-C (128 + SIGINT) and 143
after SIGTERM (128 + SIGTERM); a service drains and ends 0 after either.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # asyncio takes a tenth of a second to import: not before the handlers exist
    import asyncio

OK = 0
FAILED = 1  # a run ended by an error; a platform that cannot be reached
USAGE = 2  # bad input or settings
INTERRUPTED = 128 + signal.SIGINT  # 130
TERMINATED = 128 + signal.SIGTERM  # 143

TERMINAL_CODES: Mapping[int, int] = {signal.SIGINT: INTERRUPTED, signal.SIGTERM: TERMINATED}
SERVICE_CODES: Mapping[int, int] = {signal.SIGINT: INTERRUPTED, signal.SIGTERM: OK}


class Quit(BaseException):  # not an error: the process was asked to end
    """A signal outside the event loop: unwinds (running `finally` blocks) to `main`."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class Interrupts:
    def __init__(self, codes: Mapping[int, int]):
        self._codes = dict(codes)
        self.code: int | None = None  # the first signal's exit status, once one came
        self._target: tuple[asyncio.AbstractEventLoop, Callable[[int], None]] | None = None

    def install(self) -> None:
        for sig in self._codes:
            signal.signal(sig, self._on_signal)

    def deliver_to(self, callback: Callable[[int], None]) -> None:
        """From now on, signals go to `callback(signum)` on the running loop (until it closes)."""
        import asyncio

        self._target = (asyncio.get_running_loop(), callback)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        code = self._codes[signum]
        if self.code is not None:
            quit_now(code)
        self.code = code
        if self._target is not None:
            loop, callback = self._target
            try:
                loop.call_soon_threadsafe(callback, signum)
                return
            except RuntimeError:  # the loop has closed: we are in the last lines of main
                self._target = None
        raise Quit(code)


def quit_now(code: int) -> None:
    """The second Ctrl-C: leave without draining (what is committed stays committed)."""
    try:  # not stdout: a reader that stopped reading is often why the drain is stuck
        sys.stderr.write("\nbackrooms: quitting now\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed or broken stream must not keep us here
        pass
    os._exit(code)

"""The terminal surface: streams replies under coloured actor headers, as upstream prints them."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from backrooms_engine.events import (
    Event,
    ReplyDelta,
    ReplyFinished,
    ReplyRetrying,
    ReplyStarted,
    RunEnded,
    RunStarted,
)

RESET = "\033[0m"


def colour_enabled(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    env = os.environ if env is None else env
    return "NO_COLOR" not in env and hasattr(stream, "isatty") and stream.isatty()


def _ansi(hex_colour: str) -> str:
    try:
        r, g, b = (int(hex_colour.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        return "\033[1m"
    return f"\033[1;38;2;{r};{g};{b}m"


def retry_words(delay: float) -> str:
    """When the next attempt goes: never "retrying in 0s"."""
    if delay < 0.05:
        return "retrying now"
    return f"retrying in {delay:.1f}s" if delay < 10 else f"retrying in {delay:.0f}s"


# After a reply the API ended at max_tokens (on thinking models the limit covers thinking too).
CUT_OFF_NOTE = "[cut off: the reply reached its max_tokens limit]"


class TerminalPrinter:
    name = "terminal"

    def __init__(
        self,
        colours: Mapping[str, str],
        *,
        stream: TextIO | None = None,
        colour: bool | None = None,
    ):
        """`colours` maps actor names to hex colours from the registry."""
        self._out = stream or sys.stdout
        self._colour = colour_enabled(self._out) if colour is None else colour
        self.colours = dict(colours)
        self._reader_left = False
        self._line_open = False  # the last thing written did not end its line

    def header(self, actor: str) -> str:
        title = f"### {actor} ###"
        if not self._colour:
            return title
        return f"{_ansi(self.colours.get(actor, ''))}{title}{RESET}"

    async def handle(self, event: Event) -> None:
        match event:
            case RunStarted(run=run, resumed=resumed):
                who = " ".join(p.actor for p in run.participants)
                verb = "resumed" if resumed else "started"
                self._note(f"run {run.id} {verb}: {who}, template {run.spec.template}")
            case ReplyStarted(actor=actor, attempt=1):
                # One header per reply: a retry goes on under it, after its note.
                self._write(f"\n{self.header(actor)}\n")
            case ReplyDelta(delta=delta):
                self._write(delta)
            case ReplyFinished(reply=reply):
                self._write("\n")
                if reply.cut_off:
                    self._note(CUT_OFF_NOTE)
            case ReplyRetrying(reason=reason, delay=delay):
                self._end_line()
                self._note(f"[{reason}; {retry_words(delay)}]")
            case RunEnded(end=end):
                self._write(end.closing_line())

    @property
    def reader_left(self) -> bool:
        """Whether the reader of stdout has gone (a closed pipe): nothing more is printed."""
        return self._reader_left

    @property
    def line_open(self) -> bool:
        """Whether the last text written left its line open (a reply mid-stream)."""
        return self._line_open

    def note(self, text: str) -> None:
        """A dim line of our own between the transcript's text, on a line of its own."""
        self._end_line()
        self._note(text)

    def _note(self, text: str) -> None:
        self._write(f"\033[2m{text}{RESET}\n" if self._colour else f"{text}\n")

    def _end_line(self) -> None:
        if self._line_open:
            self._write("\n")

    def _write(self, text: str) -> None:
        if self._reader_left or not text:
            return
        try:
            self._out.write(text)
            self._out.flush()
        except BrokenPipeError:  # `backrooms run | head`: the transcript goes on in the log file
            self._reader_left = True
            _quiet_stdout(self._out)
            return
        self._line_open = not text.endswith("\n")


def _quiet_stdout(stream: TextIO) -> None:
    """Point a closed pipe's descriptor at /dev/null, so the interpreter's last flush at exit
    does not fail on it as well (the recipe of Python's signal module docs)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file (a test's StringIO)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)

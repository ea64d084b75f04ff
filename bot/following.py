"""`backrooms show RUN --follow`: a run's transcript as stored, then the run live, as the process
that drives it (a `backrooms run`, `bot` or `worker`, on this machine or another) goes on.

Nothing passes between the two processes but the store, opened as a viewer. Every POLL_SECONDS
this reads the run (its count of finished replies and its state, one query) and the run's
live-text row, the reply being streamed as its driver last wrote it (at most about once a
second, backrooms_engine/live.py), so text shows here at most about a second behind the model.
Who holds the run's lease is asked about once a second, only to say so when nobody drives it.
Memory holds one reply: the one being printed.

Transcript prints what `backrooms show` prints, through the same printer, and no text twice: a
reply seen live is finished with only what the live text had not shown. When the text stops
extending what was shown (the driver asked for the reply again after a cut-off stream, or
another process took the run over and began the reply afresh), the printer cannot take back what
it printed: a dim note says the reply started over and its new text follows under it, as
`backrooms run` prints a retry. A new text that is only shorter is waited out (the same words
coming again are not printed twice). Text shown of a reply that never finished (the run was
stopped or paused during it) is marked as not stored.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from backrooms_engine.events import ReplyDelta, ReplyFinished, ReplyStarted, RunEnded, RunStarted
from backrooms_engine.ports import LiveLine
from backrooms_engine.records import Reply, RunRecord
from backrooms_engine.store import AllPorts

from .terminal import TerminalPrinter

POLL_SECONDS = 0.3
HOLDERS_EVERY = 3  # polls between two questions of who drives the run: about a second
DRIVERS = "backrooms worker, or backrooms bot"  # the processes that claim a queued run
STARTED_OVER = "[the reply started over in the process that drives the run]"
NOT_STORED = "[not stored: the run {how} before this reply finished]"


@dataclass
class _Open:
    """The reply being printed: its number and how much of its text is printed."""

    seq: int
    text: str = ""


class Transcript:
    """One run through a TerminalPrinter: stored replies, then live text; no text twice."""

    def __init__(self, printer: TerminalPrinter, run: RunRecord) -> None:
        self._printer = printer
        self._run = run
        self._seats = max(1, len(run.participants))
        self.shown = 0  # finished replies printed
        self._open: _Open | None = None

    @property
    def reader_left(self) -> bool:
        return self._printer.reader_left

    @property
    def line_open(self) -> bool:
        return self._printer.line_open

    async def start(self) -> None:
        await self._printer.handle(RunStarted(self._run))

    async def finished(self, replies: Sequence[Reply]) -> None:
        for reply in replies:
            if reply.seq < self.shown:
                continue
            await self._text(reply.seq, reply.actor, reply.text, final=True)
            await self._printer.handle(ReplyFinished(reply))
            self.shown, self._open = reply.seq + 1, None

    async def live(self, line: LiveLine | None) -> None:
        """The live text of the next reply; of any other (finished, or past one not yet read
        back), it is ignored."""
        if line is not None and line.seq == self.shown:
            await self._text(line.seq, line.actor, line.text, final=False)

    async def end(self, run: RunRecord) -> None:
        """The run ended or paused: mark what was shown of an unfinished reply, then its end."""
        if self._open is not None and self._open.text:
            self._printer.note(NOT_STORED.format(how="ended" if run.end else "paused"))
        self._open = None
        if run.end is not None:
            await self._printer.handle(RunEnded(run.id, run.end))

    async def _text(self, seq: int, actor: str, text: str, *, final: bool) -> None:
        if self._open is None or self._open.seq != seq:
            turn, position = divmod(seq, self._seats)  # records.Reply: turns count from 1
            await self._printer.handle(ReplyStarted(self._run.id, seq, turn + 1, position, actor))
            self._open = _Open(seq)
        shown = self._open.text
        if text.startswith(shown):
            added = text[len(shown) :]
        elif shown.startswith(text) and not final:
            return  # begun again, and not yet past what is shown: wait for the rest
        else:
            self._printer.note(STARTED_OVER)
            added = text
        self._open.text = text
        if added:
            position = seq % self._seats
            await self._printer.handle(ReplyDelta(self._run.id, seq, position, actor, added, text))


async def follow(store: AllPorts, transcript: Transcript, run_id: int) -> RunRecord:
    """Print the run as it goes until it ends or pauses (or stdout's reader left); the run as
    last read. The first poll prints everything stored so far."""
    said = _Said(run_id, transcript)
    polls = 0
    while True:
        run = await store.get_run(run_id)
        if run.replies > transcript.shown:
            await transcript.finished((await store.replies(run_id))[transcript.shown :])
        if run.end is not None or run.status == "paused" or transcript.reader_left:
            return run
        await transcript.live(await store.live_text.live(run_id))
        if run.status == "queued":
            said.state("queued", None)
        elif polls % HOLDERS_EVERY == 0:
            holder = (await store.processes.holders([run_id])).get(run_id)
            said.state("waiting" if holder is None else "driven", holder)
        polls += 1
        await asyncio.sleep(POLL_SECONDS)


class _Said:
    """What stderr has been told of who drives the run: each change once."""

    def __init__(self, run_id: int, transcript: Transcript) -> None:
        self._run_id = run_id
        self._transcript = transcript
        self._last: str | None = None

    def state(self, state: str, holder: str | None) -> None:
        if state == self._last:
            return
        if state == "queued":
            line = f"run {self._run_id} is queued: waiting for a driving process ({DRIVERS})"
        elif state == "waiting":
            line = f"run {self._run_id} is waiting to be claimed: no process drives it right now"
        elif self._last is not None:  # driven after a wait; driven from the start goes unsaid
            line = f"run {self._run_id} is driven by {holder}: following it"
        else:
            line = ""
        if line:
            # In a terminal, stdout and stderr share the screen: not in the middle of a reply's line.
            apart = self._transcript.line_open and sys.stderr.isatty()
            print("\n" + line if apart else line, file=sys.stderr, flush=True)
        self._last = state

"""BackroomsLogs: plain-text transcripts in the upstream script's format.

    BackroomsLogs/<Folder>/<alias1>_<alias2>[_...]_<template>_<YYYYmmdd_HHMMSS>.txt

Each reply is appended as "\\n### {actor} ###\\n{reply}\\n" when it is committed, and the run's closing
line (see RunEnd.closing_line) when it ends. The folder is the first participant's `log_folder`.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from .errors import StoreError
from .events import Event, ReplyFinished, RunEnded
from .records import Reply, RunEnd
from .registry import ModelSpec

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def reply_block(actor: str, text: str) -> str:
    return f"\n### {actor} ###\n{text}\n"


def transcript_text(replies: Sequence[Reply], end: RunEnd | None) -> str:
    """The whole log file of a run, rebuilt from the store (export, and checks after a resume)."""
    body = "".join(reply_block(r.actor, r.text) for r in replies)
    return body + (end.closing_line() if end is not None else "")


def allocate(log_dir: Path, specs: Sequence[ModelSpec], template: str, started: datetime) -> Path:
    """Create the run's empty log file and return its path; never reuses another run's file."""
    folder = log_dir / _safe(specs[0].log_folder)
    stem = "_".join(
        [
            *(_safe(s.alias) for s in specs),
            _safe(template),
            started.astimezone().strftime("%Y%m%d_%H%M%S"),
        ]
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path in _candidates(folder, stem):
            try:
                path.open("x", encoding="utf-8").close()
                return path
            except FileExistsError:
                continue  # another run took it between the listing and the open
    except OSError as exc:
        raise StoreError(
            f"cannot write transcripts under {log_dir}: {exc.strerror}; "
            "set BACKROOMS_LOG_DIR to a writable folder"
        ) from None
    raise StoreError(f"cannot find a free transcript name for {stem} in {folder}")


def _candidates(folder: Path, stem: str) -> Iterator[Path]:
    """Upstream's name first; when runs start in the same second, `_2`, `_3`, ... after the
    highest suffix already there. The folder is listed once per name and second, not once per
    run: a burst of runs started together (a benchmark, a busy server) would list it as often
    as runs start, each listing as long as the folder. Whatever the guess, `allocate` only ever
    takes a file it created itself."""
    yield folder / f"{stem}.txt"
    last_stem, start = _last_suffix.get(folder, ("", 0))
    if last_stem != stem:
        taken = [
            int(suffix)
            for p in folder.glob(f"{glob.escape(stem)}_*.txt")
            if (suffix := p.stem[len(stem) + 1 :]).isdigit()
        ]
        start = max(taken, default=1) + 1
    for n in range(start, start + 100):
        _last_suffix[folder] = (stem, n + 1)
        yield folder / f"{stem}_{n}.txt"


# Per folder: the name (stem) that last needed a suffix, and the next suffix to try for it.
_last_suffix: dict[Path, tuple[str, int]] = {}


def _safe(part: str) -> str:
    return _UNSAFE.sub("-", part) or "x"


class LogFileWriter:
    """Observer that appends to the run's log file as replies are committed and when it ends."""

    name = "logfile"
    wants_deltas = False  # it writes whole replies

    def __init__(self, path: Path):
        self.path = path

    def rebuild(self, replies: Sequence[Reply]) -> None:
        """Make the file exactly the stored transcript (before a resumed run goes on), so that a
        crash between a commit and its append, or a closing line of an earlier end, leaves no
        trace: the result is the file an uninterrupted run would have written."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(transcript_text(replies, None), encoding="utf-8", newline="")
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StoreError(f"cannot rewrite transcript {self.path}: {exc.strerror}") from None

    async def handle(self, event: Event) -> None:
        if isinstance(event, ReplyFinished):
            self.append(reply_block(event.reply.actor, event.reply.text))
        elif isinstance(event, RunEnded) and event.end.reason != "shutdown":
            # A shutdown pauses the run; the resumed run writes the real closing line later.
            self.append(event.end.closing_line())

    def append(self, text: str) -> None:
        # Small appends, opened each time so a crash never leaves buffered text behind.
        with self.path.open("a", encoding="utf-8", newline="") as f:
            f.write(text)

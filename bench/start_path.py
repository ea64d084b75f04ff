"""Count how often one start passes through each engine module (issue 14, "one way in").

    python bench/start_path.py

A pass is control entering a module's code from another module's (a call whose caller lives
elsewhere; properties count), and in brackets those made by the start path's own modules (manager,
starting) directly, counted with sys.setprofile while `RunManager.start` runs for one offline run on a
fresh SQLite store: the checks, the stored record, and the conversation built to drive it.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backrooms_engine.records import RunSpec  # noqa: E402
from bot.runtime import open_runtime  # noqa: E402
from bot.settings import Settings  # noqa: E402

WATCHED = ("manager", "starting", "registry", "templates", "conversation")
STARTERS = ("manager", "starting")  # the start path's own modules


def _module(frame: FrameType | None) -> str | None:
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename)
    return path.stem if path.parent.name == "backrooms_engine" else None


async def _measure(folder: Path) -> Counter[str]:
    env = {"BACKROOMS_DB": str(folder / "backrooms.db"), "BACKROOMS_LOG_DIR": str(folder / "logs")}
    passes: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        # Only the start itself: not the run's own task, which begins while `start` awaits.
        if event != "call" or asyncio.current_task() is not measuring:
            return
        here, caller = _module(frame), _module(frame.f_back)
        if here in WATCHED and caller != here:
            passes[here] += 1
            if caller in STARTERS:
                passes[f"{here} from the start path"] += 1

    async with open_runtime(Settings.from_mapping(env)) as rt:
        spec = RunSpec(models=("offline", "offline"), max_turns=1)
        await rt.manager.start(spec)  # warm: imports, template listing, caches
        measuring = asyncio.current_task()
        sys.setprofile(profile)
        try:
            handle = await rt.manager.start(spec)
        finally:
            sys.setprofile(None)
        await handle.task
    return passes


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        passes = asyncio.run(_measure(Path(folder)))
    print("module          entries  (of them called by the start path itself)")
    for name in WATCHED:
        print(f"{name:<15} {passes[name]:>7}  ({passes[name + ' from the start path']})")


if __name__ == "__main__":
    main()

"""`backrooms runs`, `show` (`--follow`: following.py) and `export`: read the stored runs, change
nothing.

They open the store as a viewer (no lease, no lock file) and never create a database: where
there is none, there is no run to read.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from backrooms_engine import export
from backrooms_engine.errors import BackroomsError, StoreError
from backrooms_engine.records import RunRecord
from backrooms_engine.registry import Registry, load_registry
from backrooms_engine.store import open_store, unknown_run

from . import costs, eventloop, following
from .faces import distinct_colours
from .interrupts import Interrupts
from .settings import Settings
from .terminal import TerminalPrinter


def cmd_runs(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    if not has_database(settings):
        print(f"no runs yet in {settings.store.shown}; try: backrooms demo")
        return 0
    return eventloop.run(_list_runs(settings), settings.event_loop)


async def _list_runs(settings: Settings) -> int:
    async with await open_store(settings.store, owner=False) as store:
        runs = await store.list_runs(limit=100)
        holders = await store.processes.holders([r.id for r in runs if r.status == "running"])
    if not runs:
        print(f"no runs yet in {settings.store.shown}; try: backrooms demo")
        return 0
    print(
        f"{'id':>5}  {'participants':28} {'template':14} {'status':26} {'turns':>5} "
        f"{'tokens':>9} {'cost':>9}  {'started':16}  owner"
    )
    for run in runs:
        print(_row(run, holders.get(run.id)))
    return 0


def _row(run: RunRecord, holder: str | None = None) -> str:
    """`holder`: the process whose live lease holds a running run (none: it is waiting)."""
    who = " ".join(p.alias for p in run.participants)
    status: str = run.end.reason if run.end else run.status
    if run.status == "running" and holder is None:
        status = "waiting"  # no process holds its lease: a driving process claims it next
    if run.end and run.end.reason == "ctrl_c":
        status = f"^C^C by {run.end.actor}"
    total = costs.total_tokens(run)
    tokens = "?" if total is None else str(total)
    started = run.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
    return (
        f"{run.id:>5}  {who[:28]:28} {run.spec.template[:14]:14} {status[:26]:26} "
        f"{run.turns:>5} {tokens:>9} {costs.cost_cell(run):>9}  {started}"
    ) + (f"  {holder or 'waiting'}" if run.status == "running" else "")


def cmd_show(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    _check_stored(settings, args.run_id)
    if not args.follow:
        return eventloop.run(_show(settings, args.run_id), settings.event_loop)
    code = eventloop.run(_follow(settings, args.run_id, interrupts), settings.event_loop)
    return interrupts.code if interrupts.code is not None else code  # a signal at the last line


async def _show(settings: Settings, run_id: int) -> int:
    async with await open_store(settings.store, owner=False) as store:
        run = await store.get_run(run_id)
        replies = await store.replies(run_id)
    transcript = _transcript(settings, run)
    await transcript.start()
    await transcript.finished(replies)
    await transcript.end(run)
    _print_cost(run)
    return 0


async def _follow(settings: Settings, run_id: int, interrupts: Interrupts) -> int:
    """`show --follow` (following.py): ends with the run, or at once for a paused one; Ctrl-C
    and SIGTERM leave the run to its process and end 130 and 143, as a terminal command does."""
    task = asyncio.current_task()

    def leave(signum: int) -> None:
        if task is not None:
            task.cancel()

    interrupts.deliver_to(leave)
    try:
        async with await open_store(settings.store, owner=False) as store:
            transcript = _transcript(settings, await store.get_run(run_id))
            await transcript.start()
            run = await following.follow(store, transcript, run_id)
        await transcript.end(run)
    except asyncio.CancelledError:
        if interrupts.code is None:
            raise
        print(f"\nbackrooms: stopped following run {run_id}; it goes on", file=sys.stderr)
        return interrupts.code
    if run.status == "paused":
        print(
            f"run {run_id} is paused: nobody drives it until `backrooms resume {run_id}`",
            file=sys.stderr,
        )
    if not transcript.reader_left:
        _print_cost(run)
    return 0


def _transcript(settings: Settings, run: RunRecord) -> following.Transcript:
    printer = TerminalPrinter(stored_colours(load_registry(settings.models_file), run))
    return following.Transcript(printer, run)


def _print_cost(run: RunRecord) -> None:
    # On stderr, as `backrooms run` says it: stdout stays the transcript as the run printed it.
    print(f"cost: {costs.cost_text(run)}; tokens: {costs.tokens_text(run)}", file=sys.stderr)


def cmd_export(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    _check_stored(settings, args.run_id)
    text = eventloop.run(_export(settings, args.run_id, args.format), settings.event_loop)
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:  # a missing folder, no permission: say so, no traceback
            raise BackroomsError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


async def _export(settings: Settings, run_id: int, fmt: str) -> str:
    async with await open_store(settings.store, owner=False) as store:
        run = await store.get_run(run_id)
        return export.render(run, await store.replies(run_id), fmt)


def _check_stored(settings: Settings, run_id: int) -> None:
    if not has_database(settings):
        raise unknown_run(run_id)


def has_database(settings: Settings) -> bool:
    """Whether there is a store to read: a PostgreSQL store is always there to ask; a SQLite
    file may not exist yet, and a read-only command must not create it."""
    return settings.store.dialect != "sqlite" or exists(settings.store.path)


def exists(db: Path) -> bool:
    """Whether there is a database to read; a path where none could ever be is an error."""
    if db.is_file():
        return True
    if db.is_dir():
        raise StoreError(f"cannot use {db}: it is a directory; set BACKROOMS_DB to a file path")
    parent = next((p for p in db.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise StoreError(
            f"cannot use {db}: {parent} is a file, not a directory; "
            "set BACKROOMS_DB to a writable path"
        )
    return False


def stored_colours(registry: Registry, run: RunRecord) -> dict[str, str]:
    seats = [p for p in run.participants if p.alias in registry.models]
    colours = distinct_colours([registry.models[p.alias].colour for p in seats])
    return dict(zip((p.actor for p in seats), colours, strict=True))

"""`backrooms run`, `demo`, `resume` and `continue`: one conversation in this terminal.

A start is checked (models, template, keys, flags) before the store is opened, so a refused start
leaves no database and no lock file behind. Ctrl-C stops the run like /stop would (the transcript is
kept and closed) and the command exits 130; SIGTERM pauses it, resumable, as a hosting platform's
shutdown would, and the command exits 143 (interrupts.py). A run ended by an error exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from backrooms_engine import templates
from backrooms_engine.conversation import Conversation, participants_for
from backrooms_engine.errors import ConfigError, MissingKeyError
from backrooms_engine.manager import RunHandle
from backrooms_engine.records import RunEnd, RunSpec, now
from backrooms_engine.registry import Registry, check_keys, load_registry
from backrooms_engine.store import unknown_run

from . import costs, eventloop
from .cli import DEMO_TURNS
from .cli_stored import has_database, stored_colours
from .faces import distinct_colours
from .interrupts import FAILED, OK, Interrupts
from .runtime import Runtime, open_runtime, template_dirs
from .settings import Settings
from .terminal import TerminalPrinter

SEED_ENV = "BACKROOMS_SEED"
NO_KEY_HINT = "; or try a run that needs no key: backrooms run --lm offline offline"
Start = Callable[[Runtime, TerminalPrinter], Awaitable[RunHandle]]


def cmd_run(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    spec = RunSpec(
        models=tuple(args.lm),
        template=args.template,
        max_turns=args.max_turns,
        token_budget=args.token_budget,
        budget_usd=args.budget_usd,
    )
    registry = _check_start(settings, spec, args.templates_dir)
    if args.seed is not None:
        settings = _seeded(settings, registry, spec, args.seed)

    async def start(rt: Runtime, printer: TerminalPrinter) -> RunHandle:
        return await rt.manager.start(spec, [printer])

    colours = _actor_colours(registry, spec.models)
    return _drive(settings, interrupts, start, colours, args.templates_dir)


def cmd_demo(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    spec = RunSpec(
        models=("offline", "offline"), template="cli", max_turns=DEMO_TURNS, started_by="demo"
    )
    registry = _check_start(settings, spec, None)

    async def start(rt: Runtime, printer: TerminalPrinter) -> RunHandle:
        return await rt.manager.start(spec, [printer])

    colours = _actor_colours(registry, spec.models)
    return _drive(settings, interrupts, start, colours, None, demo=True)


def cmd_resume(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    _check_stored(settings, args.run_id)

    async def start(rt: Runtime, printer: TerminalPrinter) -> RunHandle:
        return await rt.manager.resume(args.run_id, [printer])

    return _drive(settings, interrupts, start, None, None)


def cmd_continue(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    _check_stored(settings, args.run_id)

    async def start(rt: Runtime, printer: TerminalPrinter) -> RunHandle:
        return await rt.manager.extend(args.run_id, args.turns, [printer])

    return _drive(settings, interrupts, start, None, None)


# -- checks made before anything is opened -------------------------------------------------------


def _check_start(settings: Settings, spec: RunSpec, templates_dir: Path | None) -> Registry:
    """What the manager checks again at start, here before the store exists: models, template,
    seats and keys. The manager's own checks stay the authority (caps, for one)."""
    registry = load_registry(settings.models_file)
    specs = registry.resolve(spec.models)
    dirs = template_dirs(settings, templates_dir)
    Conversation(templates.find(spec.template, dirs), participants_for(specs))
    try:
        check_keys(specs, settings.env)
    except MissingKeyError as exc:
        offline = all(s.provider.kind == "offline" for s in specs)
        raise MissingKeyError(str(exc) + ("" if offline else NO_KEY_HINT)) from None
    return registry


def _seeded(settings: Settings, registry: Registry, spec: RunSpec, seed: str) -> Settings:
    """--seed is the offline provider's BACKROOMS_SEED for this run; no offline seat, no seed."""
    if not any(registry.get(alias).provider.kind == "offline" for alias in spec.models):
        raise ConfigError(
            f"--seed sets the offline seats' seed, and no seat of {' '.join(spec.models)} is "
            "offline (try --lm offline offline)"
        )
    return dataclasses.replace(settings, env={**settings.env, SEED_ENV: seed})


def _check_stored(settings: Settings, run_id: int) -> None:
    """A run id that cannot exist is refused without creating the database."""
    if not has_database(settings):
        raise unknown_run(run_id)


# -- driving the run -------------------------------------------------------------------------------


def _drive(
    settings: Settings,
    interrupts: Interrupts,
    start: Start,
    colours: dict[str, str] | None,
    templates_dir: Path | None,
    *,
    demo: bool = False,
) -> int:
    main = _in_terminal(settings, interrupts, start, colours, templates_dir, demo=demo)
    code = eventloop.run(main, settings.event_loop)
    return interrupts.code if interrupts.code is not None else code


class _Signals:
    """A terminal run's handling of Ctrl-C and SIGTERM, on its event loop."""

    def __init__(self, interrupts: Interrupts) -> None:
        self._task = asyncio.current_task()
        self.handle: RunHandle | None = None
        interrupts.deliver_to(self.on_signal)

    def on_signal(self, signum: int) -> None:
        if self.handle is None:  # still starting: give up the start, nothing runs yet
            if self._task is not None:
                self._task.cancel()
        elif signum == signal.SIGINT:
            self.handle.stop.set("terminal (Ctrl-C)")
        else:
            self.handle.stop.set("shutdown", "shutdown")


async def _in_terminal(
    settings: Settings,
    interrupts: Interrupts,
    start: Start,
    colours: dict[str, str] | None,
    templates_dir: Path | None,
    *,
    demo: bool,
) -> int:
    signals = _Signals(interrupts)
    try:
        async with open_runtime(settings, templates_dir=templates_dir) as rt:
            printer = TerminalPrinter(colours or {})
            handle = signals.handle = await start(rt, printer)
            if colours is None:  # resumed: colours come from the stored participants
                printer.colours.update(stored_colours(rt.registry, handle.record))
            end = await rt.manager.wait(handle.id)
            if end.reason == "shutdown":
                await rt.transcript.pause_run(handle.id, now())
            stored = await rt.archive.get_run(handle.id)
        _report(settings, handle, end, demo)
        print(
            f"cost: {costs.cost_text(stored)}; tokens: {costs.tokens_text(stored)}", file=sys.stderr
        )
    except asyncio.CancelledError:
        if interrupts.code is None:
            raise
        print("\nbackrooms: stopped before the run started", file=sys.stderr)
        return interrupts.code
    return FAILED if end.reason == "error" else OK


def _report(settings: Settings, handle: RunHandle, end: RunEnd, demo: bool) -> None:
    if end.reason == "shutdown":
        print(f"\nrun {handle.id} paused; `backrooms resume {handle.id}` goes on", file=sys.stderr)
    else:
        print(f"\nrun {handle.id}: {end.summary}", file=sys.stderr)
    print(
        f"transcript: {handle.record.log_path}  (database: {settings.store.shown})", file=sys.stderr
    )
    if demo:
        print(
            f"see it again: backrooms show {handle.id}   list runs: backrooms runs",
            file=sys.stderr,
        )


def _actor_colours(registry: Registry, aliases: Sequence[str]) -> dict[str, str]:
    seats = participants_for(registry.resolve(aliases))
    # Two seats of one alias would share the registry's colour: each repeat is shaded apart.
    return dict(
        zip((p.actor for p in seats), distinct_colours([p.spec.colour for p in seats]), strict=True)
    )

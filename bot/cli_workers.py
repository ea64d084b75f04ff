"""`backrooms worker`, `workers` and `start`: runs driven by whichever process is free (issue 15).

`start` stores a run and drives nothing: it opens the store as a process that drives no run, so
the run it creates is queued, owned by nobody, and a `backrooms worker` claims it (claiming.py).
`worker` is a service without chat surfaces. `workers` lists the live driving processes from
the store's registry (ports.Processes).
"""

from __future__ import annotations

import argparse
import logging
import sys

from backrooms_engine.ports import ProcessInfo
from backrooms_engine.records import RunRecord, RunSpec
from backrooms_engine.store import open_store

from . import eventloop, logs
from .cli_stored import has_database
from .interrupts import Interrupts
from .runtime import open_runtime
from .settings import Settings

NO_WORKER = "no worker is running; start one with: backrooms worker"


# -- worker


def cmd_worker(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    from .claiming import worker_claims
    from .service import serve

    logs.setup(logging.INFO, sys.stdout)
    claims = worker_claims(args.max_runs or settings.max_runs)
    try:
        return eventloop.run(serve(settings, [], claims), settings.event_loop)
    finally:
        interrupts.install()  # as cli_services: a signal in the last lines ends with our status


# -- workers


def cmd_workers(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    alive = eventloop.run(_alive(settings), settings.event_loop) if has_database(settings) else []
    if not alive:
        print(
            f"no process is driving runs in {settings.store.shown}; start one with: "
            "backrooms worker"
        )
        return 0
    for process in alive:
        print(_line(process))
    return 0


async def _alive(settings: Settings) -> list[ProcessInfo]:
    async with await open_store(settings.store, owner=False) as store:
        return await store.processes.alive()


def _line(p: ProcessInfo) -> str:
    since = p.since.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    runs = "1 run" if p.runs == 1 else f"{p.runs} runs"
    return f"{p.owner}  {p.role:8} since {since}  {runs}"


# -- start


def cmd_start(args: argparse.Namespace, settings: Settings, interrupts: Interrupts) -> int:
    record, workers = eventloop.run(_start(args, settings), settings.event_loop)
    print(f"run {record.id} queued")
    if not workers:
        print(NO_WORKER, file=sys.stderr)
    return 0


async def _start(args: argparse.Namespace, settings: Settings) -> tuple[RunRecord, int]:
    """Store the run through the manager's checks (a refusal raises before anything is
    stored): the run and how many workers are alive to claim it. The runtime drives nothing:
    its store has no leases, so the run stays queued for a worker."""
    spec = RunSpec(
        models=tuple(args.lm),
        template=args.template,
        max_turns=args.max_turns,
        started_by="backrooms start",
        surface="terminal",
    )
    async with open_runtime(settings, templates_dir=args.templates_dir, drives=False) as rt:
        record = await rt.manager.queue(spec)
        workers = [p for p in await rt.processes.alive() if p.role == "worker"]
    return record, len(workers)

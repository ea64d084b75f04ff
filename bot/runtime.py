"""The composition root's building blocks: registry, templates, store, providers and manager, built
from Settings and closed in the right order. Every subcommand that runs conversations uses this.

The store is handed on as its three ports (backrooms_engine/ports.py): the manager drives runs
through the transcript, chat surfaces keep their state through the surface state, viewers read
the archive. Only this module knows which implementation provides them.

Any number of processes open one store (ARCHITECTURE.md, "Runs owned by leases"): the runs a
process drives are leased to it, so a second `backrooms run` or a `backrooms serve` beside it
share the folder's database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from backrooms_engine import templates
from backrooms_engine.engine import RetryPolicy
from backrooms_engine.heartbeat import Heartbeat
from backrooms_engine.manager import Limits, RunManager
from backrooms_engine.ports import (
    Archive,
    Leases,
    LiveText,
    Processes,
    SurfaceState,
    TranscriptStore,
)
from backrooms_engine.pricing import load_prices
from backrooms_engine.providers import ProviderPool
from backrooms_engine.registry import Registry, load_registry
from backrooms_engine.store import open_store

from .settings import Settings


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    template_dirs: list[Path]
    transcript: TranscriptStore
    surface_state: SurfaceState
    archive: Archive
    providers: ProviderPool
    manager: RunManager
    live_text: LiveText  # the text other processes' runs are streaming, for the web viewer
    leases: Leases | None = None  # None: this process drives no run
    processes: Processes | None = None  # the live driving processes, this one among them


def template_dirs(settings: Settings, extra: Path | None = None) -> list[Path]:
    given = [p for p in (extra, settings.templates_dir) if p is not None]
    return templates.search_path(given)


def limits(settings: Settings) -> Limits:
    return Limits(
        max_runs=settings.max_runs,
        max_runs_per_space=settings.max_runs_per_space,
        chat_max_turns=settings.chat_max_turns,
        token_budget=settings.token_budget,
        budget_usd=settings.budget_usd,
        space_daily_usd=settings.space_daily_usd,
    )


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    templates_dir: Path | None = None,
    registry: Registry | None = None,
    role: str = "run",
    drives: bool = True,
) -> AsyncIterator[Runtime]:
    """`role`: what this process is in `backrooms workers` (bot, worker, run, ...).
    `drives=False`: this process drives no run (its store has no Leases, and it is not listed
    among the driving processes); runs it starts are queued for a driving process."""
    given = registry is not None
    registry = registry or load_registry(settings.models_file)
    # A registry handed in (tests) may lack the shipped aliases that prices name: not checked then.
    prices = load_prices(settings.models_file, aliases=None if given else registry.models)
    dirs = template_dirs(settings, templates_dir)
    store = await open_store(
        settings.store, owner=True, drives=drives, lease_seconds=settings.lease_seconds
    )
    providers = ProviderPool(
        settings.env, timeout=settings.read_timeout, prompt_cache=settings.prompt_cache
    )
    manager = RunManager(
        registry=registry,
        template_dirs=dirs,
        store=store.transcript,
        provider_for=providers.for_spec,
        env=settings.env,
        log_dir=settings.log_dir,
        retry=RetryPolicy(
            attempts=settings.retry_attempts,
            base_delay=settings.retry_base_delay,
            deadline=settings.request_timeout,
        ),
        limits=limits(settings),
        chat_lag=settings.chat_lag,
        leases=store.leases,
        live_text=store.live_text,
        prices=prices,
        notices=store.notices,
    )
    # A driving process is registered until it leaves, below.
    heartbeat = Heartbeat(store.processes, role) if drives else None
    if heartbeat is not None:
        await heartbeat.start()
    try:
        yield Runtime(
            settings=settings,
            registry=registry,
            template_dirs=dirs,
            transcript=store.transcript,
            surface_state=store.surface_state,
            archive=store.archive,
            providers=providers,
            manager=manager,
            live_text=store.live_text,
            leases=store.leases,
            processes=store.processes,
        )
    finally:
        await manager.shutdown(settings.shutdown_deadline)
        if heartbeat is not None:
            await heartbeat.close()
        await providers.aclose()
        await store.close()

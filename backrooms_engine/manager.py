"""RunManager: starts runs, drives each as its own asyncio task, stops them, shuts down cleanly.

Every surface (terminal, Discord, Slack, web) goes through one manager, so limits and the store are
shared. The manager always adds the BackroomsLogs writer to a run's observers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import logfile, templates
from .conversation import Conversation, participants_for
from .engine import Engine, RetryPolicy, StopSignal
from .observers import ObserverHub
from .ports import Observer, Provider, Store
from .records import ParticipantInfo, RunEnd, RunRecord, RunSpec, now
from .registry import ModelSpec, Registry, check_keys

log = logging.getLogger(__name__)


@dataclass
class RunHandle:
    record: RunRecord
    stop: StopSignal
    task: asyncio.Task[RunEnd] = field(repr=False)

    @property
    def id(self) -> int:
        return self.record.id


@dataclass(frozen=True)
class StopResult:
    run_id: int
    stopped: bool  # False when the run had already ended
    message: str


class RunManager:
    def __init__(
        self,
        *,
        registry: Registry,
        template_dirs: Sequence[Path],
        store: Store,
        provider_for: Callable[[ModelSpec], Provider],
        env: Mapping[str, str],
        log_dir: Path,
        retry: RetryPolicy | None = None,
        observer_close_timeout: float = 30.0,
    ):
        self.registry = registry
        self.template_dirs = list(template_dirs)
        self.store = store
        self._env = env
        self._log_dir = log_dir
        self._engine = Engine(provider_for, store, retry=retry)
        self._runs: dict[int, RunHandle] = {}
        self._observer_close_timeout = observer_close_timeout
        self._accepting = True

    # -- starting ---------------------------------------------------------------------------

    def prepare(self, spec: RunSpec) -> tuple[list[ModelSpec], templates.Template]:
        """Check a start request without starting it: models, template, fit, keys. Raises
        ConfigError subclasses with messages meant for the user."""
        specs = self.registry.resolve(spec.models)
        template = templates.find(spec.template, self.template_dirs)
        Conversation(template, participants_for(specs))  # checks the participant count and seats
        check_keys(specs, self._env)
        return specs, template

    async def start(self, spec: RunSpec, observers: Sequence[Observer] = ()) -> RunHandle:
        if not self._accepting:
            raise RuntimeError("the run manager is shutting down")
        specs, template = self.prepare(spec)
        participants = participants_for(specs)
        created = now()
        path = logfile.allocate(self._log_dir, specs, spec.template, created)
        record = await self.store.create_run(
            spec, [_info(p.position, p.spec, p.actor) for p in participants], str(path), created
        )
        conversation = Conversation(template, participants)
        return self._launch(record, conversation, observers, start_seq=0, tokens_used=0)

    def _launch(
        self,
        record: RunRecord,
        conversation: Conversation,
        observers: Sequence[Observer],
        *,
        start_seq: int,
        tokens_used: int,
        resumed: bool = False,
    ) -> RunHandle:
        hub = ObserverHub(
            record.id,
            [logfile.LogFileWriter(Path(record.log_path)), *observers],
            store=self.store,
        )
        stop = StopSignal()
        task = asyncio.create_task(
            self._drive(record, conversation, hub, stop, start_seq, tokens_used, resumed),
            name=f"run {record.id}",
        )
        handle = RunHandle(record, stop, task)
        self._runs[record.id] = handle
        return handle

    async def _drive(
        self,
        record: RunRecord,
        conversation: Conversation,
        hub: ObserverHub,
        stop: StopSignal,
        start_seq: int,
        tokens_used: int,
        resumed: bool,
    ) -> RunEnd:
        try:
            return await self._engine.run(
                record,
                conversation,
                hub.emit,
                stop,
                start_seq=start_seq,
                tokens_used=tokens_used,
                resumed=resumed,
            )
        finally:
            await hub.close(self._observer_close_timeout)
            self._runs.pop(record.id, None)

    # -- stopping and waiting ---------------------------------------------------------------

    def active(self) -> list[RunHandle]:
        return list(self._runs.values())

    def get(self, run_id: int) -> RunHandle | None:
        return self._runs.get(run_id)

    async def stop(self, run_id: int, *, by: str) -> StopResult:
        handle = self._runs.get(run_id)
        if handle is None:
            record = await self.store.get_run(run_id)  # raises UnknownRunError for a bad id
            state = record.end.summary if record.end else record.status
            return StopResult(run_id, False, f"run {run_id} is not running ({state})")
        handle.stop.set(by)
        await asyncio.shield(handle.task)
        return StopResult(run_id, True, f"run {run_id} stopped by {by}")

    async def wait(self, run_id: int) -> RunEnd:
        handle = self._runs.get(run_id)
        if handle is None:
            record = await self.store.get_run(run_id)
            assert record.end is not None
            return record.end
        return await asyncio.shield(handle.task)

    async def shutdown(self, deadline: float = 20.0) -> None:
        """Take no new runs; stop the running ones (they stay resumable) within `deadline`."""
        self._accepting = False
        handles = list(self._runs.values())
        for handle in handles:
            handle.stop.set("shutdown", reason="shutdown")
        if handles:
            _, pending = await asyncio.wait([h.task for h in handles], timeout=deadline)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def _info(position: int, spec: ModelSpec, actor: str) -> ParticipantInfo:
    return ParticipantInfo(position, spec.alias, actor, spec.api_id, spec.provider.name)

"""RunManager: starts runs, drives each as its own asyncio task, stops, resumes and extends them,
and shuts down cleanly.

Every surface (terminal, Discord, Slack, web) goes through one manager, so limits and the store are
shared. The manager always adds the BackroomsLogs writer to a run's observers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from . import budgets, logfile, templates
from .conversation import Conversation, Participant, participants_for
from .engine import Engine, RetryPolicy, StopReason, StopSignal
from .errors import BackroomsError, ConfigError, StoreError
from .events import Event, ReplyDelta, ReplyFinished, ReplyStarted, RunEnded
from .observers import DEFAULT_QUEUE_SIZE, ObserverHub
from .ports import Observer, Provider, TranscriptStore
from .pricing import Prices
from .records import ParticipantInfo, Reply, RunEnd, RunRecord, RunSpec, now
from .registry import ModelSpec, Registry, check_keys

log = logging.getLogger(__name__)


class LimitError(ConfigError):
    """A start refused by a cap; the message names the limit and the setting that raises it."""


@dataclass(frozen=True)
class Limits:
    max_runs: int = 20  # concurrent runs in this process
    max_runs_per_space: int = 3  # concurrent runs per Discord server / Slack workspace
    chat_max_turns: int = 50  # turn ceiling (and default) for runs started from chat
    token_budget: int | None = None  # default budget (input + output tokens) per run
    budget_usd: float | None = None  # default dollar budget per run (BACKROOMS_BUDGET_USD)
    space_daily_usd: float | None = None  # a space's spend per UTC day (BACKROOMS_SPACE_DAILY_USD)


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
    stopped: bool  # False when the run was not running
    message: str


class RunManager:
    def __init__(
        self,
        *,
        registry: Registry,
        template_dirs: Sequence[Path],
        store: TranscriptStore,
        provider_for: Callable[[ModelSpec], Provider],
        env: Mapping[str, str],
        log_dir: Path,
        retry: RetryPolicy | None = None,
        limits: Limits | None = None,
        observer_grace: float = 30.0,
        observer_queue: int = DEFAULT_QUEUE_SIZE,
        prices: Mapping[str, Prices] | None = None,
    ):
        self.registry = registry
        self.template_dirs = list(template_dirs)
        self.store = store
        self.limits = limits or Limits()
        self._env = env
        self._log_dir = log_dir
        self.prices = dict(prices or {})  # by alias (pricing.load_prices)
        self._engine = Engine(provider_for, store, retry=retry, prices=self.prices)
        self._runs: dict[int, RunHandle] = {}
        self._created: dict[int, RunRecord] = {}  # stored, not launched yet (counted by caps)
        self._starting_specs: list[RunSpec] = []  # past the caps, not yet going (counted too)
        self._starting: set[int] = set()  # being resumed or extended right now
        self._taps: list[Callable[[RunRecord], Observer | None]] = []
        self._observer_grace = observer_grace
        self._observer_queue = observer_queue
        self._accepting = True

    # -- starting ---------------------------------------------------------------------------

    def prepare(self, spec: RunSpec) -> tuple[RunSpec, list[ModelSpec], templates.Template]:
        """Check a start request without starting it: limits, models, template, fit, keys.
        Raises ConfigError subclasses whose messages are meant for the user as they are."""
        spec = self._apply_limits(spec)
        specs = self.registry.resolve(spec.models)
        template = templates.find(spec.template, self.template_dirs)
        Conversation(template, participants_for(specs))  # checks the participant count and seats
        check_keys(specs, self._env)
        budgets.check_priced(spec.budget_usd, specs, self.prices)
        return spec, specs, template

    async def start(self, spec: RunSpec, observers: Sequence[Observer] = ()) -> RunHandle:
        return self.launch(await self.create(spec), observers)

    async def create(self, spec: RunSpec) -> RunRecord:
        """Check and store a run without starting it, so a surface can prepare where it shows it
        (a thread named after the run) first. `launch` starts it; `abandon` ends it unstarted."""
        spec, specs, _ = self.prepare(spec)
        created = now()
        await self._check_daily_cap(spec, created)
        path = logfile.allocate(self._log_dir, specs, spec.template, created)
        participants = participants_for(specs)
        with self._counted(spec):
            record = await self.store.create_run(
                spec, [_info(p) for p in participants], str(path), created
            )
        self._created[record.id] = record
        log.info("run %s: created by %s: %s", record.id, spec.started_by, " ".join(spec.models))
        return record

    def launch(self, record: RunRecord, observers: Sequence[Observer] = ()) -> RunHandle:
        self._created.pop(record.id, None)
        template, participants = self._rebuild_parts(record)
        conversation = Conversation(template, participants)
        return self._launch(record, conversation, observers, history=[])

    async def abandon(self, record: RunRecord, why: str) -> None:
        """End a created run that could not be started (its thread could not be made)."""
        self._created.pop(record.id, None)
        end = RunEnd("error", detail=why)
        await self.store.finish_run(record.id, end, now())
        logfile.LogFileWriter(Path(record.log_path)).append(end.closing_line())

    async def _check_daily_cap(self, spec: RunSpec, moment: datetime) -> None:
        cap = self.limits.space_daily_usd
        if cap is None or spec.space is None:
            return
        spent = await self.store.space_spend(spec.space, *budgets.utc_day(moment))
        refusal = budgets.daily_cap_refusal(spent, cap)
        if refusal is not None:
            raise LimitError(refusal)

    def _apply_limits(self, spec: RunSpec) -> RunSpec:
        self._check_caps(spec)
        lim = self.limits
        if spec.surface != "terminal":
            if spec.max_turns is None:
                spec = dataclasses.replace(spec, max_turns=lim.chat_max_turns)
            elif spec.max_turns > lim.chat_max_turns:
                raise LimitError(
                    f"at most {lim.chat_max_turns} turns for a run started from chat, asked for "
                    f"{spec.max_turns} (BACKROOMS_CHAT_MAX_TURNS={lim.chat_max_turns})"
                )
        if spec.token_budget is None and lim.token_budget is not None:
            spec = dataclasses.replace(spec, token_budget=lim.token_budget)
        if spec.budget_usd is None and lim.budget_usd is not None:
            spec = dataclasses.replace(spec, budget_usd=lim.budget_usd)
        return spec

    def _check_caps(self, spec: RunSpec) -> None:
        """Concurrent-run caps, for starting a run and for a user resuming or extending one."""
        if not self._accepting:
            raise LimitError("the service is shutting down; try again in a minute")
        lim = self.limits
        going = [
            *(h.record.spec for h in self._runs.values()),
            *(r.spec for r in self._created.values()),
            *self._starting_specs,
        ]
        if len(going) >= lim.max_runs:
            raise LimitError(
                f"{len(going)} runs are going, the most this service runs at once "
                f"(BACKROOMS_MAX_RUNS={lim.max_runs}); stop one or raise the limit"
            )
        if spec.space is not None:
            here = sum(1 for s in going if s.space == spec.space)
            if here >= lim.max_runs_per_space:
                raise LimitError(
                    f"{here} runs are going here, the most per community "
                    f"(BACKROOMS_MAX_RUNS_PER_SPACE={lim.max_runs_per_space}); stop one first"
                )

    def add_tap(self, tap: Callable[[RunRecord], Observer | None]) -> None:
        """Give every run launched from now on (started, resumed or extended) the observer `tap`
        returns for it, if any: the web viewer's live feed watches all runs this way."""
        self._taps.append(tap)

    # -- resuming and extending -------------------------------------------------------------

    async def resume(self, run_id: int, observers: Sequence[Observer] = ()) -> RunHandle:
        """Continue a run left running by a crash or a shutdown, from the stored replies."""
        with self._claim(run_id):
            return await self._resume(run_id, observers)

    async def _resume(self, run_id: int, observers: Sequence[Observer]) -> RunHandle:
        record = await self.store.get_run(run_id)
        if record.status == "ended":
            summary = record.end.summary if record.end else record.status
            raise ConfigError(
                f"run {run_id} has ended ({summary}); "
                f"`backrooms continue {run_id} --turns N` extends it"
            )
        with self._counted(record.spec):
            if record.status == "paused":  # resuming is what un-pauses it
                await self.store.reopen_run(run_id, max_turns=record.spec.max_turns)
                record = await self.store.get_run(run_id)
            return await self._relaunch(record, observers, extending=False)

    async def extend(
        self, run_id: int, turns: int, observers: Sequence[Observer] = ()
    ) -> RunHandle:
        """Give an ended run `turns` more turns (after the turn it ended in, if that was partial)."""
        if turns < 1:
            raise ConfigError(f"the number of extra turns must be at least 1, got {turns}")
        with self._claim(run_id):
            return await self._extend(run_id, turns, observers)

    async def _extend(self, run_id: int, turns: int, observers: Sequence[Observer]) -> RunHandle:
        record = await self.store.get_run(run_id)
        if record.status != "ended":
            raise ConfigError(f"run {run_id} is {record.status}; `backrooms resume {run_id}`")
        if record.end is not None and record.end.reason == "budget":
            raise ConfigError(
                f"run {run_id} used its budget of {record.end.detail}; start a new run to go on"
            )
        size = len(record.participants)
        started_turns = -(-record.replies // size)  # a turn cut short by ^C^C counts as started
        with self._counted(record.spec):
            await self.store.reopen_run(run_id, max_turns=started_turns + turns)
            return await self._relaunch(await self.store.get_run(run_id), observers, extending=True)

    async def resume_all(
        self,
        observers_for: Callable[[RunRecord], Awaitable[Sequence[Observer] | None]] | None = None,
    ) -> list[RunHandle]:
        """Resume every run still marked running (oldest first). `observers_for` gives a run's
        observers, or None to leave the run for someone else (a surface not running here). A run
        that cannot be resumed is ended with the reason instead of failing at every start."""
        handles = []
        for record in await self.store.running_runs():
            if record.id in self._runs or record.id in self._starting:
                continue
            with self._claim(record.id):
                observers = () if observers_for is None else await observers_for(record)
                if observers is None:
                    continue
                try:
                    handles.append(await self._relaunch(record, observers, False))
                except BackroomsError as exc:
                    log.warning("run %s: not resumed: %s", record.id, exc)
        return handles

    @contextlib.contextmanager
    def _counted(self, spec: RunSpec) -> Iterator[None]:
        """Check the caps and count the run until it is stored or going, with no await between
        the two: starts, resumes and extensions that arrive together cannot all slip under a cap
        while the first awaits."""
        self._check_caps(spec)
        self._starting_specs.append(spec)
        try:
            yield
        finally:
            self._starting_specs.remove(spec)

    @contextlib.contextmanager
    def _claim(self, run_id: int) -> Iterator[None]:
        """Only one resume or extend of a run at a time: claimed before the first await."""
        if run_id in self._runs or run_id in self._starting:
            raise ConfigError(f"run {run_id} is already running in this process")
        self._starting.add(run_id)
        try:
            yield
        finally:
            self._starting.discard(run_id)

    async def _relaunch(
        self, record: RunRecord, observers: Sequence[Observer], extending: bool
    ) -> RunHandle:
        try:
            template, participants = self._rebuild_parts(record)
        except ConfigError as exc:
            await self._end_unresumable(record, observers, str(exc))
            raise
        history = await self.store.replies(record.id)
        conversation = Conversation.rebuild(
            template, participants, [(r.position, r.text) for r in history]
        )
        writer = logfile.LogFileWriter(Path(record.log_path))
        try:
            writer.rebuild(history)  # the file becomes exactly the stored transcript, then grows
        except StoreError as exc:
            await self._end_unresumable(record, observers, str(exc))
            raise
        log.info("run %s: resumed after %s replies", record.id, len(history))
        return self._launch(
            record,
            conversation,
            observers,
            history=history,
            writer=writer,
            resumed=True,
            extending=extending,
            replay=await self._missed(record.id, observers, history),
        )

    def _rebuild_parts(self, record: RunRecord) -> tuple[templates.Template, list[Participant]]:
        specs = self.registry.resolve([p.alias for p in record.participants])
        template = templates.find(record.spec.template, self.template_dirs)
        # The stored actor names win, so a renamed display name never changes a run midway.
        participants = [
            Participant(p.position, spec, p.actor)
            for p, spec in zip(record.participants, specs, strict=True)
        ]
        Conversation(template, participants)
        check_keys(specs, self._env)
        return template, participants

    async def _end_unresumable(
        self, record: RunRecord, observers: Sequence[Observer], why: str
    ) -> None:
        end = RunEnd("error", detail=f"cannot resume: {why}", turns=record.turns)
        await self.store.finish_run(record.id, end, now())
        hub = ObserverHub(
            record.id, [logfile.LogFileWriter(Path(record.log_path)), *observers], store=None
        )
        hub.emit(RunEnded(record.id, end))
        await hub.close(self._observer_grace)

    async def _missed(
        self, run_id: int, observers: Sequence[Observer], history: Sequence[Reply]
    ) -> list[tuple[Observer, list[Event]]]:
        """What each observer had not received before the restart, by its delivery cursor."""
        missed = []
        for observer in observers:
            cursor = await self.store.delivered(run_id, observer.name)
            events: list[Event] = []
            for r in history[cursor:]:
                events += [
                    ReplyStarted(run_id, r.seq, r.turn, r.position, r.actor),
                    ReplyDelta(run_id, r.seq, r.position, r.actor, r.text, r.text),
                    ReplyFinished(r),
                ]
            missed.append((observer, events))
        return missed

    def _launch(
        self,
        record: RunRecord,
        conversation: Conversation,
        observers: Sequence[Observer],
        *,
        history: Sequence[Reply],
        writer: logfile.LogFileWriter | None = None,
        resumed: bool = False,
        extending: bool = False,
        replay: Sequence[tuple[Observer, list[Event]]] = (),
    ) -> RunHandle:
        writer = writer or logfile.LogFileWriter(Path(record.log_path))
        tapped = [o for tap in self._taps if (o := tap(record)) is not None]
        hub = ObserverHub(
            record.id,
            [writer, *observers, *tapped],
            store=self.store,
            tracked=observers,
            maxsize=self._observer_queue,
        )
        for observer, events in replay:
            for event in events:
                hub.emit_to(observer, event)
        stop = StopSignal()
        task = asyncio.create_task(
            self._drive(record, conversation, hub, stop, history, resumed, extending),
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
        history: Sequence[Reply],
        resumed: bool,
        extending: bool,
    ) -> RunEnd:
        try:
            end = await self._engine.run(
                record,
                conversation,
                hub.emit,
                stop,
                history=history,
                resumed=resumed,
                extending=extending,
            )
            log.info("run %s: %s", record.id, end.summary)
            return end
        except Exception:  # the one supervisor of a run: record the failure, keep the transcript
            log.exception("run %s: failed", record.id)
            end = RunEnd(
                "error",
                detail="internal error; see the service log",
                turns=await self._turns(record),
            )
            await self.store.finish_run(record.id, end, now())
            hub.emit(RunEnded(record.id, end))
            return end
        finally:
            try:
                await hub.close(self._observer_grace)
            finally:  # also when a shutdown cancels this task while observers drain
                mine = self._runs.get(record.id)
                if mine is not None and mine.task is asyncio.current_task():
                    del self._runs[record.id]

    async def _turns(self, record: RunRecord) -> int:
        return len(await self.store.replies(record.id)) // len(record.participants)

    # -- stopping and waiting ---------------------------------------------------------------

    def active(self, space: str | None = None) -> list[RunHandle]:
        return [h for h in self._runs.values() if space is None or h.record.spec.space == space]

    def get(self, run_id: int) -> RunHandle | None:
        return self._runs.get(run_id)

    async def stop(
        self, run_id: int, *, by: str, reason: StopReason = "stopped", detail: str | None = None
    ) -> StopResult:
        """End a run within a second, even mid-reply; a run that is not running is a no-op.
        reason "gone" (with a detail) ends it because the place it was shown in disappeared."""
        handle = self._runs.get(run_id)
        if handle is None:
            record = await self.store.get_run(run_id)  # raises UnknownRunError for a bad id
            state = record.end.summary if record.end else "not running in this process"
            return StopResult(run_id, False, f"run {run_id} is not running: {state}")
        handle.stop.set(by, reason, detail)
        end = await asyncio.shield(handle.task)
        return StopResult(run_id, True, f"run {run_id}: {end.summary}")

    async def wait(self, run_id: int) -> RunEnd:
        handle = self._runs.get(run_id)
        if handle is not None:
            return await asyncio.shield(handle.task)
        record = await self.store.get_run(run_id)
        if record.end is None:
            raise ConfigError(f"run {run_id} is not running in this process")
        return record.end

    async def shutdown(self, deadline: float = 20.0) -> None:
        """Take no new runs; pause the running ones (they stay resumable) within `deadline`."""
        self._accepting = False
        handles = list(self._runs.values())
        for handle in handles:
            handle.stop.set("shutdown", reason="shutdown")
        if handles:
            _, pending = await asyncio.wait([h.task for h in handles], timeout=deadline)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def _info(p: Participant) -> ParticipantInfo:
    return ParticipantInfo(p.position, p.spec.alias, p.actor, p.spec.api_id, p.spec.provider.name)

"""RunManager: starts runs, drives each as its own asyncio task, stops, resumes and extends them,
and shuts down cleanly.

Every surface (terminal, Discord, Slack, web) goes through one manager, so limits and the store are
shared. The manager always adds the BackroomsLogs writer to a run's observers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import budgets, logfile
from .caps import Caps, check_caps
from .conversation import Conversation
from .delivery import CLOSING_OWED, Delivery, closing_cursor, is_durable
from .engine import Engine, RetryPolicy, StopReason, StopSignal
from .errors import BackroomsError, ConfigError, LeaseHeld, LeaseLost, StoreError
from .errors import LimitError as LimitError  # it lived here first; surfaces import it from here
from .events import Event, ReplyDelta, ReplyFinished, ReplyStarted, RunEnded
from .leasing import Emit, LeaseKeeper
from .live import LiveTextFeed
from .observers import DEFAULT_QUEUE_SIZE, ObserverHub
from .ports import DesiredNotices, Leases, LiveText, Observer, Provider, TranscriptStore
from .pricing import Prices
from .records import Reply, RunEnd, RunRecord, RunSpec, now
from .registry import ModelSpec, Registry
from .starting import Plan, Starts
from .stopping import Stopper

log = logging.getLogger(__name__)

ObserversFor = Callable[[RunRecord], Awaitable[Sequence[Observer] | None]]
# Whether to claim a waiting run, asked before claiming it (and asked again for the next run only
# once the previous claim has been made or lost).
Wanted = Callable[[RunRecord], Awaitable[bool]]


@dataclass(frozen=True)
class Limits:
    max_runs: int = 20  # concurrent runs in this process
    max_runs_per_space: int = 3  # concurrent runs per Discord server / Slack workspace
    chat_max_turns: int = 50  # turn ceiling (and default) for runs started from chat
    token_budget: int | None = None  # default budget (input + output tokens) per run
    budget_usd: float | None = None  # default dollar budget per run (BACKROOMS_BUDGET_USD)
    space_daily_usd: float | None = None  # a space's spend per UTC day (BACKROOMS_SPACE_DAILY_USD)

    @property
    def caps(self) -> Caps:
        """The caps on runs going at once, as the store counts them across processes."""
        return Caps(self.max_runs, self.max_runs_per_space)


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
        chat_lag: int = 1,
        leases: Leases | None = None,
        live_text: LiveText | None = None,
        prices: Mapping[str, Prices] | None = None,
        notices: DesiredNotices | None = None,
        stop_poll: float | None = None,
    ):
        """`observer_grace`: how long a run's end waits for its queued observers (the log file,
        the terminal, the web feed). Chat posters are durable and never cut short: they go on
        after the run's end, and a run asks for reply N only once every chat showing it has
        shown all but `chat_lag` of the replies before N (BACKROOMS_CHAT_LAG).
        `leases`: the runs this manager drives are claimed, renewed and fenced through it
        (leasing.py); `live_text`: where their streaming text goes for viewers elsewhere.
        `notices`: stop requests of its runs heard as they are made (PostgreSQL's LISTEN);
        `stop_poll`: seconds between two reads of them all, the fallback (stopping.py)."""
        self.registry = registry
        self.template_dirs = list(template_dirs)
        self.store = store
        self.limits = limits or Limits()
        self._env = env
        self._log_dir = log_dir
        self._provider_for = provider_for
        self._retry = retry
        self._chat_lag = chat_lag
        self._deliveries: dict[int, set[asyncio.Task[None]]] = {}  # chat posters still showing
        self.prices = dict(prices or {})  # by alias (pricing.load_prices)
        self._runs: dict[int, RunHandle] = {}
        self._created: dict[int, RunRecord] = {}  # stored, not launched yet (counted by caps)
        self._plans: dict[int, Plan] = {}  # what `launch` builds each created run from
        self._starts = Starts(registry, template_dirs, env, self.prices)
        self._starting_specs: list[RunSpec] = []  # past the caps, not yet going (counted too)
        self._starting: set[int] = set()  # being resumed or extended right now
        self._taps: list[Callable[[RunRecord], Observer | None]] = []
        self._observer_grace = observer_grace
        self._observer_queue = observer_queue
        self._accepting = True
        self._keeper = LeaseKeeper(leases, self._drop)
        self._background: set[asyncio.Task[None]] = set()
        self._live = live_text if leases is not None else None
        self._stopper = Stopper(  # stop requests in the store, from any process (stopping.py)
            store,
            self._keeper,
            lambda: {run_id: h.stop for run_id, h in self._runs.items()},
            lambda run_id: (
                run_id in self._runs or run_id in self._starting or run_id in self._created
            ),
            notices=notices,
            poll=stop_poll,
        )

    # -- starting (one way in: starting.py) -------------------------------------------------

    def prepare(self, spec: RunSpec) -> Plan:
        """Check a start request without starting it: limits, models, template, fit, keys,
        budget. Raises ConfigError subclasses whose messages are meant for the user as they are."""
        return self._starts.check(self._apply_limits(spec))

    async def start(self, spec: RunSpec, observers: Sequence[Observer] = ()) -> RunHandle:
        return self.launch(await self.create(spec), observers)

    async def create(self, spec: RunSpec) -> RunRecord:
        """Check and store a run without starting it, so a surface can prepare where it shows it
        (a thread named after the run) first. `launch` starts it; `abandon` ends it unstarted."""
        plan, created = await self._checked(spec)
        path = logfile.allocate(self._log_dir, plan.specs, plan.spec.template, created)
        self._providers_ready(plan.specs)
        since = time.monotonic()
        with self._counted(plan.spec):
            # The store counts the caps again in the transaction that stores the run, over
            # every process's runs: several processes on one store share one cap.
            record = await self._starts.store(
                self.store, plan, str(path), created, caps=self.limits.caps
            )
        self._keeper.hold(record.id, since)  # the store made it ours in the same statement
        self._created[record.id] = record
        self._plans[record.id] = plan
        log.info("run %s: created by %s: %s", record.id, spec.started_by, " ".join(spec.models))
        return record

    async def queue(self, spec: RunSpec) -> RunRecord:
        """Check and store a run for a driving process to claim (this one drives nothing)."""
        plan, created = await self._checked(spec)
        path = logfile.allocate(self._log_dir, plan.specs, plan.spec.template, created)
        record = await self._starts.store(
            self.store, plan, str(path), created, queued=True, caps=self.limits.caps
        )
        log.info("run %s: queued by %s: %s", record.id, spec.started_by, " ".join(spec.models))
        return record

    async def _checked(self, spec: RunSpec) -> tuple[Plan, datetime]:
        plan = self.prepare(spec)
        created = now()
        await self._check_daily_cap(plan.spec, created)
        return plan, created

    def launch(self, record: RunRecord, observers: Sequence[Observer] = ()) -> RunHandle:
        """Drive a run `create` stored: its conversation is built as a resume builds one."""
        self._created.pop(record.id, None)
        conversation = self._starts.conversation(record, self._plans.pop(record.id), [])
        return self._launch(record, conversation, observers, history=[])

    async def abandon(self, record: RunRecord, why: str) -> None:
        """End a created run that could not be started (its thread could not be made). A run
        that has ended already keeps its end."""
        self._created.pop(record.id, None)
        self._plans.pop(record.id, None)
        if (await self.store.get_run(record.id)).end is not None:
            return
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
        going = [
            *(h.record.spec for h in self._runs.values()),
            *(r.spec for r in self._created.values()),
            *self._starting_specs,
        ]
        here = sum(1 for s in going if spec.space is not None and s.space == spec.space)
        check_caps(self.limits.caps, spec.space, len(going), here)

    def add_tap(self, tap: Callable[[RunRecord], Observer | None]) -> None:
        """Give every run launched from now on (started, resumed or extended) the observer `tap`
        returns for it, if any: the web viewer's live feed watches all runs this way."""
        self._taps.append(tap)

    # -- resuming and extending -------------------------------------------------------------

    async def resume(self, run_id: int, observers: Sequence[Observer] = ()) -> RunHandle:
        """Continue a run left running by a crash or a shutdown, from the stored replies."""
        with self._claim(run_id):
            async with self._leased(run_id):
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
            async with self._leased(run_id):
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

    async def unservable(self, record: RunRecord) -> str | None:
        """Why this process could not drive a stored run (a model, a key or the template it
        lacks), read from the run's stored blueprint where it has one, so a process needs
        neither the templates folder nor the models.toml of the one that stored it; None when
        it can."""
        try:
            await self._starts.plan_of(self.store, record)
        except (ConfigError, StoreError) as exc:
            return str(exc)
        return None

    async def resume_all(
        self,
        observers_for: ObserversFor | None = None,
        surfaces: frozenset[str] | None = None,
        wanted: Wanted | None = None,
    ) -> list[RunHandle]:
        """Resume every run still marked running that nobody drives (oldest first); with
        `surfaces`, only runs of those. `observers_for` gives a run's observers, or None to
        leave the run for someone else (a surface not running here). A run that cannot be
        resumed is ended with the reason instead of failing at every start. Called again and
        again, this is how a driving process claims the runs whose lease lapsed. Then finish
        showing the runs that ended while their chat was behind (`deliver_ended`). `wanted`
        is asked about each run before it is claimed: a run it declines is left alone."""
        handles = []
        for record in await self._resumable(surfaces):
            if record.id in self._runs or record.id in self._starting:
                continue
            if wanted is not None and not await wanted(record):
                continue
            with self._claim(record.id):
                handle = await self._resume_one(record.id, observers_for)
            if handle is not None:
                handles.append(handle)
        if observers_for is not None:
            await self.deliver_ended(observers_for, wanted=wanted)
        return handles

    async def _resumable(self, surfaces: frozenset[str] | None) -> list[RunRecord]:
        leases = self._keeper.leases
        if leases is None or surfaces is None:
            return await self.store.running_runs()
        return [await self.store.get_run(run_id) for run_id in await leases.waiting(surfaces)]

    async def _resume_one(
        self, run_id: int, observers_for: ObserversFor | None
    ) -> RunHandle | None:
        try:
            await self._providers_ready_for(run_id)
            await self._keeper.take(run_id)
        except LeaseHeld:
            return None  # another process drives it
        try:
            record = await self.store.get_run(run_id)  # as it is now that it is ours
            observers = () if observers_for is None else await observers_for(record)
            if record.status in ("queued", "running") and observers is not None:
                return await self._relaunch(record, observers, False)
        except BackroomsError as exc:
            log.warning("run %s: not resumed: %s", run_id, exc)
        await self._keeper.let_go(run_id)
        return None

    @contextlib.asynccontextmanager
    async def _leased(self, run_id: int) -> AsyncIterator[None]:
        """Hold a run's lease for a resume or an extension; let it go if that fails."""
        await self._providers_ready_for(run_id)
        await self._keeper.take(run_id)  # LeaseHeld names the process that drives it
        try:
            yield
        except BaseException:
            await self._keeper.let_go(run_id)
            raise

    def _providers_ready(self, specs: Sequence[ModelSpec]) -> None:
        """Build the providers (importing their SDKs) before the lease's clock starts: an import
        takes seconds under load and stalls the loop, and with it the lease's renewal."""
        for spec in specs:
            self._provider_for(spec)

    async def _providers_ready_for(self, run_id: int) -> None:
        if self._keeper.leases is None:
            return
        record = await self.store.get_run(run_id)
        try:
            self._providers_ready((await self._starts.plan_of(self.store, record)).specs)
        except (ConfigError, StoreError):
            pass  # the resume itself reports it

    def _drop(self, run_id: int) -> None:
        """The run is no longer surely ours: end its task now (no end is stored, none shown)."""
        handle = self._runs.get(run_id)
        if handle is not None and not handle.task.done():
            handle.task.cancel()

    async def deliver_ended(
        self,
        observers_for: Callable[[RunRecord], Awaitable[Sequence[Observer] | None]],
        *,
        recent: int = 200,
        wanted: Wanted | None = None,
    ) -> int:
        """Show the rest of the newest `recent` ended runs whose chat poster still owes their
        closing line (a crash or a shutdown came first): replies from its cursor on, then the
        closing line. A run's chat poster is named after the run's surface, so only runs that
        owe one are rebuilt. Returns how many runs it took up."""
        taken = 0
        for record in reversed(await self.store.recent_ended(recent)):
            if record.id in self._runs or record.id in self._starting or record.end is None:
                continue
            if self._deliveries.get(record.id):
                continue
            if not await self._owes_closing(record.id, record.spec.surface):
                continue
            if wanted is not None and not await wanted(record):
                continue
            # Its posts and cursors are fenced writes: the lease first (a surface's observers_for
            # may already record a post it adopts), kept until the chat has shown the rest.
            try:
                await self._keeper.take(record.id)
            except LeaseHeld:
                continue  # another process is finishing this delivery
            try:
                observers = [o for o in (await observers_for(record) or ()) if is_durable(o)]
                owed = [o for o in observers if await self._owes_closing(record.id, o.name)]
            except BaseException:
                await self._keeper.let_go(record.id)
                raise
            if owed:
                await self._deliver_only(record, owed)
                taken += 1
            else:
                await self._keeper.let_go(record.id)
        return taken

    async def _owes_closing(self, run_id: int, observer_name: str) -> bool:
        return await self.store.delivered(run_id, closing_cursor(observer_name)) == CLOSING_OWED

    async def _deliver_only(self, record: RunRecord, observers: Sequence[Observer]) -> None:
        """Show an ended run's rest, under its lease (taken by `deliver_ended`; let go once the
        chats are done, `_delivered`)."""
        assert record.end is not None
        history = await self.store.replies(record.id)
        for observer in observers:
            cursor = await self.store.delivered(record.id, observer.name)
            log.info(
                "run %s: showing what %s missed from reply %s", record.id, observer.name, cursor
            )
            delivery = Delivery(
                record.id, observer, self.store, history=history, cursor=cursor, end=record.end
            )
            self._keep(record.id, [delivery])

    def _keep(self, run_id: int, deliveries: Sequence[Delivery]) -> None:
        """Hold on to chat deliveries until they are done; shutdown waits for them."""
        tasks = self._deliveries.setdefault(run_id, set())
        for delivery in deliveries:
            tasks.add(delivery.task)
            delivery.task.add_done_callback(functools.partial(self._delivered, run_id))

    def _delivered(self, run_id: int, task: asyncio.Task[None]) -> None:
        tasks = self._deliveries.get(run_id)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._deliveries[run_id]
                if run_id not in self._runs:  # the run's own task is done: its lease can go
                    self._spawn(self._keeper.let_go(run_id), f"let go of run {run_id}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        if self._deliveries.get(run_id):
            raise ConfigError(
                f"run {run_id} is still being posted; try again once its closing line is shown"
            )
        self._starting.add(run_id)
        try:
            yield
        finally:
            self._starting.discard(run_id)

    async def _relaunch(
        self, record: RunRecord, observers: Sequence[Observer], extending: bool
    ) -> RunHandle:
        try:
            plan = await self._starts.plan_of(self.store, record)
        except (ConfigError, StoreError) as exc:
            await self._end_unresumable(record, observers, str(exc))
            raise
        if record.status == "queued":  # claimed: it is running from now on
            await self.store.claimed(record.id)
            record = dataclasses.replace(record, status="running")
        history = await self.store.replies(record.id)
        conversation = self._starts.conversation(record, plan, history)
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
            cursors={
                o.name: await self.store.delivered(record.id, o.name)
                for o in observers
                if is_durable(o)
            },
        )

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
        """What each queued observer had not received before the restart, by its delivery
        cursor (a chat poster's Delivery catches up by itself)."""
        missed = []
        for observer in observers:
            if is_durable(observer):
                continue
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
        cursors: Mapping[str, int] | None = None,
    ) -> RunHandle:
        writer = writer or logfile.LogFileWriter(Path(record.log_path))
        tapped = [o for tap in self._taps if (o := tap(record)) is not None]
        live = [LiveTextFeed(record.id, self._live)] if self._live is not None else []
        # Each observer fenced: it hears nothing once the run is no longer surely ours.
        mine = {id(o): self._keeper.fenced(record.id, o) for o in [writer, *observers, *tapped]}
        hub = ObserverHub(
            record.id,
            [*mine.values(), *live],
            store=self.store,
            tracked=[mine[id(o)] for o in observers],
            maxsize=self._observer_queue,
            history=history,
            cursors=cursors,
        )
        self._keep(record.id, hub.deliveries)
        for observer, events in replay:
            for event in events:
                hub.emit_to(mine[id(observer)], event)
        stop = StopSignal()
        emit = self._keeper.guarded(record.id, hub.emit)
        lag = self._chat_lag
        engine = Engine(
            self._provider_for,
            self.store,
            retry=self._retry,
            pace=lambda seq: hub.caught_up(seq, lag),
            prices=self.prices,
        )
        task = asyncio.create_task(
            self._drive(engine, record, conversation, hub, emit, stop, history, resumed, extending),
            name=f"run {record.id}",
        )
        handle = RunHandle(record, stop, task)
        self._runs[record.id] = handle
        self._stopper.requests.watch()
        return handle

    async def _drive(
        self,
        engine: Engine,
        record: RunRecord,
        conversation: Conversation,
        hub: ObserverHub,
        emit: Emit,
        stop: StopSignal,
        history: Sequence[Reply],
        resumed: bool,
        extending: bool,
    ) -> RunEnd:
        try:
            end = await engine.run(
                record,
                conversation,
                emit,
                stop,
                history=history,
                resumed=resumed,
                extending=extending,
            )
            log.info("run %s: %s", record.id, end.summary)
            return end
        except LeaseLost as exc:
            return self._lost(record, str(exc))
        except asyncio.CancelledError:
            if not self._keeper.was_lost(record.id):
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return self._lost(record, "its lease was lost")
        except Exception:  # the one supervisor of a run: record the failure, keep the transcript
            log.exception("run %s: failed", record.id)
            end = RunEnd(
                "error",
                detail="internal error; see the service log",
                turns=await self._turns(record),
            )
            await self.store.finish_run(record.id, end, now())
            emit(RunEnded(record.id, end))
            return end
        finally:
            try:
                # A lost run's observers are cut off at once: they post nothing more for it.
                lost = self._keeper.was_lost(record.id)
                await hub.close(0 if lost else self._observer_grace)
                if lost or not self._deliveries.get(record.id):
                    await self._keeper.let_go(record.id)  # ended or paused: others may claim
                # else the lease goes once its chats have shown the rest (_delivered)
            finally:  # also when a shutdown cancels this task while observers drain
                mine = self._runs.get(record.id)
                if mine is not None and mine.task is asyncio.current_task():
                    del self._runs[record.id]

    def _lost(self, record: RunRecord, why: str) -> RunEnd:
        """What the task of a run taken over by another process returns: nothing is stored or
        shown here, the new owner goes on with it."""
        self._keeper.lost(record.id, why, cancel=False)
        return RunEnd(
            "error", detail=f"this process lost run {record.id}'s lease; another may drive it now"
        )

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
        reason "gone" (with a detail) ends it because the place it was shown in disappeared.
        A stop of a run this process does not drive is asked through the store: its driver
        ends it, or this process when nobody drives it (stopping.py)."""
        handle = self._runs.get(run_id)
        if handle is None and reason == "stopped":
            asked = await self._stopper.elsewhere(run_id, by)
            return StopResult(run_id, asked.ended, asked.message)
        if handle is None:
            record = await self.store.get_run(run_id)  # raises UnknownRunError for a bad id
            state = record.end.summary if record.end else "not running in this process"
            return StopResult(run_id, False, f"run {run_id} is not running: {state}")
        handle.stop.set(by, reason, detail)
        end = await asyncio.shield(handle.task)
        return StopResult(run_id, True, f"run {run_id}: {end.summary}")

    async def wait(self, run_id: int) -> RunEnd:
        """The run's end, once it ended and every chat showing it has shown it all."""
        handle = self._runs.get(run_id)
        if handle is not None:
            end = await asyncio.shield(handle.task)
            await self.drain(run_id)
            return end
        record = await self.store.get_run(run_id)
        if record.end is None:
            raise ConfigError(f"run {run_id} is not running in this process")
        await self.drain(run_id)
        return record.end

    async def shutdown(self, deadline: float = 20.0) -> None:
        """Take no new runs; stop the running ones without ending them, then let the chats show
        what they can, all within `deadline`. Each run's lease is released as soon as its chats
        are done (or cut off at the deadline), so another driving process claims it at once: a
        shutdown releases, it does not pause (only the terminal pauses a run it stops). What a
        chat has not shown is shown by the next owner, from its cursor."""
        self._accepting = False
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline
        handles = list(self._runs.values())
        for handle in handles:
            handle.stop.set("shutdown", reason="shutdown")
        await _within([h.task for h in handles], deadline)
        left = [t for tasks in self._deliveries.values() for t in tasks]
        await _within(left, max(0.0, until - loop.time()))
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._stopper.requests.close()
        await self._keeper.close()

    async def drain(self, run_id: int) -> None:
        """Wait until every chat showing `run_id` has shown all it is going to."""
        tasks = list(self._deliveries.get(run_id, ()))
        if tasks:
            await asyncio.gather(*(asyncio.shield(t) for t in tasks))


async def _within(tasks: Sequence[asyncio.Task[object]], seconds: float) -> None:
    """Wait for `tasks` up to `seconds`, then cancel (and reap) the ones still going."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=seconds)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)

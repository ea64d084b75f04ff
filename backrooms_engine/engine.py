"""The turn loop: every participant in order, one streamed reply each, until a stop rule fires.

Upstream semantics (see shared/UPSTREAM_BEHAVIOUR.md): a reply containing ^C^C ends the run and is
not added to any context; otherwise it becomes its author's `assistant` message and everyone else's
`user` message. A turn is one reply from every participant; max_turns counts turns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .budgets import estimate, usd_text
from .conversation import STOP_SEQUENCE, Conversation, ModelRequest
from .errors import PermanentProviderError, TransientProviderError, UnreachableProviderError
from .events import (
    Event,
    ReplyDelta,
    ReplyFinished,
    ReplyRetrying,
    ReplyStarted,
    RunEnded,
    RunStarted,
)
from .ports import Provider, TranscriptStore
from .pricing import Prices, RunUsage, added, cost_usd, run_usage, would_cross_budget
from .records import Reply, RunEnd, RunRecord, RunSpec, Usage, now
from .registry import ModelSpec

log = logging.getLogger(__name__)


Emit = Callable[[Event], None]
StopReason = Literal["stopped", "shutdown", "gone"]  # the ends a StopSignal can give
ProviderFor = Callable[[ModelSpec], Provider]
Pace = Callable[[int], Awaitable[None]]  # returns when reply `seq` may be asked for


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for transient errors; a server's retry-after wins when given.

    `deadline` bounds a whole reply, every attempt and wait included, from its first request to
    its last byte: a read timeout alone never ends a stream that sends keep-alive comments
    (OpenRouter does while it waits) or trickles bytes, and attempts that each time out add up.
    Past it the run ends, with a message that names `deadline_setting`, where the user can raise
    it. (A stall, no byte at all for the providers' shorter read timeout, is a transient error
    and retried within the deadline.)"""

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    deadline: float | None = None
    deadline_setting: str = "BACKROOMS_REQUEST_TIMEOUT"
    unreachable_for: float = 10.0  # seconds of retries, in all, for an address nobody answers at

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        # Annotated: int ** int is typed Any (a negative power is a float).
        backoff: float = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        return backoff * (0.5 + random.random() / 2)  # jitter: many runs must not retry in step


class StopSignal:
    """Set from outside (a /stop, a shutdown) to end a run, even mid-reply."""

    def __init__(self) -> None:
        self._set = False
        self._watchers: list[Callable[[], None]] = []
        self.by: str | None = None
        self.reason: StopReason = "stopped"
        self.detail: str | None = None

    def set(self, by: str, reason: StopReason = "stopped", detail: str | None = None) -> None:
        """reason: "stopped" (someone asked), "shutdown" (pause, resumable) or "gone" (the place
        the run was shown in disappeared; `detail` says how)."""
        if not self._set:
            self.by, self.reason, self.detail = by, reason, detail
            self._set = True
            for watcher in list(self._watchers):
                watcher()

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` when the signal is set; returns what stops watching."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)

    def is_set(self) -> bool:
        return self._set


class _Stopped(Exception):
    """The stop signal fired while a reply was being produced."""


class Engine:
    def __init__(
        self,
        provider_for: ProviderFor,
        store: TranscriptStore,
        *,
        retry: RetryPolicy | None = None,
        pace: Pace | None = None,
        prices: Mapping[str, Prices] | None = None,
    ):
        """`pace(seq)` holds a run back before it asks for reply `seq` (a chat that lags)."""
        self._provider_for = provider_for
        self._store = store
        self._retry = retry or RetryPolicy()
        self._pace = pace
        self._prices = dict(prices or {})  # by alias; a model without any: "cost unknown"

    async def run(
        self,
        record: RunRecord,
        conversation: Conversation,
        emit: Emit,
        stop: StopSignal,
        *,
        history: Sequence[Reply] = (),
        resumed: bool = False,
        extending: bool = False,
    ) -> RunEnd:
        """Drive one run to its end; the end is stored before RunEnded is emitted.

        `history` holds the replies already stored (a resumed or extended run); `conversation`
        must already contain them. When `extending` is false, a stored last reply with ^C^C ends
        the run at once (a crash between that commit and the end being stored).

        A shutdown is not an end: the run stays marked running in the store so the next start
        resumes it, and RunEnded(reason="shutdown") only tells surfaces that it paused.
        """
        emit(RunStarted(record, resumed=resumed))
        end = self._ended_already(record, len(conversation.participants), history, extending)
        tally = Tally(run_usage(r.usage for r in history))
        for r in history:
            tally.last_input[r.position] = _reported_input(r.usage)
        tally.tokens = sum(r.usage.total for r in history)
        if end is None:
            end = await self._loop(record, conversation, emit, stop, len(history), tally)
        if end.reason != "shutdown":
            await self._store.finish_run(record.id, end, now())
        emit(RunEnded(record.id, end, usage=tally.usage))
        return end

    @staticmethod
    def _ended_already(
        record: RunRecord, size: int, history: Sequence[Reply], extending: bool
    ) -> RunEnd | None:
        if not history:
            return None
        last = history[-1]
        if not extending and STOP_SEQUENCE in last.text:
            return RunEnd("ctrl_c", actor=last.actor, turns=len(history) // size)
        budget = record.spec.token_budget
        if budget is not None and sum(r.usage.total for r in history) >= budget:
            return RunEnd("budget", detail=f"{budget} tokens", turns=len(history) // size)
        return None

    async def _loop(
        self,
        record: RunRecord,
        conversation: Conversation,
        emit: Emit,
        stop: StopSignal,
        seq: int,
        tally: Tally,
    ) -> RunEnd:
        """While reply N is being committed, reply N+1 is already asked for: a model's answer
        takes seconds, a commit under load tens of milliseconds, and the next speaker need not
        wait for it. What observers hear keeps its order: reply N+1's events are held back until
        reply N is committed and its ReplyFinished has gone out."""
        committing: list[asyncio.Task[None]] = []  # the previous reply's commit, while it runs
        try:
            end = await self._turns(record, conversation, emit, stop, seq, tally, committing)
            await _settled(committing)  # whatever ended the run, the last reply is stored first
            return end
        finally:
            for task in committing:
                if not task.done():
                    task.cancel()  # the run itself was cancelled; the store keeps the reply

    async def _turns(
        self,
        record: RunRecord,
        conversation: Conversation,
        emit: Emit,
        stop: StopSignal,
        seq: int,
        tally: Tally,
        committing: list[asyncio.Task[None]],
    ) -> RunEnd:
        size = len(conversation.participants)
        spec = record.spec
        while spec.max_turns is None or seq < spec.max_turns * size:
            if stop.is_set():
                return self._stopped(stop, seq, size)
            request = conversation.request(seq % size)
            if self._would_overspend(spec, request, seq % size, tally):
                assert spec.budget_usd is not None
                return RunEnd("budget", detail=usd_text(spec.budget_usd), turns=seq // size)
            held = _Held(emit, after=committing[0] if committing else None)
            try:
                reply = await self._reply(record.id, conversation, request, seq, held, stop)
            except _Stopped:
                return self._stopped(stop, seq, size)
            except PermanentProviderError as exc:
                # The manager logs every run's end with its reason; a terminal shows it as the
                # transcript's last line. A warning here printed it a third time, mid-transcript.
                log.debug("run %s: %s", record.id, exc.reason)
                return RunEnd("error", detail=exc.reason, turns=seq // size)
            await _settled(committing)  # a failed commit ends the run before this reply
            held.release()
            committing[:] = [asyncio.ensure_future(self._commit(reply, emit))]
            tally.add(reply.position, reply.usage)  # a ^C^C reply was paid for too
            if STOP_SEQUENCE in reply.text:
                return RunEnd("ctrl_c", actor=reply.actor, turns=(seq + 1) // size)
            conversation.append(reply.position, reply.text)
            seq += 1
            if spec.token_budget is not None and tally.tokens >= spec.token_budget:
                return RunEnd("budget", detail=f"{spec.token_budget} tokens", turns=seq // size)
        return RunEnd("max_turns", turns=seq // size, max_turns=spec.max_turns)

    def _would_overspend(
        self, spec: RunSpec, request: ModelRequest, position: int, tally: Tally
    ) -> bool:
        """Whether this request could take the run past its dollar budget (budgets.py). A model
        that lost its prices since the start cannot be kept to a budget: the run ends."""
        if spec.budget_usd is None or request.spec.is_world_interface:
            return False
        most = estimate(
            self._prices.get(request.spec.alias), request, tally.last_input.get(position)
        )
        spent = tally.usage.cost_usd or 0.0
        return most is None or would_cross_budget(spent, most, spec.budget_usd)

    async def _commit(self, reply: Reply, emit: Emit) -> None:
        await self._store.append_reply(reply)
        emit(ReplyFinished(reply))

    @staticmethod
    def _stopped(stop: StopSignal, seq: int, size: int) -> RunEnd:
        if stop.reason in ("shutdown", "gone"):
            return RunEnd(stop.reason, by=stop.by, detail=stop.detail, turns=seq // size)
        return RunEnd("stopped", by=stop.by, turns=seq // size)

    async def _reply(
        self,
        run_id: int,
        conversation: Conversation,
        request: ModelRequest,
        seq: int,
        emit: Emit,
        stop: StopSignal,
    ) -> Reply:
        """One reply with retries, abandoned as soon as the stop signal fires: the stop cancels
        this very task, so the reply needs no task of its own (each task hand-off costs a turn
        of the event loop, tens of milliseconds under load)."""
        task = asyncio.current_task()
        assert task is not None
        interrupted = False

        def interrupt() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        unwatch = stop.watch(interrupt)
        try:
            if self._pace is not None:  # a stop while waiting for the chat ends the run here
                await self._pace(seq)
            return await self._within_deadline(
                self._attempts(run_id, conversation, request, seq, emit), request.spec
            )
        except asyncio.CancelledError:
            if interrupted and task.uncancel() == 0:
                raise _Stopped from None
            raise  # the run itself is being cancelled
        finally:
            unwatch()

    async def _attempts(
        self, run_id: int, conversation: Conversation, request: ModelRequest, seq: int, emit: Emit
    ) -> Reply:
        size = len(conversation.participants)
        turn, position = divmod(seq, size)
        participant = conversation.participants[position]
        provider = self._provider_for(request.spec)
        loop = asyncio.get_running_loop()
        began = loop.time()
        for attempt in range(1, self._retry.attempts + 1):
            emit(ReplyStarted(run_id, seq, turn + 1, position, participant.actor, attempt))
            started_at = now()
            try:
                text, usage = await self._stream(
                    run_id, seq, participant.actor, position, provider, request, emit
                )
            except TransientProviderError as exc:
                delay = self._retry.delay(attempt, exc.retry_after)
                self._give_up_if_due(exc, attempt, loop.time() - began + delay)
                log.info("run %s: %s; retrying in %.1fs", run_id, exc.reason, delay)
                emit(
                    ReplyRetrying(
                        run_id, seq, position, participant.actor, attempt, delay, exc.reason
                    )
                )
                await asyncio.sleep(delay)
                continue
            return Reply(
                run_id=run_id,
                seq=seq,
                turn=turn + 1,
                position=position,
                actor=participant.actor,
                text=text,
                started_at=started_at,
                finished_at=now(),
                # Priced now, at today's prices: a later price change does not rewrite the past.
                usage=dataclasses.replace(
                    usage, cost_usd=cost_usd(self._prices.get(request.spec.alias), usage)
                ),
            )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _give_up_if_due(self, exc: TransientProviderError, attempt: int, elapsed: float) -> None:
        """Raise the permanent error that ends the run once retrying is no longer worth it:
        attempts used up, or an unreachable address still unreachable after `unreachable_for`
        seconds in all (`elapsed` counts the wait before the next attempt). An unreachable
        address ends with its own message: it names the URL and the setting to fix."""
        unreachable = isinstance(exc, UnreachableProviderError)
        if unreachable and (
            attempt == self._retry.attempts or elapsed > self._retry.unreachable_for
        ):
            message = exc.args[0]
        elif attempt == self._retry.attempts:
            tries = f"{attempt} attempt" + ("" if attempt == 1 else "s")
            message = f"gave up after {tries}: {exc.args[0]}"
        else:
            return
        raise PermanentProviderError(
            message, model=exc.model, provider=exc.provider, status=exc.status
        ) from exc

    async def _within_deadline(
        self, attempts: Coroutine[Any, Any, Reply], spec: ModelSpec
    ) -> Reply:
        deadline = self._retry.deadline
        if deadline is None:
            return await attempts
        try:
            async with asyncio.timeout(deadline) as scope:
                return await attempts
        except TimeoutError:
            if not scope.expired():
                raise  # not ours
            raise PermanentProviderError(
                f"no complete reply within {deadline:g} s ({self._retry.deadline_setting})",
                model=spec.alias,
                provider=spec.provider.name,
            ) from None

    @staticmethod
    async def _stream(
        run_id: int,
        seq: int,
        actor: str,
        position: int,
        provider: Provider,
        request: ModelRequest,
        emit: Emit,
    ) -> tuple[str, Usage]:
        text = ""
        usage = Usage()
        async for item in provider.stream(request):
            if isinstance(item, Usage):
                usage = item
            elif item:
                text += item
                emit(ReplyDelta(run_id, seq, position, actor, item, text))
        return text, usage


@dataclass
class Tally:
    """What a run has used so far: its usage totals (pricing.run_usage's rules), the tokens a
    token budget counts, and each seat's last reported input (for the dollar estimate)."""

    usage: RunUsage
    tokens: int = 0
    last_input: dict[int, int | None] = field(default_factory=dict)

    def add(self, position: int, usage: Usage) -> None:
        self.usage = added(self.usage, usage)
        self.tokens += usage.total
        self.last_input[position] = _reported_input(usage)


def _reported_input(usage: Usage) -> int | None:
    """Every input token a reply's request carried, or None when the API did not say."""
    return None if usage.input_tokens is None else usage.all_input


async def _settled(committing: list[asyncio.Task[None]]) -> None:
    """Wait for the previous reply's commit; its failure is the run's failure. (If the run is
    cancelled meanwhile, `_loop` cancels the commit: the store still keeps the reply.)"""
    for task in committing:
        await task


class _Held:
    """An emit that holds events back until `after` (the previous reply's commit) is done and
    `release` is called; a reply streamed meanwhile is heard all at once, in order, after the
    previous one's ReplyFinished."""

    def __init__(self, emit: Emit, *, after: asyncio.Task[None] | None) -> None:
        self._emit = emit
        self._held: list[Event] | None = [] if after is not None and not after.done() else None
        if after is not None and self._held is not None:
            after.add_done_callback(self._on_commit)

    def __call__(self, event: Event) -> None:
        if self._held is None:
            self._emit(event)
        else:
            self._held.append(event)

    def _on_commit(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is None:
            self.release()

    def release(self) -> None:
        held, self._held = self._held, None
        for event in held or ():
            self._emit(event)

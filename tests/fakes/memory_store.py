"""MemoryStore: the three store ports (TranscriptStore, SurfaceState, Archive) in memory.

It behaves like SqliteStore wherever a caller can tell: the same errors with the same messages (the
checks are imported from the real store), the same orderings (runs newest first by id, replies by
seq, posts by (seq, part), running runs oldest first), timestamps handed back in UTC, the same
search rules (memory_search.py: words, not substrings), and a closed store that refuses every call.
tests/engine/test_store_contract.py runs one contract over both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from backrooms_engine.caps import Caps, check_caps
from backrooms_engine.errors import StoreError
from backrooms_engine.lifecycle import ClosesOnExit
from backrooms_engine.ports import PAGE_SIZE, Hit, RunFilter
from backrooms_engine.pricing import run_usage
from backrooms_engine.records import (
    Blueprint,
    ParticipantInfo,
    Reply,
    RunEnd,
    RunRecord,
    RunSpec,
)
from backrooms_engine.store import (
    check_count,
    check_list_args,
    check_participants,
    check_reply,
    duplicate_reply,
    unknown_run,
    utc,
)

from . import memory_search


@dataclass
class _Run:
    record: RunRecord  # without aggregates: they are computed on the way out, as SQL does
    replies: dict[int, Reply] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)
    posts: dict[tuple[int, int, str], str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    blueprint: Blueprint | None = None


class MemoryStore(ClosesOnExit):
    def __init__(self) -> None:
        self._runs: dict[int, _Run] = {}
        self._space_settings: dict[tuple[str, str], str] = {}
        self._stops: dict[int, str] = {}  # run id -> who asked it to stop (desired state)
        self._closed = False

    @classmethod
    async def open(cls) -> MemoryStore:
        return cls()

    async def close(self) -> None:
        self._closed = True

    def _run(self, run_id: int) -> _Run:
        self._check_open()
        try:
            return self._runs[run_id]
        except KeyError:
            raise unknown_run(run_id) from None

    def _with_totals(self, run: _Run) -> RunRecord:
        replies = run.replies.values()
        totals = run_usage(r.usage for r in replies)
        return dataclasses.replace(
            run.record,
            replies=len(replies),
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            cache_read_tokens=totals.cache_read_tokens,
            cache_write_tokens=totals.cache_write_tokens,
            cost_usd=totals.cost_usd,
            usage_complete=totals.complete,
        )

    # -- TranscriptStore (and Archive: get_run, replies, list_runs)

    async def create_run(
        self,
        spec: RunSpec,
        participants: Sequence[ParticipantInfo],
        log_path: str,
        created_at: datetime,
        *,
        caps: Caps | None = None,
        blueprint: Blueprint | None = None,
        queued: bool = False,
    ) -> RunRecord:
        check_participants(participants)
        created = utc(created_at)
        self._check_open()
        if caps is not None:  # what the SQL stores count: running, not paused, not ended
            going = [
                r.record.spec.space
                for r in self._runs.values()
                if r.record.status in ("running", "queued")
            ]
            here = going.count(spec.space) if spec.space is not None else 0
            check_caps(caps, spec.space, len(going), here)
        record = RunRecord(
            id=max(self._runs, default=0) + 1,
            spec=spec,
            participants=tuple(sorted(participants, key=lambda p: p.position)),
            status="queued" if queued else "running",
            created_at=created,
            log_path=log_path,
        )
        self._runs[record.id] = _Run(record, blueprint=blueprint)
        return record

    async def claimed(self, run_id: int) -> None:
        run = self._run(run_id)
        if run.record.status == "queued":
            run.record = dataclasses.replace(run.record, status="running")

    async def blueprint(self, run_id: int) -> Blueprint | None:
        return self._run(run_id).blueprint

    async def append_reply(self, reply: Reply) -> None:
        check_reply(reply)
        stored = dataclasses.replace(
            reply, started_at=utc(reply.started_at), finished_at=utc(reply.finished_at)
        )
        run = self._run(reply.run_id)
        if reply.seq in run.replies:
            raise duplicate_reply(reply)
        run.replies[reply.seq] = stored

    async def finish_run(self, run_id: int, end: RunEnd, ended_at: datetime) -> None:
        ended = utc(ended_at)
        run = self._run(run_id)
        run.record = dataclasses.replace(run.record, status="ended", end=end, ended_at=ended)

    async def reopen_run(self, run_id: int, *, max_turns: int | None) -> None:
        run = self._run(run_id)
        spec = dataclasses.replace(run.record.spec, max_turns=max_turns)
        run.record = dataclasses.replace(
            run.record, spec=spec, status="running", end=None, ended_at=None
        )
        self._stops.pop(run_id, None)

    async def request_stop(self, run_id: int, by: str, at: datetime) -> bool:
        utc(at)
        if self._run(run_id).record.status == "ended":
            return False
        self._stops.setdefault(run_id, by)
        return True

    async def stop_requests(self, run_ids: Sequence[int]) -> dict[int, str]:
        self._check_open()
        return {run_id: self._stops[run_id] for run_id in sorted(set(run_ids) & set(self._stops))}

    async def pause_run(self, run_id: int, paused_at: datetime) -> None:
        utc(paused_at)
        run = self._run(run_id)
        if run.record.status in ("queued", "running"):
            run.record = dataclasses.replace(run.record, status="paused")

    async def get_run(self, run_id: int) -> RunRecord:
        return self._with_totals(self._run(run_id))

    async def list_runs(
        self, *, status: str | None = None, space: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        check_list_args(status, limit)
        self._check_open()
        kept = [
            run
            for _, run in sorted(self._runs.items(), reverse=True)
            if (status is None or run.record.status == status)
            and (space is None or run.record.spec.space == space)
        ]
        return [self._with_totals(run) for run in kept[:limit]]

    async def recent_ended(self, limit: int) -> list[RunRecord]:
        self._check_open()
        check_list_args(None, limit)
        ended = [run for _, run in sorted(self._runs.items()) if run.record.status == "ended"]
        return [self._with_totals(run) for run in reversed(ended)][:limit]

    async def space_spend(self, space: str, start: datetime, end: datetime) -> float:
        self._check_open()
        low, high = utc(start), utc(end)
        return sum(
            reply.usage.cost_usd or 0.0
            for run in self._runs.values()
            if run.record.spec.space == space
            for reply in run.replies.values()
            if low <= reply.finished_at < high
        )

    async def running_runs(self) -> list[RunRecord]:
        self._check_open()
        return [
            self._with_totals(run)
            for _, run in sorted(self._runs.items())
            if run.record.status in ("queued", "running")
        ]

    async def replies(self, run_id: int) -> list[Reply]:
        run = self._run(run_id)
        return [run.replies[seq] for seq in sorted(run.replies)]

    async def delivered(self, run_id: int, observer: str) -> int:
        return self._run(run_id).deliveries.get(observer, 0)

    async def mark_delivered(self, run_id: int, observer: str, count: int) -> None:
        check_count(count)
        self._run(run_id).deliveries[observer] = count

    # -- SurfaceState

    async def record_post(
        self, run_id: int, seq: int, part: int, surface: str, external_id: str
    ) -> None:
        self._run(run_id).posts[(seq, part, surface)] = external_id

    async def posts(self, run_id: int, surface: str) -> dict[tuple[int, int], str]:
        posts = self._run(run_id).posts
        return {
            (seq, part): posts[(seq, part, where)]
            for seq, part, where in sorted(posts)
            if where == surface
        }

    async def set_meta(self, run_id: int, key: str, value: str) -> None:
        self._run(run_id).meta[key] = value

    async def get_meta(self, run_id: int, key: str) -> str | None:
        return self._run(run_id).meta.get(key)

    async def set_space_setting(self, space: str, key: str, value: str) -> None:
        self._check_open()
        self._space_settings[(space, key)] = value

    async def space_setting(self, space: str, key: str) -> str | None:
        self._check_open()
        return self._space_settings.get((space, key))

    # -- Archive

    async def find_runs(self, f: RunFilter, limit: int = PAGE_SIZE) -> list[RunRecord]:
        check_list_args(None, limit)
        self._check_open()
        found = [run for run in self._newest_first() if self._passes(run, f)]
        return [self._with_totals(run) for run in found[:limit]]

    async def hits(self, words: str, run_ids: Sequence[int]) -> dict[int, Hit]:
        """The first matching reply of each run: SQLite ranks by bm25; the contract fixes neither."""
        self._check_open()
        terms = memory_search.terms(words)
        found: dict[int, Hit] = {}
        for run_id in run_ids if terms is not None else ():
            run = self._runs.get(run_id)
            first = next(self._matching(run, terms or []), None) if run else None
            if first is not None:
                found[run_id] = Hit(run_id, first.seq, memory_search.excerpt(terms or [], first))
        return found

    async def choices(self) -> tuple[list[str], list[str]]:
        self._check_open()
        runs = [run.record for run in self._runs.values()]
        models = {p.alias for record in runs for p in record.participants}
        return sorted(models), sorted({record.spec.template for record in runs})

    async def version(self) -> Hashable | None:
        return None  # writes are not counted here: a viewer keeps nothing from this store

    def _newest_first(self) -> list[_Run]:
        return [run for _, run in sorted(self._runs.items(), reverse=True)]

    def _passes(self, run: _Run, f: RunFilter) -> bool:
        record = run.record
        if f.q is not None:
            terms = memory_search.terms(f.q)
            if terms is None or next(self._matching(run, terms), None) is None:
                return False
        return (
            (f.status is None or record.status == f.status)
            and (f.template is None or record.spec.template == f.template)
            and (f.before is None or record.id < f.before)
            and (f.model is None or any(p.alias == f.model for p in record.participants))
        )

    @staticmethod
    def _matching(run: _Run, terms: list[memory_search.Term]) -> Iterator[Reply]:
        for seq in sorted(run.replies):
            if memory_search.matches(terms, run.replies[seq].text):
                yield run.replies[seq]

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store (in memory) is closed")

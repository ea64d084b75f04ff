"""Rules shared with tests/fakes/memory_store.py, so both stores fail the same way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from ..errors import ConfigError, StoreError, UnknownRunError
from ..records import ParticipantInfo, Reply

RUN_STATUSES = ("queued", "running", "paused", "ended")


def unknown_run(run_id: int) -> UnknownRunError:
    return UnknownRunError(f"no run with id {run_id}; `backrooms runs` lists them")


def duplicate_reply(reply: Reply) -> StoreError:
    return StoreError(f"run {reply.run_id} already has reply {reply.seq}; a reply is stored once")


def utc(moment: datetime) -> datetime:
    """Stored timestamps are UTC; a naive one is a bug upstream, not a time we could guess."""
    if moment.tzinfo is None:
        raise StoreError(f"timestamps must be timezone-aware; got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def check_reply(reply: Reply) -> None:
    if reply.seq < 0:
        raise StoreError(f"reply seq must be 0 or more; got {reply.seq}")


def check_participants(participants: Sequence[ParticipantInfo]) -> None:
    positions = [p.position for p in participants]
    if len(set(positions)) != len(positions):
        raise StoreError(f"participant positions must differ; got {sorted(positions)}")


def check_count(count: int) -> None:
    if count < 0:
        raise StoreError(f"a delivery count must be 0 or more; got {count}")


def check_list_args(status: str | None, limit: int) -> None:
    if status is not None and status not in RUN_STATUSES:
        raise ConfigError(f"unknown run status {status!r}; use one of: {', '.join(RUN_STATUSES)}")
    if limit < 1:
        raise ConfigError(f"a run list limit must be 1 or more; got {limit}")

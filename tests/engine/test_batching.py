"""Group commit (backrooms_engine/batching.py): what its callers see when the writer goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from backrooms_engine.batching import WRITER_TASK_NAME, GroupCommit


async def test_when_the_writer_is_cancelled_mid_write_no_caller_is_left_waiting():
    started = asyncio.Event()

    async def stuck(items: Sequence[str]) -> Sequence[str]:
        started.set()
        await asyncio.sleep(60)  # a write that never finishes by itself
        return list(items)

    commits: GroupCommit[str, str] = GroupCommit(stuck)
    in_flight = asyncio.ensure_future(commits.submit("being written"))
    await asyncio.wait_for(started.wait(), 5)
    queued = asyncio.ensure_future(commits.submit("queued behind it"))
    await asyncio.sleep(0)
    [writer] = [t for t in asyncio.all_tasks() if t.get_name() == WRITER_TASK_NAME]
    writer.cancel()  # as when the loop shuts down under it
    for caller in (in_flight, queued):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, 5)  # told, not left hanging until the timeout

"""Group commit: writes that queue while one batch is being written go together in the next.

A store that commits every reply on its own pays a round trip to its database thread per reply,
under one lock, and under load each of those waits for the busy event loop and for the GIL; with a
few hundred runs the replies queued behind one another for whole seconds (bench/). Batching makes
the cost per commit, not per reply: the busier the store, the larger each batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Writes a batch; one outcome per item, in order: what the write gives back for it (such as the id
# of a new row), or the exception that refused it alone. Raising instead fails the whole batch.
WriteBatch = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]

WRITER_TASK_NAME = "group-commit"  # the task that writes batches, as asyncio.all_tasks() lists it


class GroupCommit(Generic[T, R]):
    def __init__(self, write: WriteBatch[T, R]) -> None:
        self._write = write
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Returns once `item` is written (committed), raises its error otherwise. A caller that
        is cancelled while waiting does not take the item back: it is written all the same."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain(), name=WRITER_TASK_NAME)
        return await done

    async def idle(self) -> None:
        """Wait until everything submitted so far has been written or has failed."""
        while self._writer is not None:
            await asyncio.wait({self._writer})

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                outcomes: Sequence[R | BaseException]
                try:
                    outcomes = await self._write([item for item, _ in batch])
                except Exception as error:  # the whole batch failed: each caller hears why
                    outcomes = [error] * len(batch)
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if done.done():  # its caller was cancelled
                        continue
                    if isinstance(outcome, BaseException):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
        except asyncio.CancelledError:  # the loop is going away: nobody is left to write
            for _, done in [*batch, *self._queue]:  # the batch being written too: no caller hangs
                done.cancel()
            self._queue = []
            raise
        finally:
            self._writer = None

"""Posting budgets: messages wait their turn in order, edits only take room that is free."""

from __future__ import annotations

import asyncio

from bot.pacing import ChannelBudget, SlidingWindow, Spacing


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_counts_events_inside_the_window():
    clock = Clock()
    window = SlidingWindow(2, 10.0, clock)
    window.take()
    window.take()
    assert window.delay() == 10.0
    clock.now = 4.0
    assert window.delay() == 6.0
    clock.now = 10.0
    assert window.delay() == 0.0 and window.used() == 0


def test_edits_never_take_the_last_slot_or_jump_waiting_messages():
    clock = Clock()
    budget = ChannelBudget(SlidingWindow(5, 2.0, clock))
    assert [budget.try_edit() for _ in range(5)] == [True, True, True, True, False]
    budget.waiting = 1  # a message is queued: edits give way
    clock.now = 3.0
    assert budget.try_edit() is False


async def test_messages_go_through_in_arrival_order_within_the_budget():
    budget = ChannelBudget(SlidingWindow(2, 0.2), SlidingWindow(3, 0.5))
    loop = asyncio.get_running_loop()
    order: list[tuple[int, float]] = []

    async def post(n: int) -> None:
        await budget.message()
        order.append((n, loop.time()))

    began = loop.time()
    await asyncio.gather(*(post(n) for n in range(6)))
    assert [n for n, _ in order] == list(range(6))
    times = [t - began for _, t in order]
    # Never more than 2 in 0.2 s nor 3 in 0.5 s.
    assert all(times[i + 2] - times[i] >= 0.18 for i in range(len(times) - 2))
    assert all(times[i + 3] - times[i] >= 0.47 for i in range(len(times) - 3))


async def test_spacing_measures_from_when_the_previous_post_landed():
    spacing = Spacing(0.1)
    loop = asyncio.get_running_loop()
    landed: list[float] = []
    started: list[float] = []

    async def post() -> None:
        async with spacing:
            started.append(loop.time())
            await asyncio.sleep(0.05)  # the request itself
            landed.append(loop.time())

    await asyncio.gather(*(post() for _ in range(4)))
    assert all(started[i + 1] - landed[i] >= 0.099 for i in range(3))

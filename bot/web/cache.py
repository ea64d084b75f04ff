"""Small bounded caches for what the pages render again and again: a row of the run list, and
a whole list page while the store has not changed."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most `size` values, the least recently used one dropped first.

    Keys are the very values a rendering depends on (a run's record and its status word), so an
    entry never goes stale: a run that changes makes a new key, and its old entry ages out."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, make: Callable[[], V]) -> V:
        try:
            self._items.move_to_end(key)
            return self._items[key]
        except KeyError:
            value = self._items[key] = make()
            if len(self._items) > self._size:
                self._items.popitem(last=False)
            return value

    def peek(self, key: K) -> V | None:
        """The value kept for `key` (now the most recently used), or None."""
        try:
            self._items.move_to_end(key)
        except KeyError:
            return None
        return self._items[key]

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class _Made(Generic[V]):
    version: Hashable
    at: float
    value: V


class WhileUnchanged(Generic[K, V]):
    """Values made from the store, kept while the store's version (Archive.version) reads the
    same and for at most `max_age` seconds: what a page shows that the clock moves (a lease that
    runs out turns a live run into a waiting one) or that lives outside the store (the templates
    folder) is at most that old. A version of None keeps nothing. At most `size` values."""

    def __init__(
        self, size: int, max_age: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._made: Lru[K, _Made[V]] = Lru(size)
        self._max_age = max_age
        self._clock = clock

    async def get(self, key: K, version: Hashable | None, make: Callable[[], Awaitable[V]]) -> V:
        """The kept value, or a new one from `make`. `version` must be read before `make` reads
        the store, so a value is never kept under a version newer than what it shows."""
        now = self._clock()
        kept = self._made.peek(key)
        if (
            version is not None
            and kept is not None
            and kept.version == version
            and now - kept.at < self._max_age
        ):
            return kept.value
        value = await make()
        if version is not None:
            self._made.put(key, _Made(version, now, value))
        return value

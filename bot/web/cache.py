"""A small bounded cache for what the pages render again and again (a row of the run list)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
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

    def __len__(self) -> int:
        return len(self._items)

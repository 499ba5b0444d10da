"""A bounded map that forgets its least recently used entries first: the one LRU the service's caches
share (kept answers and persisted query texts by their bytes; compiled plans, validated documents and
documents' facts by their number)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def one(_: object) -> int:
    """Each entry counts as one: the bound is a number of entries."""
    return 1


class Bounded(Generic[K, V]):
    """At most `limit` in the sum of the entries' sizes (`size`: bytes, or `one` for a count); an entry
    larger than the whole limit is not kept at all. Reading an entry makes it the most recently used."""

    def __init__(self, limit: int, size: Callable[[V], int] = one) -> None:
        self.limit = limit
        self.used = 0
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def get(self, key: K, default: V | None = None) -> V | None:
        if key not in self._entries:
            return default
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: K, value: V) -> None:
        size = self._size(value)
        self.pop(key)
        if size > self.limit:
            return
        self._entries[key] = value
        self.used += size
        while self.used > self.limit:
            _, evicted = self._entries.popitem(last=False)
            self.used -= self._size(evicted)

    def pop(self, key: K) -> None:
        if key in self._entries:
            self.used -= self._size(self._entries.pop(key))

    def all_keys(self) -> list[K]:
        """The keys as they are now (a list: the map may change while the caller walks it)."""
        return list(self._entries)

"""A request's DataLoaders that call their owner's methods through a weak reference.

A loader made from a bound method (`DataLoader(self._load_models)`) holds its owner, which holds the
loader: a reference cycle. Then nothing a request read (every row of a page, its futures and batches) is
freed when the request ends, only when the cyclic collector next runs, and that collector then walks all
of it: with twenty pages in flight, a collection every few requests that cost a few percent of a page's
CPU. Through a weak reference there is no cycle, and a request's reads are freed with its context.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

K = TypeVar("K")
V = TypeVar("V")


def weak_loader(method: Callable[[Sequence[K]], Awaitable[Sequence[V]]]) -> DataLoader[K, V]:
    """A DataLoader whose batches call `method` (a bound method) of an owner it does not keep alive."""
    reference = weakref.WeakMethod(method)

    async def load(keys: Sequence[K]) -> Sequence[V]:
        bound: Any = reference()
        if bound is None:
            raise RuntimeError("a request's loader was asked after the request's loaders were dropped")
        result: Sequence[V] = await bound(keys)
        return result

    return DataLoader[K, V](load)

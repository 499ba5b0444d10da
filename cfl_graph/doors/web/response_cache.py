"""Each worker's memory of GraphQL answers and of persisted query texts, both bounded.

An answer is kept under everything it depends on (`AnswerKey`): the graph, the document, operation and
variables, what the asker may read (`policy.reader_view`), and the state it was read from: the current
CPL snapshot and the library revision, each only if the document reads it (`cfl_graph.doors.graph.reads`),
and the
date when days are counted. A new snapshot or publication changes the state every later request reads
(`cfl_graph.revisions`, one statement), so an old answer is never found again; it is dropped as soon as
a request sees the newer state. Nothing is shared between workers but the database the state comes
from, so any number of workers agree.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from cfl_graph.revisions import Revisions

T = TypeVar("T")
ENTRY_OVERHEAD_BYTES = 512  # the key and the bookkeeping around a body, roughly


@dataclass(frozen=True)
class AnswerKey:
    schema: str  # which graph, and a fingerprint of its SDL: a new release answers anew
    document_sha256: str
    operation_name: str | None
    variables: str  # canonical JSON
    view: tuple[str, ...]
    snapshot_id: int | None  # None: the document reads no CPL fact (or there is no snapshot yet)
    reads_cpl: bool
    served: int | None  # the library revision the answer was read at, if it reads the library
    records: int | None  # ... drafts included, for askers who see drafts
    day: dt.date | None  # the day an answer that counts days was made on

    def etag(self) -> str:
        """A strong validator: the same key always stands for the same bytes."""
        return '"' + hashlib.sha256(repr(self).encode()).hexdigest()[:40] + '"'

    def is_stale(self, now: Revisions, today: dt.date) -> bool:
        return (
            (self.reads_cpl and self.snapshot_id != now.snapshot_id)
            or (self.served is not None and self.served != now.served)
            or (self.records is not None and self.records != now.records)
            or (self.day is not None and self.day != today)
        )


class _Bounded(Generic[T]):
    """Least recently used entries go first once their sizes pass `max_bytes`."""

    def __init__(self, max_bytes: int, size: Callable[[T], int]) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._size = size
        self._entries: OrderedDict[object, T] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: object) -> T | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: object, value: T) -> None:
        size = self._size(value)
        if size > self.max_bytes:
            return
        self.pop(key)
        self._entries[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= self._size(evicted)

    def pop(self, key: object) -> None:
        if (old := self._entries.pop(key, None)) is not None:
            self.bytes -= self._size(old)

    def all_keys(self) -> list[object]:
        return list(self._entries)


class ResponseCache:
    """Encoded GraphQL answers by `AnswerKey`, and one computation at a time per key."""

    def __init__(self, max_bytes: int) -> None:
        self._answers = _Bounded[bytes](max_bytes, lambda body: len(body) + ENTRY_OVERHEAD_BYTES)
        self._running: dict[AnswerKey, asyncio.Future[Any]] = {}
        self._state: tuple[Revisions, dt.date] | None = None
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._answers.bytes

    def __len__(self) -> int:
        return len(self._answers)

    def observe(self, now: Revisions, today: dt.date) -> None:
        """The state a request has just read: when it moved on, answers of the old state go at once."""
        if self._state == (now, today):
            return
        self._state = (now, today)
        for key in self._answers.all_keys():
            assert isinstance(key, AnswerKey)
            if key.is_stale(now, today):
                self._answers.pop(key)

    def get(self, key: AnswerKey) -> bytes | None:
        body = self._answers.get(key)
        if body is None:
            self.misses += 1
        else:
            self.hits += 1
        return body

    def put(self, key: AnswerKey, body: bytes) -> None:
        self._answers.put(key, body)

    async def once(self, key: AnswerKey, compute: Callable[[], Awaitable[T]]) -> T:
        """`compute()`, unless it is already running for `key`: then that run's result. The run is
        shielded, so an asker who goes away does not cancel it for the others who wait."""
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(compute())
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        return cast(T, await asyncio.shield(running))

    def _finished(self, key: AnswerKey, done: asyncio.Future[Any]) -> None:
        self._running.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here, in case every asker went away before it was raised


class PersistedQueries:
    """Automatic persisted queries, as Apollo clients send them: a query's SHA-256 stands for its text
    once the text has been sent with it. Kept per worker, as Apollo Server keeps them by default; a
    worker that does not know a hash says so and the client sends the text again. The GraphQL door keys
    texts by party and hash, so one party's texts are not another's."""

    def __init__(self, max_bytes: int) -> None:
        self._texts = _Bounded[str](max_bytes, lambda text: len(text.encode()) + 64 + ENTRY_OVERHEAD_BYTES)

    def __len__(self) -> int:
        return len(self._texts)

    def get(self, key: str) -> str | None:
        return self._texts.get(key)

    def put(self, key: str, text: str) -> None:
        self._texts.put(key, text)

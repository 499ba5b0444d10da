"""Each worker's memory of GraphQL answers and of persisted query texts, both bounded.

An answer is kept under everything it depends on (`AnswerKey`): the graph, the document, operation and
variables, what the asker may read (`policy.reader_view`), and the state it was read from: the current
CPL snapshot and the library revision, each only if the document reads it (`cfl_graph.doors.graph.reads`),
and the
date when days are counted. A new snapshot or publication changes the state every later request reads
(`cfl_graph.revisions`, one statement), so an old answer is never found again; it is dropped as soon as
a request sees the newer state. Nothing is shared between workers but the database the state comes
from, so any number of workers agree.

With CFL_REDIS_URL set (issue 18) the answers and the persisted queries are also kept in Redis, shared by
every worker of every node under the same keys, answers compressed, both bounded (least recently used
out first) and given a time to live (`cfl_graph.shared_state`). Each worker still keeps the answers it
has given or fetched in its memory, in front of Redis: a hit there costs no round trip. While Redis is
away, a lookup finds only the worker's own answers. One computation per key at a time is still per
worker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar, cast

from cfl_graph import metrics
from cfl_graph.bounded import Bounded
from cfl_graph.revisions import Revisions
from cfl_graph.shared_state import SharedState

T = TypeVar("T")
ENTRY_OVERHEAD_BYTES = 512  # the key and the bookkeeping around a body, roughly
# In Redis: answers are found again only under the state they were read at, so an hour is plenty; a
# persisted query's text is good as long as clients send its hash.
ANSWER_TTL_SECONDS = 3600
PERSISTED_TTL_SECONDS = 7 * 86400
COMPRESSION_LEVEL = 1  # JSON shrinks about tenfold even so, at a fraction of level 6's time


class AnswerKey(NamedTuple):
    """What an answer was read under. A tuple: made, hashed and compared in C (a frozen dataclass's were
    3 % of a cached answer's CPU); its repr, which names it in Redis and in its ETag, is the dataclass's."""

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
        return '"' + self.digest()[:40] + '"'

    def digest(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()

    def is_stale(self, now: Revisions, today: dt.date) -> bool:
        return (
            (self.reads_cpl and self.snapshot_id != now.snapshot_id)
            or (self.served is not None and self.served != now.served)
            or (self.records is not None and self.records != now.records)
            or (self.day is not None and self.day != today)
        )


class ResponseCache:
    """Encoded GraphQL answers by `AnswerKey`, and one computation at a time per key."""

    def __init__(self, max_bytes: int, *, shared: SharedState | None = None) -> None:
        self.max_bytes = max_bytes
        self.shared = shared
        self._answers = Bounded[AnswerKey, bytes](max_bytes, lambda body: len(body) + ENTRY_OVERHEAD_BYTES)
        self._running: dict[AnswerKey, asyncio.Future[Any]] = {}
        self._state: tuple[Revisions, dt.date] | None = None
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._answers.used

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

    async def lookup(self, key: AnswerKey) -> bytes | None:
        """The kept answer: from this worker's memory, else (when shared) from Redis, then kept in memory
        too. A key names the state its answer was read at, so a copy in memory is never staler than
        Redis's; it only saves the round trip and the decompression."""
        body = self._answers.get(key)
        if body is None and self.shared is not None:
            packed = await self.shared.get("answer", key.digest())
            if packed is not None:
                body = zlib.decompress(packed)
                self._answers.put(key, body)
        if body is None:
            self.misses += 1
        else:
            self.hits += 1
        metrics.count_cache_lookup("answers", body is not None)
        return body

    async def keep(self, key: AnswerKey, body: bytes) -> None:
        self.put(key, body)
        if self.shared is not None:
            packed = zlib.compress(body, COMPRESSION_LEVEL)
            await self.shared.put(
                "answer", key.digest(), packed, max_bytes=self.max_bytes, ttl_seconds=ANSWER_TTL_SECONDS
            )

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
    once the text has been sent with it. Kept per worker, as Apollo Server keeps them by default, or in
    Redis for every node; a worker that does not know a hash says so and the client sends the text
    again. The GraphQL door keys texts by party and hash, so one party's texts are not another's."""

    def __init__(self, max_bytes: int, *, shared: SharedState | None = None) -> None:
        self.max_bytes = max_bytes
        self.shared = shared
        self._texts = Bounded[str, str](
            max_bytes, lambda text: len(text.encode()) + 64 + ENTRY_OVERHEAD_BYTES
        )

    def __len__(self) -> int:
        return len(self._texts)

    def get(self, key: str) -> str | None:
        return self._texts.get(key)

    def put(self, key: str, text: str) -> None:
        self._texts.put(key, text)

    async def lookup(self, key: str) -> str | None:
        """The text sent earlier under `key`: every node's when shared (Redis), else this worker's."""
        if self.shared is None:
            text = self.get(key)
        else:
            kept = await self.shared.get("apq", key)
            text = kept.decode() if kept is not None else None
        metrics.count_cache_lookup("persisted_queries", text is not None)
        return text

    async def keep(self, key: str, text: str) -> None:
        if self.shared is None:
            self.put(key, text)
        else:
            await self.shared.put(
                "apq", key, text.encode(), max_bytes=self.max_bytes, ttl_seconds=PERSISTED_TTL_SECONDS
            )

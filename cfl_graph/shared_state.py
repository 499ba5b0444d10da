"""What several nodes share through Redis (issue 18): request rates, GraphQL answers and persisted query
texts, each in one round trip with redis-py's asyncio client.

Redis is help, never a dependency: every call here answers None when Redis cannot be reached (the
caller then does what a single node does: counts the rate in its own memory, executes the query,
asks for the query's text again), and after a failure Redis is left alone for `RETRY_SECONDS`, so a
request never waits on a dead server more than once in that time. That it is away is logged once a
minute and shown by the `cfl_redis_up` gauge.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from cfl_graph import metrics
from cfl_graph.settings import REDIS_TIMEOUT_SECONDS

log = logging.getLogger(__name__)
T = TypeVar("T")

# To connect, and for one answer (`CFL_REDIS_TIMEOUT`), unless the settings say otherwise.
TIMEOUT_SECONDS = REDIS_TIMEOUT_SECONDS
RETRY_SECONDS = 2.0  # after a failure, calls are not tried again for this long
LOG_EVERY_SECONDS = 60.0

# GCRA (the generic cell rate algorithm): one key per client holds the theoretical arrival time of its
# next request, in microseconds of Redis's own clock, so every node counts against the same time. A
# request is allowed while that time is at most `burst` intervals ahead of now. Answers 0 (go ahead) or
# the microseconds until a request would be allowed.
RATE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2]) * interval
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - now - burst
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
"""

# A bounded store: each entry is a key of its own with a time to live; an index (sorted by last use),
# the entries' sizes and their total make the least recently used go first once the total passes the
# bound. KEYS: the entry, the index, the sizes, the total; ARGV: the value, the bound, the seconds to live.
PUT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local size = string.len(ARGV[1]) + string.len(KEYS[1])
local old = tonumber(redis.call('HGET', KEYS[3], KEYS[1])) or 0
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], size)
local total = redis.call('INCRBY', KEYS[4], size - old)
local bound = tonumber(ARGV[2])
local evicted = 0
while total > bound do
  local oldest = redis.call('ZPOPMIN', KEYS[2])
  if #oldest == 0 then break end
  local gone = oldest[1]
  total = redis.call('DECRBY', KEYS[4], tonumber(redis.call('HGET', KEYS[3], gone)) or 0)
  redis.call('HDEL', KEYS[3], gone)
  redis.call('DEL', gone)
  evicted = evicted + 1
end
return evicted
"""

# The entry's value, its use noted in the index (KEYS: the entry, the index).
GET_SCRIPT = """
local value = redis.call('GET', KEYS[1])
if value then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], 'XX', tonumber(t[1]) + tonumber(t[2]) / 1000000, KEYS[1])
end
return value
"""


class SharedState:
    """One Redis, shared by every worker of every node, under `prefix`."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._rate = client.register_script(RATE_SCRIPT)
        self._put = client.register_script(PUT_SCRIPT)
        self._get = client.register_script(GET_SCRIPT)
        self._skip_until = 0.0
        self._last_note = -math.inf
        self._down_since: float | None = None
        metrics.REDIS_UP.labels(use="shared_state").set(1)

    @classmethod
    def connect(cls, url: str, prefix: str, timeout_seconds: float = TIMEOUT_SECONDS) -> SharedState:
        # No retries inside the client: a failure is answered at once, and this class decides when to
        # try again. The URL is never logged (it may hold a password).
        client = Redis.from_url(
            url,
            socket_connect_timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )
        return cls(client, prefix)

    @property
    def available(self) -> bool:
        return self._down_since is None

    async def close(self) -> None:
        await self.client.aclose()

    # --- what the doors ask ----------------------------------------------------------------------------

    async def take(self, key: str, per_minute: int) -> float | None:
        """0 if a request under `key` may go ahead now, else the seconds until one may (at most
        `per_minute` a minute, bursts of as many); None if Redis cannot say."""
        interval = math.ceil(60_000_000 / per_minute)
        wait = await self._call(
            lambda: self._rate(keys=[f"{self.prefix}rate:{key}"], args=[interval, per_minute])
        )
        return None if wait is None else int(wait) / 1_000_000

    async def get(self, space: str, key: str) -> bytes | None:
        """The value kept under `key` in `space`, or None (not there, or Redis away)."""
        value = await self._call(lambda: self._get(keys=[self._entry(space, key), self._index(space)]))
        return value if isinstance(value, bytes) else None

    async def put(self, space: str, key: str, value: bytes, *, max_bytes: int, ttl_seconds: int) -> None:
        """Keep `value`; the least recently used of `space` go once it holds more than `max_bytes`."""
        keys = [
            self._entry(space, key),
            self._index(space),
            f"{self._index(space)}:sizes",
            f"{self._index(space)}:bytes",
        ]
        if len(value) + len(keys[0]) <= max_bytes:
            await self._call(lambda: self._put(keys=keys, args=[value, max_bytes, ttl_seconds]))

    async def ping(self) -> bool:
        """Whether Redis answers now (tried even while calls are being skipped: readiness asks)."""
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            self._failed(exc, time.monotonic())  # a worker answering from memory may not have noticed
            return False
        self._recovered()
        return True

    # --- keys and failures -----------------------------------------------------------------------------

    def _entry(self, space: str, key: str) -> str:
        return f"{self.prefix}{space}:{key}"

    def _index(self, space: str) -> str:
        return f"{self.prefix}{space}-index"

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T | None:
        now = time.monotonic()
        if now < self._skip_until:
            return None
        try:
            result = await call()
        except (RedisError, OSError) as exc:
            self._failed(exc, now)
            return None
        self._recovered()
        return result

    def _failed(self, exc: Exception, now: float) -> None:
        self._skip_until = now + RETRY_SECONDS
        metrics.REDIS_ERRORS.inc()
        metrics.REDIS_UP.labels(use="shared_state").set(0)
        if self._down_since is None:
            self._down_since = now
        if now - self._last_note >= LOG_EVERY_SECONDS:
            self._last_note = now
            log.warning(
                "Redis unavailable for %.0f s (%s): rate limits are counted per worker and answers are not "
                "shared until it is back; noted again in a minute if it is still away",
                now - self._down_since,
                type(exc).__name__,
            )

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.warning(
                "Redis is back after %.0f s: limits and answers are shared again",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            self._last_note = -math.inf
            metrics.REDIS_UP.labels(use="shared_state").set(1)


def shared_state_for(
    url: str | None, prefix: str, timeout_seconds: float = TIMEOUT_SECONDS
) -> SharedState | None:
    return SharedState.connect(url, prefix, timeout_seconds) if url else None

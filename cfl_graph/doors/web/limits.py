"""Request limits at the HTTP door: body size (413) and a per-token request rate (429), each a GraphQL
response (`BAD_REQUEST`, `RATE_LIMITED`) on a GraphQL path.

The rate limit is a token bucket per API token (or per client address for anonymous requests). With
CFL_REDIS_URL set it is counted once for every worker of every node, in Redis, one round trip a request
(`cfl_graph.shared_state`); without it, or while Redis is away, each worker keeps its own buckets in
memory, so that N workers allow N times the setting: a single node needs no shared store to run, and
the limit still stops one client from starving others.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cfl_graph import metrics
from cfl_graph.doors.web.graphql_http import refusal
from cfl_graph.doors.web.middleware import SECURITY_HEADERS, header_value, principal_of
from cfl_graph.row_ids import is_ascii_number
from cfl_graph.shared_state import SharedState

log = logging.getLogger(__name__)


async def _answer(
    send: Send, scope: Scope, status: int, message: str, code: str, extra: dict[str, str] | None = None
) -> None:
    """413 or 429: on a GraphQL path a GraphQL response with `code`, elsewhere `{"error": ...}`."""
    retry = {"retryAfter": int(extra["Retry-After"])} if extra and "Retry-After" in extra else {}
    body, content_type = refusal(scope, message, code, {"error": message}, **retry)
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in {**SECURITY_HEADERS, **(extra or {})}.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _too_large(max_bytes: int) -> str:
    return f"the request body is larger than the {max_bytes:,}-byte limit"


def _within(declared: str, max_bytes: int) -> bool:
    """A Content-Length of ASCII digits (`isdigit` also takes '²', which int() refuses) up to the limit."""
    digits = declared.lstrip("0")
    return is_ascii_number(declared) and len(digits) <= len(str(max_bytes)) and int(declared) <= max_bytes


class BodySizeLimitMiddleware:
    """Refuse bodies over `max_bytes`: at once when Content-Length says so, else as soon as the stream
    passes the limit, before the handler has seen the excess."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_path: Mapping[tuple[str, str], int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # (method, path) -> its own limit: firmware uploads are far larger than any other request.
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.per_path.get((scope["method"], scope["path"]), self.max_bytes)
        declared = header_value(scope, b"content-length")
        if declared is not None and not _within(declared, max_bytes):
            await _answer(send, scope, 413, _too_large(max_bytes), "BAD_REQUEST")
            return
        received = 0
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    # Answer now and tell the handler the client went away, whatever it does with errors.
                    refused = True
                    await _answer(send, scope, 413, _too_large(max_bytes), "BAD_REQUEST")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # after a 413 the handler's own answer goes nowhere
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except ClientDisconnect:
            if not refused:
                raise


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimitMiddleware:
    """At most `per_minute` requests a minute (bursts up to the same number) per API token, or, with
    `by_address`, per client address: that one sits in front of authentication, so a flood of made-up
    tokens is cut off before each costs a database lookup."""

    MAX_TRACKED = 100_000

    def __init__(
        self, app: ASGIApp, per_minute: int, *, by_address: bool = False, shared: SharedState | None = None
    ) -> None:
        self.app = app
        self.per_minute = per_minute
        self.shared = shared
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self.by_address = by_address
        self.buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _key(self, scope: Scope) -> str:
        principal = None if self.by_address else principal_of(scope)
        if principal is not None and principal.token_public_id is not None:
            return f"token:{principal.token_public_id}"
        client = scope.get("client")
        return f"address:{client[0] if client else 'unknown'}"

    def _take(self, key: str, now: float) -> float:
        """0 if a request may go ahead now, else the seconds until one may."""
        bucket = self.buckets.pop(key, None) or _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.refill_per_second)
        bucket.updated = now
        self.buckets[key] = bucket  # most recently used last; the oldest are dropped first
        if len(self.buckets) > self.MAX_TRACKED:
            self.buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.refill_per_second

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.capacity <= 0:
            await self.app(scope, receive, send)
            return
        key = self._key(scope)
        # The two limits count apart (an address before sign-in, a token or session's address after).
        shared_key = f"{'before' if self.by_address else 'after'}-auth:{key}"
        wait = await self.shared.take(shared_key, self.per_minute) if self.shared is not None else None
        if wait is None:  # no Redis, or Redis away: this worker's own count
            wait = self._take(key, time.monotonic())
        if wait > 0:
            metrics.RATE_LIMITED.labels(per=key.split(":", 1)[0]).inc()
            retry = max(1, math.ceil(wait))
            await _answer(
                send,
                scope,
                429,
                f"too many requests; try again in {retry} s",
                "RATE_LIMITED",
                {"Retry-After": str(retry)},
            )
            return
        await self.app(scope, receive, send)

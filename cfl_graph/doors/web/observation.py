"""Seeing inside the service (issue 18): each request's id, its log line and its metrics, and the
`/metrics` endpoint Prometheus scrapes.

The request id is the client's `X-Request-ID` when it sends a sensible one (letters, digits and `._:-`,
at most 128), else a new one; it is sent back in `X-Request-ID` and put on every log record written
while the request is served. Each request ends with one record on `cfl_graph.requests`: the id, the
party, the route (its template, never the path or query, which may hold ids or tokens), the status,
the duration, the SQL statements it ran and the reference of any error masked in its answer. Answers
the service meant (2xx-4xx) are INFO, 429 and 503 (refusals under load) WARNING, other 5xx ERROR; an
exception that escapes is logged at ERROR with its traceback where it is caught.

The same outermost layer puts the security headers (`middleware.SECURITY_HEADERS`) on every answer that
does not set them itself: one pass over the answer's headers for both, since every answer takes it.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cfl_graph import metrics
from cfl_graph.database import Database
from cfl_graph.doors.web.middleware import SECURITY_HEADERS, header_value, principal_of, with_security_headers
from cfl_graph.observability import CURRENT, RequestFacts

log = logging.getLogger("cfl_graph.requests")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DOWNLOAD_ROUTE = "/api/v1/images/{image_id}/file"
METRICS_PATH = "/metrics"
EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"


def route_of(scope: Scope, routes: Sequence[BaseRoute] = ()) -> str:
    """The template of the route that answered (`/api/v1/images/{image_id}`), bounded in kind; for an
    answer given before routing (a 401, a 429), the route the request was for."""
    route = scope.get("route")
    if route is None:
        route = next((r for r in routes if r.matches(scope)[0] is not Match.NONE), None)
    if isinstance(route, Route):
        return route.path
    if isinstance(route, Mount):
        return route.path or "/"
    return "(unmatched)"


class _Series(NamedTuple):
    """The labelled metrics of one (method, route, status)."""

    requests: Counter
    latency: Histogram
    statements: Histogram


class ObservationMiddleware:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes
        # Each (method, route, status)'s series, found once: prometheus-client's `labels()` cost more
        # than counting. As many as the series themselves, which the route's template bounds.
        self.series: dict[tuple[str, str, int], _Series] = {}

    def _series(self, method: str, route: str, status: int) -> _Series:
        key = (method, route, status)
        found = self.series.get(key)
        if found is None:
            found = self.series[key] = _Series(
                metrics.REQUESTS.labels(method=method, route=route, status=str(status)),
                metrics.LATENCY.labels(route=route),
                metrics.SQL_STATEMENTS.labels(route=route),
            )
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent_id = header_value(scope, b"x-request-id") or ""
        request_id = sent_id if REQUEST_ID.fullmatch(sent_id) else os.urandom(16).hex()
        facts = RequestFacts(request_id)
        token = CURRENT.set(facts)
        began = time.perf_counter()
        status = 500
        body_bytes = 0

        async def observed_send(message: Message) -> None:
            nonlocal status, body_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = with_security_headers(
                    message.get("headers", ()), (b"x-request-id", request_id.encode())
                )
            elif message["type"] == "http.response.body":
                body_bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            log.exception("%s %s failed unexpectedly", scope["method"], route_of(scope, self.routes))
            status = 500
            raise
        finally:
            self._record(scope, facts, status, time.perf_counter() - began, body_bytes)
            CURRENT.reset(token)

    def _record(
        self, scope: Scope, facts: RequestFacts, status: int, seconds: float, body_bytes: int
    ) -> None:
        route = route_of(scope, self.routes)
        method = scope["method"]
        series = self._series(method, route, status)
        series.requests.inc()
        series.latency.observe(seconds)
        series.statements.observe(facts.sql_statements)
        if route == DOWNLOAD_ROUTE and method == "GET" and status in (200, 206):
            metrics.DOWNLOADS.labels(status=str(status)).inc()
            metrics.DOWNLOAD_BYTES.inc(body_bytes)
        level = logging.INFO
        if status in (429, 503) or facts.error_references:  # the masked error itself is logged at ERROR
            level = logging.WARNING
        elif status >= 500:
            level = logging.ERROR
        if not log.isEnabledFor(level):  # the line's fields are not gathered for nobody
            return
        principal = principal_of(scope)
        log.log(
            level,
            "%s %s %d %.1f ms",
            method,
            route,
            status,
            seconds * 1000,
            extra={
                "party": principal.party_name if principal is not None else None,
                "route": route,
                "method": method,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "sql_statements": facts.sql_statements,
                "error_reference": ",".join(facts.error_references) or None,
            },
        )


class MetricsEndpoint:
    """`GET /metrics` for Prometheus, with `Authorization: Bearer <CFL_METRICS_TOKEN>`; answered before
    sign-in (the token is not an API token). Without the setting the path is not served at all (404)."""

    def __init__(
        self, app: ASGIApp, *, token: str | None, database: Database, metrics_dir: Path | None
    ) -> None:
        self.app = app
        self.token = token
        self.database = database
        self.metrics_dir = metrics_dir

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != METRICS_PATH or self.token is None:
            await self.app(scope, receive, send)
            return
        presented = Headers(scope=scope).get("authorization", "")
        scheme, _, value = presented.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token.encode()):
            await _send(
                send,
                401,
                b"send the metrics token: Authorization: Bearer <CFL_METRICS_TOKEN>\n",
                "text/plain; charset=utf-8",
                {"www-authenticate": "Bearer"},
            )
            return
        try:
            async with self.database.sessions() as session:
                library = await metrics.read_library_state(session)
        except Exception as exc:  # the counters are worth having while the database is away
            log.warning("metrics: the library's state could not be read: %s", type(exc).__name__)
            library = []
        await _send(send, 200, metrics.exposition(self.metrics_dir, library), EXPOSITION, {})


async def _send(send: Send, status: int, body: bytes, content_type: str, extra: dict[str, str]) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in {**SECURITY_HEADERS, **extra}.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

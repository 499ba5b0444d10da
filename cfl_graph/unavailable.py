"""When the database cannot be reached: every door answers 503 with a clear message and `Retry-After`,
instead of a 500, and the service recovers by itself when the database is back (SQLAlchemy throws the
broken connections away and opens new ones).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cfl_graph.graphql_http import refusal

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
        errno.EPIPE,
    }
)
MESSAGE = "the library's database is unavailable for the moment; nothing was changed, try again shortly"


def database_unavailable(exc: BaseException) -> bool:
    """True for failures to reach the database (refused, dropped, timed out), not for query errors."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, ConnectionError | asyncio.TimeoutError | TimeoutError | socket.gaierror):
        return True
    # asyncpg raises plain OSErrors for network failures (refused, unreachable, reset) outside DBAPI;
    # any other OSError (a missing file, a full disk) is not an outage and stays a 500.
    if isinstance(exc, OSError):
        return exc.errno in _NETWORK_ERRNOS or "Connect call failed" in str(exc)
    return type(exc).__module__.startswith("asyncpg") and "Connection" in type(exc).__name__


async def answer_unavailable(send: Send, scope: Scope) -> None:
    """503 with `Retry-After`; on a GraphQL path a GraphQL response, code `SERVICE_UNAVAILABLE`."""
    body, content_type = refusal(
        scope,
        MESSAGE,
        "SERVICE_UNAVAILABLE",
        {"error": MESSAGE, "code": "SERVICE_UNAVAILABLE", "problems": []},
        retryAfter=RETRY_AFTER_SECONDS,
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class DatabaseUnavailableMiddleware:
    """Turn a database outage anywhere below (authentication, endpoints, pages) into a 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started or not database_unavailable(exc):
                raise
            log.warning("database unavailable while answering %s %s: %r", scope["method"], scope["path"], exc)
            await answer_unavailable(send, scope)

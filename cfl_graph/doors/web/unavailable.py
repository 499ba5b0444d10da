"""How a request that fails below ends. When the database cannot be reached every door answers 503 with
a clear message and `Retry-After`, instead of a 500, and the service recovers by itself when the
database is back (SQLAlchemy throws the broken connections away and opens new ones). A client that went
away in the middle of its request (or was cut off by the server's body timeout,
`cfl_graph.doors.web.serving`) has nobody left to answer: its `ClientDisconnect`, from any handler that
reads a body, ends the request quietly, logged at INFO, not as an unexpected error with a traceback.
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cfl_graph.database import database_unavailable
from cfl_graph.doors.web.graphql_http import refusal

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MESSAGE = "the library's database is unavailable for the moment; nothing was changed, try again shortly"


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


class FailuresMiddleware:
    """A client gone ends its request quietly; a database outage anywhere below (authentication,
    endpoints, pages) is a 503; anything else goes on up."""

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
        except ClientDisconnect:
            log.info(
                "%s %s: the client went away before its request body arrived", scope["method"], scope["path"]
            )
        except Exception as exc:
            if started or not database_unavailable(exc):
                raise
            log.warning("database unavailable while answering %s %s: %r", scope["method"], scope["path"], exc)
            await answer_unavailable(send, scope)

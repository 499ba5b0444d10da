"""CORS by allow-list (`CFL_CORS_ORIGINS`): a dashboard served from another origin may call `/graphql`
and download images with a bearer token, and nothing else of the service.

Installed only when the list names an origin; otherwise no response carries a CORS header. A preflight
to one of those paths is answered here, before sign-in (a browser sends no Authorization header with
it): 204 with what a page of a listed origin may send, or 403 for any other origin. Every answer to a
listed origin on those paths, refusals included (a 401, a 429), says the origin may read it.

Cookies are never allowed cross-origin: no answer says `Access-Control-Allow-Credentials`, so a
browser neither sends a session cookie with a preflighted request from another origin nor lets the page
read an answer to one it sent with cookies; the pages' CSRF protection is as before. The web pages,
feeds, reports and every other path have no CORS at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cfl_graph.doors.web.graphql_http import CLIENT_PATH, refusal

# Each path a page of another origin may call, and the methods it may use there.
PATHS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(re.escape(CLIENT_PATH)), "GET, POST"),
    (re.compile(r"/api/v1/images/[^/]+/file"), "GET, HEAD"),
)
# What such a page may send: the token, a JSON body, content negotiation, validators and ranges, and the
# headers Apollo Client and Apollo's CSRF prevention add.
ALLOWED_HEADERS = (
    "Authorization, Content-Type, Accept, If-None-Match, If-Range, Range, Apollo-Require-Preflight, "
    "X-Apollo-Operation-Name, Apollographql-Client-Name, Apollographql-Client-Version"
)
# What it may read beyond the CORS-safelisted response headers.
EXPOSED_HEADERS = (
    "ETag, Cache-Status, Retry-After, WWW-Authenticate, Content-Disposition, Content-Range, "
    "Accept-Ranges, Content-Length, Repr-Digest, Digest"
)
PREFLIGHT_MAX_AGE = 600  # seconds a browser may keep a preflight's answer


def _methods(path: str) -> str | None:
    return next((methods for pattern, methods in PATHS if pattern.fullmatch(path)), None)


class CorsMiddleware:
    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods = _methods(scope["path"]) if scope["type"] == "http" else None
        if methods is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        allowed = origin in self.origins
        if scope["method"] == "OPTIONS" and origin is not None and "access-control-request-method" in headers:
            await self._preflight(scope, send, origin if allowed else None, methods)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer = MutableHeaders(scope=message)
                answer.add_vary_header("Origin")  # the same URL answers each origin differently
                if allowed and origin is not None:
                    answer["Access-Control-Allow-Origin"] = origin
                    answer["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, send: Send, origin: str | None, methods: str) -> None:
        if origin is None:
            message = "pages of this origin may not call the library: it is not among its CORS origins"
            body, content_type = refusal(scope, message, "FORBIDDEN", {"error": message})
            status = 403
            headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        else:
            body, status = b"", 204
            headers = [
                (b"access-control-allow-origin", origin.encode()),
                (b"access-control-allow-methods", methods.encode()),
                (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                (b"access-control-max-age", str(PREFLIGHT_MAX_AGE).encode()),
            ]
        headers.append((b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

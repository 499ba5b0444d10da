"""HTTP doors: who is asking (bearer token) and the security headers every response carries.

Anonymous requests reach only the public paths (health checks, the sign-in page, static files); every
other path answers 401 (or, for a page, redirects to sign-in) before any handler runs, so a new route
is private unless made public here. On a GraphQL path the refusal is a GraphQL response
(`cfl_graph.doors.web.graphql_http`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qs, urlencode

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cfl_graph.access.principal import Principal
from cfl_graph.access.sessions import SESSION_COOKIE, resume_session
from cfl_graph.access.tokens import TokenError, authenticate
from cfl_graph.database import Database
from cfl_graph.doors.web.graphql_http import refusal

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/login"})

SECURITY_HEADERS = {
    # No inline script anywhere; pages load only what the app itself serves.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# As they go on the wire, encoded once: every answer carries them.
_SECURITY_HEADER_LINES = tuple(
    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in SECURITY_HEADERS.items()
)


def header_value(scope: Scope, name: bytes) -> str | None:
    """The first value of the (lower-case) header `name`, as Starlette's `Headers.get` reads it, without
    building the mapping: the door's layers each read one or two headers of every request."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def principal_of(scope: Scope) -> Principal | None:
    state = scope.get("state") or {}
    found = state.get("principal")
    return found if isinstance(found, Principal) else None


async def _refuse(send: Send, scope: Scope, status: int, message: str, challenge: str) -> None:
    """401 or 403; on a GraphQL path a GraphQL response (`UNAUTHENTICATED`, `FORBIDDEN`), elsewhere
    `{"error": ...}`."""
    code = "UNAUTHENTICATED" if status == 401 else "FORBIDDEN"
    body, content_type = refusal(scope, message, code, {"error": message})
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge.encode()),
        *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def csrf_token_of(scope: Scope) -> str | None:
    """The CSRF token of the web session behind this request, for pages to put in their forms."""
    value = (scope.get("state") or {}).get("csrf_token")
    return value if isinstance(value, str) else None


def _is_public(path: str, public_paths: frozenset[str]) -> bool:
    return path in public_paths or path.startswith("/static/")


def _wants_page(scope: Scope, headers: Headers) -> bool:
    return scope["method"] == "GET" and "text/html" in headers.get("accept", "")


async def _redirect(send: Send, location: str) -> None:
    headers = [
        (b"location", location.encode()),
        (b"content-length", b"0"),
        *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()),
    ]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """Read a (size-limited) body and hand back a receive that replays it to the application."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


FEED_REALM = "cfl-graph"


def _presented_token(authorization: str) -> str | None:
    """The token in `Bearer <token>`, or the password in `Basic base64(user:token)` (feed readers)."""
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if not value:
        return None
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None


class AuthenticationMiddleware:
    """Who is asking: a bearer token, or a web session cookie (then unsafe requests need its CSRF token)."""

    def __init__(
        self,
        app: ASGIApp,
        sessions: async_sessionmaker[AsyncSession],
        database: Database,
        public_paths: Iterable[str] = PUBLIC_PATHS,
    ) -> None:
        self.app = app
        self.sessions = sessions
        # A token's check is one statement: no session, no transaction (`Database.read_one`).
        self.database = database
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        authorization = header_value(scope, b"authorization")
        if authorization is not None:
            presented = _presented_token(authorization)
            if presented is None:
                await _refuse(
                    send, scope, 401, "use `Authorization: Bearer <token>`", 'Bearer error="invalid_request"'
                )
                return
            try:
                state["principal"] = await authenticate(self.database, presented)
            except TokenError as exc:
                await _refuse(send, scope, 401, str(exc), 'Bearer error="invalid_token"')
                return
            await self.app(scope, receive, send)
            return

        headers = Headers(scope=scope)
        cookie = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
        active = None
        if cookie:
            async with self.sessions() as session:
                active = await resume_session(session, cookie)
        if active is not None:
            state["principal"] = active.principal
            state["csrf_token"] = active.csrf_token
        elif not _is_public(scope["path"], self.public_paths):
            if _wants_page(scope, headers):
                await _redirect(send, "/login?" + urlencode({"next": scope["path"]}))
            else:
                # Feed readers know Basic authentication (the token as password), not bearer tokens.
                challenge = f'Basic realm="{FEED_REALM}"' if scope["path"].startswith("/feeds/") else "Bearer"
                await _refuse(
                    send, scope, 401, "sign in first: send `Authorization: Bearer <token>`", challenge
                )
            return
        if active is not None and scope["method"] not in SAFE_METHODS:
            problem, receive = await self._csrf_refusal(scope, headers, receive, active.csrf_token)
            if problem is not None:
                await _refuse(send, scope, 403, problem, "Bearer")
                return
        await self.app(scope, receive, send)

    async def _csrf_refusal(
        self, scope: Scope, headers: Headers, receive: Receive, expected: str
    ) -> tuple[str | None, Receive]:
        """A browser's unsafe request must come from our own pages: same origin, and the session's token."""
        origin = headers.get("origin")
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        if origin is not None and origin != own:
            return f"cross-site request from {origin} refused", receive
        presented = (
            headers.get(CSRF_HEADER)
            or parse_qs(scope.get("query_string", b"").decode()).get(CSRF_FIELD, [None])[0]
        )
        if presented is None and headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            body, receive = await _buffered(receive)
            presented = parse_qs(body.decode("utf-8", "replace")).get(CSRF_FIELD, [None])[0]
        if presented is None or not hmac.compare_digest(presented.encode(), expected.encode()):
            return "missing or wrong CSRF token: reload the page and try again", receive
        return None, receive


def with_security_headers(
    headers: Iterable[tuple[bytes, bytes]], *extra: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    """An answer's headers with the security headers it does not set itself, and `extra`: a new list,
    since the response's own may be reused for its next answer (`ObservationMiddleware` calls this on
    every answer, refusals and unknown paths included)."""
    headers = list(headers)
    present = {name.lower() for name, _ in headers}
    headers.extend(line for line in _SECURITY_HEADER_LINES if line[0] not in present)
    headers.extend(extra)
    return headers

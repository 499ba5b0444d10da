"""Web sessions: a browser signs in once with an API token and carries a session cookie after that.

The cookie holds 256 random bits; only their SHA-256 is stored. A session lives at most
`SESSION_LIFETIME`, never longer than its token, and ends at sign-out or when the token is revoked.
Each session has its own CSRF token, required on every unsafe request the cookie authenticates.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph.access.principal import Principal
from cfl_graph.access.tokens import TokenError, authenticate, manufacturer_ids_of_party, principal_for
from cfl_graph.audit import Actor, record
from cfl_graph.tables.access import ApiToken, Party, WebSession
from cfl_graph.tables.base import utc_now

SESSION_COOKIE = "cfl_session"
LOGIN_CSRF_COOKIE = "cfl_login_csrf"
SESSION_LIFETIME = dt.timedelta(hours=8)


@dataclass(frozen=True)
class OpenedSession:
    cookie_value: str
    csrf_token: str
    principal: Principal
    expires_at: dt.datetime


@dataclass(frozen=True)
class ActiveSession:
    principal: Principal
    csrf_token: str


def _digest(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


async def open_session(session: AsyncSession, presented_token: str) -> OpenedSession:
    """Sign in with a token; raises `TokenError` (safe to show) if it cannot be used."""
    principal = await authenticate(session, presented_token)
    token = (
        await session.execute(select(ApiToken).where(ApiToken.public_id == principal.token_public_id))
    ).scalar_one()
    cookie_value = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    expires_at = min(utc_now() + SESSION_LIFETIME, token.expires_at)
    session.add(
        WebSession(
            id_sha256=_digest(cookie_value), token_id=token.id, csrf_token=csrf_token, expires_at=expires_at
        )
    )
    await session.flush()
    await record(
        session,
        Actor.of(principal),
        "session.opened",
        f"token {token.public_id}",
        {"expires_at": expires_at.isoformat()},
    )
    return OpenedSession(cookie_value, csrf_token, principal, expires_at)


# Built once: every request of a signed-in browser runs it (as `tokens.authenticate` for a token).
_SESSION_WITH_PARTY = (
    select(WebSession, ApiToken, Party, manufacturer_ids_of_party())
    .join(ApiToken, ApiToken.id == WebSession.token_id)
    .join(Party, Party.id == ApiToken.party_id)
    .where(
        WebSession.id_sha256 == bindparam("id_sha256"),
        WebSession.ended_at.is_(None),
        WebSession.expires_at > bindparam("now"),
    )
)


async def resume_session(session: AsyncSession, cookie_value: str) -> ActiveSession | None:
    """The signed-in principal behind a session cookie, or None if the session is over."""
    now = utc_now()
    row = (
        await session.execute(_SESSION_WITH_PARTY, {"id_sha256": _digest(cookie_value), "now": now})
    ).one_or_none()
    if row is None:
        return None
    web, token, party, manufacturer_ids = row
    try:
        principal = principal_for(token, party, manufacturer_ids, now=now)
    except TokenError:
        return None
    return ActiveSession(principal, web.csrf_token)


async def end_session(session: AsyncSession, cookie_value: str, principal: Principal) -> None:
    ended = await session.execute(
        update(WebSession)
        .where(WebSession.id_sha256 == _digest(cookie_value), WebSession.ended_at.is_(None))
        .values(ended_at=utc_now())
    )
    if ended.rowcount:  # type: ignore[attr-defined]
        await record(session, Actor.of(principal), "session.ended", f"token {principal.token_public_id}")

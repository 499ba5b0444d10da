"""API tokens: random, shown once, stored only as a SHA-256 of the secret, expiring and revocable.

Text form: `cflg_<public id>_<secret>`. The `cflg_` prefix lets secret scanners recognise a leaked
token (as PyPI's `pypi-` prefix does); the public id finds the row; the secret is 256 random bits,
so a plain SHA-256 of it is as good as a slow password hash and keeps each check to microseconds.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ScalarSelect, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from cfl_graph.access.principal import Principal
from cfl_graph.audit import Actor, record
from cfl_graph.tables.access import ApiToken, Party, PartyManufacturer, Role
from cfl_graph.tables.base import utc_now

PREFIX = "cflg_"
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
TOKEN_PATTERN = re.compile(r"cflg_([a-z2-7]{12})_([A-Za-z0-9_-]{43})")
DEFAULT_LIFETIME = dt.timedelta(days=90)
MAX_LIFETIME = dt.timedelta(days=366)


class TokenError(Exception):
    """A presented token cannot be used; `str()` is safe to show to the presenter."""


class MalformedToken(TokenError):
    def __init__(self) -> None:
        super().__init__("the token is not a cfl-graph API token (expected cflg_<id>_<secret>)")


class UnknownToken(TokenError):
    def __init__(self) -> None:
        super().__init__("the token is not valid")


class ExpiredToken(TokenError):
    def __init__(self, expired_at: dt.datetime) -> None:
        super().__init__(f"the token expired on {expired_at:%Y-%m-%d %H:%M} UTC; ask for a new one")
        self.expired_at = expired_at


class RevokedToken(TokenError):
    def __init__(self) -> None:
        super().__init__("the token has been revoked; ask for a new one")


class PartyDisabled(TokenError):
    def __init__(self) -> None:
        super().__init__("the party this token belongs to is disabled")


@dataclass(frozen=True)
class IssuedToken:
    text: str  # shown once, never stored
    public_id: str
    expires_at: dt.datetime


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token_text() -> tuple[str, str, str]:
    """(text, public id, secret) for a fresh token."""
    public_id = "".join(secrets.choice(_BASE32) for _ in range(12))
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}{public_id}_{secret}", public_id, secret


def redact(text: str) -> str:
    """Any token in `text` with its secret replaced: safe to log."""
    return TOKEN_PATTERN.sub(lambda m: f"{PREFIX}{m.group(1)}_[redacted]", text)


async def issue_token(
    session: AsyncSession,
    party: Party,
    *,
    actor: Actor,
    lifetime: dt.timedelta = DEFAULT_LIFETIME,
    read_only: bool = False,
    description: str | None = None,
) -> IssuedToken:
    if not dt.timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ValueError(f"a token lives between 1 second and {MAX_LIFETIME.days} days")
    text, public_id, secret = new_token_text()
    expires_at = utc_now() + lifetime
    session.add(
        ApiToken(
            party_id=party.id,
            public_id=public_id,
            secret_sha256=secret_digest(secret),
            read_only=read_only,
            description=description,
            expires_at=expires_at,
        )
    )
    await session.flush()
    await record(
        session,
        actor,
        "token.issued",
        f"token {public_id}",
        {
            "party": party.name,
            "party_id": party.id,
            "read_only": read_only,
            "expires_at": expires_at.isoformat(),
        },
    )
    return IssuedToken(text, public_id, expires_at)


def manufacturer_ids_of_party() -> ScalarSelect[str | None]:
    """The party's manufacturer ids joined by commas, beside the party in the same statement."""
    return (
        select(func.aggregate_strings(PartyManufacturer.manufacturer_id, ","))
        .where(PartyManufacturer.party_id == Party.id)
        .scalar_subquery()
    )


# Built once: every request with a token runs it, and building it (the join, the ids' subquery) cost
# about as much CPU as running it. Plain columns, not the ORM's objects: loading those cost as much again.
_TOKEN_WITH_PARTY = (
    select(
        ApiToken.secret_sha256,
        ApiToken.public_id,
        ApiToken.read_only,
        ApiToken.revoked_at,
        ApiToken.expires_at,
        Party.id.label("party_id"),
        Party.name.label("party_name"),
        Party.role,
        Party.disabled_at,
        Party.download_granted,
        manufacturer_ids_of_party().label("manufacturer_ids"),
    )
    .join(Party, Party.id == ApiToken.party_id)
    .where(ApiToken.public_id == bindparam("public_id"))
)


class OneRowReader(Protocol):
    """What reads one statement's one row on its own (`database.Database`, which this module cannot import:
    the database's statement counting redacts tokens with this module)."""

    async def read_one(
        self, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any]
    ) -> Any | None: ...


async def authenticate(
    reader: AsyncSession | AsyncConnection | OneRowReader, presented: str, *, now: dt.datetime | None = None
) -> Principal:
    """The principal behind a presented token, or a `TokenError` saying why not. One statement, read in
    `reader`: a session's transaction, or the database's own read of one row (`Database.read_one`: no
    transaction, on asyncpg's connection directly), which every request with a token asks."""
    match = TOKEN_PATTERN.fullmatch(presented.strip())
    if match is None:
        raise MalformedToken()
    public_id, secret = match.groups()
    if isinstance(reader, AsyncSession | AsyncConnection):
        row = (await reader.execute(_TOKEN_WITH_PARTY, {"public_id": public_id})).one_or_none()
    else:
        row = await reader.read_one(_TOKEN_WITH_PARTY, {"public_id": public_id})
    # Compare even when the id is unknown, so timing does not tell which ids exist.
    stored = row.secret_sha256 if row is not None else "0" * 64
    if not hmac.compare_digest(stored, secret_digest(secret)) or row is None:
        raise UnknownToken()
    # Only a presenter who holds the secret learns why a real token no longer works.
    return _principal(
        public_id=row.public_id,
        read_only=row.read_only,
        revoked_at=row.revoked_at,
        expires_at=row.expires_at,
        party_id=row.party_id,
        party_name=row.party_name,
        role=row.role,
        disabled_at=row.disabled_at,
        download_granted=row.download_granted,
        manufacturer_ids=row.manufacturer_ids,
        now=now,
    )


def principal_for(
    token: ApiToken, party: Party, manufacturer_ids: str | None, *, now: dt.datetime | None = None
) -> Principal:
    """The principal of a token already identified (by its secret, or by a web session opened with it),
    with its party's ids as `manufacturer_ids_of_party` reads them; or a `TokenError` if the token or
    its party may no longer be used."""
    return _principal(
        public_id=token.public_id,
        read_only=token.read_only,
        revoked_at=token.revoked_at,
        expires_at=token.expires_at,
        party_id=party.id,
        party_name=party.name,
        role=party.role,
        disabled_at=party.disabled_at,
        download_granted=party.download_granted,
        manufacturer_ids=manufacturer_ids,
        now=now,
    )


def _principal(
    *,
    public_id: str,
    read_only: bool,
    revoked_at: dt.datetime | None,
    expires_at: dt.datetime,
    party_id: int,
    party_name: str,
    role: Role,
    disabled_at: dt.datetime | None,
    download_granted: bool,
    manufacturer_ids: str | None,
    now: dt.datetime | None,
) -> Principal:
    if revoked_at is not None:
        raise RevokedToken()
    if expires_at <= (now or utc_now()):
        raise ExpiredToken(expires_at)
    if disabled_at is not None:
        raise PartyDisabled()
    return _principal_of(public_id, read_only, party_id, party_name, role, download_granted, manufacturer_ids)


# A token's principal is made once for the values its row holds (the token's and its party's), and found
# again by them: every request with a token is checked against its row as read now, so a change to any of
# them makes another principal. Principals are immutable; requests may share one.
@functools.lru_cache(maxsize=1024)
def _principal_of(
    public_id: str,
    read_only: bool,
    party_id: int,
    party_name: str,
    role: Role,
    download_granted: bool,
    manufacturer_ids: str | None,
) -> Principal:
    return Principal(
        party_id=party_id,
        party_name=party_name,
        role=role,
        manufacturer_ids=frozenset(manufacturer_ids.split(",")) if manufacturer_ids else frozenset(),
        read_only=read_only,
        download_granted=download_granted,
        token_public_id=public_id,
    )


async def revoke_token(session: AsyncSession, public_id: str, *, actor: Actor) -> ApiToken | None:
    token = (
        await session.execute(select(ApiToken).where(ApiToken.public_id == public_id))
    ).scalar_one_or_none()
    if token is not None and token.revoked_at is None:
        token.revoked_at = utc_now()
        await record(session, actor, "token.revoked", f"token {public_id}", {"party_id": token.party_id})
    return token


async def all_tokens(session: AsyncSession) -> list[tuple[ApiToken, str]]:
    """Every token with its party's name, oldest first (the operator's list: public ids and states)."""
    query = select(ApiToken, Party.name).join(Party, Party.id == ApiToken.party_id).order_by(ApiToken.id)
    return [(token, name) for token, name in (await session.execute(query)).all()]

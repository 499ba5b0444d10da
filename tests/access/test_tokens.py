"""API tokens (R8): random, shown once, stored only hashed, recognisable when leaked, expiring, revocable."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy import select, update

from cfl_graph.access.tokens import (
    TOKEN_PATTERN,
    ExpiredToken,
    MalformedToken,
    PartyDisabled,
    RevokedToken,
    UnknownToken,
    authenticate,
    redact,
)
from cfl_graph.database import Database
from cfl_graph.tables import ApiToken, Role
from cfl_graph.tables.base import utc_now
from tests.fixtures.parties import OWN_MANUFACTURER_ID, make_tokens


async def test_a_token_names_its_party_role_and_manufacturer_ids(db: Database) -> None:
    tokens = await make_tokens(db)
    async with db.sessions() as session:
        principal = await authenticate(session, tokens.manufacturer)
    assert (principal.party_name, principal.role) == ("Northfield Metering Ltd", Role.MANUFACTURER)
    assert principal.manufacturer_ids == {OWN_MANUFACTURER_ID}
    assert not principal.read_only


async def test_tokens_are_stored_only_as_hashes(db: Database) -> None:
    tokens = await make_tokens(db)
    async with db.sessions() as session:
        rows = list((await session.execute(select(ApiToken))).scalars())
    stored = " ".join(f"{r.public_id} {r.secret_sha256} {r.description}" for r in rows)
    for text in tokens.as_dict().values():
        secret = TOKEN_PATTERN.fullmatch(text)
        assert secret is not None
        assert secret.group(2) not in stored


def test_tokens_carry_a_prefix_that_scanners_recognise() -> None:
    text = "cflg_abcdefghijkl_" + "A" * 43
    assert TOKEN_PATTERN.fullmatch(text)
    assert redact(f"header was Bearer {text} today") == "header was Bearer cflg_abcdefghijkl_[redacted] today"


@pytest.mark.parametrize(
    "kind,error",
    [("expired", ExpiredToken), ("revoked", RevokedToken), ("disabled_party", PartyDisabled)],
)
async def test_unusable_tokens_say_why(db: Database, kind: str, error: type[Exception]) -> None:
    tokens = await make_tokens(db)
    async with db.sessions() as session:
        with pytest.raises(error):
            await authenticate(session, tokens.as_dict()[kind])


async def test_a_wrong_secret_or_unknown_id_is_just_invalid(db: Database) -> None:
    tokens = await make_tokens(db)
    wrong_secret = tokens.revoked[:-4] + ("AAAA" if not tokens.revoked.endswith("AAAA") else "BBBB")
    supplier = TOKEN_PATTERN.fullmatch(tokens.supplier)
    assert supplier is not None
    unknown_id = "cflg_zzzzzzzzzzzz_" + supplier.group(2)
    async with db.sessions() as session:
        for presented in (wrong_secret, unknown_id):
            with pytest.raises(UnknownToken):  # a revoked token's id, with a wrong secret, reveals nothing
                await authenticate(session, presented)
        for presented in ("", "Bearer x", "cflg_short_secret", "pypi-AgEIcHlwaS5vcmc"):
            with pytest.raises(MalformedToken):
                await authenticate(session, presented)


async def test_a_token_revoked_while_checks_of_it_are_under_way_is_refused_to_every_check_asked_after(
    db: Database,
) -> None:
    # Checks asked together share a read of the token (`cfl_graph.round_trips`); one asked after the
    # revocation never shares a read that began before it: revoked means refused on the next request.
    tokens = await make_tokens(db)
    match = TOKEN_PATTERN.fullmatch(tokens.supplier)
    assert match is not None
    stop, checks = asyncio.Event(), [0]

    async def keep_checking() -> None:
        while not stop.is_set():
            with contextlib.suppress(RevokedToken):
                await authenticate(db, tokens.supplier)
            checks[0] += 1

    checking = [asyncio.create_task(keep_checking()) for _ in range(10)]
    try:
        for _ in range(40):
            await asyncio.sleep(0.005)  # checks of the token on their way all the while
            async with db.writes() as session, session.begin():
                await session.execute(
                    update(ApiToken).where(ApiToken.public_id == match.group(1)).values(revoked_at=utc_now())
                )
            after = await asyncio.gather(
                *(authenticate(db, tokens.supplier) for _ in range(10)), return_exceptions=True
            )
            assert [type(outcome) for outcome in after] == [RevokedToken] * 10
            async with db.writes() as session, session.begin():
                await session.execute(
                    update(ApiToken).where(ApiToken.public_id == match.group(1)).values(revoked_at=None)
                )
            assert (await authenticate(db, tokens.supplier)).party_name
    finally:
        stop.set()
        await asyncio.gather(*checking)
    assert checks[0] > 100

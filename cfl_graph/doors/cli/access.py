"""Parties with their roles, their API tokens, and manufacturers' signing keys."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from cfl_graph.access.keys import KeyRejected, add_key_for_party, all_keys, revoke_key
from cfl_graph.access.parties import (
    PartyError,
    add_party,
    all_parties,
    as_principal,
    find_party,
    manufacturer_ids_of,
)
from cfl_graph.access.policy import Action, allowed
from cfl_graph.access.tokens import IssuedToken, all_tokens, issue_token, revoke_token
from cfl_graph.audit import Actor
from cfl_graph.database import Database
from cfl_graph.doors.cli.common import (
    EXIT_REJECTED,
    Field,
    FormatOption,
    OutputFormat,
    emit,
    err,
    number_parser,
    out,
    settings_from_env,
    with_db,
)
from cfl_graph.identifiers import InvalidValue
from cfl_graph.tables import ApiToken, ManufacturerKey, Party, Role
from cfl_graph.tables.base import utc_now

party_app = typer.Typer(help="Parties (organisations) and their roles.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens: shown once, stored hashed.", no_args_is_help=True)
key_app = typer.Typer(help="Manufacturer public keys that sign firmware images.", no_args_is_help=True)


@party_app.command("add")
def party_add(
    name: Annotated[str, typer.Argument(help="The organisation's name, unique.")],
    role: Annotated[Role, typer.Option(help="supplier, manufacturer, panel or admin.")],
    manufacturer_id: Annotated[
        list[str] | None, typer.Option(help="A manufacturer id (4 hex) it writes for; repeatable.")
    ] = None,
    grant_downloads: Annotated[bool, typer.Option(help="Let a panel party download image bytes.")] = False,
    require_approval: Annotated[
        bool, typer.Option(help="Manufacturers: publish only drafts a second token approved (four-eyes).")
    ] = False,
) -> None:
    """Register a party."""
    settings = settings_from_env()

    async def work(db: Database) -> list[str]:
        async with db.writes.begin() as session:
            party = await add_party(
                session,
                name,
                role,
                actor=Actor.cli(),
                manufacturer_ids=manufacturer_id or (),
                download_granted=grant_downloads,
                requires_approval=require_approval,
            )
            return await manufacturer_ids_of(session, party)

    try:
        ids = with_db(settings, work)
    except (PartyError, InvalidValue) as exc:
        err.print(f"party not added: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_REJECTED) from None
    suffix = f" for manufacturer ids {', '.join(ids)}" if ids else ""
    out.print(f"added {role.value} party {name}{suffix}", markup=False, highlight=False)


PARTY_FIELDS = (
    Field("party", "party"),
    Field("role", "role"),
    Field("manufacturer_ids", "manufacturer ids"),
    Field("downloads", "downloads"),
    Field("created_at", "created (UTC)"),
    Field("disabled_at", "disabled (UTC)"),
)


@party_app.command("list")
def party_list(form: FormatOption = OutputFormat.TABLE) -> None:
    """List parties with their roles and manufacturer ids."""
    settings = settings_from_env()

    async def work(db: Database) -> list[tuple[Party, list[str]]]:
        async with db.sessions() as session:
            return [(p, await manufacturer_ids_of(session, p)) for p in await all_parties(session)]

    emit(
        PARTY_FIELDS,
        (
            {
                "party": party.name,
                "role": party.role,
                "manufacturer_ids": ids,
                # What the policy grants, asked as every door asks it: admins, say, have no downloads.
                "downloads": party.disabled_at is None
                and allowed(as_principal(party, ids), Action.DOWNLOAD_IMAGE),
                "created_at": party.created_at,
                "disabled_at": party.disabled_at,
            }
            for party, ids in with_db(settings, work)
        ),
        form,
    )


@token_app.command("create")
def token_create(
    party: Annotated[str, typer.Argument(help="The party's name.")],
    expires_in: Annotated[
        int,
        typer.Option(
            help="Days until the token expires (1-366).", parser=number_parser("--expires-in", minimum=0)
        ),
    ] = 90,
    read_only: Annotated[bool, typer.Option(help="Refuse every write with this token.")] = False,
    description: Annotated[str | None, typer.Option(help="What the token is for.")] = None,
) -> None:
    """Create a token and print it once; only its hash is kept."""
    settings = settings_from_env()

    async def work(db: Database) -> IssuedToken:
        async with db.writes.begin() as session:
            found = await find_party(session, party)
            return await issue_token(
                session,
                found,
                actor=Actor.cli(),
                lifetime=dt.timedelta(days=expires_in),
                read_only=read_only,
                description=description,
            )

    if not 1 <= expires_in <= 366:
        err.print("--expires-in must be between 1 and 366 days")
        raise typer.Exit(EXIT_REJECTED)
    try:
        issued = with_db(settings, work)
    except PartyError as exc:
        err.print(f"no token created: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_REJECTED) from None
    err.print(
        f"token {issued.public_id} for {party}, expires {issued.expires_at:%Y-%m-%d %H:%M} UTC"
        f"{', read-only' if read_only else ''}. It is shown once; store it now:",
        markup=False,
        highlight=False,
    )
    print(issued.text)


@token_app.command("revoke")
def token_revoke(
    public_id: Annotated[str, typer.Argument(help="The token's public id (after cflg_).")],
) -> None:
    """Revoke a token at once."""
    settings = settings_from_env()

    async def work(db: Database) -> bool:
        async with db.writes.begin() as session:
            return await revoke_token(session, public_id, actor=Actor.cli()) is not None

    if not with_db(settings, work):
        err.print(f"no token {public_id}")
        raise typer.Exit(EXIT_REJECTED)
    out.print(f"revoked token {public_id}")


def _token_state(token: ApiToken, now: dt.datetime) -> str:
    return "revoked" if token.revoked_at else "expired" if token.expires_at <= now else "active"


TOKEN_FIELDS = (
    Field("token", "token"),
    Field("party", "party"),
    Field("scope", "scope"),
    Field("created_at", "created (UTC)"),
    Field("expires_at", "expires (UTC)"),
    Field("state", "state"),
    Field("description", "description"),
)


@token_app.command("list")
def token_list(form: FormatOption = OutputFormat.TABLE) -> None:
    """List tokens (public ids only) with their parties and states."""
    settings = settings_from_env()

    async def work(db: Database) -> list[tuple[ApiToken, str]]:
        async with db.sessions() as session:
            return await all_tokens(session)

    now = utc_now()
    emit(
        TOKEN_FIELDS,
        (
            {
                "token": token.public_id,
                "party": party_name,
                "scope": "read-only" if token.read_only else "read-write",
                "created_at": token.created_at,
                "expires_at": token.expires_at,
                "state": "revoked"
                if token.revoked_at
                else "expired"
                if token.expires_at <= now
                else "active",
                "description": token.description,
            }
            for token, party_name in with_db(settings, work)
        ),
        form,
    )


@key_app.command("add")
def key_add(
    party: Annotated[str, typer.Argument(help="The manufacturer party's name.")],
    pem_file: Annotated[Path, typer.Argument(help="The P-256 public key, PEM.")],
    manufacturer_id: Annotated[
        list[str] | None, typer.Option(help="Only for this manufacturer id (default: all of the party's).")
    ] = None,
) -> None:
    """Register a manufacturer's public key for its manufacturer ids."""
    settings = settings_from_env()

    async def work(db: Database) -> list[ManufacturerKey]:
        async with db.writes.begin() as session:
            found = await find_party(session, party)
            return await add_key_for_party(
                session,
                found,
                pem_file.read_bytes(),
                actor=Actor.cli(),
                manufacturer_ids=manufacturer_id or (),
            )

    try:
        added = with_db(settings, work)
    except (PartyError, KeyRejected, InvalidValue, OSError) as exc:
        err.print(f"key not added: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_REJECTED) from None
    for row in added:
        out.print(f"added key {row.key_id[:16]} for manufacturer id {row.manufacturer_id}")


@key_app.command("revoke")
def key_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id, or its first 16+ hex digits.")],
) -> None:
    """Stop accepting signatures by a key."""
    settings = settings_from_env()

    async def work(db: Database) -> list[ManufacturerKey]:
        async with db.writes.begin() as session:
            return await revoke_key(session, key_id, actor=Actor.cli())

    try:
        rows = with_db(settings, work)
    except KeyRejected as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(EXIT_REJECTED) from None
    if not rows:
        err.print(f"no key {key_id}")
        raise typer.Exit(EXIT_REJECTED)
    for row in rows:
        out.print(f"revoked key {row.key_id[:16]} for manufacturer id {row.manufacturer_id}")


KEY_FIELDS = (
    Field("manufacturer_id", "manufacturer id"),
    Field("key_id", "key id"),
    Field("added_at", "added (UTC)"),
    Field("state", "state"),
)


@key_app.command("list")
def key_list(form: FormatOption = OutputFormat.TABLE) -> None:
    """List registered keys by manufacturer id."""
    settings = settings_from_env()

    async def work(db: Database) -> list[ManufacturerKey]:
        async with db.sessions() as session:
            return await all_keys(session)

    emit(
        KEY_FIELDS,
        (
            {
                "manufacturer_id": row.manufacturer_id,
                "key_id": row.key_id,
                "added_at": row.added_at,
                "state": "revoked" if row.revoked_at else "active",
            }
            for row in with_db(settings, work)
        ),
        form,
    )

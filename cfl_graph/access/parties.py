"""Registering parties (organisations) and the manufacturer ids a manufacturer party writes for."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph import identifiers as ids
from cfl_graph.access.principal import Principal
from cfl_graph.audit import Actor, record
from cfl_graph.tables.access import Party, PartyManufacturer, Role


class PartyError(ValueError):
    """A party cannot be registered or found as asked; `str()` says why."""


class PartyExists(PartyError):
    def __init__(self, name: str) -> None:
        super().__init__(f'a party named "{name}" already exists')


class UnknownParty(PartyError):
    def __init__(self, name: str) -> None:
        super().__init__(f'no party named "{name}"')


class ManufacturerIdTaken(PartyError):
    def __init__(self, manufacturer_id: str, owner: str) -> None:
        super().__init__(f"manufacturer id {manufacturer_id} is already registered to {owner}")


class PartyMisconfigured(PartyError):
    pass


async def add_party(
    session: AsyncSession,
    name: str,
    role: Role,
    *,
    actor: Actor,
    manufacturer_ids: Iterable[str] = (),
    download_granted: bool = False,
    requires_approval: bool = False,
) -> Party:
    clean = ids.name(name, "party name")
    wanted = sorted({ids.manufacturer_id(m) for m in manufacturer_ids})
    if role is Role.MANUFACTURER and not wanted:
        raise PartyMisconfigured("a manufacturer party needs at least one manufacturer id")
    if role is not Role.MANUFACTURER and wanted:
        raise PartyMisconfigured(f"only manufacturer parties have manufacturer ids, not {role.value} parties")
    if download_granted and role is not Role.PANEL:
        raise PartyMisconfigured("download grants are for panel parties; other roles have theirs by role")
    if requires_approval and role is not Role.MANUFACTURER:
        raise PartyMisconfigured("four-eyes approval is for manufacturer parties, who publish images")
    if (await session.execute(select(Party.id).where(Party.name == clean))).first() is not None:
        raise PartyExists(clean)
    taken = (
        await session.execute(
            select(PartyManufacturer.manufacturer_id, Party.name)
            .join(Party, Party.id == PartyManufacturer.party_id)
            .where(PartyManufacturer.manufacturer_id.in_(wanted))
        )
    ).first()
    if taken is not None:
        raise ManufacturerIdTaken(taken[0], taken[1])
    party = Party(
        name=clean, role=role.value, download_granted=download_granted, requires_approval=requires_approval
    )
    session.add(party)
    await session.flush()
    session.add_all(PartyManufacturer(party_id=party.id, manufacturer_id=m) for m in wanted)
    await session.flush()
    await record(
        session,
        actor,
        "party.added",
        f"party {clean}",
        {
            "party_id": party.id,
            "role": role.value,
            "manufacturer_ids": wanted,
            "download_granted": download_granted,
            "requires_approval": requires_approval,
        },
    )
    return party


async def find_party(session: AsyncSession, name: str) -> Party:
    party = (await session.execute(select(Party).where(Party.name == name.strip()))).scalar_one_or_none()
    if party is None:
        raise UnknownParty(name)
    return party


async def manufacturer_ids_of(session: AsyncSession, party: Party) -> list[str]:
    query = select(PartyManufacturer.manufacturer_id).where(PartyManufacturer.party_id == party.id)
    return sorted((await session.execute(query)).scalars())


async def operator_acting_for(session: AsyncSession, party: Party) -> Principal:
    """The party as an operator at the command line acts for it (`cfl-graph image import`): its role and
    manufacturer ids, no token. The audit trail still names the operator as the actor."""
    if party.disabled_at is not None:
        raise PartyMisconfigured(f"{party.name} is disabled")
    return as_principal(party, await manufacturer_ids_of(session, party))


def as_principal(party: Party, manufacturer_ids: Iterable[str]) -> Principal:
    """The party as the policy sees any of its read-write tokens: what `allowed` answers for it."""
    return Principal(
        party_id=party.id,
        party_name=party.name,
        role=party.role,
        manufacturer_ids=frozenset(manufacturer_ids),
        read_only=False,
        download_granted=party.download_granted,
    )


async def all_parties(session: AsyncSession) -> list[Party]:
    """Every party, by name (the operator's list)."""
    return list((await session.execute(select(Party).order_by(Party.name))).scalars())

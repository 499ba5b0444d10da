"""The registry of manufacturer public keys: which P-256 keys may sign images for a manufacturer id.

Only public keys are ever accepted: a PEM holding a private key is refused and not stored, since the
library must never hold a manufacturer's signing secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph import identifiers as ids
from cfl_graph.access.parties import manufacturer_ids_of
from cfl_graph.audit import Actor, record
from cfl_graph.tables.access import ManufacturerKey, Party, Role
from cfl_graph.tables.base import utc_now


class KeyRejected(ValueError):
    """The key cannot be registered; `str()` says why."""


def load_p256_public_key(pem: bytes) -> EllipticCurvePublicKey:
    """A P-256 public key from PEM, or `KeyRejected` saying what the PEM holds instead."""
    if b"PRIVATE KEY" in pem:
        raise KeyRejected("this PEM holds a private key; register the manufacturer's public key only")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise KeyRejected(f"not a PEM public key ({exc})") from None
    if not isinstance(key, EllipticCurvePublicKey) or not isinstance(key.curve, SECP256R1):
        kind = key.curve.name if isinstance(key, EllipticCurvePublicKey) else type(key).__name__
        raise KeyRejected(f"GBCS images are signed with ECDSA P-256 keys; this is a {kind} key")
    return key


def key_fingerprint(key: EllipticCurvePublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


async def add_key(
    session: AsyncSession, manufacturer_ids: Iterable[str], pem: bytes, *, actor: Actor
) -> list[ManufacturerKey]:
    key = load_p256_public_key(pem)
    fingerprint = key_fingerprint(key)
    canonical = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    added = []
    for manufacturer_id in sorted({ids.manufacturer_id(m) for m in manufacturer_ids}):
        existing = (
            await session.execute(
                select(ManufacturerKey).where(
                    ManufacturerKey.manufacturer_id == manufacturer_id, ManufacturerKey.key_id == fingerprint
                )
            )
        ).scalar_one_or_none()
        if existing is not None:
            raise KeyRejected(
                f"key {fingerprint[:16]} is already registered for manufacturer id {manufacturer_id}"
            )
        row = ManufacturerKey(manufacturer_id=manufacturer_id, key_id=fingerprint, public_key_pem=canonical)
        session.add(row)
        added.append(row)
        await record(
            session,
            actor,
            "key.added",
            f"key {fingerprint[:16]} for {manufacturer_id}",
            {"manufacturer_id": manufacturer_id, "key_id": fingerprint},
        )
    await session.flush()
    return added


async def add_key_for_party(
    session: AsyncSession, party: Party, pem: bytes, *, actor: Actor, manufacturer_ids: Iterable[str] = ()
) -> list[ManufacturerKey]:
    """Register a manufacturer party's key for the given ids of its own (all of them if none given)."""
    if party.role != Role.MANUFACTURER:
        raise KeyRejected(f"{party.name} is a {party.role} party; keys belong to manufacturer parties")
    owned = await manufacturer_ids_of(session, party)
    wanted = sorted({ids.manufacturer_id(m) for m in manufacturer_ids}) or owned
    if stray := sorted(set(wanted) - set(owned)):
        raise KeyRejected(f"{party.name} is not registered for manufacturer id(s) {', '.join(stray)}")
    return await add_key(session, wanted, pem, actor=actor)


async def revoke_key(
    session: AsyncSession, fingerprint_prefix: str, *, actor: Actor
) -> list[ManufacturerKey]:
    """Revoke every registration of the key whose fingerprint starts with the prefix (16+ hex digits)."""
    prefix = fingerprint_prefix.strip().lower()
    if len(prefix) < 16:
        raise KeyRejected("give at least the first 16 hex digits of the key id")
    rows = list(
        (
            await session.execute(select(ManufacturerKey).where(ManufacturerKey.key_id.startswith(prefix)))
        ).scalars()
    )
    for row in rows:
        if row.revoked_at is None:
            row.revoked_at = utc_now()
            await record(
                session,
                actor,
                "key.revoked",
                f"key {row.key_id[:16]} for {row.manufacturer_id}",
                {"manufacturer_id": row.manufacturer_id, "key_id": row.key_id},
            )
    return rows


async def active_keys(session: AsyncSession, manufacturer_id: str) -> list[EllipticCurvePublicKey]:
    """The keys an image for `manufacturer_id` may be signed with now."""
    query = select(ManufacturerKey.public_key_pem).where(
        ManufacturerKey.manufacturer_id == manufacturer_id, ManufacturerKey.revoked_at.is_(None)
    )
    return [load_p256_public_key(pem.encode()) for pem in (await session.execute(query)).scalars()]


async def active_keys_with_ids(
    session: AsyncSession, manufacturer_id: str
) -> list[tuple[str, EllipticCurvePublicKey]]:
    """`active_keys` with each key's id (fingerprint), so a check can record which key verified."""
    query = (
        select(ManufacturerKey.key_id, ManufacturerKey.public_key_pem)
        .where(ManufacturerKey.manufacturer_id == manufacturer_id, ManufacturerKey.revoked_at.is_(None))
        .order_by(ManufacturerKey.id)
    )
    return [
        (key_id, load_p256_public_key(pem.encode())) for key_id, pem in (await session.execute(query)).all()
    ]


async def all_keys(session: AsyncSession) -> list[ManufacturerKey]:
    """Every registered key, by manufacturer id (the operator's list)."""
    query = select(ManufacturerKey).order_by(ManufacturerKey.manufacturer_id, ManufacturerKey.id)
    return list((await session.execute(query)).scalars())

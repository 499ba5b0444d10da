"""Manufacturer keys (R8): only P-256 public keys, per manufacturer id, revocable, every change audited;
a private key handed over by mistake is refused and never stored."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select, text

from cfl_graph.access.keys import KeyRejected, active_keys, add_key, key_fingerprint, revoke_key
from cfl_graph.access.parties import add_party
from cfl_graph.audit import SYSTEM
from cfl_graph.database import Database
from cfl_graph.tables import AuditEvent, Role
from tests.fixtures.cli import run_cli


def public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def test_a_public_key_is_registered_per_manufacturer_id_and_revoked(db: Database) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    async with db.sessions() as session, session.begin():
        rows = await add_key(session, ["10b2", "1C"], public_pem(private), actor=SYSTEM)
    assert [r.manufacturer_id for r in rows] == ["001C", "10B2"]
    assert rows[0].key_id == key_fingerprint(private.public_key())
    async with db.sessions() as session:
        keys = await active_keys(session, "10B2")
        assert [key_fingerprint(k) for k in keys] == [rows[0].key_id]
        assert await active_keys(session, "2C4F") == []
    async with db.sessions() as session, session.begin():
        revoked = await revoke_key(session, rows[0].key_id[:16], actor=SYSTEM)
    assert len(revoked) == 2
    async with db.sessions() as session:
        assert await active_keys(session, "10B2") == []
        actions = list((await session.execute(select(AuditEvent.action).order_by(AuditEvent.id))).scalars())
    assert actions == ["key.added", "key.added", "key.revoked", "key.revoked"]


@pytest.mark.parametrize(
    "make,reason",
    [
        (
            lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "holds a private key",
        ),
        (lambda: public_pem(ec.generate_private_key(ec.SECP384R1())), "this is a secp384r1 key"),
        (lambda: public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "RSAPublicKey"),
        (lambda: b"-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
    ],
    ids=["private key", "P-384", "RSA", "garbage"],
)
async def test_anything_but_a_p256_public_key_is_refused_and_nothing_stored(
    db: Database, make: object, reason: str
) -> None:
    pem = make()  # type: ignore[operator]
    async with db.sessions() as session, session.begin():
        with pytest.raises(KeyRejected, match=reason):
            await add_key(session, ["10B2"], pem, actor=SYSTEM)
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM manufacturer_keys"))).scalar_one() == 0
        assert (await conn.execute(text("SELECT count(*) FROM audit_events"))).scalar_one() == 0


async def test_the_same_key_twice_for_one_id_is_refused(db: Database) -> None:
    pem = public_pem(ec.generate_private_key(ec.SECP256R1()))
    async with db.sessions() as session, session.begin():
        await add_key(session, ["10B2"], pem, actor=SYSTEM)
    async with db.sessions() as session, session.begin():
        with pytest.raises(KeyRejected, match="already registered for manufacturer id 10B2"):
            await add_key(session, ["10B2"], pem, actor=SYSTEM)


async def test_operators_manage_keys_from_the_cli(db: Database, database_url: str, tmp_path: Path) -> None:
    async with db.sessions() as session, session.begin():
        await add_party(
            session,
            "Northfield Metering Ltd",
            Role.MANUFACTURER,
            actor=SYSTEM,
            manufacturer_ids=["10B2", "10B3"],
        )
        await add_party(session, "Calder Supply Ltd", Role.SUPPLIER, actor=SYSTEM)
    pem = tmp_path / "northfield.pem"
    private = ec.generate_private_key(ec.SECP256R1())
    pem.write_bytes(public_pem(private))
    fingerprint = key_fingerprint(private.public_key())

    def cfl(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(database_url, *args)

    added = cfl("key", "add", "Northfield Metering Ltd", str(pem), "--manufacturer-id", "10b3")
    assert (added.returncode, added.stdout.strip()) == (
        0,
        f"added key {fingerprint[:16]} for manufacturer id 10B3",
    )
    refused = [
        (cfl("key", "add", "Calder Supply Ltd", str(pem)), "keys belong to manufacturer parties"),
        (
            cfl("key", "add", "Northfield Metering Ltd", str(pem), "--manufacturer-id", "2C4F"),
            "not registered for manufacturer id(s) 2C4F",
        ),
        (cfl("key", "add", "Northfield Metering Ltd", str(tmp_path / "missing.pem")), "missing.pem"),
    ]
    for result, reason in refused:
        assert result.returncode == 1 and reason in result.stderr, result.stderr
    assert fingerprint in cfl("key", "list").stdout
    revoked = cfl("key", "revoke", fingerprint[:20])
    assert revoked.returncode == 0 and "revoked key" in revoked.stdout
    assert "revoked" in cfl("key", "list").stdout

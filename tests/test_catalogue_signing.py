"""Signed catalogue metadata (R8): a client detects tampering, a foreign key, a rollback and a freeze."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cfl_graph.catalogue_signing import (
    BadSignature,
    CatalogueExpired,
    MalformedCatalogue,
    RollbackDetected,
    load_or_create_key,
    sign_catalogue,
    verify_catalogue,
)

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
IMAGE = {
    "manufacturerId": "10B2",
    "modelId": "0001",
    "hardwareVersion": "0100",
    "firmwareVersion": "01020304",
    "fileSha256": "ab" * 32,
    "manufacturerImageSha256": "cd" * 32,
    "length": 1234,
    "state": "published",
    "url": "/api/v1/images/1/file",
}


def document(
    key: Ed25519PrivateKey, version: int = 3, *, expires: dt.timedelta = dt.timedelta(days=7)
) -> bytes:
    return sign_catalogue(key, version=version, issued_at=NOW, expires_at=NOW + expires, images=[IMAGE])


def test_a_genuine_current_catalogue_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    catalogue = verify_catalogue(document(key), key.public_key(), last_seen_version=2, now=NOW)
    assert (catalogue.version, catalogue.images) == (3, [IMAGE])
    assert catalogue.expires_at == NOW + dt.timedelta(days=7)


@pytest.mark.parametrize(
    "path,value",
    [
        (("images", 0, "fileSha256"), "ef" * 32),
        (("images", 0, "state"), "withdrawn"),
        (("version",), 99),
        (("expires_at",), "2099-01-01T00:00:00+00:00"),
    ],
)
def test_any_change_to_the_signed_part_is_detected(path: tuple[object, ...], value: object) -> None:
    key = Ed25519PrivateKey.generate()
    envelope = json.loads(document(key))
    target = envelope["signed"]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(BadSignature):
        verify_catalogue(json.dumps(envelope).encode(), key.public_key(), now=NOW)


def test_a_document_signed_by_another_key_is_refused() -> None:
    ours, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with pytest.raises(BadSignature):
        verify_catalogue(document(theirs), ours.public_key(), now=NOW)


def test_a_rollback_to_an_older_version_is_detected() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(RollbackDetected, match="version 3 is older than version 5"):
        verify_catalogue(document(key, version=3), key.public_key(), last_seen_version=5, now=NOW)


def test_a_frozen_feed_is_detected_by_expiry() -> None:
    key = Ed25519PrivateKey.generate()
    stale = document(key, expires=dt.timedelta(days=7))
    with pytest.raises(CatalogueExpired, match="2026-12-02 12:00"):
        verify_catalogue(stale, key.public_key(), now=NOW + dt.timedelta(days=8))


@pytest.mark.parametrize(
    "junk", [b"", b"not json", b"[]", b'{"signed": 1, "signatures": []}', b'{"signed": {}}']
)
def test_junk_is_malformed_or_unsigned(junk: bytes) -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises((MalformedCatalogue, BadSignature)):
        verify_catalogue(junk, key.public_key(), now=NOW)


def test_the_key_is_created_once_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "catalogue.pem"
    first = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_key(path)
    verify_catalogue(document(first), again.public_key(), now=NOW)

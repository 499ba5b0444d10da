"""Signed catalogue metadata, as TUF and LVFS give their clients: the library's Ed25519 key signs a
document listing every published image, with a version that only grows and an expiry.

The envelope is `{"signed": {...}, "signatures": [{"keyid": ..., "sig": ...}]}`; the signature covers
the canonical JSON of `signed` (sorted keys, no spaces, UTF-8). `verify_catalogue` is what a client
runs: it refuses a bad signature, a rollback (a version older than one it has seen) and a freeze (an
expired document), and it needs only the standard library and `cryptography`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DOCUMENT_TYPE = "cfl-graph-catalogue"
SPEC_VERSION = 1


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, in hex: names the key without revealing anything."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The library's signing key from a PEM file, created (mode 0600) on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign_catalogue(
    key: Ed25519PrivateKey,
    *,
    version: int,
    issued_at: dt.datetime,
    expires_at: dt.datetime,
    images: list[dict[str, Any]],
) -> bytes:
    """The signed envelope, as the bytes to serve."""
    signed = {
        "_type": DOCUMENT_TYPE,
        "spec_version": SPEC_VERSION,
        "version": version,
        "issued_at": issued_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "expires_at": expires_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "images": images,
    }
    signature = key.sign(canonical_json(signed))
    envelope = {
        "signed": signed,
        "signatures": [{"keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode()}],
    }
    return json.dumps(envelope, sort_keys=True, indent=1, ensure_ascii=False).encode() + b"\n"


# --- the client's side ----------------------------------------------------------------------------


class CatalogueRefused(Exception):
    """The document must not be trusted; `str()` says why."""


class MalformedCatalogue(CatalogueRefused):
    pass


class BadSignature(CatalogueRefused):
    def __init__(self) -> None:
        super().__init__(
            "no valid signature by the library's key: the document was altered or not signed by it"
        )


class RollbackDetected(CatalogueRefused):
    def __init__(self, seen: int, offered: int) -> None:
        super().__init__(f"catalogue version {offered} is older than version {seen} already seen: a rollback")
        self.seen = seen
        self.offered = offered


class CatalogueExpired(CatalogueRefused):
    def __init__(self, expired_at: dt.datetime) -> None:
        super().__init__(f"the catalogue expired at {expired_at:%Y-%m-%d %H:%M} UTC: the feed may be frozen")
        self.expired_at = expired_at


@dataclass(frozen=True)
class Catalogue:
    version: int
    issued_at: dt.datetime
    expires_at: dt.datetime
    images: list[dict[str, Any]]


def verify_catalogue(
    document: bytes,
    public_key: Ed25519PublicKey,
    *,
    last_seen_version: int = 0,
    now: dt.datetime | None = None,
) -> Catalogue:
    """Check a catalogue document as a client must before using it; raise `CatalogueRefused` if not."""
    try:
        envelope = json.loads(document)
        signed = envelope["signed"]
        signatures = envelope["signatures"]
        if not isinstance(signed, dict) or not isinstance(signatures, list):
            raise TypeError("signed must be an object and signatures a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedCatalogue(f"not a catalogue envelope ({exc})") from None
    wanted = key_id(public_key)
    payload = canonical_json(signed)
    for entry in signatures:
        if not isinstance(entry, dict) or entry.get("keyid") != wanted:
            continue
        try:
            public_key.verify(base64.b64decode(entry.get("sig", ""), validate=True), payload)
        except (InvalidSignature, ValueError):
            continue
        break
    else:
        raise BadSignature()
    # Only a correctly signed document is read further.
    try:
        if signed["_type"] != DOCUMENT_TYPE or signed["spec_version"] != SPEC_VERSION:
            raise ValueError(f"unsupported document {signed['_type']!r} v{signed['spec_version']}")
        version = int(signed["version"])
        issued_at = dt.datetime.fromisoformat(signed["issued_at"])
        expires_at = dt.datetime.fromisoformat(signed["expires_at"])
        images = list(signed["images"])
    except (KeyError, ValueError, TypeError) as exc:
        raise MalformedCatalogue(f"signed, but not a catalogue this client understands ({exc})") from None
    if version < last_seen_version:
        raise RollbackDetected(last_seen_version, version)
    if expires_at <= (now or dt.datetime.now(dt.UTC)):
        raise CatalogueExpired(expires_at)
    return Catalogue(version, issued_at, expires_at, images)

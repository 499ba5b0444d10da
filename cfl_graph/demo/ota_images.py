"""Real, signed GBCS firmware images (ZigBee OTA Upgrade Images) for tests, the demo and the benchmarks.

Written from the format's description (docs/firmware-image-format.md), not from the parser, so that the
tests compare two independent readings of it.
"""

from __future__ import annotations

import hashlib
import struct

from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

# The P-256 group order: s and n - s are both valid signatures of the same message.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def build_header(
    *,
    manufacturer_code: str,
    image_type: int = 0x0001,
    file_version: str,
    manufacturer_image_length: int,
    header_string: str = "CFL test image",
    min_hw: str | None = None,
    max_hw: str | None = None,
    security_credential_version: int | None = None,
    destination: bytes | None = None,
    stack_version: int = 0x0002,
    extension: bytes = b"",
) -> bytes:
    """The OTA header for an image whose Manufacturer Image has the given length.

    `extension` is appended after the optional fields and counted in the header length, as a header from
    a later revision of OTA, with fields this one does not know, would carry them.
    """
    if (min_hw is None) != (max_hw is None):
        raise ValueError("the field control announces both hardware versions or neither")
    if destination is not None and len(destination) != 8:
        raise ValueError("the upgrade file destination is an 8-byte IEEE address")
    text = header_string.encode()
    if len(text) > 32:
        raise ValueError("the header string is at most 32 bytes of UTF-8")
    optional = b""
    field_control = 0
    if security_credential_version is not None:
        field_control |= 0x0001
        optional += struct.pack("<B", security_credential_version)
    if destination is not None:
        field_control |= 0x0002
        optional += destination
    if min_hw is not None and max_hw is not None:
        field_control |= 0x0004
        optional += struct.pack("<HH", int(min_hw, 16), int(max_hw, 16))
    header_length = 56 + len(optional) + len(extension)
    total_size = header_length + manufacturer_image_length + 2 + 64
    fixed = struct.pack(
        "<IHHHHHIH32sI",
        0x0BEEF11E,
        0x0100,
        header_length,
        field_control,
        int(manufacturer_code, 16),
        image_type,
        int(file_version, 16),
        stack_version,
        text.ljust(32, b"\0"),
        total_size,
    )
    return fixed + optional + extension


def raw_signature(private_key: EllipticCurvePrivateKey, signed: bytes) -> bytes:
    """ECDSA P-256 / SHA-256 over `signed`, as GBCS carries it: r‖s, 32 bytes each, big-endian."""
    der = private_key.sign(hashlib.sha256(signed).digest(), ECDSA(Prehashed(SHA256())))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def build_image(
    manufacturer_image: bytes,
    *,
    manufacturer_code: str,
    image_type: int = 0x0001,
    file_version: str,
    private_key: EllipticCurvePrivateKey,
    header_string: str = "CFL test image",
    min_hw: str | None = None,
    max_hw: str | None = None,
    security_credential_version: int | None = None,
    destination: bytes | None = None,
) -> bytes:
    """OTA header ‖ Manufacturer Image ‖ 0x0040 (u16 LE) ‖ signature over everything before it."""
    header = build_header(
        manufacturer_code=manufacturer_code,
        image_type=image_type,
        file_version=file_version,
        manufacturer_image_length=len(manufacturer_image),
        header_string=header_string,
        min_hw=min_hw,
        max_hw=max_hw,
        security_credential_version=security_credential_version,
        destination=destination,
    )
    signed = header + manufacturer_image
    return signed + struct.pack("<H", 64) + raw_signature(private_key, signed)

"""A generated corpus of hostile firmware images (issue 9), each derived from one valid signed image by
one named change, with what the upload must answer.

Refused outright (nothing kept): every structural lie or truncation, and another manufacturer's code.
Kept as a draft that cannot be published: a signature that does not verify (the image is well formed;
its manufacturer sees the named problem and may discard it), as a manufacturer may upload before the
right key is registered.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

from cfl_graph.demo.ota_images import build_header, build_image


@dataclass(frozen=True)
class ImageCase:
    name: str
    data: bytes
    status: int  # the upload's HTTP answer
    problem: str  # a named problem the answer must list


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def image_cases(
    good: bytes, manufacturer_image: bytes, build: Callable[..., bytes], stranger: EllipticCurvePrivateKey
) -> Iterator[ImageCase]:
    """`good` is a valid image of `manufacturer_image`; `build(**overrides)` builds variants of it."""
    size = len(good)
    header_length = struct.unpack_from("<H", good, 6)[0]
    # Truncations: at every byte of the fixed header and its optional fields, then through the body.
    for cut in range(0, header_length + 1):
        yield ImageCase(f"cut at byte {cut} of the header", good[:cut], 422, "truncated" if cut >= 4 else "")
    for cut in (header_length + 1, size // 2, size - 67, size - 66, size - 65, size - 33, size - 1):
        yield ImageCase(f"cut at byte {cut} of {size}", good[:cut], 422, "truncated")
    for magic in (b"\x00\x00\x00\x00", b"PK\x03\x04", b"\x0b\xee\xf1\x1e", b"%PDF"):
        yield ImageCase(f"magic {magic!r}", magic + good[4:], 422, "bad-magic")
    for version in (0x0000, 0x0200, 0xFFFF):
        yield ImageCase(
            f"header version {version:#06x}",
            _patch(good, 4, struct.pack("<H", version)),
            422,
            "unsupported-header-version",
        )
    for length in (0, 1, 55, size - 65, size, 0xFFFF):
        yield ImageCase(
            f"header length {length}", _patch(good, 6, struct.pack("<H", length)), 422, "header-length-lies"
        )
    for total in (0, 1, size - 1, size + 1, 2 * size, 0xFFFFFFFF):
        yield ImageCase(
            f"total size {total}", _patch(good, 52, struct.pack("<I", total)), 422, "total-size-lies"
        )
    for bits in (0x0008, 0x0080, 0x8000):
        yield ImageCase(
            f"field control bit {bits:#06x}",
            _patch(good, 8, struct.pack("<H", bits)),
            422,
            "unknown-field-control-bits",
        )
    for length in (0x0000, 0x0041, 0x0048, 0xFFFF):
        yield ImageCase(
            f"signature length {length:#06x}",
            _patch(good, size - 66, struct.pack("<H", length)),
            422,
            "bad-signature-length",
        )
    for text, label in (
        (b"\xff\xfe bad", "not UTF-8"),
        (b"ok\x07bell", "a control character"),
        (b"\x00text", "NUL before text"),
    ):
        yield ImageCase(
            f"header string {label}", _patch(good, 20, text.ljust(32, b"\x00")), 422, "bad-header-string"
        )
    header = build_header(manufacturer_code="10B2", file_version="01000000", manufacturer_image_length=0)
    yield ImageCase(
        "no Manufacturer Image",
        header + struct.pack("<H", 64) + b"\x00" * 64,
        422,
        "empty-manufacturer-image",
    )
    yield ImageCase(
        "hardware range inverted", build(min_hw="0200", max_hw="0100"), 422, "hardware-range-inverted"
    )
    for extra in (1, 66, 4096):
        yield ImageCase(f"{extra} bytes after the signature", good + b"\x00" * extra, 422, "total-size-lies")
    yield ImageCase(
        "another manufacturer's code", build(manufacturer_code="2C4F"), 403, "manufacturer-not-yours"
    )
    yield ImageCase(
        "a manufacturer code nobody owns", build(manufacturer_code="FFFF"), 403, "manufacturer-not-yours"
    )
    # Well formed, but not provably the manufacturer's: kept as a draft with the named problem.
    yield ImageCase("signed by an unregistered key", build(key=stranger), 201, "signature-invalid")
    yield ImageCase(
        "signature bit flipped", _patch(good, size - 1, bytes([good[-1] ^ 1])), 201, "signature-invalid"
    )
    yield ImageCase("signature all zero", good[:-64] + b"\x00" * 64, 201, "signature-invalid")
    yield ImageCase("signature all ones", good[:-64] + b"\xff" * 64, 201, "signature-invalid")
    body_byte = header_length + 10
    yield ImageCase(
        "Manufacturer Image byte changed after signing",
        _patch(good, body_byte, bytes([good[body_byte] ^ 0x80])),
        201,
        "signature-invalid",
    )


__all__ = ["ImageCase", "build_image", "image_cases"]

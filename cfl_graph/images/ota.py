"""Reads and checks a GBCS firmware image (a ZigBee OTA Upgrade Image) as its bytes stream past.

docs/firmware-image-format.md is the reference for the layout, for exactly which bytes each hash and
the signature cover, and for every named problem; this module is the one place that implements it.
"""

from __future__ import annotations

import enum
import hashlib
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

from cfl_graph.access.keys import load_p256_public_key
from cfl_graph.identifiers import FirmwareVersion, HardwareVersion, ManufacturerId, Sha256Hex

FILE_IDENTIFIER = 0x0BEEF11E
HEADER_VERSION = 0x0100
FIXED_HEADER_LENGTH = 56
HEADER_STRING_OFFSET = 20
HEADER_STRING_LENGTH = 32
SIGNATURE_LENGTH = 64
SIGNATURE_BLOCK_LENGTH = 2 + SIGNATURE_LENGTH  # u16 signature length, then raw r‖s

# Field control bits, and the optional fields they announce, in the order the fields follow the fixed header.
SECURITY_CREDENTIAL_VERSION_PRESENT = 0x0001
UPGRADE_FILE_DESTINATION_PRESENT = 0x0002
HARDWARE_VERSIONS_PRESENT = 0x0004
_OPTIONAL_FIELD_LENGTHS = (
    (SECURITY_CREDENTIAL_VERSION_PRESENT, 1),
    (UPGRADE_FILE_DESTINATION_PRESENT, 8),
    (HARDWARE_VERSIONS_PRESENT, 4),
)
_KNOWN_FIELD_CONTROL_BITS = 0x0007

_FIXED_HEADER = struct.Struct("<IHHHHHIH32sI")
assert _FIXED_HEADER.size == FIXED_HEADER_LENGTH
_MAGIC = FILE_IDENTIFIER.to_bytes(4, "little")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class ImageProblem(StrEnum):
    """Why an image cannot be accepted; each is shown to the uploader with a `Finding.detail`."""

    BAD_MAGIC = "bad-magic"
    UNSUPPORTED_HEADER_VERSION = "unsupported-header-version"
    HEADER_LENGTH_LIES = "header-length-lies"
    TOTAL_SIZE_LIES = "total-size-lies"
    TRUNCATED = "truncated"
    BAD_SIGNATURE_LENGTH = "bad-signature-length"
    UNKNOWN_FIELD_CONTROL_BITS = "unknown-field-control-bits"
    BAD_HEADER_STRING = "bad-header-string"
    HARDWARE_RANGE_INVERTED = "hardware-range-inverted"
    EMPTY_MANUFACTURER_IMAGE = "empty-manufacturer-image"
    SIGNATURE_INVALID = "signature-invalid"

    @property
    def summary(self) -> str:
        return _SUMMARIES[self]


_SUMMARIES = {
    ImageProblem.BAD_MAGIC: "not a ZigBee OTA image: the file identifier is not 0x0BEEF11E",
    ImageProblem.UNSUPPORTED_HEADER_VERSION: "the OTA header version is not 0x0100",
    ImageProblem.HEADER_LENGTH_LIES: "the header length field does not fit the header or the file",
    ImageProblem.TOTAL_SIZE_LIES: "the total image size field is not the file's length",
    ImageProblem.TRUNCATED: "the file ends before the header, the image or the signature does",
    ImageProblem.BAD_SIGNATURE_LENGTH: "the signature length field is not 0x0040",
    ImageProblem.UNKNOWN_FIELD_CONTROL_BITS: "the field control announces fields OTA does not define",
    ImageProblem.BAD_HEADER_STRING: "the header string is not NUL-padded UTF-8 text",
    ImageProblem.HARDWARE_RANGE_INVERTED: "the minimum hardware version is above the maximum",
    ImageProblem.EMPTY_MANUFACTURER_IMAGE: "no Manufacturer Image between the header and the signature",
    ImageProblem.SIGNATURE_INVALID: "the signature verifies with none of the manufacturer's registered keys",
}


@dataclass(frozen=True)
class Finding:
    problem: ImageProblem
    detail: str

    def __str__(self) -> str:
        return f"{self.problem}: {self.detail}"


@dataclass(frozen=True)
class OtaHeader:
    """The OTA header's fields; an optional field is None when the field control does not announce it."""

    header_version: int
    header_length: int
    field_control: int
    manufacturer_code: ManufacturerId
    image_type: int
    file_version: FirmwareVersion
    zigbee_stack_version: int
    header_string: str
    total_image_size: int
    security_credential_version: int | None = None
    upgrade_file_destination: bytes | None = None  # the 8 bytes as stored: an IEEE address, little-endian
    minimum_hardware_version: HardwareVersion | None = None
    maximum_hardware_version: HardwareVersion | None = None

    @property
    def dcc_file_name(self) -> str:
        """`MMMM-TTTT-VVVVVVVV`: the name the DCC knows the image by."""
        return f"{self.manufacturer_code}-{self.image_type:04X}-{self.file_version}"

    @property
    def upgrade_file_destination_eui64(self) -> str | None:
        """The destination as an EUI-64 is written for people: most significant byte first."""
        if self.upgrade_file_destination is None:
            return None
        return "-".join(f"{byte:02X}" for byte in reversed(self.upgrade_file_destination))


@dataclass(frozen=True)
class ParsedImage:
    """A structurally sound image: where its parts lie and the SHA-256 (lower-case hex) of each region."""

    header: OtaHeader
    header_length: int
    manufacturer_image_offset: int
    manufacturer_image_length: int
    signature: bytes  # raw r‖s, 32 bytes each, big-endian
    file_sha256: Sha256Hex  # every byte of the file
    manufacturer_image_sha256: Sha256Hex  # the Manufacturer Image alone: what the CPL lists
    signed_sha256: Sha256Hex  # header and Manufacturer Image: what the signature covers
    total_length: int

    @property
    def signed_length(self) -> int:
        return self.manufacturer_image_offset + self.manufacturer_image_length


class ImageRejected(Exception):
    """The image breaks the format (or its signature does not verify); `findings` lists every problem.

    `header` is the OTA header when it could be read, and `file_sha256` and `total_length` describe the
    bytes that were fed, so that an upload can still say what it received.
    """

    def __init__(
        self,
        findings: Sequence[Finding],
        *,
        header: OtaHeader | None = None,
        file_sha256: Sha256Hex | None = None,
        total_length: int | None = None,
    ) -> None:
        self.findings = list(findings)
        self.header = header
        self.file_sha256 = file_sha256
        self.total_length = total_length
        super().__init__("; ".join(str(finding) for finding in self.findings))

    @property
    def problems(self) -> list[ImageProblem]:
        return [finding.problem for finding in self.findings]


class _Stage(enum.Enum):
    FIXED = enum.auto()  # collecting the 56-byte fixed header
    OPTIONAL = enum.auto()  # collecting the optional fields the field control announces
    BODY = enum.auto()  # layout known: bytes go to the image hash and the signature block
    OPAQUE = enum.auto()  # layout unknowable: only the whole-file hash and the length go on
    FINISHED = enum.auto()


@dataclass(frozen=True)
class _Fixed:
    header_length: int
    field_control: int
    manufacturer_code: int
    image_type: int
    file_version: int
    zigbee_stack_version: int
    header_string: str
    total_image_size: int
    optional_end: int  # where the announced optional fields end


class OtaStreamParser:
    """Parses an image fed in chunks of any size, holding at most 135 bytes of it (header and trailer).

    The whole-file and Manufacturer Image hashes run as bytes arrive; the signed region's hash is a copy
    of the whole-file hash taken where the signed region ends, so no byte is hashed three times. That end
    is known only from the total image size field (the signature block is its last 66 bytes); whether
    the field told the truth is known at `finish()`.
    """

    def __init__(self) -> None:
        self._stage = _Stage.FIXED
        self._length = 0
        self._head = bytearray()  # the fixed header and the optional fields, nothing more
        self._head_target = FIXED_HEADER_LENGTH
        self._signature_block = bytearray()
        self._file_hash = hashlib.sha256()
        self._image_hash = hashlib.sha256()
        self._signed_sha256: str | None = None
        self._findings: list[Finding] = []
        self._fixed: _Fixed | None = None
        self._header: OtaHeader | None = None
        self._layout_known = False  # True once the header length and total size agree with each other
        self._image_end = -1

    @property
    def bytes_fed(self) -> int:
        return self._length

    @property
    def buffered_bytes(self) -> int:
        """How many of the image's bytes the parser holds (hash states aside)."""
        return len(self._head) + len(self._signature_block)

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._stage is _Stage.FINISHED:
            raise RuntimeError("feed() after finish(): use a new OtaStreamParser for each image")
        view = memoryview(chunk).cast("B")
        while view:
            if self._stage is _Stage.FIXED or self._stage is _Stage.OPTIONAL:
                part = view[: self._head_target - len(self._head)]
                self._head += part
                self._hash(part)
                if len(self._head) == self._head_target:
                    self._read_head()
            elif self._stage is _Stage.BODY:
                part = view[: self._route(view)]
                self._hash(part)
            else:
                part = view
                self._hash(part)
            view = view[len(part) :]

    def finish(self) -> ParsedImage:
        if self._stage is _Stage.FINISHED:
            raise RuntimeError("finish() called twice: use a new OtaStreamParser for each image")
        stage, self._stage = self._stage, _Stage.FINISHED
        findings = list(self._findings)
        if stage is _Stage.FIXED:
            findings.append(self._short_fixed_header())
        elif self._fixed is not None:
            findings.extend(self._length_findings(stage, self._fixed))
        file_sha256 = Sha256Hex(self._file_hash.hexdigest())
        if findings or self._header is None or self._signed_sha256 is None:
            raise ImageRejected(
                findings, header=self._header, file_sha256=file_sha256, total_length=self._length
            )
        header_length = self._header.header_length
        return ParsedImage(
            header=self._header,
            header_length=header_length,
            manufacturer_image_offset=header_length,
            manufacturer_image_length=self._image_end - header_length,
            signature=bytes(self._signature_block[2:]),
            file_sha256=file_sha256,
            manufacturer_image_sha256=Sha256Hex(self._image_hash.hexdigest()),
            signed_sha256=Sha256Hex(self._signed_sha256),
            total_length=self._length,
        )

    def _hash(self, part: memoryview) -> None:
        self._file_hash.update(part)
        self._length += len(part)
        if self._length == self._image_end and self._signed_sha256 is None:
            self._signed_sha256 = self._file_hash.copy().hexdigest()

    def _route(self, view: memoryview) -> int:
        """How many bytes of `view` belong to the region it starts in; records the ones that matter."""
        assert self._fixed is not None
        position = self._length
        if position < self._fixed.header_length:  # header bytes past the fields OTA defines
            return self._fixed.header_length - position
        if position < self._image_end:
            part = view[: self._image_end - position]
            self._image_hash.update(part)
            return len(part)
        if position < self._fixed.total_image_size:
            part = view[: self._fixed.total_image_size - position]
            self._signature_block += part
            return len(part)
        return len(view)  # past the size the header gives: hashed and counted, reported at finish()

    def _read_head(self) -> None:
        if self._stage is _Stage.FIXED:
            self._read_fixed_header()
        if self._stage is _Stage.OPTIONAL and len(self._head) == self._head_target:
            self._read_optional_fields()

    def _read_fixed_header(self) -> None:
        (
            identifier,
            version,
            header_length,
            field_control,
            manufacturer_code,
            image_type,
            file_version,
            stack_version,
            raw_string,
            total_size,
        ) = _FIXED_HEADER.unpack(self._head)
        if identifier != FILE_IDENTIFIER:
            self._findings.append(_bad_magic(bytes(self._head[:4])))
            self._stage = _Stage.OPAQUE
            return
        if version != HEADER_VERSION:
            self._findings.append(_unsupported_version(version))
            self._stage = _Stage.OPAQUE
            return
        if unknown := field_control & ~_KNOWN_FIELD_CONTROL_BITS:
            bits = ", ".join(str(bit) for bit in range(16) if unknown >> bit & 1)
            self._findings.append(
                Finding(
                    ImageProblem.UNKNOWN_FIELD_CONTROL_BITS,
                    f"field control is 0x{field_control:04X}: bit(s) {bits} announce optional fields OTA "
                    "does not define (known: bit 0 security credential version, bit 1 upgrade file "
                    "destination, bit 2 hardware versions)",
                )
            )
        header_string, string_problem = _header_text(raw_string)
        if string_problem is not None:
            self._findings.append(Finding(ImageProblem.BAD_HEADER_STRING, string_problem))
        optional_end = FIXED_HEADER_LENGTH + sum(
            length for bit, length in _OPTIONAL_FIELD_LENGTHS if field_control & bit
        )
        self._fixed = _Fixed(
            header_length=header_length,
            field_control=field_control,
            manufacturer_code=manufacturer_code,
            image_type=image_type,
            file_version=file_version,
            zigbee_stack_version=stack_version,
            header_string=header_string,
            total_image_size=total_size,
            optional_end=optional_end,
        )
        if header_length < optional_end:
            self._findings.append(
                Finding(
                    ImageProblem.HEADER_LENGTH_LIES,
                    f"header length field says {header_length:,} bytes; the fixed header and the optional "
                    f"fields its field control (0x{field_control:04X}) announces take {optional_end:,}",
                )
            )
        elif header_length + SIGNATURE_BLOCK_LENGTH > total_size:
            self._findings.append(
                Finding(
                    ImageProblem.HEADER_LENGTH_LIES,
                    f"header length field says {header_length:,} bytes, beyond the file: the total image "
                    f"size field ({total_size:,} bytes) leaves at most "
                    f"{max(total_size - SIGNATURE_BLOCK_LENGTH, 0):,} before the 66-byte signature block",
                )
            )
        else:
            self._layout_known = True
        self._stage = _Stage.OPTIONAL
        self._head_target = optional_end

    def _read_optional_fields(self) -> None:
        fixed = self._fixed
        assert fixed is not None
        position = FIXED_HEADER_LENGTH
        credential_version: int | None = None
        destination: bytes | None = None
        minimum: int | None = None
        maximum: int | None = None
        if fixed.field_control & SECURITY_CREDENTIAL_VERSION_PRESENT:
            credential_version = self._head[position]
            position += 1
        if fixed.field_control & UPGRADE_FILE_DESTINATION_PRESENT:
            destination = bytes(self._head[position : position + 8])
            position += 8
        if fixed.field_control & HARDWARE_VERSIONS_PRESENT:
            minimum, maximum = struct.unpack_from("<HH", self._head, position)
            if minimum > maximum:
                self._findings.append(
                    Finding(
                        ImageProblem.HARDWARE_RANGE_INVERTED,
                        f"minimum hardware version {minimum:04X} is above the maximum {maximum:04X}",
                    )
                )
        self._header = OtaHeader(
            header_version=HEADER_VERSION,
            header_length=fixed.header_length,
            field_control=fixed.field_control,
            manufacturer_code=ManufacturerId(f"{fixed.manufacturer_code:04X}"),
            image_type=fixed.image_type,
            file_version=FirmwareVersion(f"{fixed.file_version:08X}"),
            zigbee_stack_version=fixed.zigbee_stack_version,
            header_string=fixed.header_string,
            total_image_size=fixed.total_image_size,
            security_credential_version=credential_version,
            upgrade_file_destination=destination,
            minimum_hardware_version=None if minimum is None else HardwareVersion(f"{minimum:04X}"),
            maximum_hardware_version=None if maximum is None else HardwareVersion(f"{maximum:04X}"),
        )
        if self._layout_known:
            self._image_end = fixed.total_image_size - SIGNATURE_BLOCK_LENGTH
            self._stage = _Stage.BODY
            if self._length == self._image_end:  # an empty image right after a header of only known fields
                self._signed_sha256 = self._file_hash.copy().hexdigest()
        else:
            self._stage = _Stage.OPAQUE

    def _short_fixed_header(self) -> Finding:
        """The file ended before byte 56: say what the bytes that did arrive already rule out."""
        head = bytes(self._head)
        if not head:
            return Finding(
                ImageProblem.TRUNCATED, "the file is empty; an OTA image starts with a 56-byte header"
            )
        if head[:4] != _MAGIC[: len(head)]:
            return _bad_magic(head[:4])
        if len(head) >= 6 and (version := int.from_bytes(head[4:6], "little")) != HEADER_VERSION:
            return _unsupported_version(version)
        return Finding(
            ImageProblem.TRUNCATED,
            f"the file is {len(head):,} bytes long and stops inside the 56-byte fixed OTA header",
        )

    def _length_findings(self, stage: _Stage, fixed: _Fixed) -> list[Finding]:
        length, total = self._length, fixed.total_image_size
        findings = []
        if stage is _Stage.OPTIONAL:
            findings.append(
                Finding(
                    ImageProblem.TRUNCATED,
                    f"the file is {length:,} bytes long and stops inside the optional header fields "
                    f"its field control (0x{fixed.field_control:04X}) announces "
                    f"(bytes 56–{fixed.optional_end - 1})",
                )
            )
        elif stage is _Stage.BODY and length < total:
            findings.append(Finding(ImageProblem.TRUNCATED, self._where_body_stops(fixed)))
        if length != total:
            findings.append(
                Finding(
                    ImageProblem.TOTAL_SIZE_LIES, f"header says the file is {total:,} bytes; it is {length:,}"
                )
            )
        elif stage is _Stage.BODY:
            signature_length = int.from_bytes(self._signature_block[:2], "little")
            if signature_length != SIGNATURE_LENGTH:
                findings.append(
                    Finding(
                        ImageProblem.BAD_SIGNATURE_LENGTH,
                        f"signature length field (bytes {self._image_end:,}–{self._image_end + 1:,}) is "
                        f"0x{signature_length:04X} ({signature_length:,}); GBCS images carry a 64-byte raw "
                        "r‖s signature (0x0040)",
                    )
                )
            if self._image_end == fixed.header_length:
                findings.append(
                    Finding(
                        ImageProblem.EMPTY_MANUFACTURER_IMAGE,
                        f"the {fixed.header_length:,}-byte header is followed directly by the signature "
                        "block: the Manufacturer Image is empty",
                    )
                )
        return findings

    def _where_body_stops(self, fixed: _Fixed) -> str:
        length, end = self._length, self._image_end
        if length < fixed.header_length:
            where = f"inside the header, which its length field says is {fixed.header_length:,} bytes"
        elif length < end:
            where = f"inside the Manufacturer Image (bytes {fixed.header_length:,}–{end - 1:,})"
        elif length < end + 2:
            where = f"inside the signature length field (bytes {end:,}–{end + 1:,})"
        else:
            where = f"inside the signature (bytes {end + 2:,}–{fixed.total_image_size - 1:,})"
        return f"the file is {length:,} bytes long and stops {where}, by the header's total image size"


def _bad_magic(first_bytes: bytes) -> Finding:
    seen = " ".join(f"{byte:02X}" for byte in first_bytes)
    return Finding(
        ImageProblem.BAD_MAGIC,
        f"the file starts with {seen}, not 1E F1 EE 0B: the OTA file identifier 0x0BEEF11E, little-endian",
    )


def _unsupported_version(version: int) -> Finding:
    return Finding(
        ImageProblem.UNSUPPORTED_HEADER_VERSION,
        f"OTA header version is 0x{version:04X}; only 0x0100 is defined, so the rest cannot be read",
    )


def _header_text(raw: bytes) -> tuple[str, str | None]:
    """The header string without its NUL padding, and what is wrong with it (None when nothing is)."""
    stripped = raw.rstrip(b"\0")
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            stripped.decode("utf-8", "replace"),
            f"header string is not UTF-8: byte 0x{stripped[exc.start]:02X} at position {exc.start} "
            f"of 32 (file offset {HEADER_STRING_OFFSET + exc.start}) {exc.reason}",
        )
    if match := _CONTROL_CHARACTER.search(text):
        return (
            text,
            f"header string has control character U+{ord(match.group()):04X} at character "
            f"{match.start()}; only NUL padding at its end is allowed",
        )
    return text, None


def parse_image(data: bytes | bytearray | memoryview) -> ParsedImage:
    """Parse an image held in memory (small ones: uploads stream through `OtaStreamParser`)."""
    parser = OtaStreamParser()
    parser.feed(data)
    return parser.finish()


def load_public_key(pem: bytes) -> EllipticCurvePublicKey:
    """A manufacturer's P-256 public key from PEM; `KeyRejected` (a ValueError) says what it is instead.

    The key registry's rule, reused so that what can be registered and what can verify never differ.
    """
    return load_p256_public_key(pem)


def verify_signature(parsed: ParsedImage, public_keys: Sequence[EllipticCurvePublicKey]) -> int | None:
    """The index of the first key the manufacturer's signature verifies with, or None.

    Raw ECDSA, as a meter checks it: a high-s signature (s > n/2) is accepted, since its low-s twin
    (n - s) is equally valid and a meter takes either. Keys on curves other than P-256 never verify.
    """
    return verify_raw_signature(parsed.signature, parsed.signed_sha256, public_keys)


def verify_raw_signature(
    signature: bytes, signed_sha256: str, public_keys: Sequence[EllipticCurvePublicKey]
) -> int | None:
    """`verify_signature` from a stored record: the raw r‖s and the SHA-256 of the signed bytes."""
    if len(signature) != SIGNATURE_LENGTH:
        return None
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    encoded = encode_dss_signature(r, s)
    digest = bytes.fromhex(signed_sha256)
    algorithm = ECDSA(Prehashed(SHA256()))
    for index, key in enumerate(public_keys):
        if not isinstance(key.curve, SECP256R1):
            continue
        try:
            key.verify(encoded, digest, algorithm)
        except InvalidSignature:
            continue
        return index
    return None


def require_valid_signature(parsed: ParsedImage, public_keys: Sequence[EllipticCurvePublicKey]) -> int:
    """`verify_signature`, with a SIGNATURE_INVALID `ImageRejected` when no key verifies."""
    index = verify_signature(parsed, public_keys)
    if index is not None:
        return index
    manufacturer = parsed.header.manufacturer_code
    if public_keys:
        detail = (
            f"the signature verifies with none of the {len(public_keys)} public key(s) registered for "
            f"manufacturer {manufacturer}"
        )
    else:
        detail = (
            f"no public key is registered for manufacturer {manufacturer}, so the signature cannot verify"
        )
    raise ImageRejected(
        [Finding(ImageProblem.SIGNATURE_INVALID, detail)],
        header=parsed.header,
        file_sha256=parsed.file_sha256,
        total_length=parsed.total_length,
    )

"""A GBCS firmware image is read field by field, hashed over exactly the documented bytes, its
manufacturer signature checked, and every way it can lie named; in chunks, in constant memory."""

from __future__ import annotations

import functools
import hashlib
import struct
import tracemalloc
from collections.abc import Callable
from itertools import product
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfl_graph.identifiers import FirmwareVersion, HardwareVersion, ManufacturerId
from cfl_graph.images.ota import (
    Finding,
    ImageProblem,
    ImageRejected,
    OtaHeader,
    OtaStreamParser,
    ParsedImage,
    load_public_key,
    parse_image,
    require_valid_signature,
    verify_signature,
)
from tests.fixtures.ota_images import P256_ORDER, build_header, build_image, raw_signature

MIB = 1024 * 1024
MANUFACTURER_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
MANUFACTURER_IMAGE = bytes(range(256)) * 4 + b"ESME application firmware"
DESTINATION = bytes.fromhex("0807060504030201")


signed_image = functools.partial(
    build_image, manufacturer_code="10B2", file_version="0102000A", private_key=MANUFACTURER_KEY
)


def full_image(manufacturer_image: bytes = MANUFACTURER_IMAGE) -> bytes:
    """Every optional field present: header of 56 + 1 + 8 + 4 = 69 bytes."""
    return signed_image(
        manufacturer_image,
        min_hw="0100",
        max_hw="0203",
        security_credential_version=2,
        destination=DESTINATION,
    )


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    patched_data = bytearray(data)
    struct.pack_into(fmt, patched_data, offset, value)
    return bytes(patched_data)


def rejection(data: bytes) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        parse_image(data)
    return caught.value


def outcome(data: bytes, chunk_size: int | None = None) -> ParsedImage | tuple[object, ...]:
    """What parsing yields, comparable between one-shot and streamed runs."""
    parser = OtaStreamParser()
    step = chunk_size or max(len(data), 1)
    view = memoryview(data)
    for start in range(0, len(data), step):
        parser.feed(view[start : start + step])
    try:
        return parser.finish()
    except ImageRejected as exc:
        return (exc.findings, exc.header, exc.file_sha256, exc.total_length)


# --- a well-formed image ------------------------------------------------------------------------------


def test_a_well_formed_image_parses_with_every_header_field() -> None:
    data = signed_image(
        MANUFACTURER_IMAGE,
        manufacturer_code="10b2",
        image_type=0x0203,
        file_version="0102000a",
        header_string="ESME Zähler 1.2",
        min_hw="0100",
        max_hw="0203",
        security_credential_version=2,
        destination=DESTINATION,
    )

    parsed = parse_image(data)

    assert parsed.header == OtaHeader(
        header_version=0x0100,
        header_length=69,
        field_control=0x0007,
        manufacturer_code=ManufacturerId("10B2"),
        image_type=0x0203,
        file_version=FirmwareVersion("0102000A"),
        zigbee_stack_version=0x0002,
        header_string="ESME Zähler 1.2",
        total_image_size=len(data),
        security_credential_version=2,
        upgrade_file_destination=DESTINATION,
        minimum_hardware_version=HardwareVersion("0100"),
        maximum_hardware_version=HardwareVersion("0203"),
    )
    assert parsed.header_length == 69
    assert parsed.total_length == len(data)
    assert parsed.header.upgrade_file_destination_eui64 == "01-02-03-04-05-06-07-08"


def test_each_hash_covers_exactly_the_documented_bytes() -> None:
    header = build_header(
        manufacturer_code="10B2",
        file_version="0102000A",
        manufacturer_image_length=len(MANUFACTURER_IMAGE),
        min_hw="0100",
        max_hw="0203",
        security_credential_version=2,
        destination=DESTINATION,
    )
    data = full_image()

    parsed = parse_image(data)

    assert data.startswith(header + MANUFACTURER_IMAGE + b"\x40\x00")
    assert parsed.file_sha256 == hashlib.sha256(data).hexdigest()
    assert parsed.manufacturer_image_sha256 == hashlib.sha256(MANUFACTURER_IMAGE).hexdigest()
    assert parsed.signed_sha256 == hashlib.sha256(header + MANUFACTURER_IMAGE).hexdigest()
    assert parsed.manufacturer_image_offset == len(header) == 69
    assert parsed.manufacturer_image_length == len(MANUFACTURER_IMAGE)
    assert parsed.signed_length == len(header) + len(MANUFACTURER_IMAGE) == len(data) - 66
    assert parsed.signature == data[-64:]


def test_header_bytes_beyond_the_known_fields_are_signed_but_not_part_of_the_manufacturer_image() -> None:
    header = build_header(
        manufacturer_code="10B2",
        file_version="0102000A",
        manufacturer_image_length=len(MANUFACTURER_IMAGE),
        extension=b"\xaa" * 7,
    )
    signed = header + MANUFACTURER_IMAGE
    data = signed + b"\x40\x00" + raw_signature(MANUFACTURER_KEY, signed)

    parsed = parse_image(data)

    assert parsed.header_length == parsed.manufacturer_image_offset == 63
    assert parsed.manufacturer_image_sha256 == hashlib.sha256(MANUFACTURER_IMAGE).hexdigest()
    assert parsed.signed_sha256 == hashlib.sha256(signed).hexdigest()
    assert verify_signature(parsed, [MANUFACTURER_KEY.public_key()]) == 0


def test_the_dcc_file_name_is_manufacturer_image_type_and_version_in_upper_case_hex() -> None:
    parsed = parse_image(
        signed_image(MANUFACTURER_IMAGE, manufacturer_code="a1", image_type=0x00AB, file_version="1f")
    )

    assert parsed.header.dcc_file_name == "00A1-00AB-0000001F"


@pytest.mark.parametrize(
    ("credential", "destination", "hardware"), list(product([False, True], repeat=3)), ids=str
)
def test_optional_fields_are_present_exactly_when_the_field_control_announces_them(
    credential: bool, destination: bool, hardware: bool
) -> None:
    data = signed_image(
        MANUFACTURER_IMAGE,
        security_credential_version=7 if credential else None,
        destination=DESTINATION if destination else None,
        min_hw="0001" if hardware else None,
        max_hw="FFFE" if hardware else None,
    )

    parsed = parse_image(data)

    header = parsed.header
    assert header.field_control == credential * 1 + destination * 2 + hardware * 4
    assert (
        header.header_length
        == parsed.manufacturer_image_offset
        == 56 + credential + 8 * destination + 4 * hardware
    )
    assert header.security_credential_version == (7 if credential else None)
    assert header.upgrade_file_destination == (DESTINATION if destination else None)
    assert header.minimum_hardware_version == ("0001" if hardware else None)
    assert header.maximum_hardware_version == ("FFFE" if hardware else None)
    assert parsed.manufacturer_image_sha256 == hashlib.sha256(MANUFACTURER_IMAGE).hexdigest()


def test_a_hardware_range_of_one_version_is_not_inverted() -> None:
    header = parse_image(signed_image(MANUFACTURER_IMAGE, min_hw="0102", max_hw="0102")).header

    assert header.minimum_hardware_version == header.maximum_hardware_version == "0102"


def test_the_header_string_may_fill_all_32_bytes_without_a_nul() -> None:
    assert (
        parse_image(signed_image(MANUFACTURER_IMAGE, header_string="A" * 32)).header.header_string == "A" * 32
    )


# --- the manufacturer signature ----------------------------------------------------------------------


def test_the_signature_verifies_with_the_manufacturers_key_and_names_its_index() -> None:
    parsed = parse_image(full_image())
    third = ec.generate_private_key(ec.SECP256R1())

    keys = [OTHER_KEY.public_key(), third.public_key(), MANUFACTURER_KEY.public_key()]

    assert verify_signature(parsed, keys) == 2
    assert require_valid_signature(parsed, keys) == 2


def test_the_signature_does_not_verify_with_another_manufacturers_key() -> None:
    parsed = parse_image(full_image())

    assert verify_signature(parsed, [OTHER_KEY.public_key()]) is None
    with pytest.raises(ImageRejected) as caught:
        require_valid_signature(parsed, [OTHER_KEY.public_key()])
    assert caught.value.findings == [
        Finding(
            ImageProblem.SIGNATURE_INVALID,
            "the signature verifies with none of the 1 public key(s) registered for manufacturer 10B2",
        )
    ]
    assert caught.value.header == parsed.header
    assert caught.value.file_sha256 == parsed.file_sha256


def test_without_registered_keys_the_signature_cannot_verify() -> None:
    with pytest.raises(ImageRejected) as caught:
        require_valid_signature(parse_image(full_image()), [])
    assert caught.value.findings == [
        Finding(
            ImageProblem.SIGNATURE_INVALID,
            "no public key is registered for manufacturer 10B2, so the signature cannot verify",
        )
    ]


@pytest.mark.parametrize(
    "offset",
    [14, 57, 69, 69 + len(MANUFACTURER_IMAGE) // 2, 69 + len(MANUFACTURER_IMAGE) - 1, -64, -33, -32, -1],
    ids=[
        "header file version",
        "header destination",
        "first image byte",
        "middle image byte",
        "last image byte",
        "first byte of r",
        "last byte of r",
        "first byte of s",
        "last byte of s",
    ],
)
def test_flipping_any_one_signed_or_signature_byte_breaks_the_signature(offset: int) -> None:
    data = bytearray(full_image())
    data[offset] ^= 0x01

    parsed = parse_image(bytes(data))

    assert verify_signature(parsed, [MANUFACTURER_KEY.public_key()]) is None


def test_a_malleated_signature_is_accepted_as_a_meter_accepts_it() -> None:
    """Decision: s and n - s are both valid raw ECDSA; GBCS devices do not insist on low s, so neither
    does the library. The CPL identity (the Manufacturer Image hash) is the same for both files; only
    the whole-file hash differs, which is why the CPL is compared with the former."""
    data = full_image()
    s = int.from_bytes(data[-32:], "big")
    twin = data[:-32] + (P256_ORDER - s).to_bytes(32, "big")

    original, malleated = parse_image(data), parse_image(twin)

    assert verify_signature(malleated, [MANUFACTURER_KEY.public_key()]) == 0
    assert malleated.manufacturer_image_sha256 == original.manufacturer_image_sha256
    assert malleated.signed_sha256 == original.signed_sha256
    assert malleated.file_sha256 != original.file_sha256


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 0), (0, 1), (1, 0), (P256_ORDER, 1), (1, P256_ORDER), (2**256 - 1, 2**256 - 1)],
)
def test_a_signature_with_r_or_s_out_of_range_does_not_verify_and_does_not_raise(r: int, s: int) -> None:
    data = full_image()[:-64] + r.to_bytes(32, "big") + s.to_bytes(32, "big")

    assert verify_signature(parse_image(data), [MANUFACTURER_KEY.public_key()]) is None


def test_keys_on_other_curves_never_verify() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()

    assert verify_signature(parse_image(full_image()), [p384, MANUFACTURER_KEY.public_key()]) == 1


def test_a_manufacturer_public_key_loads_from_pem_and_only_p256_is_taken() -> None:
    def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    loaded = load_public_key(pem(MANUFACTURER_KEY))
    assert verify_signature(parse_image(full_image()), [loaded]) == 0

    with pytest.raises(ValueError, match="signed with ECDSA P-256 keys; this is a secp384r1 key"):
        load_public_key(pem(ec.generate_private_key(ec.SECP384R1())))
    private_pem = MANUFACTURER_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="holds a private key"):
        load_public_key(private_pem)
    with pytest.raises(ValueError, match="not a PEM public key"):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n")


# --- named problems ----------------------------------------------------------------------------------
# Offsets as the format gives them: header version at 4, header length at 6, field control at 8,
# header string at 20, total image size at 52; the signature length is the file's last 66 bytes' first 2.

FOUR_THOUSAND_BYTES = signed_image(bytes(4000 - 56 - 66))
PROBLEM_CASES: list[tuple[ImageProblem, Callable[[], bytes], list[Finding]]] = [
    (
        ImageProblem.BAD_MAGIC,
        lambda: b"PK\x03\x04" + full_image()[4:],
        [
            Finding(
                ImageProblem.BAD_MAGIC,
                "the file starts with 50 4B 03 04, not 1E F1 EE 0B: the OTA file identifier 0x0BEEF11E, little-endian",
            )
        ],
    ),
    (
        ImageProblem.BAD_MAGIC,
        lambda: b"MZ",
        [
            Finding(
                ImageProblem.BAD_MAGIC,
                "the file starts with 4D 5A, not 1E F1 EE 0B: the OTA file identifier 0x0BEEF11E, little-endian",
            )
        ],
    ),
    (
        ImageProblem.UNSUPPORTED_HEADER_VERSION,
        lambda: patched(full_image(), 4, "<H", 0x0200),
        [
            Finding(
                ImageProblem.UNSUPPORTED_HEADER_VERSION,
                "OTA header version is 0x0200; only 0x0100 is defined, so the rest cannot be read",
            )
        ],
    ),
    (
        ImageProblem.HEADER_LENGTH_LIES,
        lambda: patched(full_image(), 6, "<H", 60),
        [
            Finding(
                ImageProblem.HEADER_LENGTH_LIES,
                "header length field says 60 bytes; the fixed header and the optional fields its field control (0x0007) announces take 69",
            )
        ],
    ),
    (
        ImageProblem.HEADER_LENGTH_LIES,
        lambda: patched(FOUR_THOUSAND_BYTES, 6, "<H", 3990),
        [
            Finding(
                ImageProblem.HEADER_LENGTH_LIES,
                "header length field says 3,990 bytes, beyond the file: the total image size field (4,000 bytes) leaves at most 3,934 before the 66-byte signature block",
            )
        ],
    ),
    (
        ImageProblem.TOTAL_SIZE_LIES,
        lambda: FOUR_THOUSAND_BYTES + b"junk",
        [Finding(ImageProblem.TOTAL_SIZE_LIES, "header says the file is 4,000 bytes; it is 4,004")],
    ),
    (
        ImageProblem.TOTAL_SIZE_LIES,
        lambda: patched(FOUR_THOUSAND_BYTES, 52, "<I", 4096),
        [
            Finding(
                ImageProblem.TRUNCATED,
                "the file is 4,000 bytes long and stops inside the Manufacturer Image (bytes 56–4,029), by the header's total image size",
            ),
            Finding(ImageProblem.TOTAL_SIZE_LIES, "header says the file is 4,096 bytes; it is 4,000"),
        ],
    ),
    (
        ImageProblem.TRUNCATED,
        lambda: FOUR_THOUSAND_BYTES[:3990],
        [
            Finding(
                ImageProblem.TRUNCATED,
                "the file is 3,990 bytes long and stops inside the signature (bytes 3,936–3,999), by the header's total image size",
            ),
            Finding(ImageProblem.TOTAL_SIZE_LIES, "header says the file is 4,000 bytes; it is 3,990"),
        ],
    ),
    (
        ImageProblem.TRUNCATED,
        lambda: full_image()[:40],
        [
            Finding(
                ImageProblem.TRUNCATED,
                "the file is 40 bytes long and stops inside the 56-byte fixed OTA header",
            )
        ],
    ),
    (
        ImageProblem.TRUNCATED,
        lambda: b"",
        [Finding(ImageProblem.TRUNCATED, "the file is empty; an OTA image starts with a 56-byte header")],
    ),
    (
        ImageProblem.BAD_SIGNATURE_LENGTH,
        lambda: patched(FOUR_THOUSAND_BYTES, 4000 - 66, "<H", 0x0048),
        [
            Finding(
                ImageProblem.BAD_SIGNATURE_LENGTH,
                "signature length field (bytes 3,934–3,935) is 0x0048 (72); GBCS images carry a 64-byte raw r‖s signature (0x0040)",
            )
        ],
    ),
    (
        ImageProblem.UNKNOWN_FIELD_CONTROL_BITS,
        lambda: patched(full_image(), 8, "<H", 0x8017),
        [
            Finding(
                ImageProblem.UNKNOWN_FIELD_CONTROL_BITS,
                "field control is 0x8017: bit(s) 4, 15 announce optional fields OTA does not define (known: bit 0 security credential version, bit 1 upgrade file destination, bit 2 hardware versions)",
            )
        ],
    ),
    (
        ImageProblem.BAD_HEADER_STRING,
        lambda: patched(signed_image(MANUFACTURER_IMAGE, header_string="ESME v1"), 25, "<B", 0xFF),
        [
            Finding(
                ImageProblem.BAD_HEADER_STRING,
                "header string is not UTF-8: byte 0xFF at position 5 of 32 (file offset 25) invalid start byte",
            )
        ],
    ),
    (
        ImageProblem.BAD_HEADER_STRING,
        lambda: signed_image(MANUFACTURER_IMAGE, header_string="ESME\x07v1"),
        [
            Finding(
                ImageProblem.BAD_HEADER_STRING,
                "header string has control character U+0007 at character 4; only NUL padding at its end is allowed",
            )
        ],
    ),
    (
        ImageProblem.BAD_HEADER_STRING,
        lambda: signed_image(MANUFACTURER_IMAGE, header_string="ESME\x00v1"),
        [
            Finding(
                ImageProblem.BAD_HEADER_STRING,
                "header string has control character U+0000 at character 4; only NUL padding at its end is allowed",
            )
        ],
    ),
    (
        ImageProblem.HARDWARE_RANGE_INVERTED,
        lambda: signed_image(MANUFACTURER_IMAGE, min_hw="0203", max_hw="0100"),
        [
            Finding(
                ImageProblem.HARDWARE_RANGE_INVERTED,
                "minimum hardware version 0203 is above the maximum 0100",
            )
        ],
    ),
    (
        ImageProblem.EMPTY_MANUFACTURER_IMAGE,
        lambda: signed_image(b""),
        [
            Finding(
                ImageProblem.EMPTY_MANUFACTURER_IMAGE,
                "the 56-byte header is followed directly by the signature block: the Manufacturer Image is empty",
            )
        ],
    ),
]


@pytest.mark.parametrize(
    ("problem", "make", "findings"), PROBLEM_CASES, ids=[str(case[0]) for case in PROBLEM_CASES]
)
def test_each_problem_is_named_with_a_specific_detail(
    problem: ImageProblem, make: Callable[[], bytes], findings: list[Finding]
) -> None:
    data = make()

    rejected = rejection(data)

    assert problem in rejected.problems
    assert rejected.findings == findings
    assert rejected.file_sha256 == hashlib.sha256(data).hexdigest()
    assert rejected.total_length == len(data)
    assert str(rejected) == "; ".join(f"{finding.problem}: {finding.detail}" for finding in findings)


def test_every_named_problem_is_proven_by_a_case() -> None:
    proven = {case[0] for case in PROBLEM_CASES} | {ImageProblem.SIGNATURE_INVALID}

    assert proven == set(ImageProblem)
    assert all(problem.summary for problem in ImageProblem)


def test_the_format_document_names_every_problem_with_an_example() -> None:
    document = (Path(__file__).resolve().parents[2] / "docs" / "firmware-image-format.md").read_text()

    assert all(f"| `{problem}` |" in document for problem in ImageProblem)
    proven_details = [finding for _, _, findings in PROBLEM_CASES for finding in findings]
    for problem in {case[0] for case in PROBLEM_CASES}:  # its example is a message the parser really gives
        assert any(f.problem is problem and f.detail in document for f in proven_details), problem


def test_a_rejected_image_still_reports_the_header_it_could_read() -> None:
    rejected = rejection(signed_image(MANUFACTURER_IMAGE, min_hw="0203", max_hw="0100"))

    assert rejected.header is not None
    assert rejected.header.dcc_file_name == "10B2-0001-0102000A"
    assert rejected.header.minimum_hardware_version == "0203"


def test_all_problems_found_are_reported_together() -> None:
    data = patched(
        signed_image(MANUFACTURER_IMAGE, header_string="ESME\x07", min_hw="0203", max_hw="0100"),
        8,
        "<H",
        0x000C,
    )

    assert rejection(data + b"extra").problems == [
        ImageProblem.UNKNOWN_FIELD_CONTROL_BITS,
        ImageProblem.BAD_HEADER_STRING,
        ImageProblem.HARDWARE_RANGE_INVERTED,
        ImageProblem.TOTAL_SIZE_LIES,
    ]


def test_a_file_cut_at_any_byte_is_truncated_and_never_fails_otherwise() -> None:
    header = build_header(
        manufacturer_code="10B2",
        file_version="0102000A",
        manufacturer_image_length=40,
        min_hw="0100",
        max_hw="0203",
        security_credential_version=2,
        destination=DESTINATION,
        extension=b"\x00" * 5,
    )
    signed = header + bytes(range(40))
    data = signed + b"\x40\x00" + raw_signature(MANUFACTURER_KEY, signed)
    assert parse_image(data).header_length == 74

    for cut in range(len(data)):
        problems = set(rejection(data[:cut]).problems)
        assert ImageProblem.TRUNCATED in problems, cut
        assert problems <= {ImageProblem.TRUNCATED, ImageProblem.TOTAL_SIZE_LIES}, cut


# --- any input at all --------------------------------------------------------------------------------

MAGIC_AND_VERSION = b"\x1e\xf1\xee\x0b\x00\x01"
SMALL_IMAGE = full_image(b"firmware" * 4)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid image with a few bytes changed, a length field lying, or its end cut or extended."""
    data = bytearray(SMALL_IMAGE)
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        offset, fmt = draw(st.sampled_from([(6, "<H"), (8, "<H"), (52, "<I"), (len(data) - 66, "<H")]))
        limit = 2 ** (8 * struct.calcsize(fmt)) - 1
        value = draw(st.one_of(st.integers(0, 200), st.integers(0, limit)))
        struct.pack_into(fmt, data, offset, value)
    end = draw(st.one_of(st.just(len(data)), st.integers(0, len(data))))
    return bytes(data[:end]) + draw(st.one_of(st.just(b""), st.binary(max_size=80)))


ANY_INPUT = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=400).map(lambda rest: MAGIC_AND_VERSION + rest),
    mutated_images(),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_INPUT)
def test_any_bytes_yield_a_parsed_image_or_a_rejection_and_nothing_else(data: bytes) -> None:
    try:
        parsed = parse_image(data)
    except ImageRejected as exc:
        assert exc.findings
        assert exc.total_length == len(data)
        return
    assert parsed.total_length == parsed.header.total_image_size == len(data)
    assert parsed.signed_length + 66 == len(data)
    assert len(parsed.signature) == 64
    assert data[parsed.signed_length : parsed.signed_length + 2] == b"\x40\x00"
    start, end = parsed.manufacturer_image_offset, parsed.signed_length
    assert parsed.manufacturer_image_sha256 == hashlib.sha256(data[start:end]).hexdigest()
    assert parsed.signed_sha256 == hashlib.sha256(data[:end]).hexdigest()
    verify_signature(parsed, [MANUFACTURER_KEY.public_key()])  # a verdict, never an exception


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_INPUT, st.integers(1, 97))
def test_any_bytes_streamed_in_any_chunk_size_give_the_one_shot_result(data: bytes, chunk_size: int) -> None:
    assert outcome(data, chunk_size) == outcome(data)


HEADER_TEXT = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "Zs"), max_codepoint=0x2FF), max_size=32
).filter(lambda text: len(text.encode()) <= 32 and text == text.rstrip("\0"))


@st.composite
def well_formed_images(draw: st.DrawFn) -> tuple[bytes, dict[str, object], bytes]:
    """Any image the format allows, built from the format's description, with the fields it holds."""
    hardware = draw(st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)).map(sorted))
    fields: dict[str, object] = {
        "manufacturer_code": f"{draw(st.integers(0, 0xFFFF)):04X}",
        "image_type": draw(st.integers(0, 0xFFFF)),
        "file_version": f"{draw(st.integers(0, 0xFFFFFFFF)):08X}",
        "header_string": draw(HEADER_TEXT),
        "security_credential_version": draw(st.none() | st.integers(0, 255)),
        "destination": draw(st.none() | st.binary(min_size=8, max_size=8)),
        "min_hw": None if hardware is None else f"{hardware[0]:04X}",
        "max_hw": None if hardware is None else f"{hardware[1]:04X}",
    }
    manufacturer_image = draw(st.binary(min_size=1, max_size=2000))  # none at all is a named problem
    return (
        build_image(manufacturer_image, private_key=MANUFACTURER_KEY, **fields),  # type: ignore[arg-type]
        fields,
        manufacturer_image,
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(well_formed_images(), st.integers(1, 4096))
def test_any_well_formed_image_parses_back_to_the_fields_it_was_built_with(
    built: tuple[bytes, dict[str, object], bytes], chunk_size: int
) -> None:
    data, fields, manufacturer_image = built
    parsed = outcome(data, chunk_size)
    assert isinstance(parsed, ParsedImage), parsed
    header = parsed.header
    assert (header.manufacturer_code, header.image_type, header.file_version) == (
        fields["manufacturer_code"],
        fields["image_type"],
        fields["file_version"],
    )
    assert header.header_string == fields["header_string"]
    assert header.security_credential_version == fields["security_credential_version"]
    assert header.upgrade_file_destination == fields["destination"]
    assert (header.minimum_hardware_version, header.maximum_hardware_version) == (
        fields["min_hw"],
        fields["max_hw"],
    )
    assert header.total_image_size == parsed.total_length == len(data)
    assert parsed.manufacturer_image_sha256 == hashlib.sha256(manufacturer_image).hexdigest()
    assert parsed.file_sha256 == hashlib.sha256(data).hexdigest()
    assert verify_signature(parsed, [OTHER_KEY.public_key(), MANUFACTURER_KEY.public_key()]) == 1


# --- streaming ---------------------------------------------------------------------------------------

SMALL_STREAM = full_image(bytes(range(251)) * 80)  # about 20 KB
LARGE_STREAM = full_image(bytes(range(251)) * 10_000)  # about 2.4 MiB


@pytest.mark.parametrize(
    ("data", "chunk_size"),
    [
        (SMALL_STREAM, 1),
        (SMALL_STREAM, 7),
        (SMALL_STREAM, 4096),
        (SMALL_STREAM, MIB),
        (LARGE_STREAM, 7),
        (LARGE_STREAM, 4096),
        (LARGE_STREAM, MIB),
        (SMALL_STREAM[:-10], 1),
        (LARGE_STREAM[:-10], 4096),
        (LARGE_STREAM + b"x", MIB),
    ],
    ids=[
        "20KB-by-1",
        "20KB-by-7",
        "20KB-by-4096",
        "20KB-by-1MiB",
        "2MiB-by-7",
        "2MiB-by-4096",
        "2MiB-by-1MiB",
        "truncated-by-1",
        "truncated-by-4096",
        "overlong-by-1MiB",
    ],
)
def test_streaming_in_chunks_gives_the_one_shot_result(data: bytes, chunk_size: int) -> None:
    assert outcome(data, chunk_size) == outcome(data)


def test_a_50_mb_image_streams_through_in_constant_memory() -> None:
    manufacturer_image = bytes(range(256)) * (50 * MIB // 256)
    data = signed_image(manufacturer_image)
    view = memoryview(data)
    parser = OtaStreamParser()
    held = []

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for start in range(0, len(data), MIB):
            parser.feed(view[start : start + MIB])
            held.append(parser.buffered_bytes)
        parsed = parser.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert max(held) <= 56 + 66 < MIB
    assert peak < MIB
    assert parser.bytes_fed == len(data)
    assert parsed.manufacturer_image_sha256 == hashlib.sha256(manufacturer_image).hexdigest()
    assert verify_signature(parsed, [MANUFACTURER_KEY.public_key()]) == 0


def test_a_parser_reads_one_image_only() -> None:
    parser = OtaStreamParser()
    parser.feed(SMALL_IMAGE)
    parser.finish()

    with pytest.raises(RuntimeError):
        parser.feed(b"more")
    with pytest.raises(RuntimeError):
        parser.finish()

"""CPL identifiers and values, normalised once at the edge and typed from there on.

Hex identifiers are upper-case and fixed width (manufacturer, model and hardware ids 4 digits,
firmware versions 8); SHA-256 digests are 64 lower-case hex digits, the form `sha256sum` prints.
Every normaliser raises `InvalidValue` with a reason a person can act on.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NewType, cast

ManufacturerId = NewType("ManufacturerId", str)
ModelId = NewType("ModelId", str)
HardwareVersion = NewType("HardwareVersion", str)
FirmwareVersion = NewType("FirmwareVersion", str)
Sha256Hex = NewType("Sha256Hex", str)

Cell = str | int | float | bool | dt.date | dt.datetime | dt.timedelta | dt.time | None


class InvalidValue(ValueError):
    """A cell or argument that cannot be read as the value it should hold; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeviceType(StrEnum):
    ESME = "ESME"
    GSME = "GSME"
    PPMID = "PPMID"
    HCALCS = "HCALCS"
    CHF = "CHF"
    GPF = "GPF"

    @property
    def in_library_scope(self) -> bool:
        """R1: the library covers the CPL devices other than the Type 2 comms hub and gas proxy."""
        return self in LIBRARY_DEVICE_TYPES


LIBRARY_DEVICE_TYPES = frozenset({DeviceType.ESME, DeviceType.GSME, DeviceType.PPMID, DeviceType.HCALCS})


class SmetsVersion(StrEnum):
    SMETS1 = "SMETS1"
    SMETS2 = "SMETS2"


class CplStatus(StrEnum):
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"
    SUSPENDED = "suspended"
    EXPIRED = "expired"


_HEX = re.compile(r"[0-9A-Fa-f]+")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_FOLDABLE = re.compile(r"[A-Za-z0-9 .,\-_/()&'\t]+")


def _cell_text(value: Cell, what: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidValue(f"{what} is empty")
    if isinstance(value, bool | dt.date | dt.time | dt.timedelta):
        raise InvalidValue(f"{what} is a {type(value).__name__}, not text")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidValue(f"{what} {value!r} is a number with a fraction; format the column as text")
        value = int(value)
    return str(value).strip()


def _hex_id(value: Cell, width: int, what: str, example: str) -> str:
    """Hex of at most `width` digits, zero-padded: Excel drops leading zeros from all-digit ids."""
    text = _cell_text(value, what)
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    if not _HEX.fullmatch(text):
        raise InvalidValue(
            f"{what} {text!r} is not hexadecimal: up to {width} digits 0-9 and A-F, like {example}"
        )
    if len(text) > width:
        raise InvalidValue(f"{what} {text!r} has {len(text)} hex digits, at most {width} allowed")
    return text.upper().zfill(width)


def manufacturer_id(value: Cell) -> ManufacturerId:
    return ManufacturerId(_hex_id(value, 4, "manufacturer id", "10B2"))


def model_id(value: Cell) -> ModelId:
    return ModelId(_hex_id(value, 4, "model id", "0001"))


def hardware_version(value: Cell) -> HardwareVersion:
    return HardwareVersion(_hex_id(value, 4, "hardware version", "0100"))


# [0-9], not \d: \d matches the digits of every script, which no version is written in.
_DOTTED = re.compile(r"[0-9]{1,2}(\.[0-9]{1,2}){3}")


_CANONICAL_FIRMWARE = re.compile(r"[0-9A-F]{8}")
_CANONICAL_SHA256 = re.compile(r"[0-9a-f]{64}")


def firmware_version(value: Cell) -> FirmwareVersion:
    """8 hex digits; also accepts 0x-prefixed, lower-case and BCD-style dotted forms (1.2.10.4)."""
    if type(value) is str and len(value) == 8 and _CANONICAL_FIRMWARE.fullmatch(value):
        return FirmwareVersion(value)
    text = _cell_text(value, "firmware version")
    if "." in text:
        if not _DOTTED.fullmatch(text):
            raise InvalidValue(
                f"firmware version {text!r}: a dotted version needs four decimal parts of 0-99, like 1.2.10.4"
            )
        return FirmwareVersion("".join(part.zfill(2) for part in text.split(".")))
    return FirmwareVersion(_hex_id(text, 8, "firmware version", "01020A04"))


_HASH_SEPARATORS = re.compile(r"[\s:]+")


def sha256_hex(value: Cell, what: str = "image hash") -> Sha256Hex:
    if type(value) is str and len(value) == 64 and _CANONICAL_SHA256.fullmatch(value):
        return Sha256Hex(value)
    text = _cell_text(value, what)
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    text = _HASH_SEPARATORS.sub("", text)
    if not _HEX.fullmatch(text):
        raise InvalidValue(f"{what} is not hexadecimal: a SHA-256 is 64 digits 0-9 and a-f")
    if len(text) != 64:
        raise InvalidValue(f"{what} has {len(text)} hex digits; a SHA-256 has 64")
    return Sha256Hex(text.lower())


def _all_canonical(cells: Sequence[Cell], length: int, digits: bytes) -> bool:
    """Whether every cell is a `str` of `length` of `digits`, checked over the column at once in C: the
    cells a normaliser's first line returns as they are (`_CANONICAL_SHA256`, `_CANONICAL_FIRMWARE`)."""
    if set(map(type, cells)) != {str}:
        return False
    texts = cast("Sequence[str]", cells)
    if set(map(len, texts)) != {length}:
        return False
    joined = "".join(texts)
    return joined.isascii() and not joined.encode("ascii").translate(None, digits)


def canonical_sha256_column(cells: Sequence[Cell]) -> bool:
    """Whether `sha256_hex` would return every cell as it is (64 digits 0-9 and a-f)."""
    return _all_canonical(cells, 64, b"0123456789abcdef")


def canonical_firmware_version_column(cells: Sequence[Cell]) -> bool:
    """Whether `firmware_version` would return every cell as it is (8 digits 0-9 and A-F)."""
    return _all_canonical(cells, 8, b"0123456789ABCDEF")


_DEVICE_TYPE_NAMES: dict[str, DeviceType] = {
    **{t.value.lower(): t for t in DeviceType},
    "electricitysmartmeteringequipment": DeviceType.ESME,
    "gassmartmeteringequipment": DeviceType.GSME,
    "prepaymentinterfacedevice": DeviceType.PPMID,
    "prepaymentmeterinterfacedevice": DeviceType.PPMID,
    "hanconnectedauxiliaryloadcontrolswitch": DeviceType.HCALCS,
    "communicationshubfunction": DeviceType.CHF,
    "gasproxyfunction": DeviceType.GPF,
}


def _folded(text: str) -> str:
    """Letters and digits of a name cell, lower-cased: spacing and punctuation may vary, but any other
    character (an emoji, a control character) makes the cell unreadable rather than being dropped."""
    if not _FOLDABLE.fullmatch(text):
        return ""
    return _NON_ALNUM.sub("", text.lower())


def device_type(value: Cell) -> DeviceType:
    text = _cell_text(value, "device type")
    found = _DEVICE_TYPE_NAMES.get(_folded(text))
    if found is None:
        allowed = ", ".join(t.value for t in DeviceType)
        raise InvalidValue(f"device type {text!r} is not one of {allowed}")
    return found


def smets_version(value: Cell) -> SmetsVersion:
    """A SMETS generation (the filters' and reports' word); a full CPL cell such as `SMETS2 v4.1`
    reads as its generation."""
    text = _cell_text(value, "SMETS version")
    folded = _folded(text)
    if folded in ("smets1", "1"):
        return SmetsVersion.SMETS1
    if folded in ("smets2", "2"):
        return SmetsVersion.SMETS2
    try:
        return technical_specification(text).generation
    except InvalidValue:
        raise InvalidValue(f"SMETS version {text!r} is not SMETS1 or SMETS2") from None


class Specification(StrEnum):
    """The technical specification a firmware version was certified against: SMETS1, SMETS2, or the
    Communications Hub Technical Specification (CHTS) for hubs."""

    SMETS1 = "SMETS1"
    SMETS2 = "SMETS2"
    CHTS = "CHTS"

    @property
    def generation(self) -> SmetsVersion:
        # Communications hubs certified against the CHTS serve SMETS2 installations.
        return SmetsVersion.SMETS1 if self is Specification.SMETS1 else SmetsVersion.SMETS2


@dataclass(frozen=True, slots=True)
class TechnicalSpecification:
    """What the CPL's SMETS/CHTS column says of one firmware version: `SMETS2 v4.1`, `CHTS v1.3`, or a
    bare `SMETS2` (version None). `version` holds the digits alone (`4.1`)."""

    specification: Specification
    version: str | None = None

    @property
    def generation(self) -> SmetsVersion:
        return self.specification.generation

    def __str__(self) -> str:
        return specification_text(self.specification, self.version)


def specification_text(specification: str, version: str | None) -> str:
    """How the library writes a technical specification: `SMETS2 v4.1`, or `SMETS2` with no version."""
    return str(specification) if version is None else f"{specification} v{version}"


# `SMETS2 v4.1`, `smets 2 V3.2`, `SMETS1 (v1.2)`, `SMETS2 - version 4.1`, `CHTS v1.3`, `2`, `SMETS2`.
_SPECIFICATION = re.compile(
    r"(?:(?P<name>smets|chts)\s*)?(?P<generation>[12])?"
    r"(?:\s*[-,:;/(]?\s*(?:v|ver\.?|version)?\s*(?P<version>[0-9]{1,2}(?:\.[0-9]{1,3}){0,2})\s*\)?)?",
    re.IGNORECASE,
)


def technical_specification(value: Cell) -> TechnicalSpecification:
    """The SMETS/CHTS cell of a CPL row, in the spellings people use (case, `v`/`V`/none, spaces)."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        value = f"{value:g}" if isinstance(value, float) else str(value)
    text = _cell_text(value, "SMETS version")
    match = _SPECIFICATION.fullmatch(_WHITESPACE.sub(" ", text))
    wanted = f"SMETS version {text!r} is not a technical specification like SMETS2, SMETS2 v4.1 or CHTS v1.3"
    if match is None:
        raise InvalidValue(wanted)
    name, generation, version = match.group("name"), match.group("generation"), match.group("version")
    if name is not None and name.lower() == "chts":
        if generation is not None:
            raise InvalidValue(wanted)
        return TechnicalSpecification(Specification.CHTS, version)
    if generation is None:
        raise InvalidValue(wanted)
    return TechnicalSpecification(Specification(f"SMETS{generation}"), version)


_STATUS_NAMES: dict[str, CplStatus] = {
    **{s.value: s for s in CplStatus},
    "certified": CplStatus.ACTIVE,
    "current": CplStatus.ACTIVE,
    "removed": CplStatus.WITHDRAWN,
    "revoked": CplStatus.WITHDRAWN,
}


def cpl_status(value: Cell) -> CplStatus:
    text = _cell_text(value, "status")
    found = _STATUS_NAMES.get(_folded(text))
    if found is None:
        allowed = ", ".join(s.value for s in CplStatus)
        raise InvalidValue(f"status {text!r} is not one of {allowed}")
    return found


_GBCS = re.compile(r"(?:gbcs)?\s*v?\s*([0-9]{1,2}(?:\.[0-9]{1,2}){0,2})", re.IGNORECASE)


def gbcs_version(value: Cell) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        value = f"{value:g}" if isinstance(value, float) else str(value)
    text = _cell_text(value, "GBCS version")
    match = _GBCS.fullmatch(text)
    if match is None:
        raise InvalidValue(f"GBCS version {text!r} is not a version like v3.2")
    return "v" + match.group(1)


_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What no one-line text a person writes holds: C0 and C1 controls, and lone surrogates (no UTF-8 for
# them); PostgreSQL cannot even store a NUL.
_UNWRITTEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def control_character(text: str) -> str | None:
    """The first control character (or lone surrogate) in a line of text, as `U+XXXX`; None if none."""
    found = _UNWRITTEN.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


# What a reader cannot see: separators (Zs, Zl, Zp), controls (Cc), format characters (Cf: zero-width
# spaces and joiners, bidi marks, the BOM, soft hyphens), unassigned and private code points, combining
# marks (they add to a letter, not beside it), and the blanks whose category says letter or symbol
# (the Hangul fillers, the combining grapheme joiner, the blank braille pattern).
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"})
_BLANK_SYMBOLS = frozenset("\u115f\u1160\u3164\uffa0\u034f\u2800")


def visible_length(text: str) -> int:
    """How many characters of `text` a person sees: whitespace, controls and invisible format
    characters (U+200B and the like) do not count. For minimum lengths of text people must write, such
    as a withdrawal reason: ten zero-width spaces are not a reason."""
    return sum(
        1
        for ch in text
        if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
        and ch not in _BLANK_SYMBOLS
        and not unicodedata.category(ch).startswith("M")
    )


def name(value: Cell, what: str, max_length: int = 200) -> str:
    """A one-line name a person types (a party's name): runs of whitespace fold to one space."""
    text = _WHITESPACE.sub(" ", _cell_text(value, what))
    if len(text) > max_length:
        raise InvalidValue(f"{what} is {len(text)} characters long, at most {max_length} allowed")
    if _CONTROL.search(text):
        raise InvalidValue(f"{what} contains control characters")
    return text


# What a spreadsheet cell may hold besides printable text: tabs and line breaks (Alt+Enter in Excel).
_CELL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def cell_text(value: Cell, what: str, max_length: int = 200) -> str:
    """Text from the CPL exactly as written (quotes, commas, line breaks, any script), only trimmed at
    its ends, where a spreadsheet shows no difference; a Windows or old Mac line break reads as `\\n`."""
    text = _cell_text(value, what).replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > max_length:
        raise InvalidValue(f"{what} is {len(text)} characters long, at most {max_length} allowed")
    if found := _CELL_CONTROL.search(text):
        raise InvalidValue(f"{what} contains the control character U+{ord(found.group()):04X}")
    return text


_EXCEL_EPOCH = dt.date(1899, 12, 30)
# ASCII digits only: `str.isdigit` also accepts '²', which int() refuses, and '٣', which it reads as 3.
_SERIAL = re.compile(r"[0-9]{1,6}")
_EARLIEST = dt.date(1990, 1, 1)
_LATEST = dt.date(2100, 12, 31)
_TEXT_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%d/%m/%Y",
    "%d-%m-%Y",
    "%d.%m.%Y",
    "%d %b %Y",
    "%d %B %Y",
    "%d-%b-%Y",
    "%d-%B-%Y",
    "%d-%b-%y",
    "%b %d %Y",
    "%B %d %Y",
)


def _plausible(day: dt.date, what: str, text: str) -> dt.date:
    if not _EARLIEST <= day <= _LATEST:
        raise InvalidValue(f"{what} {text} is outside {_EARLIEST.year}-{_LATEST.year}")
    return day


def date(value: Cell, what: str) -> dt.date:
    """A date from a date cell, an Excel serial number, or text (ISO, or day first as GB writes it)."""
    if isinstance(value, dt.datetime):
        return _plausible(value.date(), what, value.date().isoformat())
    if isinstance(value, dt.date):
        return _plausible(value, what, value.isoformat())
    if isinstance(value, dt.time | dt.timedelta):
        # What a reader makes of a date cell before 1900, or of a cell formatted as a time.
        raise InvalidValue(f"{what} is a time of day ({value}), not a date")
    text = _cell_text(value, what)
    if _SERIAL.fullmatch(text):
        return _plausible(_EXCEL_EPOCH + dt.timedelta(days=int(text)), what, f"(Excel serial {text})")
    candidate = text.split("T")[0] if "T" in text else text.split(" 00:00")[0]
    candidate = _WHITESPACE.sub(" ", candidate.replace(",", ""))
    # strptime's %d and %Y take the digits of any script; a CPL date is written in 0-9.
    for fmt in _TEXT_DATE_FORMATS if candidate.isascii() else ():
        try:
            parsed = dt.datetime.strptime(candidate, fmt).date()
        except ValueError:
            continue
        return _plausible(parsed, what, repr(text))
    raise InvalidValue(f"{what} {text!r} is not a date (use 2024-03-31, 31/03/2024 or 31 Mar 2024)")


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_day(value: object) -> dt.date | None:
    """A day written exactly YYYY-MM-DD in the digits 0-9 (how the graph writes dates, and all an
    argument, a query parameter or a cursor may hold), or None. `date.fromisoformat` alone would take
    `20240331`, week dates (`2024-W13-7`) and digits of other scripts."""
    if not isinstance(value, str) or _ISO_DAY.fullmatch(value) is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:  # a month or day out of range
        return None


def optional_text(value: Cell, what: str, max_length: int = 64) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return cell_text(value, what, max_length)

"""A generated corpus of odd ids, global ids and cursors (issue 15): text that `str.isdigit` accepts and
`int()` refuses, digits of other scripts that `int()` reads, numbers past what the id columns hold, and
ids and cursors forged around them. Every door must answer each with a 4xx or `BAD_USER_INPUT` naming
the argument: never a 5xx, never `INTERNAL_ERROR`, and never a stream that stops half-way."""

from __future__ import annotations

import base64
import json
import re
import unicodedata

from cfl_graph.row_ids import MAX_ROW_ID

# Every code point below U+3000 (and the mathematical and full-width digits above it) that Python calls
# a digit or numeric but that is not 0-9: superscripts, subscripts, circled and other numerals,
# fractions, and the decimal digits of every script. One of each kind, chosen by its name.
_KINDS = ("SUPERSCRIPT", "SUBSCRIPT", "CIRCLED", "ROMAN", "VULGAR", "FULLWIDTH", "MATHEMATICAL BOLD")


def _odd_digits() -> list[str]:
    chosen: dict[str, str] = {}
    for code in [*range(0x80, 0x3000), *range(0xFF10, 0xFF1A), *range(0x1D7CE, 0x1D800)]:
        ch = chr(code)
        if not (ch.isdigit() or ch.isnumeric()):
            continue
        name = unicodedata.name(ch, "")
        kind = next((k for k in _KINDS if k in name), None)
        # Decimal digits of other scripts: one per script (Arabic-Indic, Devanagari, Thai, ...).
        script = name.split(" DIGIT ")[0] if " DIGIT " in name and ch.isdecimal() else None
        key = kind or script or f"other {name.split()[0] if name else code}"
        chosen.setdefault(key, ch)
    # The named kinds first, then one digit of each script.
    return sorted(chosen.values(), key=lambda ch: not any(k in unicodedata.name(ch, "") for k in _KINDS))


def odd_numbers() -> list[str]:
    """Text no door may read as a row's number."""
    digits = _odd_digits()
    mixed = ["1²", "²1", "1٣", "٣1", "12३", "１２"]
    words = ["".join(digits[i : i + 3]) for i in range(0, min(len(digits), 30), 3)]  # runs of them
    too_big = [str(MAX_ROW_ID + 1), str(2**63 - 1), str(2**63), str(2**64), "9" * 25, "9" * 4_400]
    spelled = ["-1", "+1", " 1", "1 ", "1\t", "1_0", "1e3", "0x1F", "1.0", "−1", "0", "00", "1\x00", ""]
    return [*digits[:40], *mixed, *words, *too_big, *spelled]


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(raw).decode()


def odd_global_ids() -> list[str]:
    """Global ids whose number is odd, whose key is odd, or that are no id at all."""
    numbers = odd_numbers()[::3]
    made = [_b64(f"{kind}:{number}") for kind in ("LibraryImage", "CplSnapshot") for number in numbers]
    made += [_b64(f"DeviceModel:{part}:0001:0100") for part in ("²²²²", "١٠B2", "10b2\x00", "X" * 300)]
    made += [_b64(f"CertifiedFirmware:10B2:0001:0100:{part}") for part in ("١.٢.١٠.٤", "9" * 40)]
    made += [_b64(b"\xff\xfe\xfd"), "%%%", "=" * 8, "A" * 10_000, "٣", "TGlicmFyeUltYWdlOsKy\n", "\x00"]
    return made


def odd_cursors() -> list[str]:
    lists = [
        ["DeviceModel", 1, 2, 3],
        ["DeviceModel", "²", "0001", "0100"],
        ["DeviceModel", None, None, None],
        ["DeviceModel", {"a": 1}, [], True],
        ["Gap", "not a date", "10B2", "0001", "0100", "01000000"],
        ["Gap", 20240101, "10B2", "0001", "0100", "01000000"],
        ["Gap", "2024-02-30", "10B2", "0001", "0100", "01000000"],
        ["Gap", "٢٠٢٤-٠١-٠١", "10B2", "0001", "0100", "01000000"],
        ["Gap"],
        ["Nope", "x"],
        [],
        {"DeviceModel": 1},
    ]
    made = [_b64(json.dumps(value)) for value in lists]
    made += ["abc", "a", "%%%", _b64(b"\xff\xfe"), _b64(b"not json"), _b64("[" * 5_000), "Q" * 100_000]
    made += [_b64(json.dumps(["DeviceModel", "9" * 5_000, "0001", "0100"]))]
    return made


def odd_dates() -> list[str]:
    """Text that is no day written YYYY-MM-DD: days past the month, other spellings `date.fromisoformat`
    takes (compact, ISO week), digits of other scripts, words, times."""
    return [
        "2024-13-01",
        "2024-02-30",
        "2023-02-29",
        "0000-00-00",
        "20240331",
        "2024-W13-7",
        "2024-3-31",
        "２０２４-03-31",
        "٢٠٢٤-٠٣-٣١",
        "31/03/2024",
        "yesterday",
        "2024-03-31T00:00:00",
        "9999999-01-01",
        " 2024-03-31",
        "",
    ]


def odd_ranges() -> list[str]:
    """Range headers no download can honour as they are written (RFC 9110 14.1.1)."""
    return [
        "bytes=abc",
        "bytes=1-0",
        "bytes=99999999999999999999-",
        "bytes=-",
        "bytes=--1",
        "items=0-1",
        "bytes=0-1,",
        "bytes=1.5-3",
        "bytes=0x10-20",
        "bytes = 0-1",
        "bytes=0-0,-1",
        "bytes=-99999999999999999999999",
    ]


# The words of decoders, drivers and libraries, which no refusal may pass on: a client cannot act on
# "Incorrect padding"; it can on "a cursor is URL-safe base64".
LIBRARY_WORDS = re.compile(
    r"Incorrect padding|codec can't (?:de|en)code|Expecting (?:value|property name|',' delimiter)"
    r"|line \d+ column \d+|isoformat|must be in \d+\.\.\d+|day is out of range for month"
    r"|invalid literal for int|[Nn]on-hexadecimal|Odd-length string|unconverted data remains"
    r"|does not match format|Invalid base64|binascii|JSONDecodeError|Traceback \(most recent"
    r"|asyncpg|sqlalchemy|psycopg|aiosqlite|sqlite3\.|OperationalError|IntegrityError|DataError"
    r"|ValueError|TypeError|KeyError|AttributeError|has no attribute|NoneType|not subscriptable"
    r"|unhashable type|int\(\) argument|Extra data:|Unterminated string|Invalid control character"
)

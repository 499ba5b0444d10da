"""A generated corpus of hostile CPL files (issue 9): each case is a file and what the sync must say.

Run as `python -m tests.corpus.hostile_cpl OUT_DIR` to write the files for a look; the tests generate
them into a temporary folder. Every case is built from valid rows by a single, named change, so a
failure names exactly what was mishandled, and each says the words its first error must contain: the
row, the column and why, or why the file as a whole is refused.
"""

from __future__ import annotations

import codecs
import datetime as dt
import functools
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import xlsxwriter

from cpl_sync.columns import HEADINGS, Column
from cpl_sync.problems import column_letter
from tests.fixtures.cpl_files import HEADER, Formula, Merge, row, write_csv, write_xlsx

# Values no cell of that column may hold, with (lower-case) words the refusal's reason must contain.
BAD_VALUES: dict[Column, list[tuple[str, Any, str]]] = {
    Column.MANUFACTURER_ID: [
        ("empty", "", "manufacturer id is empty"),
        ("non-hex", "10G2", "is not hexadecimal"),
        ("too long", "10B21", "at most 4 allowed"),
        ("emoji", "1😀B2", "is not hexadecimal"),
        ("formula", '=HYPERLINK("http://x")', "is not hexadecimal"),
        ("negative", "-1", "is not hexadecimal"),
        ("full-width digits", "１０Ｂ２", "is not hexadecimal"),
        ("a Cyrillic letter that looks Latin", "10В2", "is not hexadecimal"),
        ("a zero-width space", "10\u200bB2", "is not hexadecimal"),
        ("0x and nothing", "0x", "is not hexadecimal"),
        ("CSV injection", "+10B2", "is not hexadecimal"),
        ("an h suffix", "10B2h", "is not hexadecimal"),
    ],
    Column.MODEL_ID: [
        ("empty", "", "model id is empty"),
        ("non-hex", "00ZZ", "is not hexadecimal"),
        ("too long", "000001", "at most 4 allowed"),
        ("spaces", "0 01", "is not hexadecimal"),
        ("emoji", "0😀01", "is not hexadecimal"),
        ("a hash sign", "#001", "is not hexadecimal"),
    ],
    Column.HARDWARE_VERSION: [
        ("empty", "", "hardware version is empty"),
        ("non-hex", "01X0", "is not hexadecimal"),
        ("too long", "010000", "at most 4 allowed"),
        ("emoji", "01😀0", "is not hexadecimal"),
    ],
    Column.FIRMWARE_VERSION: [
        ("empty", "", "firmware version is empty"),
        ("non-hex", "0100000G", "is not hexadecimal"),
        ("too long", "010000000", "at most 8 allowed"),
        ("three dotted parts", "1.2.3", "four decimal parts"),
        ("dotted part over 99", "1.2.300.4", "four decimal parts"),
        ("emoji", "01😀0000", "is not hexadecimal"),
        ("a zero-width joiner", "0100\u200d0000", "is not hexadecimal"),
        ("0x twice", "0x0x01000000", "is not hexadecimal"),
        ("five dotted parts", "1.2.3.4.5", "four decimal parts"),
        ("a negative dotted part", "1.-2.3.4", "four decimal parts"),
    ],
    Column.DEVICE_TYPE: [
        ("empty", "", "device type is empty"),
        ("unknown", "TOASTER", "is not one of"),
        ("emoji", "ESME😀", "is not one of"),
        ("a zero-width space", "ES\u200bME", "is not one of"),
        ("a Cyrillic letter that looks Latin", "ЕSME", "is not one of"),
        ("a variation selector", "ESME\ufe0f", "is not one of"),
    ],
    Column.SMETS_VERSION: [
        ("empty", "", "smets version is empty"),
        ("unknown", "SMETS9", "is not a technical specification"),
        ("emoji", "SMETS2😀", "is not a technical specification"),
        ("a Cyrillic letter that looks Latin", "SМETS2", "is not a technical specification"),
        ("a generation and a version run together", "SMETS2.4", "is not a technical specification"),
        ("a version without its specification", "v4.1", "is not a technical specification"),
    ],
    Column.IMAGE_HASH: [
        ("empty", "", "image hash is empty"),
        ("short", "ab" * 31, "has 62 hex digits"),
        ("long", "ab" * 33, "has 66 hex digits"),
        ("non-hex", "zz" * 32, "is not hexadecimal"),
        ("a stray letter among separators", "ab" * 16 + " g " + "ab" * 15, "is not hexadecimal"),
        ("emoji", "ab" * 31 + "😀", "is not hexadecimal"),
        ("full-width hex", "ａｂ" * 32, "is not hexadecimal"),
        ("a SHA-1", "ab" * 20, "has 40 hex digits"),
        ("base64 of a digest", "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=", "is not hexadecimal"),
        ("CSV injection", '=HYPERLINK("http://evil.example","' + "ab" * 32 + '")', "is not hexadecimal"),
    ],
    Column.STATUS: [
        ("empty", "", "status is empty"),
        ("unknown", "maybe", "is not one of"),
        ("emoji", "active😀", "is not one of"),
        ("a zero-width space", "act\u200bive", "is not one of"),
        ("a Cyrillic letter that looks Latin", "аctive", "is not one of"),
    ],
    Column.DATE_ADDED: [
        ("empty", "", "date added is empty"),
        ("month-first ambiguous nonsense", "13/13/2024", "is not a date"),
        ("words", "last Tuesday", "is not a date"),
        ("before 1990", "1899-12-31", "outside 1990-2100"),
        ("after 2100", "2101-01-01", "outside 1990-2100"),
        ("impossible day", "2024-02-30", "is not a date"),
        ("serial too large", 99999999, "is not a date"),
        ("month-first", "03/31/2024", "is not a date"),
        ("an ordinal suffix", "31st March 2024", "is not a date"),
        ("a quarter", "Q1 2024", "is not a date"),
        ("a bare year", "2024", "outside 1990-2100"),
    ],
    Column.GBCS_VERSION: [
        ("words", "three point two", "is not a version like v3.2"),
        ("emoji", "v3😀", "is not a version like v3.2"),
    ],
    Column.CPA_REFERENCE: [
        ("control characters", "CPA\x07-2024-0001", "contains the control character u+0007"),
        ("too long", "C" * 65, "at most 64 allowed"),
    ],
    Column.CPA_EXPIRY: [
        ("words", "whenever", "is not a date"),
        ("impossible day", "2029-02-30", "is not a date"),
    ],
    Column.MANUFACTURER_NAME: [
        ("empty", "", "manufacturer name is empty"),
        ("control characters", "Northfield\x00Metering", "contains the control character u+0000"),
        ("too long", "N" * 201, "at most 200 allowed"),
    ],
    Column.MODEL_NAME: [
        ("empty", "", "model name is empty"),
        ("control characters", "NM\x07E470", "contains the control character u+0007"),
        ("too long", "M" * 201, "at most 200 allowed"),
    ],
}

# Dates in the three shapes a CPL carries them: date cells, Excel serial numbers and text. Every good
# shape sits in one file with one bad value, so the refusal must name the bad row and nothing else.
GOOD_DATES: list[tuple[str, Any]] = [
    ("date cell", dt.date(2024, 3, 31)),
    ("date and time cell", dt.datetime(2024, 3, 31, 13, 30)),
    ("serial number", 45382),
    ("serial number as text", "45382"),
    ("ISO text", "2024-03-31"),
    ("day-first text", "31/03/2024"),
    ("day-first text with dashes", "31-03-2024"),
    ("day-first text with dots", "31.03.2024"),
    ("day and short month", "31 Mar 2024"),
    ("day and month", "31 March 2024"),
    ("day-month-year with dashes", "31-Mar-2024"),
]
BAD_DATES: list[tuple[str, str, Any, str]] = [
    # (shape, label, value, reason) -- date and number cells exist in XLSX only
    ("date cell", "before 1990", dt.date(1985, 6, 1), "outside 1990-2100"),
    ("date cell", "after 2100", dt.date(2101, 1, 1), "outside 1990-2100"),
    ("date cell", "a time of day only", dt.time(9, 30), "is a time of day"),
    ("serial number", "zero", 0, "outside 1990-2100"),
    ("serial number", "negative", -3, "is not a date"),
    ("number cell", "with a fraction", 45382.5, "a number with a fraction"),
    ("serial number", "seven digits", 1000000, "is not a date"),
    ("text", "month-first", "03/31/2024", "is not a date"),
    ("text", "no 31 February", "31/02/2024", "is not a date"),
    ("text", "month 13", "2024-13-01", "is not a date"),
    ("text", "an ordinal suffix", "31st March 2024", "is not a date"),
    ("text", "a quarter", "Q1 2024", "is not a date"),
]

# A list over the row limit: a million rows against a deployment's CFL_CPL_MAX_ROWS of 10,000.
MILLION = 1_000_000
MILLION_LIMIT = 10_000


@dataclass(frozen=True)
class Case:
    name: str
    rows: list[dict[Column, Any]]
    header: list[str]
    fmt: str  # csv or xlsx
    # Words (lower case) the first refusal must contain; the first is where (row, column), then why.
    expect: tuple[str, ...]
    encoding: str = "utf-8"
    # Writes the file itself when the usual writers cannot make it (crafted bytes, several sheets).
    build: Callable[[Path], Path] | None = None
    max_rows: int | None = None  # a row limit for this case, as CFL_CPL_MAX_ROWS sets it
    errors: int | None = None  # exactly this many errors, when the case says so
    xlsx: dict[str, Any] = field(default_factory=dict)  # more options for write_xlsx
    # Applied with a warning, not refused: the row merely disagrees with the others of its device model
    # (which give the value kept), or an optional cell cannot be read (left empty). `expect` then holds
    # the words of the first warning.
    warns: bool = False


def _ok(**overrides: Any) -> dict[Column, Any]:
    return row(**overrides)


def _second(**overrides: Any) -> dict[Column, Any]:
    """A second valid version of the same device model (row 3 of a file), with `overrides`."""
    return _ok(**{"firmware_version": "01010000", "image_hash": "cd" * 32, **overrides})


def _stranger(**overrides: Any) -> dict[Column, Any]:
    """A valid row of another manufacturer's device model (row 3 of a file): nothing else in the file
    speaks for its device model or its manufacturer."""
    return _ok(**{"manufacturer_id": "20C3", "model_id": "0002", "image_hash": "cd" * 32, **overrides})


# Facts other rows can give (a device model's type and name, a manufacturer's name), and optional ones.
MODEL_FACTS = frozenset({Column.MANUFACTURER_NAME, Column.MODEL_NAME, Column.DEVICE_TYPE})
OPTIONAL_FACTS = frozenset({Column.GBCS_VERSION, Column.CPA_REFERENCE, Column.CPA_EXPIRY})


def _where(row_number: int, column: Column, header: Sequence[str] = HEADER) -> str:
    index = list(header).index(HEADINGS[column])
    return f'row {row_number}, column {column_letter(index)} "{HEADINGS[column]}"'.lower()


def _versions(count: int, **overrides: Any) -> list[dict[Column, Any]]:
    return [
        _ok(**{"firmware_version": f"{i + 1:08X}", "image_hash": f"{i:064x}", **overrides})
        for i in range(count)
    ]


def cases() -> Iterator[Case]:
    yield from _bad_cells()
    yield from _whole_files()
    yield from _duplicates()
    yield from _dates()
    yield from _sheets_and_cells()
    yield from _encodings()
    yield from _crafted_workbooks()


def _bad_cells() -> Iterator[Case]:
    for column, values in BAD_VALUES.items():
        for label, value, reason in values:
            for fmt in ("csv", "xlsx"):
                nul = fmt == "csv" and "\x00" in str(value)
                # A NUL makes a CSV a binary file, refused as a whole before any row is read.
                expect: tuple[str, ...] = ("nul characters",) if nul else (_where(3, column), reason)
                if column in OPTIONAL_FACTS and not nul:
                    rows = [_ok(), _second(**{column.value: value})]
                    yield Case(
                        f"{column.value} {label} ({fmt})",
                        rows,
                        list(HEADER),
                        fmt,
                        (*expect, "left empty"),
                        warns=True,
                    )
                    continue
                if column in MODEL_FACTS and not nul:
                    rows = [_ok(), _second(**{column.value: value})]
                    yield Case(
                        f"{column.value} {label}, the model's other row giving it ({fmt})",
                        rows,
                        list(HEADER),
                        fmt,
                        (*expect, "which is kept"),
                        warns=True,
                    )
                    rows = [_ok(), _stranger(**{column.value: value})]
                else:
                    rows = [_ok(), _second(**{column.value: value})]
                yield Case(f"{column.value} {label} ({fmt})", rows, list(HEADER), fmt, expect, errors=1)
    # Cells only a workbook can hold.
    for column, value, reason in [
        (Column.MANUFACTURER_ID, 12.5, "a number with a fraction"),
        (Column.HARDWARE_VERSION, 1.5, "a number with a fraction"),
        (Column.MODEL_ID, 123456.0, "at most 4 allowed"),
        (Column.IMAGE_HASH, True, "is a bool, not text"),
        (Column.MANUFACTURER_ID, False, "is a bool, not text"),
        (Column.FIRMWARE_VERSION, dt.date(2024, 1, 1), ", not text"),
        (Column.STATUS, dt.time(12, 0), "is a time, not text"),
    ]:
        yield Case(
            f"{column.value} holding the {type(value).__name__} cell {value!r} (xlsx)",
            [_ok(), _second(**{column.value: value})],
            list(HEADER),
            "xlsx",
            (_where(3, column), reason),
            errors=1,
        )


def _whole_files() -> Iterator[Case]:
    for fmt in ("csv", "xlsx"):
        yield Case(f"no rows at all ({fmt})", [], list(HEADER), fmt, ("row 1:", "no data rows"))
        for missing in Column:
            if missing in (Column.GBCS_VERSION, Column.CPA_REFERENCE, Column.CPA_EXPIRY):
                continue
            header = [h for c, h in zip(Column, HEADER, strict=True) if c is not missing]
            yield Case(
                f"missing column {missing.value} ({fmt})",
                [_ok()],
                header,
                fmt,
                ("row 1:", "lacks required column(s)", f'"{HEADINGS[missing].lower()}"'),
            )
        yield Case(
            f"device model changes type between rows ({fmt})",
            [_ok(), _second(device_type="GSME")],
            list(HEADER),
            fmt,
            (_where(3, Column.DEVICE_TYPE), "differs from esme on row 2", "most recently listed row is kept"),
            warns=True,
        )
        yield Case(
            f"one bad row among many ({fmt})",
            [*_versions(300), _ok(firmware_version="FFFFFFFF", image_hash="not a hash")],
            list(HEADER),
            fmt,
            (_where(302, Column.IMAGE_HASH), "is not hexadecimal"),
            errors=1,
        )
        yield Case(
            f"the header repeated below the rows ({fmt})",
            [_ok(), dict(zip(Column, HEADER, strict=True))],
            list(HEADER),
            fmt,
            (_where(3, Column.MANUFACTURER_ID), "'manufacturer id' is not hexadecimal"),
        )
        yield Case(
            f"two headings for one column ({fmt})",
            [_ok()],
            [*HEADER, "Hash"],
            fmt,
            (
                "row 1:",
                'two columns mean "manufacturer image hash"',
                'j "manufacturer image hash" and o "hash"',
            ),
            build=_two_hash_columns_csv if fmt == "csv" else _two_hash_columns_xlsx,
        )


def _duplicates() -> Iterator[Case]:
    different = "with a different image hash"
    spelt = [
        ("the same key", {}, Column.IMAGE_HASH, different),
        ("the firmware version with 0x", {"firmware_version": "0x01000000"}, Column.IMAGE_HASH, different),
        ("the firmware version dotted", {"firmware_version": "1.0.0.0"}, Column.IMAGE_HASH, different),
        ("the ids in lower case", {"manufacturer_id": "10b2"}, Column.IMAGE_HASH, different),
        ("the model id without leading zeros", {"model_id": "1"}, Column.IMAGE_HASH, different),
    ]
    for fmt in ("csv", "xlsx"):
        for label, overrides, column, reason in spelt:
            yield Case(
                f"duplicate key with different hashes: {label} ({fmt})",
                [_ok(), _ok(image_hash="cd" * 32, **overrides)],
                list(HEADER),
                fmt,
                (_where(3, column), "duplicate of row 2", reason),
                errors=1,
            )
        yield Case(
            f"the same row twice ({fmt})",
            [_ok(), _ok()],
            list(HEADER),
            fmt,
            (_where(3, Column.FIRMWARE_VERSION), "duplicate of row 2"),
            errors=1,
        )
        yield Case(
            f"duplicate key 300 rows apart ({fmt})",
            [*_versions(300), _ok(firmware_version=f"{1:08X}", image_hash="ef" * 32)],
            list(HEADER),
            fmt,
            (_where(302, Column.IMAGE_HASH), "duplicate of row 2", different),
            errors=1,
        )
    yield Case(
        "duplicate key with the model id a number (xlsx)",
        [_ok(), _ok(model_id=1, image_hash="cd" * 32)],
        list(HEADER),
        "xlsx",
        (_where(3, Column.IMAGE_HASH), "duplicate of row 2", different),
        errors=1,
    )


def _dates() -> Iterator[Case]:
    for column in (Column.DATE_ADDED, Column.CPA_EXPIRY):
        what = "date added" if column is Column.DATE_ADDED else "cpa expiry date"
        for shape, label, value, reason in BAD_DATES:
            for fmt in ("xlsx",) if shape.endswith("cell") else ("csv", "xlsx"):
                good = [
                    _ok(**{"firmware_version": f"{i + 1:08X}", "image_hash": f"{i:064x}", column.value: day})
                    for i, (_, day) in enumerate(GOOD_DATES)
                    if fmt == "xlsx" or not isinstance(day, dt.date)
                ]
                bad = _ok(firmware_version="FFFFFFFF", image_hash="ee" * 32, **{column.value: value})
                optional = column in OPTIONAL_FACTS
                yield Case(
                    f"{what}: good dates of every shape, then a {shape} {label} ({fmt})",
                    [*good, bad],
                    list(HEADER),
                    fmt,
                    (
                        _where(len(good) + 2, column),
                        f"{what}",
                        reason,
                        *(("left empty",) if optional else ()),
                    ),
                    errors=None if optional else 1,
                    warns=optional,
                )


def _sheets_and_cells() -> Iterator[Case]:
    """Wrong sheets, merged cells, formulas: what a workbook edited by hand brings."""
    yield Case(
        "only a read-me sheet (xlsx)",
        [],
        [],
        "xlsx",
        ('no header row in the first 50 rows of any sheet (sheets: "read me")',),
        build=_readme_only,
    )
    yield Case(
        "the rows on a sheet without a header row (xlsx)",
        [_ok(), _second()],
        [],
        "xlsx",
        ("no header row in the first 50 rows of any sheet",),
        build=lambda path: write_xlsx(path, [_ok(), _second()], header_rows=[]),
    )
    yield Case(
        "the header below row 50 (xlsx)",
        [_ok()],
        list(HEADER),
        "xlsx",
        ("no header row in the first 50 rows",),
        xlsx={"title_rows": [f"Notes line {i}" for i in range(55)]},
    )
    yield Case(
        "a read-me sheet, then a list lacking a column (xlsx)",
        [_ok()],
        [h for h in HEADER if h != HEADINGS[Column.IMAGE_HASH]],
        "xlsx",
        (
            'row 1: header row of sheet "certified products" lacks required column(s)',
            "manufacturer image hash",
        ),
        xlsx={"extra_sheets": ["Read Me"]},
    )
    half = len(HEADER) // 2
    yield Case(
        "the header split over two rows (xlsx)",
        [_ok()],
        list(HEADER),
        "xlsx",
        ("row 1: header row", "lacks required column(s)", '"smets version", "manufacturer image hash"'),
        xlsx={"header_rows": [HEADER[:half], ["" for _ in range(half)] + HEADER[half:]]},
    )
    # "Manufacturer" and "Model" merged over two columns each, "Name" and "ID" in the row below.
    yield Case(
        "merged header cells over a second header row (xlsx)",
        [_ok()],
        list(HEADER),
        "xlsx",
        ("row 1: header row", "lacks required column(s)", '"manufacturer id", "model id"'),
        xlsx={
            "header_rows": [
                ["Manufacturer", "", "Model", "", *HEADER[4:]],
                ["Name", "ID", "Name", "ID"],
            ],
            "merges": [Merge(0, 0, 0, 1, "Manufacturer"), Merge(0, 2, 0, 3, "Model")],
        },
    )
    # A manufacturer id typed once and merged down over the rows of its models.
    yield Case(
        "a data cell merged down over three rows (xlsx)",
        [_ok(), _second(), _ok(firmware_version="01020000", image_hash="ef" * 32)],
        list(HEADER),
        "xlsx",
        (_where(3, Column.MANUFACTURER_ID), "manufacturer id is empty"),
        errors=2,
        xlsx={"merges": [Merge(1, 1, 3, 1, "10B2")]},
    )
    yield Case(
        "a hash merged across into the status column (xlsx)",
        [_ok(), _second()],
        list(HEADER),
        "xlsx",
        (_where(3, Column.STATUS), "status is empty"),
        xlsx={"merges": [Merge(2, 9, 2, 12, "cd" * 32)]},
        errors=1,
    )
    for column, formula, reason in [
        (Column.IMAGE_HASH, Formula("=1/0", "#DIV/0!"), "image hash is empty"),
        (Column.MANUFACTURER_ID, Formula("=Sheet2!A1", "#REF!"), "manufacturer id is empty"),
        (Column.DATE_ADDED, Formula("=NA()", "#N/A"), "date added is empty"),
        (Column.IMAGE_HASH, Formula('=LOWER("AB")'), "has 1 hex digits"),  # never calculated: 0 saved
        (Column.FIRMWARE_VERSION, Formula("=TODAY()", 45382.5), "a number with a fraction"),
        (Column.DEVICE_TYPE, Formula('=IF(TRUE,"TOASTER")', "TOASTER"), "is not one of"),
    ]:
        yield Case(
            f"{column.value} a formula giving {formula.cached!r} (xlsx)",
            [_ok(), (_stranger if column in MODEL_FACTS else _second)(**{column.value: formula})],
            list(HEADER),
            "xlsx",
            (_where(3, column), reason),
            errors=1,
        )
    yield Case(
        "a formula giving a good id, then one giving #REF! (xlsx)",
        [
            _ok(manufacturer_id=Formula('="10"&"B2"', "10B2")),
            _second(manufacturer_id=Formula("=#REF!", "#REF!")),
        ],
        list(HEADER),
        "xlsx",
        (_where(3, Column.MANUFACTURER_ID), "manufacturer id is empty"),
        errors=1,
    )


def _encodings() -> Iterator[Case]:
    # Accented names, so each encoding really differs from ASCII.
    bad_hash = [
        _ok(manufacturer_name="Société Énergie Ltd"),
        _second(image_hash="xyz", model_name="Modèle Ü"),
    ]
    where = (_where(3, Column.IMAGE_HASH), "is not hexadecimal")
    for encoding in ("utf-16", "utf-8-sig", "cp1252"):
        yield Case(f"bad hash in a {encoding} file", bad_hash, list(HEADER), "csv", where, encoding=encoding)
    for label, prefix, codec in [
        ("UTF-16 big-endian with its BOM", codecs.BOM_UTF16_BE, "utf-16-be"),
        ("UTF-16 little-endian with its BOM", codecs.BOM_UTF16_LE, "utf-16-le"),
        ("UTF-8 with the BOM twice", codecs.BOM_UTF8 * 2, "utf-8"),
    ]:
        yield Case(
            f"bad hash in a {label} file",
            bad_hash,
            list(HEADER),
            "csv",
            where,
            build=_encoded(bad_hash, prefix, codec),
        )
    yield Case(
        "UTF-16 without a BOM",
        [_ok()],
        list(HEADER),
        "csv",
        ("nul characters",),
        build=_encoded([_ok()], b"", "utf-16-le"),
    )
    yield Case(
        "UTF-32 with its BOM",
        [_ok()],
        list(HEADER),
        "csv",
        ("csv is utf-32",),
        build=_encoded([_ok()], codecs.BOM_UTF32_LE, "utf-32-le"),
    )
    yield Case(
        "a UTF-16 BOM on an odd number of bytes",
        [_ok()],
        list(HEADER),
        "csv",
        ("utf-16 byte order mark but is not utf-16",),
        build=_with_bytes(codecs.BOM_UTF16_LE + "Manufacturer Name".encode("utf-16-le") + b"\x00\x0a\x00"),
    )
    yield Case(
        "a UTF-8 BOM on bytes that are not UTF-8",
        [_ok()],
        list(HEADER),
        "csv",
        ("utf-8 byte order mark but is not utf-8", "byte 0xe9"),
        build=_encoded([_ok(manufacturer_name="Société Énergie")], codecs.BOM_UTF8, "cp1252"),
    )
    yield Case(
        "UTF-8 text with one Windows-1252 byte",
        [_ok()],
        list(HEADER),
        "csv",
        ("csv mixes encodings", "byte 0xe9"),
        build=_encoded(
            [_ok(manufacturer_name="Société Énergie Ltd"), _second(model_name="Modèle\udce9")], b"", "utf-8"
        ),
    )
    yield Case(
        "bytes that are neither UTF-8 nor Windows-1252",
        [_ok()],
        list(HEADER),
        "csv",
        ("neither utf-8 nor windows-1252", "byte 0x81"),
        build=_encoded([_ok(manufacturer_name="Northfield \udc81 Ltd")], b"", "utf-8"),
    )
    for label, delimiter in [("semicolons", ";"), ("tabs", "\t")]:
        yield Case(
            f"bad hash in a file separated by {label}",
            bad_hash,
            list(HEADER),
            "csv",
            where,
            build=functools.partial(_delimited, bad_hash, delimiter),
        )
    yield Case(
        "bad hash in a file with old Mac line endings",
        bad_hash,
        list(HEADER),
        "csv",
        where,
        build=lambda path: _retyped(write_csv(path, bad_hash), b"\r\n", b"\r"),
    )
    yield Case(
        "a cell longer than a CSV field may be",
        [_ok(), _second(model_name="M" * 200_000)],
        list(HEADER),
        "csv",
        ("csv cannot be read", "field larger than field limit"),
    )
    yield Case(
        "a quote never closed",
        [_ok(), _second(model_name='"NM-E470')],
        list(HEADER),
        "csv",
        ("row 3", "is empty"),
        build=lambda path: _retyped(write_csv(path, [_ok(), _second(model_name="@@")]), b"@@", b'"NM-E470'),
    )
    yield Case(
        "a row with cells missing",
        [_ok()],
        list(HEADER),
        "csv",
        (_where(3, Column.IMAGE_HASH), "image hash is empty"),
        build=lambda path: _appended(
            write_csv(path, [_ok()]), b"Northfield Metering Ltd,10B2,NM,0001,0100,01010000,ESME,SMETS2\r\n"
        ),
    )


def _crafted_workbooks() -> Iterator[Case]:
    yield Case(
        f"{MILLION:,} rows over a limit of {MILLION_LIMIT:,} (xlsx)",
        [],
        list(HEADER),
        "xlsx",
        (f"row {MILLION_LIMIT + 2}:", f"more than {MILLION_LIMIT:,} rows"),
        build=lambda path: write_sparse_xlsx(path, MILLION),
        max_rows=MILLION_LIMIT,
    )
    yield Case(
        "a zip bomb in the sheet (xlsx)",
        [],
        [],
        "xlsx",
        ("likely zip bomb",),
        build=lambda path: write_sparse_xlsx(path, 2, padding=64 * 1024 * 1024, compresslevel=9),
    )
    yield Case(
        "a zip bomb in the shared strings (xlsx)",
        [],
        [],
        "xlsx",
        ("likely zip bomb",),
        build=lambda path: write_sparse_xlsx(
            path, 2, extra_part=("xl/sharedStrings.xml", 64 * 1024 * 1024), compresslevel=9
        ),
    )
    yield Case(
        "a zip that is not a workbook (xlsx)",
        [],
        [],
        "xlsx",
        ("not a readable xlsx workbook",),
        build=_zip_of_notes,
    )
    yield Case(
        "a workbook cut short (xlsx)",
        [],
        [],
        "xlsx",
        ("not a readable xlsx workbook",),
        build=lambda path: _cut(write_xlsx(path, _versions(50))),
    )
    yield Case(
        "a workbook with no sheets (xlsx)",
        [],
        [],
        "xlsx",
        ("no header row", "(sheets: none)"),
        build=lambda path: write_sparse_xlsx(path, 0, sheets=False),
    )


# --- writers for files the ordinary ones cannot make ---------------------------------------------------


def _two_hash_columns_csv(path: Path) -> Path:
    return write_csv(path, [_ok()], header=[*HEADER, "Hash"], columns=[*Column, Column.IMAGE_HASH])


def _two_hash_columns_xlsx(path: Path) -> Path:
    return write_xlsx(path, [_ok()], header=[*HEADER, "Hash"], columns=[*Column, Column.IMAGE_HASH])


def _delimited(rows: Sequence[dict[Column, Any]], delimiter: str, path: Path) -> Path:
    return write_csv(path, rows, delimiter=delimiter)


def _readme_only(path: Path) -> Path:
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("Read Me")
    for r, line in enumerate(
        ["Certified Products List", "The list is published separately.", "Status: draft"]
    ):
        sheet.write_string(r, 0, line)
    workbook.close()
    return path


def _csv_text(rows: Sequence[dict[Column, Any]]) -> str:
    lines = [",".join(HEADER)]
    lines += [",".join("" if r.get(c) is None else str(r[c]) for c in Column) for r in rows]
    return "\r\n".join(lines) + "\r\n"


def _encoded(rows: Sequence[dict[Column, Any]], prefix: bytes, codec: str) -> Callable[[Path], Path]:
    """The rows as CSV text in `codec` after `prefix`; lone surrogates (\\udcXX) become the byte XX."""

    def build(path: Path) -> Path:
        path.write_bytes(prefix + _csv_text(rows).encode(codec, errors="surrogateescape"))
        return path

    return build


def _with_bytes(data: bytes) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return build


def _retyped(path: Path, old: bytes, new: bytes) -> Path:
    path.write_bytes(path.read_bytes().replace(old, new))
    return path


def _appended(path: Path, data: bytes) -> Path:
    with path.open("ab") as handle:
        handle.write(data)
    return path


def _cut(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _zip_of_notes(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "This archive holds no workbook.")
    return path


_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
)


def _workbook_xml(sheets: bool) -> str:
    listed = '<sheet name="Certified Products" sheetId="1" r:id="rId1"/>' if sheets else ""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        f"<sheets>{listed}</sheets></workbook>"
    )


def write_sparse_xlsx(
    path: Path,
    rows: int,
    *,
    padding: int = 0,
    extra_part: tuple[str, int] | None = None,
    sheets: bool = True,
    compresslevel: int = 1,
) -> Path:
    """A real XLSX written as its XML, streamed: the CPL header, then `rows` rows that each hold only a
    manufacturer name. A million rows take a second or two and 5 MB (xlsxwriter needs 150 s).

    `padding` bytes of whitespace after the rows, or an `extra_part` of that many zero bytes, make the
    workbook a zip bomb (compressed at `compresslevel` 9): it expands far more than any real list does."""
    letters = [column_letter(i) for i in range(len(HEADER))]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", _workbook_xml(sheets))
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(
                b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                + f'<dimension ref="A1:{letters[-1]}{rows + 1}"/><sheetData>'.encode()
            )
            heading = "".join(
                f'<c r="{letter}1" t="inlineStr"><is><t>{escape(text)}</t></is></c>'
                for letter, text in zip(letters, HEADER, strict=True)
            )
            sheet.write(f'<row r="1">{heading}</row>'.encode())
            batch: list[str] = []
            for r in range(2, rows + 2):
                batch.append(f'<row r="{r}"><c r="A{r}" t="inlineStr"><is><t>Northfield</t></is></c></row>')
                if len(batch) == 10_000:
                    sheet.write("".join(batch).encode())
                    batch.clear()
            sheet.write("".join(batch).encode())
            for _ in range(padding // (1024 * 1024)):
                sheet.write(b" " * (1024 * 1024))
            sheet.write(b"</sheetData></worksheet>")
        if extra_part is not None:
            name, size = extra_part
            with archive.open(name, "w", force_zip64=True) as part:
                for _ in range(size // (1024 * 1024)):
                    part.write(b"\x00" * (1024 * 1024))
    return path


def write(case: Case, folder: Path, index: int) -> Path:
    path = folder / f"{index:03d}.{case.fmt}"
    if case.build is not None:
        return case.build(path)
    columns = [c for c, h in zip(Column, HEADER, strict=True) if h in case.header]
    if case.fmt == "csv":
        return write_csv(path, case.rows, header=case.header, columns=columns, encoding=case.encoding)
    return write_xlsx(path, case.rows, header=case.header, columns=columns, **case.xlsx)


def main(argv: list[str]) -> None:
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for index, case in enumerate(cases()):
        path = write(case, folder, index)
        print(f"{path.name}\t{case.name}")


if __name__ == "__main__":
    main(sys.argv[1:])

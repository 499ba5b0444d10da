"""A generated corpus of hostile CPL files (issue 9): each case is a file and what the sync must say.

Run as `python -m tests.corpus.hostile_cpl OUT_DIR` to write the files for a look; the tests generate
them into a temporary folder. Every case is built from one valid row by a single, named change, so a
failure names exactly what was mishandled.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpl_sync.columns import HEADINGS, Column
from tests.fixtures.cpl_files import HEADER, row, write_csv, write_xlsx

# Values no cell of that column may hold, with the word the refusal must contain.
BAD_VALUES: dict[Column, list[tuple[str, Any]]] = {
    Column.MANUFACTURER_ID: [
        ("empty", ""),
        ("non-hex", "10G2"),
        ("too long", "10B21"),
        ("emoji", "1😀B2"),
        ("formula", '=HYPERLINK("http://x")'),
        ("negative", "-1"),
        ("fraction", 12.5),
    ],
    Column.MODEL_ID: [("empty", ""), ("non-hex", "00ZZ"), ("too long", "000001"), ("spaces", "0 01")],
    Column.HARDWARE_VERSION: [("empty", ""), ("non-hex", "01X0"), ("too long", "010000")],
    Column.FIRMWARE_VERSION: [
        ("empty", ""),
        ("non-hex", "0100000G"),
        ("too long", "010000000"),
        ("three dotted parts", "1.2.3"),
        ("dotted part over 99", "1.2.300.4"),
        ("emoji", "01😀0000"),
    ],
    Column.DEVICE_TYPE: [("empty", ""), ("unknown", "TOASTER"), ("emoji", "ESME😀")],
    Column.SMETS_VERSION: [("empty", ""), ("unknown", "SMETS9")],
    Column.IMAGE_HASH: [
        ("empty", ""),
        ("short", "ab" * 31),
        ("long", "ab" * 33),
        ("non-hex", "zz" * 32),
        ("a stray letter among separators", "ab" * 16 + " g " + "ab" * 15),
    ],
    Column.STATUS: [("empty", ""), ("unknown", "maybe"), ("emoji", "active😀")],
    Column.DATE_ADDED: [
        ("empty", ""),
        ("month-first ambiguous nonsense", "13/13/2024"),
        ("words", "last Tuesday"),
        ("before 1990", "1899-12-31"),
        ("after 2100", "2101-01-01"),
        ("impossible day", "2024-02-30"),
        ("serial too large", 99999999),
    ],
    Column.MANUFACTURER_NAME: [("empty", ""), ("control characters", "Northfield\x00Metering")],
    Column.MODEL_NAME: [("empty", ""), ("control characters", "NM\x07E470")],
}


@dataclass(frozen=True)
class Case:
    name: str
    rows: list[dict[Column, Any]]
    header: list[str]
    fmt: str  # csv or xlsx
    expect: str  # a word the first refusal must contain (lower case)
    encoding: str = "utf-8"


def _ok(**overrides: Any) -> dict[Column, Any]:
    return row(**overrides)


def cases() -> Iterator[Case]:
    for column, values in BAD_VALUES.items():
        for label, value in values:
            for fmt in ("csv", "xlsx"):
                rows = [
                    _ok(),
                    _ok(**{"firmware_version": "01010000", "image_hash": "cd" * 32, column.value: value}),
                ]
                # A NUL makes a CSV a binary file, refused as a whole before any row is read.
                expect = "nul" if fmt == "csv" and "\x00" in str(value) else "row 3"
                yield Case(f"{column.value} {label} ({fmt})", rows, list(HEADER), fmt, expect)
    # The whole file.
    for fmt in ("csv", "xlsx"):
        yield Case(f"no rows at all ({fmt})", [], list(HEADER), fmt, "")
        for missing in Column:
            if missing in (Column.GBCS_VERSION, Column.CPA_REFERENCE, Column.CPA_EXPIRY):
                continue
            header = [h for c, h in zip(Column, HEADER, strict=True) if c is not missing]
            yield Case(
                f"missing column {missing.value} ({fmt})", [_ok()], header, fmt, HEADINGS[missing].lower()
            )
        yield Case(
            f"duplicate key with different hashes ({fmt})",
            [_ok(), _ok(image_hash="cd" * 32)],
            list(HEADER),
            fmt,
            "row 3",
        )
        yield Case(
            f"device model changes type between rows ({fmt})",
            [_ok(), _ok(firmware_version="01010000", image_hash="cd" * 32, device_type="GSME")],
            list(HEADER),
            fmt,
            "row 3",
        )
        yield Case(
            f"one bad row among many ({fmt})",
            [_ok(firmware_version=f"{i + 1:08X}", image_hash=f"{i:064x}") for i in range(300)]
            + [_ok(firmware_version="FFFFFFFF", image_hash="not a hash")],
            list(HEADER),
            fmt,
            "row 302",
        )
    for encoding in ("utf-16", "utf-8-sig"):
        yield Case(
            f"bad hash in a {encoding} file",
            [_ok(image_hash="xyz")],
            list(HEADER),
            "csv",
            "row 2",
            encoding=encoding,
        )


def write(case: Case, folder: Path, index: int) -> Path:
    path = folder / f"{index:03d}.{case.fmt}"
    if case.fmt == "csv":
        columns = [c for c, h in zip(Column, HEADER, strict=True) if h in case.header]
        return write_csv(path, case.rows, header=case.header, columns=columns, encoding=case.encoding)
    columns = [c for c, h in zip(Column, HEADER, strict=True) if h in case.header]
    return write_xlsx(path, case.rows, header=case.header, columns=columns)


def main(argv: list[str]) -> None:
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for index, case in enumerate(cases()):
        path = write(case, folder, index)
        print(f"{path.name}\t{case.name}")


if __name__ == "__main__":
    main(sys.argv[1:])

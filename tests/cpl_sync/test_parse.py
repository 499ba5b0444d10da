"""Reading CPL files as published: XLSX or CSV, header below title rows, headings in many spellings."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from cpl_sync.columns import Column
from cpl_sync.parse import read_table
from cpl_sync.problems import CplFileRejected, Severity
from cpl_sync.validate import validate
from tests.fixtures.cpl_files import HEADER, row, write_csv, write_xlsx


def rejected_reason(path: Path) -> str:
    with pytest.raises(CplFileRejected) as caught:
        read_table(path)
    return str(caught.value)


def test_header_is_found_below_title_rows_with_sheet_row_numbers(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "cpl.xlsx",
        [row(), row(firmware_version="02000000")],
        title_rows=["Certified Products List", "Published 1 March 2026"],
    )
    table = read_table(path)
    assert table.header.sheet == "Certified Products"
    assert table.header.row == 4  # two titles, a blank row, then the header
    assert [r for r, _ in table.rows] == [5, 6]


def test_leading_blank_columns_keep_spreadsheet_positions(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "cpl.xlsx", [row()], first_col=2)
    table = read_table(path)
    assert table.header.columns[Column.MANUFACTURER_NAME] == 2  # column C
    _, cells = next(table.rows)
    assert cells[table.header.columns[Column.MANUFACTURER_ID]] == "10B2"


def test_headings_match_case_spacing_and_aliases(tmp_path: Path) -> None:
    header = [
        "MANUFACTURER",
        "manufacturer identifier",
        "Model",
        "model_id",
        "HW Version",
        "FW  Version",
        "Type",
        "SMETS",
        "GBCS",
        "Image Hash",
        "CPA Reference",
        "CPA Renewal Date",
        "CPL Status",
        "Date Listed",
    ]
    path = write_csv(tmp_path / "cpl.csv", [row()], header=header)
    table = read_table(path)
    assert set(table.header.columns) == set(Column)
    assert table.header.heading(Column.MANUFACTURER_ID) == "manufacturer identifier"


def test_unknown_headings_are_ignored_not_fatal(tmp_path: Path) -> None:
    columns = [*Column]
    header = [*HEADER, "Comments"]
    path = write_csv(tmp_path / "cpl.csv", [row()], header=header, columns=columns)
    assert read_table(path).header.ignored == ("Comments",)


def test_the_sheet_holding_the_list_is_chosen_among_several(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "cpl.xlsx", [row()], extra_sheets=["Read Me", "Changes"])
    assert read_table(path).header.sheet == "Certified Products"


def test_missing_required_column_is_named_with_the_header_row(tmp_path: Path) -> None:
    columns = [c for c in Column if c is not Column.IMAGE_HASH]
    header = [h for h in HEADER if h != "Manufacturer Image Hash"]
    path = write_xlsx(tmp_path / "cpl.xlsx", [row()], header=header, columns=columns, title_rows=["CPL"])
    reason = rejected_reason(path)
    assert (
        'row 3: header row of sheet "Certified Products" lacks required column(s) "Manufacturer Image Hash"'
        in reason
    )


def test_a_file_without_any_header_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("just,some,numbers\n1,2,3\n")
    assert "no header row in the first 50 rows" in rejected_reason(path)


def test_two_headings_meaning_the_same_column_are_rejected(tmp_path: Path) -> None:
    header = [*HEADER, "Hash"]
    path = write_csv(tmp_path / "cpl.csv", [row()], header=header, columns=[*Column, Column.IMAGE_HASH])
    assert 'two columns mean "Manufacturer Image Hash"' in rejected_reason(path)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
def test_csv_encodings_excel_produces_are_read(tmp_path: Path, encoding: str) -> None:
    path = write_csv(tmp_path / "cpl.csv", [row(manufacturer_name="Société Énergie Ltd")], encoding=encoding)
    table = read_table(path)
    _, cells = next(table.rows)
    assert cells[table.header.columns[Column.MANUFACTURER_NAME]] == "Société Énergie Ltd"
    if encoding == "cp1252":
        assert [n.severity for n in table.notes] == [Severity.WARNING]


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_csv_delimiters_are_sniffed(tmp_path: Path, delimiter: str) -> None:
    path = write_csv(tmp_path / "cpl.csv", [row()], delimiter=delimiter)
    assert set(read_table(path).header.columns) == set(Column)


def test_a_corrupt_workbook_is_rejected_as_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cpl.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    assert "not a readable XLSX workbook" in rejected_reason(path)


def test_a_zip_bomb_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"\x00" * (50 * 1024 * 1024))
    assert "likely zip bomb" in rejected_reason(path)


def test_binary_junk_is_not_read_as_csv(tmp_path: Path) -> None:
    path = tmp_path / "cpl.csv"
    path.write_bytes(b"\x00\x01\x02" * 100)
    assert "NUL" in rejected_reason(path)


def test_a_utf8_bom_on_bytes_that_are_not_utf8_is_rejected_not_a_crash(tmp_path: Path) -> None:
    # It used to escape as a UnicodeDecodeError: the sync failed as an internal error (exit 3).
    path = tmp_path / "cpl.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ",".join(HEADER).encode() + "\r\nSociété".encode("cp1252"))
    assert "UTF-8 byte order mark but is not UTF-8 (byte 0xE9 at offset" in rejected_reason(path)


def test_utf8_text_with_a_stray_windows_1252_byte_is_rejected_rather_than_read_as_mojibake(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cpl.csv"
    path.write_bytes(",".join(HEADER).encode() + "\r\nSociété,".encode() + "Modèle".encode("cp1252"))
    assert "CSV mixes encodings" in rejected_reason(path)


def test_a_utf32_file_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "cpl.csv"
    path.write_bytes(b"\xff\xfe\x00\x00" + ",".join(HEADER).encode("utf-32-le"))
    assert "CSV is UTF-32" in rejected_reason(path)


def test_a_csv_that_cannot_be_read_names_the_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cpl.csv", [row(), row(model_name="M" * 200_000)])
    with pytest.raises(CplFileRejected) as caught:
        validate(read_table(path))  # rows are read as validation asks for them
    assert [str(p) for p in caught.value.problems] == [
        "row 3: CSV cannot be read: field larger than field limit (131072)"
    ]

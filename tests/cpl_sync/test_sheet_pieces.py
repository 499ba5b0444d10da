"""A big worksheet read in pieces on every core reads as the whole sheet does, the reference it replaces:
the same header, the same rows under the same sheet row numbers with the same cells in the same columns,
and the same verdict from validation, errors included. Where the sheet cannot be cut safely, or a piece
cannot be parsed, the rest is read from the whole sheet, and still reads the same (P1, issue 17)."""

from __future__ import annotations

import re
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfl_graph.demo.cpl_data import generate
from cfl_graph.demo.cpl_data import write_xlsx as write_demo_xlsx
from cfl_graph.identifiers import Cell
from cpl_sync import sheet_pieces
from cpl_sync.parse import read_table
from cpl_sync.problems import CplFileRejected
from cpl_sync.validate import validate
from tests.fixtures.cpl_files import HEADER, row, versions, write_xlsx

# Pieces of a few kilobytes, so that a sheet of a few hundred rows is read in dozens of them. A piece is
# never smaller than four times the workbook's other parts (`sheet_pieces.piece_size`).
SMALL_PIECES = 4096


@pytest.fixture(autouse=True)
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces are read where two cores can run them; these tests read them wherever they run."""
    monkeypatch.setattr(sheet_pieces, "_CORES", 2)


def _trimmed(cells: list[Cell]) -> list[Cell]:
    """A row as validation reads it: a missing cell, None and "" are all blank (`validate._blank`)."""
    values: list[Cell] = ["" if cell is None else cell for cell in cells]
    while values and values[-1] == "":
        values.pop()
    return values


def read_rows(path: Path, piece_bytes: int | None) -> tuple[Any, list[tuple[int, list[Cell]]]]:
    table = read_table(path, piece_bytes=piece_bytes)
    return table.header, [(number, _trimmed(cells)) for number, cells in table.rows]


class PieceCount:
    """How many pieces calamine parsed, and from which row the whole sheet was read instead, if it was."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.parsed = 0
        self.whole_from: list[int] = []
        parse, whole_from = sheet_pieces._Workbook.parse, sheet_pieces._Pieces._whole_from

        def counted_parse(workbook: Any, document: bytes) -> Any:
            self.parsed += 1
            return parse(workbook, document)

        def noted_whole_from(pieces: Any, done: int) -> Iterator[list[Cell]]:
            self.whole_from.append(done)
            return whole_from(pieces, done)

        monkeypatch.setattr(sheet_pieces._Workbook, "parse", counted_parse)
        monkeypatch.setattr(sheet_pieces._Pieces, "_whole_from", noted_whole_from)


def assert_reads_alike(path: Path, piece_bytes: int = SMALL_PIECES) -> None:
    whole_header, whole_rows = read_rows(path, None)
    header, rows = read_rows(path, piece_bytes)
    assert header == whole_header
    assert rows == whole_rows


def assert_read_in_pieces_alike(path: Path, monkeypatch: pytest.MonkeyPatch, at_least: int) -> None:
    """Read in `at_least` pieces, none of it from the whole sheet, and read and validated as the whole sheet."""
    pieces = PieceCount(monkeypatch)
    assert_reads_alike(path)
    assert pieces.parsed >= at_least and pieces.whole_from == []
    assert verdict(path, SMALL_PIECES) == verdict(path, None)


def verdict(path: Path, piece_bytes: int | None) -> Any:
    try:
        valid = validate(read_table(path, piece_bytes=piece_bytes))
    except CplFileRejected as rejected:
        return ("rejected", rejected.problems, rejected.error_count, rejected.warnings)
    return ("valid", valid.device_models, valid.firmware, valid.warnings, valid.rows_sha256)


def rewrite_sheet(
    path: Path, member: str, change: Callable[[bytes], bytes], compression: int | None = None
) -> Path:
    """The workbook with one part's XML changed, every other part as it was; each part compressed as it
    was, or as `compression` says."""
    with zipfile.ZipFile(path) as archive:
        parts = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in parts:
            archive.writestr(info, change(data) if info.filename == member else data, compression)
    return path


def many_models(count: int) -> list[dict[Any, Any]]:
    """`count` versions over a few device models, with distinct keys and hashes."""
    return [
        row(
            model_id=f"{index % 7 + 1:04X}",
            firmware_version=f"{index + 1:08X}",
            image_hash=f"{index:064x}",
            date_added=f"2024-{index % 12 + 1:02d}-{index % 27 + 1:02d}",
        )
        for index in range(count)
    ]


# --- the pieces read as the whole sheet -----------------------------------------------------------------------


def test_the_published_layout_read_in_pieces_reads_as_the_whole_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Title rows above a blank row and the header, inline strings, dates as numbers with a date format:
    the demo list, written as the bench writes a million rows."""
    path = tmp_path / "cpl.xlsx"
    write_demo_xlsx(path, generate(600, seed=3))
    assert_read_in_pieces_alike(path, monkeypatch, at_least=8)


def test_shared_strings_offset_columns_and_blank_rows_read_in_pieces_as_the_whole_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written by openpyxl (its own XML, its shared strings): the list starts in column C on row 4 below
    three empty rows, a blank row (no `<row>` element at all) follows every third one, so that pieces start
    after gaps, and some rows carry a note far to the right."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Certified Products"
    for column, heading in enumerate(HEADER, start=3):
        sheet.cell(4, column, heading)
    number = 4
    for index, cells in enumerate(many_models(1500)):
        number += 2 if index % 3 == 0 else 1
        for column, value in enumerate(cells.values(), start=3):
            sheet.cell(number, column, value)
        if index % 131 == 0:
            sheet.cell(number, 40, f"note {index}")
    path = tmp_path / "cpl.xlsx"
    workbook.save(path)
    assert_read_in_pieces_alike(path, monkeypatch, at_least=3)


def test_a_workbook_stored_without_compression_reads_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cpl.xlsx"
    write_demo_xlsx(path, generate(600, seed=6))
    rewrite_sheet(path, "xl/worksheets/sheet1.xml", lambda xml: xml, zipfile.ZIP_STORED)
    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
    assert_read_in_pieces_alike(path, monkeypatch, at_least=8)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(piece_bytes=st.integers(min_value=1, max_value=150_000))
def test_wherever_the_pieces_are_cut_the_sheet_reads_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int
) -> None:
    """Pieces of any size, down to a row each: the floor of four times the other parts lifted."""
    monkeypatch.setattr(sheet_pieces, "_PIECE_TO_REST", 0)
    path = tmp_path / "cpl.xlsx"
    if not path.exists():
        write_demo_xlsx(path, generate(400, seed=5))
    assert_reads_alike(path, piece_bytes)


def test_the_list_on_a_later_sheet_is_found_past_a_big_sheet_without_a_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cpl.xlsx"
    write_xlsx(path, many_models(800), extra_sheets=["Notes"])
    workbook = openpyxl.load_workbook(path)
    notes = workbook["Notes"]
    for index in range(1, 3000):  # numbers and one string: a small shared string table
        notes.cell(index, 1, value="a note about this list, which has no header of its own")
        notes.cell(index, 2, value=index)
    workbook.save(path)
    pieces = PieceCount(monkeypatch)
    assert_reads_alike(path)
    assert read_table(path, piece_bytes=SMALL_PIECES).header.sheet == "Certified Products"
    assert pieces.parsed >= 6  # both sheets were read in pieces


def test_bad_rows_across_pieces_are_reported_as_the_whole_sheet_reports_them(tmp_path: Path) -> None:
    """Duplicates whose first row is pieces before them, unreadable hashes, names spelt two ways: the same
    errors and warnings, in the same order, with the same counts."""
    rows = many_models(900)
    rows[850] = {**rows[10]}  # a duplicate of a row many pieces up
    rows[600] = {**rows[20], "image_hash": "not a hash"}
    for index in range(100, 900, 50):
        rows[index] = {**rows[index], "manufacturer_name": "Northfield Metering Limited"}
    path = write_xlsx(tmp_path / "cpl.xlsx", rows)
    rejected = verdict(path, SMALL_PIECES)
    assert rejected[0] == "rejected"
    assert rejected == verdict(path, None)


# --- what is not cut is read whole ----------------------------------------------------------------------------


def _after_row(number: int, inserted: bytes) -> Callable[[bytes], bytes]:
    def change(xml: bytes) -> bytes:
        end = re.search(rb'<row r="%d"[^>]*>.*?</row>' % number, xml, re.DOTALL)
        assert end is not None
        return xml[: end.end()] + inserted + xml[end.end() :]

    return change


@pytest.mark.parametrize(
    "inserted",
    [
        pytest.param(b"<!-- a row ends with </row> -->", id="a comment holding </row>"),
        pytest.param(b"<?note </row>?>", id="a processing instruction holding </row>"),
    ],
)
def test_a_stretch_that_cannot_be_cut_is_read_from_the_whole_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inserted: bytes
) -> None:
    path = tmp_path / "cpl.xlsx"
    write_demo_xlsx(path, generate(600, seed=7))
    rewrite_sheet(path, "xl/worksheets/sheet1.xml", _after_row(300, inserted))
    pieces = PieceCount(monkeypatch)
    assert_reads_alike(path)
    assert pieces.parsed >= 3  # pieces up to the stretch, then the whole sheet from where they stopped
    assert len(pieces.whole_from) == 1 and 50 < pieces.whole_from[0] <= 300


def test_rows_without_their_numbers_are_read_from_the_whole_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """calamine numbers a row without an `r` after the row before it: right within a piece, but a piece
    that starts with such a row cannot know its number."""
    path = tmp_path / "cpl.xlsx"
    write_demo_xlsx(path, generate(600, seed=8))

    def unnumbered_from_row_200(xml: bytes) -> bytes:
        return re.sub(
            rb'<row r="(\d+)"',
            lambda found: b"<row" if int(found.group(1)) >= 200 else found.group(0),
            xml,
        )

    rewrite_sheet(path, "xl/worksheets/sheet1.xml", unnumbered_from_row_200)
    pieces = PieceCount(monkeypatch)
    assert_reads_alike(path)
    assert len(pieces.whole_from) == 1 and 200 <= pieces.whole_from[0] < 600


def test_a_piece_calamine_cannot_parse_fails_the_file_as_the_whole_sheet_does(tmp_path: Path) -> None:
    path = tmp_path / "cpl.xlsx"
    write_demo_xlsx(path, generate(600, seed=9))
    rewrite_sheet(path, "xl/worksheets/sheet1.xml", _after_row(450, b"<c><v>1</v>"))  # an element left open
    with pytest.raises(CplFileRejected) as whole:
        list(read_table(path, piece_bytes=None).rows)
    with pytest.raises(CplFileRejected) as in_pieces:
        list(read_table(path, piece_bytes=SMALL_PIECES).rows)
    assert in_pieces.value.problems == whole.value.problems


@pytest.mark.parametrize("at", [0.3, 0.7, 0.999])
def test_a_sheet_whose_compressed_bytes_are_damaged_fails_as_the_whole_sheet_does(
    tmp_path: Path, at: float
) -> None:
    """Inflated by ISA-L and checked against the member's CRC-32 and size, as calamine checks them."""
    path = tmp_path / "cpl.xlsx"
    write_demo_xlsx(path, generate(600, seed=12))
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + int(info.compress_size * at)] ^= 0x10
    path.write_bytes(bytes(data))
    outcomes = []
    for piece_bytes in (None, SMALL_PIECES):
        with pytest.raises(CplFileRejected) as refused:
            list(read_table(path, piece_bytes=piece_bytes).rows)
        outcomes.append(refused.value.problems)
    assert outcomes[0] == outcomes[1]


def test_a_small_sheet_or_one_with_a_big_shared_string_table_is_read_whole(tmp_path: Path) -> None:
    """A piece carries the workbook's other parts, shared strings included, and is kept at least four times
    their size: a sheet that would not make two such pieces is read whole."""
    small = write_xlsx(tmp_path / "small.xlsx", versions(3))
    assert sheet_pieces.rows(small, "Certified Products", SMALL_PIECES) is None
    inline = tmp_path / "inline.xlsx"
    write_demo_xlsx(inline, generate(600, seed=4))
    shared = write_xlsx(tmp_path / "shared.xlsx", many_models(1500))  # every hash in the shared strings
    with zipfile.ZipFile(inline) as archive:
        rest = sum(i.file_size for i in archive.infolist() if i.filename != "xl/worksheets/sheet1.xml")
        assert sheet_pieces.piece_size(archive, "xl/worksheets/sheet1.xml", set(), 1) == 4 * rest
        assert sheet_pieces.piece_size(archive, "xl/worksheets/sheet1.xml", set(), 10**9) is None
    with zipfile.ZipFile(shared) as archive:
        assert sheet_pieces.piece_size(archive, "xl/worksheets/sheet1.xml", set(), 1) is None


def test_a_sheet_whose_parts_cannot_be_found_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "cpl.xlsx"
    write_demo_xlsx(path, generate(600, seed=10))
    rewrite_sheet(path, "xl/_rels/workbook.xml.rels", lambda xml: xml.replace(b"worksheets/", b"elsewhere/"))
    with zipfile.ZipFile(path) as archive:
        assert sheet_pieces.worksheet_parts(archive) == {"Certified Products": "xl/elsewhere/sheet1.xml"}
    rewrite_sheet(path, "xl/workbook.xml", lambda xml: xml.replace(b"<sheets>", b"<sheets><!DOCTYPE x>"))
    with zipfile.ZipFile(path) as archive:
        assert sheet_pieces.worksheet_parts(archive) == {}


# --- no thread is left behind ---------------------------------------------------------------------------------


def _piece_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cpl-sheet-")]


def _until_gone() -> list[threading.Thread]:
    deadline = time.monotonic() + 10
    while (left := _piece_threads()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def test_a_reader_that_stops_early_or_is_refused_leaves_no_thread_behind(tmp_path: Path) -> None:
    path = tmp_path / "cpl.xlsx"
    write_demo_xlsx(path, generate(600, seed=11))
    table = read_table(path, piece_bytes=SMALL_PIECES)
    next(table.rows)
    assert _piece_threads()  # cutting and parsing ahead of the reader
    del table
    assert _until_gone() == []

    rows = list(generate(600, seed=11))
    rows[500] = rows[20]  # a duplicate: refused in the last pieces
    bad = tmp_path / "bad.xlsx"
    write_demo_xlsx(bad, rows)
    with pytest.raises(CplFileRejected):
        validate(read_table(bad, piece_bytes=SMALL_PIECES))
    assert _until_gone() == []


def test_the_workbook_a_piece_is_parsed_in_holds_only_what_calamine_reads(tmp_path: Path) -> None:
    """Other worksheets travel as empty sheets: a piece's workbook never copies a big sheet it does not need."""
    path = write_xlsx(tmp_path / "cpl.xlsx", many_models(10), extra_sheets=["Notes"])
    with zipfile.ZipFile(path) as archive:
        parts = sheet_pieces.worksheet_parts(archive)
        sheet = parts["Certified Products"]
        workbook = sheet_pieces._workbook(archive, sheet, "Certified Products", set(parts.values()))
        document = archive.read(sheet)
    copied = dict(workbook.parts)
    assert copied[parts["Notes"]] == sheet_pieces._EMPTY_SHEET
    assert parts["Certified Products"] not in copied
    start, rows = workbook.parse(document)
    assert start == (0, 0) and rows[0] == HEADER and len(rows) == 11

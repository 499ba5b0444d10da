"""Read a CPL file (XLSX or CSV) into its header and raw rows, finding the header below any title rows.

Values are left as the reader gives them; `validate` turns them into typed rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_calamine import CalamineWorkbook

from cfl_graph.identifiers import Cell
from cpl_sync import sheet_pieces
from cpl_sync.columns import HEADINGS, REQUIRED, Column, column_for_heading
from cpl_sync.problems import CplFileRejected, Problem, Severity, column_letter, file_problem

HEADER_SEARCH_ROWS = 50
# Zip bombs: refuse an XLSX whose parts expand past this, or by more than this ratio.
MAX_UNCOMPRESSED_BYTES = 2 * 1024**3
MAX_COMPRESSION_RATIO = 200


@dataclass(frozen=True)
class Header:
    sheet: str | None  # None for CSV
    row: int  # 1-based, as the spreadsheet shows it
    columns: dict[Column, int]  # canonical column -> 0-based position in the sheet
    headings: dict[Column, str]  # canonical column -> the heading as written
    ignored: tuple[str, ...] = ()  # headings that match no canonical column

    def heading(self, column: Column) -> str:
        return self.headings.get(column, HEADINGS[column])


@dataclass
class Table:
    header: Header
    rows: Iterator[tuple[int, list[Cell]]]  # (1-based sheet row, cells indexed by sheet position)
    encoding: str | None = None
    notes: list[Problem] = field(default_factory=list)


def _match_header(
    cells: Sequence[Cell], col_offset: int
) -> tuple[dict[Column, int], dict[Column, str], list[str], list[Problem]]:
    columns: dict[Column, int] = {}
    headings: dict[Column, str] = {}
    ignored: list[str] = []
    clashes: list[Problem] = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, str) or not cell.strip():
            continue
        position = index + col_offset
        column = column_for_heading(cell)
        if column is None:
            ignored.append(cell.strip())
        elif column in columns:
            clashes.append(
                Problem(
                    f'two columns mean "{HEADINGS[column]}": {column_letter(columns[column])} '
                    f'"{headings[column]}" and {column_letter(position)} "{cell.strip()}"',
                )
            )
        else:
            columns[column] = position
            headings[column] = cell.strip()
    return columns, headings, ignored, clashes


def _find_header(
    rows: Iterator[Sequence[Cell]], sheet: str | None, row_base: int, col_offset: int
) -> tuple[Header | None, list[Problem], tuple[int, list[Column]] | None]:
    """Scan the first rows for the one naming the most canonical columns, stopping at a complete one."""
    best: tuple[int, list[Column]] | None = None
    for index, cells in enumerate(rows):
        if index >= HEADER_SEARCH_ROWS:
            break
        columns, headings, ignored, clashes = _match_header(cells, col_offset)
        if not columns:
            continue
        sheet_row = row_base + index
        missing = [c for c in REQUIRED if c not in columns]
        if not missing:
            header = Header(sheet, sheet_row, columns, headings, tuple(ignored))
            return header, [Problem(p.reason, row=sheet_row) for p in clashes], None
        if best is None or len(missing) < len(best[1]):
            best = (sheet_row, missing)
    return None, [], best


def _header_not_found(where: str, best: tuple[int, list[Column]] | None) -> CplFileRejected:
    if best is None:
        wanted = ", ".join(f'"{HEADINGS[c]}"' for c in REQUIRED)
        return file_problem(
            f"no header row in the first {HEADER_SEARCH_ROWS} rows of {where}; expected columns {wanted}"
        )
    row, missing = best
    names = ", ".join(f'"{HEADINGS[c]}"' for c in missing)
    return CplFileRejected([Problem(f"header row of {where} lacks required column(s) {names}", row=row)])


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise file_problem(f"not a readable XLSX workbook ({exc})") from None
    expanded = sum(info.file_size for info in infos)
    packed = sum(info.compress_size for info in infos) or 1
    if expanded > MAX_UNCOMPRESSED_BYTES or expanded / packed > MAX_COMPRESSION_RATIO:
        raise file_problem(
            f"XLSX expands from {packed:,} to {expanded:,} bytes; refused as a likely zip bomb "
            f"(limits {MAX_UNCOMPRESSED_BYTES:,} bytes and {MAX_COMPRESSION_RATIO}x)"
        )


_Closest = tuple[str, tuple[int, list[Column]]]  # a sheet, and its row that lacks the fewest headings


def _closer(closest: _Closest | None, sheet: str, best: tuple[int, list[Column]] | None) -> _Closest | None:
    """Of the sheets without a header, the one whose best row lacks the fewest required headings."""
    if best and (closest is None or len(best[1]) < len(closest[1][1])):
        return sheet, best
    return closest


def _read_xlsx(path: Path, piece_bytes: int | None) -> Table:
    _check_zip(path)
    try:
        workbook = CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # calamine raises its own error types for corrupt or encrypted files
        raise file_problem(f"not a readable XLSX workbook ({exc})") from None
    best_overall: _Closest | None = None
    for sheet_name in workbook.sheet_names:
        pieces = None if piece_bytes is None else sheet_pieces.rows(path, sheet_name, piece_bytes)
        if pieces is not None:
            # Read on every core; its rows come with their cells by column, as the whole sheet's are padded.
            first = list(itertools.islice(pieces, HEADER_SEARCH_ROWS))
            header, clashes, best = _find_header(iter(first), sheet_name, 1, 0)
            if header is not None and not clashes:
                rest = itertools.chain(first[header.row :], pieces)
                return Table(header, zip(itertools.count(header.row + 1), rest))
            pieces.close()
            if clashes:
                raise CplFileRejected(clashes)
            best_overall = _closer(best_overall, sheet_name, best)
            continue
        try:
            sheet = workbook.get_sheet_by_name(sheet_name)
        except Exception as exc:
            raise file_problem(f'sheet "{sheet_name}" cannot be read ({exc})') from None
        if sheet.height == 0:
            continue
        # calamine yields rows from the sheet's first row but cells from its first used column.
        col_offset = sheet.start[1] if sheet.start else 0
        rows = iter(sheet.iter_rows())
        header, clashes, best = _find_header(rows, sheet_name, 1, col_offset)
        if header is None:
            best_overall = _closer(best_overall, sheet_name, best)
            continue
        if clashes:
            raise CplFileRejected(clashes)
        return Table(header, _xlsx_rows(sheet.iter_rows(), header.row, col_offset))
    if best_overall is not None:
        raise _header_not_found(f'sheet "{best_overall[0]}"', best_overall[1])
    names = ", ".join(f'"{n}"' for n in workbook.sheet_names) or "none"
    raise _header_not_found(f"any sheet (sheets: {names})", None)


def _xlsx_rows(
    rows: Iterator[list[Any]], header_row: int, col_offset: int
) -> Iterator[tuple[int, list[Cell]]]:
    below = itertools.islice(rows, header_row, None)
    if not col_offset:
        # calamine builds a new list per row, ours to keep; numbered in C, with no step of Python per row
        return zip(itertools.count(header_row + 1), below)
    return (
        (sheet_row, [*([None] * col_offset), *cells]) for sheet_row, cells in enumerate(below, header_row + 1)
    )


def _decode(raw: bytes) -> tuple[str, str, list[Problem]]:
    """UTF-8 (with or without BOM) or UTF-16 with BOM; else Windows-1252, as Excel on Windows saves CSV."""
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE starts both
        raise file_problem("CSV is UTF-32 (it starts with a UTF-32 byte order mark); save it as UTF-8")
    if raw.startswith(codecs.BOM_UTF8):
        try:
            return raw[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig", []
        except UnicodeDecodeError as exc:
            offset = exc.start + len(codecs.BOM_UTF8)
            raise file_problem(
                f"CSV starts with a UTF-8 byte order mark but is not UTF-8 (byte 0x{raw[offset]:02X} at "
                f"offset {offset}); save it again as UTF-8"
            ) from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), "utf-16", []
        except UnicodeDecodeError as exc:
            raise file_problem(
                f"CSV starts with a UTF-16 byte order mark but is not UTF-16 ({exc.reason})"
            ) from None
    try:
        return raw.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    if _has_utf8_sequences(raw):
        # Read as Windows-1252 the UTF-8 text would turn into mojibake ("SociÃ©tÃ©") without a word.
        raise file_problem(
            "CSV mixes encodings: its other non-ASCII text is UTF-8, but byte "
            f"0x{raw[first_bad]:02X} at offset {first_bad} is not; save it again as UTF-8"
        )
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise file_problem(
            f"CSV is neither UTF-8 nor Windows-1252 (byte 0x{raw[exc.start]:02X} at offset {exc.start})"
        ) from None
    note = Problem("CSV is not UTF-8; read as Windows-1252", severity=Severity.WARNING)
    return text, "cp1252", [note]


def _has_utf8_sequences(raw: bytes) -> bool:
    """Whether bytes that are not UTF-8 as a whole still hold valid multi-byte UTF-8 characters.

    Windows-1252 text almost never does: an accented letter there is one byte followed by ASCII."""
    text = raw.decode("utf-8", errors="replace")
    return any(ord(ch) > 0x7F and ch != "\ufffd" for ch in text)


CSV_DELIMITERS = (",", ";", "\t")


class _Rfc4180(csv.excel):
    """RFC 4180 as spreadsheets write it: fields in double quotes may hold the delimiter, line breaks
    and quotes (doubled); nothing else about a field is interpreted."""

    doublequote = True
    quotechar = '"'
    skipinitialspace = False
    strict = False


def _delimiter(text: str) -> str:
    """The delimiter whose reading of the first rows finds the most CPL headings. Only the delimiter is
    chosen: quoting is RFC 4180's, never guessed (a sniffer guesses both and can mangle quoted text)."""
    best, best_matched = ",", -1
    for delimiter in CSV_DELIMITERS:
        dialect = type("Dialect", (_Rfc4180,), {"delimiter": delimiter})
        matched = 0
        try:
            reader = csv.reader(io.StringIO(text[:65536], newline=""), dialect)
            for index, cells in enumerate(reader):
                if index >= HEADER_SEARCH_ROWS:
                    break
                matched = max(matched, len(_match_header(cells, 0)[0]))
        except csv.Error:
            pass
        if matched > best_matched:
            best, best_matched = delimiter, matched
    return best


def _read_csv(path: Path) -> Table:
    text, encoding, notes = _decode(path.read_bytes())
    if "\x00" in text:
        raise file_problem("CSV contains NUL characters; it is probably a binary file")
    dialect = type("Dialect", (_Rfc4180,), {"delimiter": _delimiter(text)})
    rows = csv.reader(io.StringIO(text, newline=""), dialect)
    # Rows are numbered as a spreadsheet shows them: one per record, whatever line breaks a field holds.
    numbered = ((i + 1, list[Cell](r)) for i, r in enumerate(rows))

    def cells_only() -> Iterator[list[Cell]]:
        for _, cells in numbered:
            yield cells

    try:
        header, clashes, best = _find_header(cells_only(), None, 1, 0)
    except csv.Error as exc:
        raise file_problem(f"CSV cannot be read: {exc}") from None
    if header is None:
        raise _header_not_found("the CSV file", best)
    if clashes:
        raise CplFileRejected(clashes)
    return Table(header, _csv_rows(numbered), encoding, notes)


def _csv_rows(numbered: Iterator[tuple[int, list[Cell]]]) -> Iterator[tuple[int, list[Cell]]]:
    last = 0
    try:
        for last, cells in numbered:  # `last` then names the row before the one that failed
            yield last, cells
    except csv.Error as exc:
        raise CplFileRejected([Problem(f"CSV cannot be read: {exc}", row=last + 1)]) from None


def is_xlsx(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def read_table(path: Path, *, piece_bytes: int | None = sheet_pieces.PIECE_BYTES) -> Table:
    """Open the file as XLSX (by its zip signature) or CSV, and find its header row. A big worksheet is read
    in pieces of about `piece_bytes` of XML on every core (`sheet_pieces`); None reads every sheet whole."""
    return _read_xlsx(path, piece_bytes) if is_xlsx(path) else _read_csv(path)

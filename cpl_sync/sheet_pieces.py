"""Read a big XLSX worksheet on every core: its XML cut between rows into pieces, each piece parsed by
calamine in a thread of its own, and the rows handed on in sheet order as the pieces are ready.

calamine lets go of Python's lock while it parses, and its parse is most of a bare read (1.06 s of 1.13 s
for a 100,000-row sheet here). Read whole, one core parses while the other waits, and validation starts
only once the parse is done. In pieces, two threads parse while the validating thread checks the pieces
already parsed.

A piece is the sheet's own XML, cut only where nothing can be misread: after a `</row>` end tag, in a
stretch holding no comment, CDATA section or processing instruction (the only places a `</row>` could be
text), and only where each piece's first row names its row number. Anything else, and any piece calamine
cannot parse, is read from the whole sheet instead, from the row where the pieces stopped (`rows`), so a
sheet reads the same either way: `tests/cpl_sync/test_sheet_pieces.py` compares the two.
"""

from __future__ import annotations

import io
import itertools
import os
import posixpath
import re
import struct
import zipfile
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException, ElementTree
from isal import isal_zlib
from python_calamine import CalamineWorkbook

from cfl_graph.identifiers import Cell
from cpl_sync.problems import file_problem

# Uncompressed XML per piece: big enough that a piece's own cost (a small zip around it, calamine's start)
# stays a few per cent of its parse, small enough that the pieces waiting to be validated take little
# memory and the last piece's validation, the one nobody works beside, is short. 4 MiB is some 5,000 rows
# of the CPL. Measured at 100,000 rows, read and validated: 8 MiB pieces 1.55 s and a 283 MB peak, 4 MiB
# 1.43-1.52 s and 200 MB, 2 MiB 1.51-1.61 s and 155 MB; read whole, 1.93-2.02 s and 182 MB.
PIECE_BYTES = 4 << 20
# Two parsing threads keep a core parsing while the validating thread checks rows on the other, as measured
# on two cores; with one core to run on, a sheet is read whole (pieces would only add their own cost).
PARSE_THREADS = 2
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# Pieces cut and parsing ahead of the one being validated: what bounds the memory the pieces take.
PIECES_AHEAD = 4
# Every piece carries the workbook's other parts calamine reads (styles, shared strings). A piece is made at
# least this many times their size, so that parsing them again and again costs at most a quarter more.
_PIECE_TO_REST = 4
# A workbook part read to find the sheets' parts is small; a bigger one is not looked into.
_MAX_WORKBOOK_PART = 4 << 20

_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_RELATIONSHIP_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_PACKAGE_RELATIONSHIPS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_WORKSHEET_TYPE = "/worksheet"
_EMPTY_SHEET = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData/></worksheet>'
)
_SHEET_DATA = b"<sheetData>"
_MAX_HEAD = 1 << 20  # what may come before the rows (the sheet's views, its columns' widths)
_ROW_END = b"</row>"
_CLOSING = b"</sheetData></worksheet>"
# Where a `</row>` may stand as text rather than as a tag: a comment or CDATA section (`<!`), or a
# processing instruction (`<?`). A stretch holding either is never cut. Looked for by the rare second
# byte: a search for `<` stops every few bytes of a sheet.
_MARKUP_WITH_TEXT = (b"!", b"?")
_FIRST_ROW_NUMBERED = re.compile(rb"<row(?:\s[^>]*?)?\sr\s*=\s*[\"']")


class _NotCut(Exception):
    """The sheet (from here on) cannot be cut safely, or a piece could not be parsed: read it whole."""


def worksheet_parts(archive: zipfile.ZipFile) -> dict[str, str]:
    """Each worksheet's name and the zip member holding its XML, from the workbook and its relationships;
    empty where they cannot be read (the sheets are then read whole)."""
    try:
        workbook = _small_part(archive, "xl/workbook.xml")
        relationships = _small_part(archive, "xl/_rels/workbook.xml.rels")
        targets = {
            rel.get("Id"): rel.get("Target", "")
            for rel in ElementTree.fromstring(relationships).iter(f"{_PACKAGE_RELATIONSHIPS}Relationship")
            if rel.get("Type", "").endswith(_WORKSHEET_TYPE)
        }
        parts: dict[str, str] = {}
        for sheet in ElementTree.fromstring(workbook).iter(f"{_MAIN}sheet"):
            target = targets.get(sheet.get(_RELATIONSHIP_ID))
            if target:
                member = target[1:] if target.startswith("/") else posixpath.normpath(f"xl/{target}")
                parts[sheet.get("name", "")] = member
        return parts
    except (KeyError, ParseError, DefusedXmlException, _NotCut):
        return {}


def _small_part(archive: zipfile.ZipFile, name: str) -> bytes:
    if archive.getinfo(name).file_size > _MAX_WORKBOOK_PART:
        raise _NotCut
    return archive.read(name)


def piece_size(archive: zipfile.ZipFile, member: str, worksheets: set[str], piece_bytes: int) -> int | None:
    """The size of the sheet's pieces, or None if it is better read whole (too small for two pieces).
    `worksheets`: every worksheet's member, which a piece's workbook holds as an empty sheet."""
    rest = sum(
        len(_EMPTY_SHEET) if info.filename in worksheets else info.file_size
        for info in archive.infolist()
        if info.filename != member
    )
    size = max(piece_bytes, _PIECE_TO_REST * rest)
    return size if archive.getinfo(member).file_size >= 2 * size else None


def _holds_markup_with_text(body: bytes) -> bool:
    for mark in _MARKUP_WITH_TEXT:
        at = body.find(mark)
        while at >= 0:
            if at and body[at - 1] == ord("<"):
                return True
            at = body.find(mark, at + 1)
    return False


class _Inflated:
    """A zip member's bytes as they inflate, by ISA-L (`isal`, twice as fast as zlib here: 0.09 s against
    0.19 s for a 100,000-row sheet, its CRC included), checked against the member's declared size and
    CRC-32 as `zipfile` checks them. A member neither stored nor deflated, or encrypted, is not cut."""

    _LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length
    # Compressed bytes inflated at a time: at most some 66 MB however they were made to expand, before the
    # size is checked against the declared one.
    _BLOCK = 1 << 16

    def __init__(self, archive: zipfile.ZipFile, member: str) -> None:
        info = archive.getinfo(member)
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _NotCut
        assert archive.filename is not None
        self.file = Path(archive.filename).open("rb")  # noqa: SIM115 - closed by `close`
        self.file.seek(info.header_offset)
        signature, name_length, extra_length = self._LOCAL_HEADER.unpack(self.file.read(30))
        if signature != b"PK\x03\x04":
            self.file.close()
            raise _NotCut
        self.file.seek(name_length + extra_length, io.SEEK_CUR)
        self.left, self.size, self.crc, self.expected = info.compress_size, info.file_size, 0, info.CRC
        self.inflate = None if info.compress_type == zipfile.ZIP_STORED else isal_zlib.decompressobj(-15)
        self.out = 0
        self.pending = b""  # inflated past what was last asked for

    def read(self, wanted: int) -> bytes:
        """`wanted` bytes, or what is left; b"" at the end, once the size and CRC are checked."""
        parts, have = [self.pending], len(self.pending)
        while have < wanted and self.left:
            block = self.file.read(min(self.left, self._BLOCK, wanted))
            if not block:
                raise zipfile.BadZipFile("the member ends before its compressed size")
            self.left -= len(block)
            data = block if self.inflate is None else self.inflate.decompress(block)
            self.crc = isal_zlib.crc32(data, self.crc)
            self.out += len(data)
            if self.out > self.size:  # as declared: the zip bomb check went by the declared sizes
                raise zipfile.BadZipFile("the member inflates past its declared size")
            parts.append(data)
            have += len(data)
        if not self.left and (self.out != self.size or self.crc != self.expected):
            raise zipfile.BadZipFile("the member's size or CRC-32 is not as declared")
        joined = b"".join(parts)
        self.pending = joined[wanted:]
        return joined[:wanted]

    def close(self) -> None:
        self.file.close()


class _Cutter:
    """Cuts the sheet's XML into whole documents, one piece at a time, in one thread (`_Pieces.cutting`)."""

    def __init__(self, archive: zipfile.ZipFile, member: str, size: int) -> None:
        self.archive, self.member, self.size = archive, member, size
        self.stream: _Inflated | None = None  # opened by the first cut, in the cutting thread
        self.head = b""
        self.buffer = b""
        self.ended = False

    def next(self) -> bytes | None:
        """The next piece as a worksheet document, or None once the sheet is done."""
        if self.ended:
            return None
        if self.stream is None:
            self.stream = _Inflated(self.archive, self.member)
            first = b""
            while (start := first.find(_SHEET_DATA)) < 0:
                more = self.stream.read(self.size)
                if not more or len(first) > _MAX_HEAD:
                    raise _NotCut  # an empty sheet, or tags with a namespace prefix: read whole
                first += more
            if b"<worksheet" not in first[:start]:
                raise _NotCut
            self.head, self.buffer = first[: start + len(_SHEET_DATA)], first[start + len(_SHEET_DATA) :]
        while True:
            more = self.stream.read(self.size)
            self.buffer += more
            if not more:
                # The last piece ends as the sheet does, with whatever follows its rows.
                self.ended = True
                body, self.buffer = self.buffer, b""
                return self._numbered(self.head + body) if b"<row" in body else None
            cut = self.buffer.rfind(_ROW_END)
            if cut < 0:
                continue  # one row longer than a piece: read on
            cut += len(_ROW_END)
            body = self.buffer[:cut]
            if _holds_markup_with_text(body):
                raise _NotCut
            self.buffer = self.buffer[cut:]
            return self._numbered(self.head + body + _CLOSING)

    def _numbered(self, document: bytes) -> bytes:
        """calamine numbers a row without an `r` after the row before it, which a piece does not hold."""
        first_row = document.find(b"<row", len(self.head))
        if first_row >= 0 and not _FIRST_ROW_NUMBERED.match(document, first_row):
            raise _NotCut
        return document

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.archive.close()


@dataclass(frozen=True)
class _Workbook:
    """What every piece's workbook holds besides the piece: the workbook's other parts calamine reads."""

    parts: list[tuple[str, bytes]]
    member: str
    sheet: str

    def parse(self, document: bytes) -> tuple[tuple[int, int] | None, list[list[Any]]]:
        """(the piece's first used cell, its rows from that cell on), in a parsing thread."""
        package = io.BytesIO()
        with zipfile.ZipFile(package, "w", zipfile.ZIP_STORED) as archive:
            for name, data in self.parts:
                archive.writestr(name, data)
            archive.writestr(self.member, document)
        package.seek(0)
        try:
            sheet = CalamineWorkbook.from_filelike(package).get_sheet_by_name(self.sheet)
        except Exception as exc:  # calamine's own error types: the whole sheet says what is wrong
            raise _NotCut from exc
        start = sheet.start
        return start, (sheet.to_python(skip_empty_area=True) if start is not None else [])


def _workbook(archive: zipfile.ZipFile, member: str, sheet: str, worksheets: set[str]) -> _Workbook:
    parts = [
        (info.filename, _EMPTY_SHEET if info.filename in worksheets else archive.read(info.filename))
        for info in archive.infolist()
        if info.filename != member and not info.is_dir()
    ]
    return _Workbook(parts, member, sheet)


def rows(path: Path, sheet: str, piece_bytes: int = PIECE_BYTES) -> Generator[list[Cell]] | None:
    """The sheet's rows from its first, as `parse` reads a whole sheet: a row's cells by their column,
    those before the piece's first used column None (blank rows, and cells past a piece's last used column,
    may be shorter; validation reads a missing cell as a blank one). None if the sheet is better read whole.
    """
    if _CORES < 2:
        return None
    archive = zipfile.ZipFile(path)
    parts = worksheet_parts(archive)
    member, worksheets = parts.get(sheet), set(parts.values())
    size = None if member is None else piece_size(archive, member, worksheets, piece_bytes)
    if member is None or size is None:
        archive.close()
        return None
    workbook = _workbook(archive, member, sheet, worksheets)
    return _Pieces(path, sheet, workbook, _Cutter(archive, member, size)).rows()


class _Pieces:
    """Cuts pieces in one thread and parses them in `PARSE_THREADS` others, `PIECES_AHEAD` of the one whose
    rows are being handed on. No thread waits on the reader: a piece is asked for only as one is taken, so
    a reader that stops (the file refused, the sync cancelled) leaves nothing blocked."""

    def __init__(self, path: Path, sheet: str, workbook: _Workbook, cutter: _Cutter) -> None:
        self.path, self.sheet, self.workbook, self.cutter = path, sheet, workbook, cutter
        self.cutting = ThreadPoolExecutor(1, thread_name_prefix="cpl-sheet-cut")
        self.parsing = ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="cpl-sheet-parse")

    def _next(self) -> Future[tuple[tuple[int, int] | None, list[list[Any]]]] | None:
        document = self.cutter.next()
        return None if document is None else self.parsing.submit(self.workbook.parse, document)

    def rows(self) -> Generator[list[Cell]]:
        done = 0  # rows handed on: the next is the sheet's row `done + 1`
        ahead = deque(self.cutting.submit(self._next) for _ in range(PIECES_AHEAD))
        try:
            while ahead:
                try:
                    parsing = ahead.popleft().result()
                    if parsing is None:
                        break
                    ahead.append(self.cutting.submit(self._next))
                    start, piece = parsing.result()
                except Exception:  # whatever stopped the pieces, the whole sheet says what it is
                    yield from self._whole_from(done)
                    return
                if start is None:
                    continue
                first_row, first_column = start
                if first_row < done:
                    yield from self._whole_from(done)  # pieces that overlap were not cut between rows
                    return
                yield from ([] for _ in range(first_row - done))
                if first_column:
                    before = [None] * first_column
                    yield from ([*before, *cells] for cells in piece)
                else:
                    yield from piece
                done = first_row + len(piece)
        finally:
            for pending in ahead:
                pending.cancel()
            try:  # closed in the cutting thread, after the cut it may be making
                self.cutting.submit(self.cutter.close)
            except RuntimeError:  # the interpreter is exiting and has shut every pool down
                self.cutter.close()
            self.cutting.shutdown(wait=False)
            self.parsing.shutdown(wait=False, cancel_futures=True)

    def _whole_from(self, done: int) -> Iterator[list[Cell]]:
        """The rest of the sheet read whole, from row `done + 1` (calamine's rows start at the sheet's
        first)."""
        try:
            sheet = CalamineWorkbook.from_path(str(self.path)).get_sheet_by_name(self.sheet)
        except Exception as exc:  # calamine raises its own error types for a sheet it cannot read
            raise file_problem(f'sheet "{self.sheet}" cannot be read ({exc})') from None
        offset = sheet.start[1] if sheet.start else 0
        rest: Iterator[list[Cell]] = itertools.islice(sheet.iter_rows(), done, None)  # type: ignore[arg-type]
        if not offset:
            return rest
        before = [None] * offset
        return ([*before, *cells] for cells in rest)

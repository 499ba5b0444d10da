"""The reports as spreadsheets, at plain URLs, for Panel users who work in Excel (issue 4).

    GET /reports/coverage.{csv,xlsx}?groupBy=MANUFACTURER|DEVICE_TYPE|SMETS_VERSION   (default MANUFACTURER)
    GET /reports/gaps.{csv,xlsx}?manufacturerId=&deviceType=&smetsVersion=&search=   (all optional)
    GET /reports/consistency/{manufacturerId}.{csv,xlsx}
    GET /reports/timeliness.{csv,xlsx}?groupBy=...&since=YYYY-MM-DD

The rows come from `cfl_graph.reports`, the functions the graph and the web pages call, so an export
cannot disagree with them; with no CPL snapshot yet, a report is its heading row alone. A bad parameter
(an unknown name, groupBy, date, manufacturer id or filter value) is refused before any byte of the file,
as JSON `{"error", "code", "problems"}` with status 422, like every other door; an empty parameter counts
as absent, since spreadsheet users build these URLs by hand.

CSV is UTF-8 with a byte-order mark (without it Excel reads UTF-8 as Windows-1252) and CRLF line ends,
streamed as it is read (a failure part-way ends the chunked answer without its last chunk, which a
browser reports as a failed download). Every text cell that a spreadsheet would run as a formula (it
starts with = + - @, tab or CR) gets a leading apostrophe: names come from the CPL, which anyone able
to edit a CPL sheet controls. Excel's CSV import still guesses types, so an all-digit id like 0001
loses its zeros there; the XLSX, where ids are strings, is the faithful copy.

XLSX is written by xlsxwriter in constant-memory mode (one row in memory at a time), text with
`write_string` so nothing is ever a formula, dates as dates, coverage as a percentage, with a frozen,
filtered heading row. The workbook is built in an anonymous temporary file before the answer starts
(so it carries a Content-Length, and a failure is a clean error rather than a cut-off file), with
xlsxwriter's own scratch files in a temporary directory removed as soon as the workbook is closed: no
clean-up task depends on the client reading to the end.

The gap list is the one long report: it is read through `reports.coverage_gaps` in pages of
`GAP_PAGE`, a session per page so a slow client holds no connection, up to `MAX_ROWS` rows. Its first
page is read before the answer starts, so a bad filter is still a JSON refusal; later pages skip the
count of the filter's total.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import IO, Any

import xlsxwriter
from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cfl_graph import identifiers as ids
from cfl_graph.access.policy import AccessDenied, Action, authorise
from cfl_graph.access.principal import Principal
from cfl_graph.catalogue import reports
from cfl_graph.catalogue.search import DeviceModelFilter, Page
from cfl_graph.catalogue.snapshots import current_snapshot_id
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.refusals import refusal_response
from cfl_graph.errors import InvalidInput, Refusal

log = logging.getLogger(__name__)

GAP_PAGE = 500
MAX_ROWS = 1_000_000  # below XLSX's 1,048,576 rows a sheet, and far above any CPL so far
CSV_CHUNK = 64 * 1024
FILE_CHUNK = 1024 * 1024
CSV_MEDIA_TYPE = "text/csv; charset=utf-8; header=present"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMATS = ("csv", "xlsx")
# A cell starting with one of these is run as a formula by Excel, LibreOffice or Google Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | float | dt.date | None
Endpoint = Callable[[Request], Awaitable[Response]]


class Kind(Enum):
    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    RATIO = "ratio"  # 0..1; a percentage in XLSX
    DATE = "date"


@dataclass(frozen=True)
class Column:
    heading: str
    kind: Kind = Kind.TEXT
    width: int = 14  # in XLSX, characters


@dataclass(frozen=True)
class Export:
    """One report as a table: its file name (without date and suffix), sheet name, columns and rows."""

    name: str
    sheet: str
    columns: Sequence[Column]
    rows: AsyncIterator[Sequence[Cell]]


# --- the four reports ----------------------------------------------------------------------------

GROUP_HEADING = {
    reports.GroupBy.MANUFACTURER: "Manufacturer id",
    reports.GroupBy.DEVICE_TYPE: "Device type",
    reports.GroupBy.SMETS_VERSION: "SMETS version",
}
COVERAGE_COLUMNS = (
    Column("Certified", Kind.INTEGER, 11),
    Column("Commercial", Kind.INTEGER, 12),
    Column("Available", Kind.INTEGER, 11),
    Column("Missing", Kind.INTEGER, 10),
    Column("Coverage", Kind.RATIO, 11),
)
GAP_COLUMNS = (
    Column("Manufacturer id", width=16),
    Column("Model id", width=10),
    Column("Hardware version", width=17),
    Column("Firmware version", width=17),
    Column("Technical specification", width=24),
    Column("Listed on", Kind.DATE, 12),
    Column("Days missing", Kind.INTEGER, 13),
)
CONSISTENCY_COLUMNS = (
    Column("Kind", width=20),
    Column("Model id", width=10),
    Column("Hardware version", width=17),
    Column("Firmware version", width=17),
    Column("Image id", Kind.INTEGER, 10),
    Column("Detail", width=100),
)
TIMELINESS_COLUMNS = (
    Column("Published", Kind.INTEGER, 11),
    Column("Median days", Kind.NUMBER, 13),
    Column("P90 days", Kind.NUMBER, 10),
    Column("Worst days", Kind.INTEGER, 11),
)


def _group_columns(group_by: reports.GroupBy) -> tuple[Column, Column]:
    return Column(GROUP_HEADING[group_by], width=16), Column("Name", width=32)


def _slug(group_by: reports.GroupBy) -> str:
    return "by-" + group_by.value.lower().replace("_", "-")


async def _each(rows: Iterable[Sequence[Cell]]) -> AsyncIterator[Sequence[Cell]]:
    for row in rows:
        yield row


def _param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


def _group_by(request: Request) -> reports.GroupBy:
    raw = _param(request, "groupBy")
    return reports.GroupBy.MANUFACTURER if raw is None else reports.parse_group_by(raw)


def _since(request: Request) -> dt.date | None:
    raw = _param(request, "since")
    if raw is None:
        return None
    if (day := ids.iso_day(raw)) is None:
        raise InvalidInput(f"since must be a date as YYYY-MM-DD, like 2026-01-31, not {raw[:40]!r}")
    return day


class Reports:
    """Prepares each export: reads its parameters, checks them, and reads (or starts reading) its rows."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def coverage(self, request: Request, principal: Principal, today: dt.date) -> Export:
        group_by = _group_by(request)
        async with self.sessions() as session:
            snapshot = await current_snapshot_id(session)
            groups = [] if snapshot is None else await reports.coverage_summary(session, snapshot, group_by)
        rows = [
            (g.key, g.label, g.certified, g.commercial, g.available, g.missing, g.coverage) for g in groups
        ]
        return Export(
            f"cfl-coverage-{_slug(group_by)}",
            "Coverage",
            (*_group_columns(group_by), *COVERAGE_COLUMNS),
            _each(rows),
        )

    async def gaps(self, request: Request, principal: Principal, today: dt.date) -> Export:
        where = DeviceModelFilter(
            manufacturer_id=_param(request, "manufacturerId"),
            device_type=_param(request, "deviceType"),
            smets_version=_param(request, "smetsVersion"),
            search=_param(request, "search"),
        ).normalised()
        async with self.sessions() as session:
            snapshot = await current_snapshot_id(session)
            if snapshot is None:
                return Export("cfl-coverage-gaps", "Gaps", GAP_COLUMNS, _each([]))
            first = await reports.coverage_gaps(session, snapshot, where, GAP_PAGE, None, today=today)
        if first.total > MAX_ROWS:
            log.warning("gap export cut at %d of %d rows", MAX_ROWS, first.total)
        return Export("cfl-coverage-gaps", "Gaps", GAP_COLUMNS, self._gap_rows(snapshot, where, first, today))

    async def _gap_rows(
        self, snapshot: int, where: DeviceModelFilter, page: Page[reports.Gap], today: dt.date
    ) -> AsyncIterator[Sequence[Cell]]:
        written = 0
        while True:
            for gap in page.rows[: MAX_ROWS - written]:
                yield (
                    gap.manufacturer_id,
                    gap.model_id,
                    gap.hardware_version,
                    gap.firmware_version,
                    gap.specification,
                    gap.listed_on,
                    gap.days_missing,
                )
            written += len(page.rows)
            if not page.has_next or not page.rows or written >= MAX_ROWS:
                return
            async with self.sessions() as session:
                page = await reports.coverage_gaps(
                    session, snapshot, where, GAP_PAGE, page.end_cursor, today=today, count=False
                )

    async def consistency(self, request: Request, principal: Principal, today: dt.date) -> Export:
        raw = request.path_params["manufacturer_id"]
        try:
            manufacturer = ids.manufacturer_id(raw)
        except ids.InvalidValue as exc:
            raise InvalidInput(str(exc)) from None
        # As the graph asks: a manufacturer reads its own ids' report, the Panel and admins any.
        authorise(principal, Action.READ_CONSISTENCY, manufacturer_id=manufacturer)
        async with self.sessions() as session:
            snapshot = await current_snapshot_id(session)
            findings = (
                []
                if snapshot is None
                else await reports.consistency_report(session, snapshot, manufacturer, today=today)
            )
        rows = [
            (f.kind.value, f.model_id, f.hardware_version, f.firmware_version, f.image_id, f.detail)
            for f in findings
        ]
        return Export(f"cfl-consistency-{manufacturer}", "Consistency", CONSISTENCY_COLUMNS, _each(rows))

    async def timeliness(self, request: Request, principal: Principal, today: dt.date) -> Export:
        group_by = _group_by(request)
        since = _since(request)
        async with self.sessions() as session:
            snapshot = await current_snapshot_id(session)
            groups = [] if snapshot is None else await reports.timeliness(session, snapshot, group_by, since)
        rows = [(g.key, g.label, g.published, g.median_days, g.p90_days, g.worst_days) for g in groups]
        return Export(
            f"cfl-timeliness-{_slug(group_by)}",
            "Timeliness",
            (*_group_columns(group_by), *TIMELINESS_COLUMNS),
            _each(rows),
        )


# --- CSV -----------------------------------------------------------------------------------------


def neutralised(text: str) -> str:
    """The text, with a leading apostrophe if a spreadsheet would otherwise run it as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_cell(kind: Kind, value: Cell) -> str:
    if value is None:
        return ""
    if kind is Kind.TEXT:
        return neutralised(str(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    return repr(value)  # the shortest text that reads back as the same number


async def csv_chunks(export: Export) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow([column.heading for column in export.columns])
    kinds = [column.kind for column in export.columns]
    async for row in export.rows:
        writer.writerow([_csv_cell(kind, value) for kind, value in zip(kinds, row, strict=True)])
        if buffer.tell() >= CSV_CHUNK:
            yield buffer.getvalue().encode("utf-8", "replace")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8", "replace")


# --- XLSX ----------------------------------------------------------------------------------------


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


async def write_xlsx(export: Export, output: IO[bytes]) -> None:
    """The export as a one-sheet workbook written to `output`, one row in memory at a time."""
    with tempfile.TemporaryDirectory(prefix="cfl-xlsx-") as scratch:
        workbook = xlsxwriter.Workbook(output, {"constant_memory": True, "tmpdir": scratch})
        sheet = workbook.add_worksheet(export.sheet)
        heading = workbook.add_format({"bold": True, "bottom": 1})
        formats: dict[Kind, Any] = {
            Kind.DATE: workbook.add_format({"num_format": "yyyy-mm-dd"}),
            Kind.RATIO: workbook.add_format({"num_format": "0.0%"}),
            Kind.NUMBER: workbook.add_format({"num_format": "0.0"}),
        }
        for c, column in enumerate(export.columns):
            sheet.set_column(c, c, column.width)
            sheet.write_string(0, c, column.heading, heading)
        r = 0
        async for row in export.rows:
            r += 1
            for c, (column, value) in enumerate(zip(export.columns, row, strict=True)):
                if value is None:
                    continue
                if column.kind is Kind.TEXT:
                    sheet.write_string(r, c, str(value))
                elif isinstance(value, dt.date):
                    sheet.write_datetime(r, c, value, formats[Kind.DATE])
                else:
                    sheet.write_number(r, c, value, formats.get(column.kind))
        last = _column_letter(len(export.columns) - 1)
        sheet.freeze_panes(1, 0)
        sheet.autofilter(0, 0, r, len(export.columns) - 1)
        # Ids such as 0001 are text on purpose; Excel would flag every one of them otherwise.
        sheet.ignore_errors({"number_stored_as_text": f"A1:{last}{r + 1}"})
        await to_thread.run_sync(workbook.close)  # zipping a large sheet takes seconds of CPU


async def _file_chunks(handle: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await to_thread.run_sync(handle.read, FILE_CHUNK):
            yield chunk
    finally:
        handle.close()


# --- the doors -----------------------------------------------------------------------------------


Prepare = Callable[[Request, Principal, dt.date], Awaitable[Export]]


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _check_parameters(request: Request, allowed: Sequence[str]) -> None:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no parameters"
        raise InvalidInput(f"unknown parameter {unknown[0][:40]!r}: this report takes {takes}")


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


async def _xlsx_response(export: Export, name: str) -> Response:
    # Anonymous, so it is gone once closed (by `_file_chunks`, or here on failure) whatever the client does.
    output = tempfile.TemporaryFile(prefix="cfl-report-", suffix=".xlsx")  # noqa: SIM115 - closed as above
    try:
        await write_xlsx(export, output)
        size = output.seek(0, io.SEEK_END)
        output.seek(0)
    except BaseException:
        output.close()
        raise
    return StreamingResponse(
        _file_chunks(output),
        media_type=XLSX_MEDIA_TYPE,
        headers={**_attachment(name), "Content-Length": str(size)},
    )


def _export_door(prepare: Prepare, parameters: Sequence[str]) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            principal = authorise(principal_of(request.scope), Action.READ_REPORTS)
            suffix = request.path_params["format"]
            if suffix not in FORMATS:
                return JSONResponse(
                    {
                        "error": f"no such export: reports come as .csv or .xlsx, not .{suffix[:16]}",
                        "code": "NOT_FOUND",
                        "problems": [],
                    },
                    status_code=404,
                )
            _check_parameters(request, parameters)
            today = _today()
            export = await prepare(request, principal, today)
        except (AccessDenied, Refusal) as exc:
            return refusal_response(exc)
        name = f"{export.name}-{today:%Y-%m-%d}.{suffix}"
        if suffix == "csv":
            return StreamingResponse(csv_chunks(export), media_type=CSV_MEDIA_TYPE, headers=_attachment(name))
        return await _xlsx_response(export, name)

    return endpoint


def report_routes(sessions: async_sessionmaker[AsyncSession]) -> list[Route]:
    prepared = Reports(sessions)
    return [
        Route(
            "/reports/coverage.{format}",
            _export_door(prepared.coverage, ["groupBy"]),
            methods=["GET"],
        ),
        Route(
            "/reports/gaps.{format}",
            _export_door(prepared.gaps, ["manufacturerId", "deviceType", "smetsVersion", "search"]),
            methods=["GET"],
        ),
        Route(
            "/reports/consistency/{manufacturer_id}.{format}",
            _export_door(prepared.consistency, []),
            methods=["GET"],
        ),
        Route(
            "/reports/timeliness.{format}",
            _export_door(prepared.timeliness, ["groupBy", "since"]),
            methods=["GET"],
        ),
    ]

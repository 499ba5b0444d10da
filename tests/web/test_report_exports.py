"""The reports export as CSV and XLSX at plain URLs (issue 4): the same rows as the graph, files Excel opens
as they are, and nothing from the CPL ever run as a formula."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx2
import openpyxl
import pytest
from sqlalchemy import delete

from cfl_graph.database import Database
from cfl_graph.doors.web import reports as exports
from cfl_graph.identifiers import specification_text
from cfl_graph.tables import CplCurrent
from cpl_sync.columns import Column
from cpl_sync.sync import sync_cpl
from tests.fixtures.cpl_files import row, write_csv
from tests.fixtures.library import CPL, OWN_A1, OWN_A2, OWN_A3, OWN_B_HW1, World, make_world
from tests.fixtures.parties import OWN_MANUFACTURER_ID

pytestmark = pytest.mark.postgres

FORMULA_NAME = '=HYPERLINK("http://x","y")'
FORMULA_ID = "3D3D"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

COVERAGE = "query($g: ReportGroupBy!) { coverageSummary(groupBy: $g) { key label certified commercial available missing coverage } }"
GAPS = """query($filter: DeviceModelFilter) { coverageGaps(first: 500, filter: $filter) { totalCount edges { node {
  deviceModel { manufacturerId modelId hardwareVersion } firmwareVersion listedOn daysMissing
  certifiedFirmware { technicalSpecification specificationVersion } } } } }"""
CONSISTENCY = """query($m: String!) { consistencyReport(manufacturerId: $m) { findings {
  kind firmwareVersion libraryImageId detail deviceModel { modelId hardwareVersion } } } }"""
TIMELINESS = "query($g: ReportGroupBy!, $since: Date) { timeliness(groupBy: $g, since: $since) { key label published medianDays p90Days worstDays } }"

Row = tuple[Any, ...]


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    """Published A1, A2, A3 and B; then a CPL that changes A1's hash, withdraws A2, drops A3, and lists a
    manufacturer whose name is a formula, with two versions nobody has published."""
    world = await make_world(db, tmp_path)
    for version in (OWN_A1, OWN_A2, OWN_A3, OWN_B_HW1):
        image = await world.upload(world.image(version))
        await world.publish(image.id)
    rows = [v.as_row() for v in CPL if v not in (OWN_A1, OWN_A2, OWN_A3)]
    rows.append(OWN_A1.as_row() | {Column.IMAGE_HASH: "cd" * 32})
    rows.append(OWN_A2.as_row() | {Column.STATUS: "Withdrawn"})
    rows += [
        row(
            manufacturer_id=FORMULA_ID,
            manufacturer_name=FORMULA_NAME,
            model_id="0009",
            model_name="@SUM(1+1)",
            firmware_version=firmware,
            image_hash=f"{n:064x}",
            device_type="GSME",
            date_added="2025-03-01",
        )
        for n, firmware in enumerate(("05000000", "05010000"), start=1)
    ]
    result = await sync_cpl(world.db, str(write_csv(tmp_path / "next.csv", rows)), work_dir=tmp_path / "s")
    assert result.outcome.value == "applied", result
    return world


def _client(world: World, token: str | None) -> httpx2.AsyncClient:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=world.app()), base_url="http://test", headers=headers
    )


async def fetch(world: World, path: str, token: str | None = "panel") -> httpx2.Response:
    async with _client(world, None if token is None else getattr(world.tokens, token)) as http:
        return await http.get(path)


async def graph(world: World, query: str, **variables: Any) -> dict[str, Any]:
    async with _client(world, world.tokens.panel) as http:
        answer = await http.post("/graphql", json={"query": query, "variables": variables})
    body: dict[str, Any] = answer.json()
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]
    return result


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def csv_rows(response: httpx2.Response, filename: str, kinds: str) -> tuple[list[str], list[Row]]:
    """Headings and typed rows; `kinds` has a letter a column: t(ext) i(nteger) n(umber) d(ate)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv; charset=utf-8")
    assert response.headers["content-disposition"] == f'attachment; filename="{filename}-{today()}.csv"'
    raw = response.content
    assert raw.startswith(b"\xef\xbb\xbf"), "a BOM, so that Excel reads UTF-8"
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
    headings, *cells = list(csv.reader(io.StringIO(raw[3:].decode("utf-8"), newline="")))
    parse: dict[str, Callable[[str], Any]] = {"t": str, "i": int, "n": float, "d": dt.date.fromisoformat}
    rows = [
        tuple(None if c == "" and k != "t" else parse[k](c) for k, c in zip(kinds, line, strict=True))
        for line in cells
    ]
    return headings, rows


def xlsx_sheet(response: httpx2.Response, filename: str) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX
    assert response.headers["content-disposition"] == f'attachment; filename="{filename}-{today()}.xlsx"'
    assert int(response.headers["content-length"]) == len(response.content)
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).worksheets[0]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == f"A1:{sheet.cell(1, sheet.max_column).column_letter}{sheet.max_row}"
    return sheet


def xlsx_rows(sheet: Any) -> tuple[list[str], list[Row]]:
    headings, *rows = [
        tuple(v.date() if isinstance(v, dt.datetime) else v for v in line)
        for line in sheet.iter_rows(values_only=True)
    ]
    return [str(h) for h in headings], rows


def in_csv(rows: Sequence[Row]) -> list[Row]:
    """The rows as the CSV must write them: text a spreadsheet would run as a formula after an apostrophe."""
    return [
        tuple("'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v for v in r)
        for r in rows
    ]


def assert_rows(got: Sequence[Row], expected: Sequence[Row]) -> None:
    assert len(got) == len(expected), (got, expected)
    for have, want in zip(got, expected, strict=True):
        assert have == pytest.approx(want)


@pytest.mark.parametrize("group_by", ["MANUFACTURER", "DEVICE_TYPE", "SMETS_VERSION"])
async def test_coverage_exports_hold_the_graphs_rows(world: World, group_by: str) -> None:
    groups = (await graph(world, COVERAGE, g=group_by))["coverageSummary"]
    expected = [tuple(g.values()) for g in groups]
    assert len(expected) >= 1
    name = "cfl-coverage-by-" + group_by.lower().replace("_", "-")

    headings, rows = csv_rows(
        await fetch(world, f"/reports/coverage.csv?groupBy={group_by}"), name, "ttiiiin"
    )
    assert headings[2:] == ["Certified", "Commercial", "Available", "Missing", "Coverage"]
    assert_rows(rows, in_csv(expected))

    sheet = xlsx_sheet(await fetch(world, f"/reports/coverage.xlsx?groupBy={group_by.lower()}"), name)
    xlsx_headings, xlsx_values = xlsx_rows(sheet)
    assert xlsx_headings == headings
    assert_rows(xlsx_values, expected)
    for line in sheet.iter_rows(min_row=2, min_col=7, max_col=7):
        if line[0].value is not None:
            assert line[0].number_format == "0.0%"


async def test_coverage_is_by_manufacturer_unless_asked(world: World) -> None:
    _, rows = csv_rows(await fetch(world, "/reports/coverage.csv"), "cfl-coverage-by-manufacturer", "ttiiiin")
    assert [r[0] for r in rows] == [OWN_MANUFACTURER_ID, "2C4F", FORMULA_ID]


async def test_gap_exports_hold_every_gap_page_after_page(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "GAP_PAGE", 3)  # the world's four gaps then take a full page and a part
    answer = (await graph(world, GAPS))["coverageGaps"]
    expected = [
        (
            n["deviceModel"]["manufacturerId"],
            n["deviceModel"]["modelId"],
            n["deviceModel"]["hardwareVersion"],
            n["firmwareVersion"],
            specification_text(
                n["certifiedFirmware"]["technicalSpecification"],
                n["certifiedFirmware"]["specificationVersion"],
            ),
            dt.date.fromisoformat(n["listedOn"]),
            n["daysMissing"],
        )
        for n in (edge["node"] for edge in answer["edges"])
    ]
    assert answer["totalCount"] == len(expected) == 4

    headings, rows = csv_rows(await fetch(world, "/reports/gaps.csv"), "cfl-coverage-gaps", "tttttdi")
    assert headings == [
        "Manufacturer id",
        "Model id",
        "Hardware version",
        "Firmware version",
        "Technical specification",
        "Listed on",
        "Days missing",
    ]
    assert rows == in_csv(expected)

    sheet = xlsx_sheet(await fetch(world, "/reports/gaps.xlsx"), "cfl-coverage-gaps")
    assert xlsx_rows(sheet) == (headings, expected)
    assert sheet["B2"].data_type == "s", "ids stay text, leading zeros and all"
    assert sheet["F2"].is_date and sheet["F2"].number_format == "yyyy-mm-dd"


async def test_gap_filters_narrow_the_export_as_they_narrow_the_graph(world: World) -> None:
    answer = await graph(
        world, GAPS, filter={"manufacturerId": "10B2", "deviceType": "ESME", "search": "Model 0002"}
    )
    expected = [e["node"]["firmwareVersion"] for e in answer["coverageGaps"]["edges"]]
    assert expected == ["02000000"]
    path = "/reports/gaps.csv?manufacturerId=10b2&deviceType=esme&smetsVersion=&search=Model%200002"
    _, rows = csv_rows(await fetch(world, path), "cfl-coverage-gaps", "tttttdi")
    assert [r[3] for r in rows] == expected


async def test_the_gap_export_stops_at_its_cap(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "GAP_PAGE", 2)
    monkeypatch.setattr(exports, "MAX_ROWS", 3)
    _, rows = csv_rows(await fetch(world, "/reports/gaps.csv"), "cfl-coverage-gaps", "tttttdi")
    assert len(rows) == 3


async def test_consistency_exports_hold_the_graphs_findings(world: World) -> None:
    findings = (await graph(world, CONSISTENCY, m="10b2"))["consistencyReport"]["findings"]
    expected = [
        (
            f["kind"],
            f["deviceModel"]["modelId"],
            f["deviceModel"]["hardwareVersion"],
            f["firmwareVersion"],
            f["libraryImageId"],
            f["detail"],
        )
        for f in findings
    ]
    assert {f[0] for f in expected} == {
        "MISSING_IMAGE",
        "HASH_MISMATCH",
        "DELISTED_FROM_CPL",
        "NOT_ON_CPL",
        "LATE_PUBLICATION",
    }

    headings, rows = csv_rows(
        await fetch(world, "/reports/consistency/10b2.csv"), "cfl-consistency-10B2", "ttttit"
    )
    assert headings == ["Kind", "Model id", "Hardware version", "Firmware version", "Image id", "Detail"]
    assert rows == in_csv(expected)

    sheet = xlsx_sheet(await fetch(world, "/reports/consistency/10B2.xlsx"), "cfl-consistency-10B2")
    assert xlsx_rows(sheet) == (headings, expected)


@pytest.mark.parametrize(("group_by", "since"), [("MANUFACTURER", None), ("DEVICE_TYPE", "2020-01-01")])
async def test_timeliness_exports_hold_the_graphs_rows(
    world: World, group_by: str, since: str | None
) -> None:
    groups = (await graph(world, TIMELINESS, g=group_by, since=since))["timeliness"]
    expected = [tuple(g.values()) for g in groups]
    assert len(expected) == 1
    query = f"?groupBy={group_by}" + (f"&since={since}" if since else "")
    name = "cfl-timeliness-by-" + group_by.lower().replace("_", "-")

    headings, rows = csv_rows(await fetch(world, f"/reports/timeliness.csv{query}"), name, "ttinni")
    assert headings[2:] == ["Published", "Median days", "P90 days", "Worst days"]
    assert_rows(rows, in_csv(expected))

    xlsx_headings, xlsx_values = xlsx_rows(
        xlsx_sheet(await fetch(world, f"/reports/timeliness.xlsx{query}"), name)
    )
    assert xlsx_headings == headings
    assert_rows(xlsx_values, expected)


async def test_timeliness_since_tomorrow_is_the_heading_alone(world: World) -> None:
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    response = await fetch(world, f"/reports/timeliness.csv?since={tomorrow}")
    _, rows = csv_rows(response, "cfl-timeliness-by-manufacturer", "ttinni")
    assert rows == []


async def test_a_formula_from_the_cpl_is_never_run(world: World) -> None:
    _, rows = csv_rows(await fetch(world, "/reports/coverage.csv"), "cfl-coverage-by-manufacturer", "ttiiiin")
    assert [r[1] for r in rows if r[0] == FORMULA_ID] == ["'" + FORMULA_NAME]
    assert (
        b'\r\n3D3D,"\'=HYPERLINK(""http://x"",""y"")",'
        in (await fetch(world, "/reports/coverage.csv")).content
    )

    sheet = xlsx_sheet(await fetch(world, "/reports/coverage.xlsx"), "cfl-coverage-by-manufacturer")
    [cell] = [line[1] for line in sheet.iter_rows(min_row=2) if line[0].value == FORMULA_ID]
    assert cell.value == FORMULA_NAME
    assert cell.data_type == "s", "a string cell, not a formula"


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+44 20", "'+44 20"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("Northfield = good", "Northfield = good"),
        ("", ""),
    ],
)
def test_csv_text_that_looks_like_a_formula_gets_an_apostrophe(text: str, written: str) -> None:
    assert exports.neutralised(text) == written


async def test_without_a_cpl_snapshot_each_report_is_its_heading_row(db: Database, tmp_path: Path) -> None:
    world = await make_world(db, tmp_path)
    async with world.db.sessions.begin() as session:
        await session.execute(delete(CplCurrent))
    for path, heading in [
        ("/reports/coverage", "Manufacturer id,Name,Certified"),
        ("/reports/gaps", "Manufacturer id,Model id"),
        ("/reports/consistency/10B2", "Kind,Model id"),
        ("/reports/timeliness", "Manufacturer id,Name,Published"),
    ]:
        text = (await fetch(world, path + ".csv")).content.decode("utf-8-sig")
        assert text.startswith(heading) and text.count("\r\n") == 1, (path, text)
        workbook = openpyxl.load_workbook(io.BytesIO((await fetch(world, path + ".xlsx")).content))
        assert workbook.worksheets[0].max_row == 1, path


BAD = [
    ("/reports/coverage.csv?groupBy=COLOUR", 422, "groupBy must be one of MANUFACTURER, DEVICE_TYPE"),
    ("/reports/coverage.xlsx?groupby=DEVICE_TYPE", 422, "unknown parameter 'groupby'"),
    ("/reports/timeliness.csv?since=2026-13-01", 422, "since must be a date as YYYY-MM-DD"),
    ("/reports/timeliness.csv?since=20260101", 422, "since must be a date as YYYY-MM-DD"),
    ("/reports/consistency/nothex.csv", 422, "manufacturer id 'nothex' is not hexadecimal"),
    ("/reports/consistency/10B2.xlsx?since=2026-01-01", 422, "this report takes no parameters"),
    ("/reports/gaps.csv?manufacturerId=12345", 422, "has 5 hex digits"),
    ("/reports/gaps.xlsx?deviceType=TOASTER", 422, "device type 'TOASTER' is not one of"),
    ("/reports/gaps.csv?smetsVersion=3", 422, "SMETS version '3' is not SMETS1 or SMETS2"),
    ("/reports/coverage.pdf", 404, "reports come as .csv or .xlsx"),
]


async def test_bad_parameters_are_refused_as_json_before_any_file(db: Database, tmp_path: Path) -> None:
    world = await make_world(db, tmp_path)
    for path, status, message in BAD:
        response = await fetch(world, path)
        assert response.status_code == status, (path, response.text)
        body = response.json()
        assert message in body["error"], (path, body)
        assert set(body) == {"error", "code", "problems"}


async def test_callers_are_asked_who_they_are_and_what_they_may_read(db: Database, tmp_path: Path) -> None:
    world = await make_world(db, tmp_path)
    anonymous = await fetch(world, "/reports/coverage.csv", token=None)
    assert anonymous.status_code == 401
    assert "sign in first" in anonymous.json()["error"]
    assert (await fetch(world, "/reports/gaps.xlsx", token="supplier")).status_code == 200
    # As in the graph: the Panel and a manufacturer for its own ids may read a consistency report.
    refused = await fetch(world, "/reports/consistency/10B2.csv", token="supplier")
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    assert (await fetch(world, "/reports/consistency/10B2.csv", token="manufacturer")).status_code == 200
    assert (await fetch(world, "/reports/consistency/2C4F.csv", token="manufacturer")).status_code == 403

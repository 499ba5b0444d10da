"""CPL facts where the CPL puts them, and text kept exactly (issue 14, R6).

The SMETS/CHTS column belongs to a firmware version: each version shows what it was certified against in
the graph, the pages, the exports and the diffs, and filters and reports by SMETS use it. A file whose
rows merely disagree is applied with a warning per row, shown wherever a sync's outcome is shown. And
what a CPL cell says (quotes, commas, line breaks, any script) reaches every door unaltered, from CSV and
XLSX alike.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openpyxl
import pytest
from markupsafe import escape

from cfl_graph.database import Database
from cfl_graph.doors.web.reports import neutralised
from cfl_graph.scheduler import sync_library
from cpl_sync.columns import Column
from tests.fixtures.cli import run_cli
from tests.fixtures.cpl_files import row, write_csv, write_xlsx
from tests.fixtures.library import CPL, OWN_A1, OWN_A2, OWN_A3, World, make_world

pytestmark = pytest.mark.postgres


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def ask(world: World, query: str, **variables: Any) -> dict[str, Any]:
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {world.tokens.panel}"},
        )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return dict(body["data"])


async def fetch(world: World, path: str) -> httpx2.Response:
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(
            path, headers={"Authorization": f"Bearer {world.tokens.panel}", "Accept": "text/html"}
        )


# A model whose firmware upgrades moved it to a later SMETS2 version and then, non-compliant, to SMETS1.
UPGRADED = {
    OWN_A1: ("SMETS2 V3.2", "2022-01-10"),
    OWN_A2: ("smets2 v4.1", "2023-05-02"),
    OWN_A3: ("SMETS1 v1.2", "2024-02-20"),
}


def upgraded_cpl() -> list[Any]:
    return [
        v.as_row(smets_version=UPGRADED[v][0], date_added=UPGRADED[v][1]) if v in UPGRADED else v for v in CPL
    ]


MODEL = """query { deviceModel(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100") {
  smetsVersions smetsVersion
  certifiedFirmware { firmwareVersion smetsVersion technicalSpecification specificationVersion } } }"""


async def test_each_version_shows_the_specification_it_was_certified_against(world: World) -> None:
    before = await world.sync(CPL)
    assert before.outcome.value in ("applied", "unchanged")
    result = await world.sync(upgraded_cpl())
    assert result.outcome.value == "applied" and result.warnings == []

    model = (await ask(world, MODEL))["deviceModel"]
    assert model["smetsVersions"] == ["SMETS1", "SMETS2"]
    assert model["smetsVersion"] == "SMETS1"  # deprecated: the most recently listed version's
    assert [
        (f["firmwareVersion"], f["smetsVersion"], f["technicalSpecification"], f["specificationVersion"])
        for f in model["certifiedFirmware"]
    ] == [
        ("00900000", "SMETS2", "SMETS2", None),
        ("01000000", "SMETS2", "SMETS2", "3.2"),
        ("01010000", "SMETS2", "SMETS2", "4.1"),
        ("01020000", "SMETS1", "SMETS1", "1.2"),
    ]

    # Filters and reports by SMETS use each version's own value.
    smets1 = await ask(
        world,
        "query { deviceModels(filter: {smetsVersion: SMETS1}) { edges { node { modelId hardwareVersion } } } }",
    )
    assert [e["node"]["modelId"] for e in smets1["deviceModels"]["edges"]] == ["0001"]
    groups = await ask(world, "query { coverageSummary(groupBy: SMETS_VERSION) { key certified missing } }")
    assert {g["key"]: g["certified"] for g in groups["coverageSummary"]} == {"SMETS1": 1, "SMETS2": 5}
    gaps = await ask(
        world,
        "query { coverageGaps(filter: {smetsVersion: SMETS1}) { edges { node { firmwareVersion } } } }",
    )
    assert [e["node"]["firmwareVersion"] for e in gaps["coverageGaps"]["edges"]] == ["01020000"]

    # The model page, the gap export and the diff say it the way the CPL does.
    page = (await fetch(world, "/models/10B2/0001/0100")).text
    for written in ("SMETS2 v3.2", "SMETS2 v4.1", "SMETS1 v1.2", "SMETS1, SMETS2"):
        assert written in page
    export = (await fetch(world, "/reports/gaps.csv?manufacturerId=10B2")).content.decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(export)))
    assert "Technical specification" in lines[0]
    assert {line[lines[0].index("Technical specification")] for line in lines[1:]} >= {"SMETS1 v1.2"}
    diff = await ask(
        world,
        f"""query {{ cplSnapshot(id: {result.snapshot_id}) {{ diff {{ changed {{
          after {{ firmwareVersion technicalSpecification }} fields {{ field old new }} }} }} }} }}""",
    )
    changes = {c["after"]["firmwareVersion"]: c["fields"] for c in diff["cplSnapshot"]["diff"]["changed"]}
    assert {"field": "specification", "old": "SMETS2", "new": "SMETS1 v1.2"} in changes["01020000"]
    cli = run_cli(world.db.url, "cpl", "diff", str(before.snapshot_id), str(result.snapshot_id))
    assert "specification: SMETS2 -> SMETS2 v3.2" in cli.stdout, cli.stdout + cli.stderr


SYNC_RUNS = """query { cplSyncRuns(first: 1) { runId outcome warningCount errorCount
  problems { row column columnLetter reason severity } } }"""


async def test_warnings_are_shown_wherever_a_sync_s_outcome_is_shown(world: World, tmp_path: Path) -> None:
    rows = [v.as_row() for v in CPL]
    rows[1] = {**rows[1], Column.DEVICE_TYPE: "GSME"}  # a typo on one row of model 0001
    rows[2] = {**rows[2], Column.MODEL_NAME: "Model 0001 Twin"}
    path = write_csv(tmp_path / "odd.csv", rows)

    synced = run_cli(world.db.url, "sync-cpl", str(path), work=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert "2 warning(s); the file was applied:" in synced.stdout
    assert 'warning: row 3, column G "Device Type": device type GSME differs from ESME' in synced.stdout
    assert 'warning: row 4, column C "Model Name": model name "Model 0001 Twin" differs' in synced.stdout

    graph = (await ask(world, SYNC_RUNS))["cplSyncRuns"][0]
    runs = run_cli(world.db.url, "cpl", "runs", "--limit", "1", work=tmp_path)
    assert "`cfl-graph cpl run ID`" in runs.stdout
    shown = run_cli(world.db.url, "cpl", "run", str(graph["runId"]), work=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "2 warning(s); the file was applied:" in shown.stdout
    assert 'warning: row 3, column G "Device Type"' in shown.stdout

    # The rows that decide (the model's last row) say what the current snapshot says: nothing to apply,
    # and the warnings are still on the record.
    assert (graph["outcome"], graph["warningCount"], graph["errorCount"]) == ("UNCHANGED", 2, 0)
    assert [(p["row"], p["columnLetter"], p["severity"]) for p in graph["problems"]] == [
        (3, "G", "WARNING"),
        (4, "C", "WARNING"),
    ]
    page = (await fetch(world, "/cpl")).text
    assert "2 problem(s), row by row" in page
    assert "model name &#34;Model 0001 Twin&#34; differs from &#34;Model 0001&#34; on row 2" in page


# Text the way people write it in Excel: quotes (doubled in CSV), commas, line breaks (Alt+Enter), tabs,
# accents, other scripts, emoji, right-to-left text and characters a spreadsheet would read as formulas.
PIECES = [
    'Tamarside "Smart" Meter Systems plc',
    "Ōkawa, Brandt & Søn",
    "Line one\nline two",
    "Tab\tseparated",
    "Société Générale d'Équipement",
    "电表有限公司",
    "Ünïcödé Ltd",
    "عداد ذكي",
    "Metering 🚀 Ltd",
    '"Quoted" at both ends "',
    "=SUM(A1:A2)",
    "+44 Meters",
    "@home Energy",
    "-minus Ltd",
    "semi;colon",
    "a,b,c,d",
    "Zero\u200bwidth",
    "x" * 200,
]


def generated_rows(seed: int, count: int = 40) -> list[dict[Column, Any]]:
    """CPL rows whose every text cell is drawn from `PIECES`, joined at random; one manufacturer id per
    manufacturer name, and one name per model, so nothing disagrees."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        maker = index % 5
        model = index % 10
        rows.append(
            row(
                manufacturer_id=f"{0x3000 + maker:04X}",
                manufacturer_name=" ".join(random.Random(maker).sample(PIECES, 2))[:200].strip(),
                model_id=f"{model + 1:04X}",
                model_name=" ".join(random.Random(100 + model).sample(PIECES, 2))[:200].strip(),
                hardware_version="0001",
                firmware_version=f"{index + 1:08X}",
                image_hash=f"{index:064x}",
                device_type="ESME",
                smets_version=rng.choice(["SMETS2 v4.1", "SMETS1", "CHTS v1.3", "SMETS2"]),
                cpa_reference=rng.choice(PIECES)[:64].strip(),
                status="Active",
                date_added=(dt.date(2024, 1, 1) + dt.timedelta(days=index)).isoformat(),
            )
        )
    return rows


WRITERS: dict[str, Callable[..., Path]] = {"csv": write_csv, "xlsx": write_xlsx}
FACTS = """query { deviceModels(first: 500, filter: {manufacturerId: "%s"}) { edges { node {
  manufacturerId manufacturerName modelId modelName hardwareVersion
  certifiedFirmware { firmwareVersion imageHash status technicalSpecification specificationVersion
    cpaReference listedOn } } } } }"""


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_every_cell_reaches_the_graph_pages_and_exports_exactly_as_written(
    world: World, tmp_path: Path, fmt: str
) -> None:
    rows = generated_rows(seed=14)
    cpl = [*[v.as_row() for v in CPL], *rows]
    other = "xlsx" if fmt == "csv" else "csv"
    path = WRITERS[fmt](tmp_path / f"cpl.{fmt}", cpl)
    result = await sync_library(world.db, str(path), work_dir=tmp_path / "w")
    assert result.outcome.value == "applied", result.errors
    assert result.warnings == []
    # The same rows written as the other format say the same: nothing new to apply.
    again = WRITERS[other](tmp_path / f"again.{other}", cpl)
    assert (await sync_library(world.db, str(again), work_dir=tmp_path / "w")).outcome.value == "unchanged"

    by_key = {(r[Column.MANUFACTURER_ID], r[Column.MODEL_ID], r[Column.FIRMWARE_VERSION]): r for r in rows}
    seen = 0
    for maker in sorted({r[Column.MANUFACTURER_ID] for r in rows}):
        edges = (await ask(world, FACTS % maker))["deviceModels"]["edges"]
        for node in (e["node"] for e in edges):
            for fw in node["certifiedFirmware"]:
                cells = by_key[(node["manufacturerId"], node["modelId"], fw["firmwareVersion"])]
                spec = fw["technicalSpecification"] + (
                    f" v{fw['specificationVersion']}" if fw["specificationVersion"] else ""
                )
                assert (
                    node["manufacturerName"],
                    node["modelName"],
                    fw["imageHash"],
                    spec,
                    fw["cpaReference"],
                    fw["listedOn"],
                ) == (
                    cells[Column.MANUFACTURER_NAME],
                    cells[Column.MODEL_NAME],
                    cells[Column.IMAGE_HASH],
                    cells[Column.SMETS_VERSION],
                    cells[Column.CPA_REFERENCE],
                    cells[Column.DATE_ADDED],
                )
                seen += 1
    assert seen == len(rows)

    # The pages show each name escaped, never altered; the coverage exports carry the manufacturers'
    # names as labels (CSV with a formula-safe apostrophe where one is needed, XLSX as written).
    names: dict[str, str] = {r[Column.MANUFACTURER_ID]: r[Column.MANUFACTURER_NAME] for r in rows}
    for maker, name in names.items():
        page = (await fetch(world, f"/manufacturers/{maker}")).text
        assert str(escape(name)) in page
    export = (await fetch(world, "/reports/coverage.csv")).content.decode("utf-8-sig")
    labels = {line[0]: line[1] for line in csv.reader(io.StringIO(export, newline=""))}
    assert {maker: labels[maker] for maker in names} == {m: neutralised(n) for m, n in names.items()}
    sheet = openpyxl.load_workbook(io.BytesIO((await fetch(world, "/reports/coverage.xlsx")).content)).active
    assert sheet is not None
    written = {str(r[0]): r[1] for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert {maker: written[maker] for maker in names} == names

"""Typed clients, shown working (issue 21): the examples in `examples/` run against a real server.

- `examples/panel_report`: Python's `gql`, its documents validated against the client SDL on the
  reporting machine (a typo fails there, with no request sent), paging through every coverage gap.
- `examples/dashboard`: a TypeScript dashboard query typed by GraphQL Code Generator's client preset
  from the client SDL, checked by `tsc` (which refuses a field the schema lacks) and run under Node with
  Apollo Client 4.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from gql import GraphQLRequest, gql
from graphql import GraphQLError

from cfl_graph.database import Database
from examples.panel_report.report import client as report_client
from tests.fixtures.figures import report
from tests.fixtures.library import OWN_A1, World, client, make_world, serving
from tests.fixtures.node import ROOT, NodeRun, run_node

pytestmark = pytest.mark.postgres

DASHBOARD = ROOT / "examples" / "dashboard"
CLIENT_SDL = ROOT / "schema" / "sdl" / "client.graphql"
BIN = ROOT / "node_modules" / ".bin"


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    world = await make_world(db, tmp_path)
    await world.publish((await world.upload(world.image(OWN_A1))).id)  # one version no longer a gap
    return world


async def graph(url: str, token: str, query: str) -> dict[str, Any]:
    async with client(url, token) as http:
        answer: dict[str, Any] = (await http.post(f"{url}/graphql", json={"query": query})).json()
    assert "errors" not in answer, answer
    return answer["data"]  # type: ignore[no-any-return]


# --- Python: gql ---------------------------------------------------------------------------------


async def test_the_panel_s_gql_report_pages_through_every_coverage_gap(world: World) -> None:
    async with serving(world.app()) as url:
        expected = (await graph(url, world.tokens.panel, "{ coverageGaps { totalCount } }"))["coverageGaps"]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "examples.panel_report.report",
            "--url",
            f"{url}/graphql",
            "--token",
            world.tokens.panel,
            "--page-size",
            "2",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    total = expected["totalCount"]
    assert total >= 3
    assert lines[0] == f"{total} coverage gaps, read in {math.ceil(total / 2)} pages"
    counted = sum(int(line.split(": ")[1].split()[0]) for line in lines[1:])
    assert counted == total
    assert any(line.startswith("  Northfield Metering Ltd (10B2): ") for line in lines[1:]), lines


async def test_a_document_the_client_sdl_refuses_never_leaves_the_reporting_machine() -> None:
    # Nothing listens on port 9: a request sent would be a connection error, not a GraphQL one.
    async with report_client("http://127.0.0.1:9/graphql", "unused") as session:
        with pytest.raises(GraphQLError) as refused:
            await session.execute(GraphQLRequest(gql("{ coverageGaps { totalCont } }")))
    assert "Cannot query field 'totalCont' on type 'CoverageGapConnection'." in refused.value.message


# --- TypeScript: GraphQL Code Generator, tsc, Apollo Client ---------------------------------------


def dashboard_copy(tmp_path: Path) -> Path:
    """The example as a reader checks it out (nothing generated yet), beside the repository's packages."""
    folder = tmp_path / "dashboard"
    shutil.copytree(DASHBOARD, folder, ignore=shutil.ignore_patterns("node_modules", "gql", "dist"))
    (folder / "node_modules").symlink_to(ROOT / "node_modules", target_is_directory=True)
    return folder


async def generate_and_check(node: str, folder: Path) -> tuple[NodeRun, float]:
    """GraphQL Code Generator's types for the documents in `folder`, from the client SDL (it must
    succeed), then `tsc`: its run, and the seconds code generation took."""
    started = time.perf_counter()
    codegen = await run_node(
        node,
        BIN / "graphql-codegen",
        "--config",
        "codegen.ts",
        cwd=folder,
        env={"CFL_CLIENT_SDL": str(CLIENT_SDL)},
    )
    assert codegen.returncode == 0, codegen.stdout + codegen.stderr
    generated = time.perf_counter() - started
    return await run_node(node, BIN / "tsc", "-p", ".", cwd=folder), generated


async def test_the_typescript_dashboard_is_typed_from_the_client_sdl_checked_by_tsc_and_runs(
    world: World, node: str, tmp_path: Path
) -> None:
    folder = dashboard_copy(tmp_path)
    started = time.perf_counter()
    checked, generated_seconds = await generate_and_check(node, folder)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked_seconds = time.perf_counter() - started - generated_seconds
    generated = (folder / "src" / "gql" / "graphql.ts").read_text()
    assert "export type CoverageSummaryQuery = " in generated

    async with serving(world.app()) as url:
        ran = await run_node(
            node,
            folder / "dist" / "dashboard.js",
            "MANUFACTURER",
            cwd=folder,
            env={"CFL_GRAPHQL_URL": f"{url}/graphql", "CFL_TOKEN": world.tokens.supplier},
        )
        direct = await graph(
            url, world.tokens.supplier, "{ coverageSummary(groupBy: MANUFACTURER) { label missing } }"
        )
    shown = ran.json()
    assert shown["groupBy"] == "MANUFACTURER" and len(shown["rows"]) == 2
    assert sorted((row["group"], row["missing"]) for row in shown["rows"]) == sorted(
        (group["label"], group["missing"]) for group in direct["coverageSummary"]
    )
    assert all(row["percent"].endswith("%") or row["percent"] == "nothing due" for row in shown["rows"])
    report(
        f"typed dashboard: graphql-codegen {generated_seconds:.1f} s, tsc {checked_seconds:.1f} s, "
        f"{len(shown['rows'])} groups read through Apollo Client 4"
    )


async def test_tsc_refuses_a_field_the_client_sdl_does_not_have(node: str, tmp_path: Path) -> None:
    folder = dashboard_copy(tmp_path)
    (folder / "src" / "typo.ts").write_text(
        "import type { CoverageSummaryQuery } from './gql/graphql.js';\n"
        "export const read = (data: CoverageSummaryQuery) => data.coverageSummary.map((g) => g.coverge);\n"
    )
    checked, _ = await generate_and_check(node, folder)
    assert checked.returncode != 0
    assert "src/typo.ts" in checked.stdout and "'coverge'" in checked.stdout, checked.stdout
    assert not (folder / "dist").exists()  # noEmitOnError: nothing runs that does not type-check

"""The SDL files in schema/sdl/ are the printed schemas (R10): the contract other teams read cannot
drift from the code."""

from __future__ import annotations

import pytest

from schema import Graph
from schema.sdl import printed, sdl_path
from tests.fixtures.cli import run_cli


@pytest.mark.parametrize("graph", list(Graph))
def test_the_sdl_file_is_the_printed_schema(graph: Graph) -> None:
    assert sdl_path(graph).read_text(encoding="utf-8") == printed(graph), (
        f"{sdl_path(graph).name} differs from the code: run `cfl-graph schema write` and review the change"
    )


def test_each_subgraph_owns_its_own_fields() -> None:
    cpl, cfl, combined = printed(Graph.CPL), printed(Graph.CFL), printed(Graph.COMBINED)
    assert "deviceModels(" in cpl and "deviceModels(" not in cfl
    assert "coverageGaps(" in cfl and "coverageGaps(" not in cpl
    assert "publishImage(" in cfl and "type Mutation" not in cpl
    assert "node(id: ID!)" in combined and "node(id: ID!)" not in cpl and "node(id: ID!)" not in cfl
    for sdl in (cpl, cfl):
        assert '@key(fields: "manufacturerId modelId hardwareVersion")' in sdl
        assert '@key(fields: "manufacturerId modelId hardwareVersion firmwareVersion")' in sdl


def test_the_cli_prints_a_subgraph(tmp_path: object) -> None:
    answer = run_cli("sqlite+aiosqlite:///unused.sqlite3", "schema", "print", "cfl")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout == printed(Graph.CFL)

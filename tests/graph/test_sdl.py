"""The SDL files in schema/sdl/ are the printed schemas (R10): the contract other teams read cannot
drift from the code. The clients' graph is plain GraphQL: no federation field, type or directive, and a
file graphql-core builds by itself (graphql-js builds it too: tests/graph/test_client_sdl.py)."""

from __future__ import annotations

import re

import graphql
import pytest

from cfl_graph.doors.graph import Graph
from cfl_graph.doors.graph.sdl import printed, sdl_path
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


def test_the_client_sdl_is_plain_graphql_that_builds_by_itself() -> None:
    sdl = sdl_path(Graph.COMBINED).read_text(encoding="utf-8")
    assert sdl_path(Graph.COMBINED).name == "client.graphql"
    built = graphql.build_schema(sdl)
    assert set(re.findall(r"@\w+", sdl)) <= {"@deprecated", "@specifiedBy"}
    federation = {"_Any", "_Entity", "_Service", "_FieldSet", "link__Import", "link__Purpose"}
    assert not federation & set(built.type_map)
    assert built.query_type is not None and built.mutation_type is not None
    assert not {name for name in built.query_type.fields if name.startswith("_")}
    assert {d.name for d in built.directives} == {d.name for d in graphql.specified_directives}


def test_the_subgraphs_keep_federation_for_the_router() -> None:
    for graph in (Graph.CPL, Graph.CFL):
        sdl = sdl_path(graph).read_text(encoding="utf-8")
        assert "_entities(representations: [_Any!]!): [_Entity]!" in sdl
        assert "_service: _Service!" in sdl
        assert sdl.startswith('schema @link(url: "https://specs.apollo.dev/federation/v2.5"')


def test_the_cli_prints_a_subgraph(tmp_path: object) -> None:
    answer = run_cli("sqlite+aiosqlite:///unused.sqlite3", "schema", "print", "cfl")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout == printed(Graph.CFL)


# Fields that name one concept of the domain wherever a type has them (issue 16): a CPL listing in a
# diff and a certified version say a status, a device type or a specification the same way.
ONE_TYPE_PER_CONCEPT = {
    "status": {"CertifiedFirmware", "CplListing"},
    "deviceType": {"DeviceModel", "CplListing"},
    "smetsVersion": {"CertifiedFirmware", "CplListing"},
    "technicalSpecification": {"CertifiedFirmware", "CplListing"},
    "specificationVersion": {"CertifiedFirmware", "CplListing"},
}


@pytest.mark.parametrize("field", sorted(ONE_TYPE_PER_CONCEPT))
def test_one_concept_has_one_type_everywhere_in_the_client_graph(field: str) -> None:
    built = graphql.build_schema(sdl_path(Graph.COMBINED).read_text(encoding="utf-8"))
    typed = {
        name: str(graphql.get_nullable_type(kind.fields[field].type))
        for name, kind in built.type_map.items()
        if isinstance(kind, graphql.GraphQLObjectType) and field in kind.fields
    }
    assert ONE_TYPE_PER_CONCEPT[field] <= set(typed), typed
    assert len(set(typed.values())) == 1, f"{field} has several types: {typed}"

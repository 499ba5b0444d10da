"""What a document's answer reads decides what the response cache keys it on (cfl_graph/doors/graph/reads.py): a field
of the CPL reads the snapshot, a field of the library reads both, keys and ids read nothing."""

from __future__ import annotations

import pytest
from graphql import parse

from cfl_graph.doors.graph import Graph, build_schema
from cfl_graph.doors.graph.reads import Reads, query_reads

COMBINED = build_schema(graph=Graph.COMBINED)._schema
CPL_SUBGRAPH = build_schema(graph=Graph.CPL)._schema
BOTH = Reads.CPL | Reads.LIBRARY


@pytest.mark.parametrize(
    ("document", "reads"),
    [
        ("{ cplSnapshots { id rowCount } }", Reads.CPL),
        (
            '{ deviceModel(manufacturerId: "10B2", modelId: "1", hardwareVersion: "1") { modelName '
            "certifiedFirmware { firmwareVersion imageHash } } }",
            Reads.CPL,
        ),
        (
            '{ deviceModel(manufacturerId: "10B2", modelId: "1", hardwareVersion: "1") { '
            "libraryImages { imageId } } }",
            BOTH,
        ),
        (
            '{ deviceModel(manufacturerId: "10B2", modelId: "1", hardwareVersion: "1") { '
            "certifiedFirmware { commercial } } }",
            BOTH,
        ),
        # deviceModels is the CPL's list, but its hasCoverageGap filter asks the library.
        ("{ deviceModels { totalCount } }", BOTH),
        ("{ coverageGaps { totalCount } }", BOTH),
        ("{ coverageSummary(groupBy: MANUFACTURER) { certified } }", BOTH),
        ('{ node(id: "x") { id } }', BOTH),
        ("{ __typename }", Reads.NOTHING),
        # A fragment counts wherever it is spread, and before its spread too.
        (
            "fragment F on DeviceModel { libraryImages { imageId } } "
            '{ deviceModel(manufacturerId: "1", modelId: "1", hardwareVersion: "1") { ...F } }',
            BOTH,
        ),
        ("query A { cplSnapshots { id } } query B { coverageGaps { totalCount } }", None),
    ],
)
def test_what_a_query_reads(document: str, reads: Reads | None) -> None:
    assert query_reads(COMBINED, parse(document), None) == reads


def test_the_operation_named_is_the_one_measured_and_the_whole_document_counts() -> None:
    document = parse("query A { cplSnapshots { id } } query B { coverageGaps { totalCount } }")
    assert query_reads(COMBINED, document, "A") == BOTH  # B's fields are in the document too
    assert query_reads(COMBINED, document, "C") is None


def test_mutations_and_unknown_fields_are_not_shared() -> None:
    assert query_reads(COMBINED, parse('mutation { discardImage(id: "1") }'), None) is None
    assert query_reads(COMBINED, parse("{ noSuchField }"), None) is None
    assert query_reads(COMBINED, parse("{ cplSnapshots { noSuchField } }"), None) is None
    # A field of the library is unknown to the CPL subgraph: its request fails, and is not shared.
    assert query_reads(CPL_SUBGRAPH, parse("{ coverageGaps { totalCount } }"), None) is None
    # Federation's fields are the subgraphs' alone: the clients' graph does not know them.
    assert query_reads(COMBINED, parse("{ _service { sdl } }"), None) is None


def test_the_subgraphs_sdl_is_the_schema_alone() -> None:
    assert query_reads(CPL_SUBGRAPH, parse("{ _service { sdl } }"), None) == Reads.NOTHING

"""The printed SDL of each schema, kept in the repository's `schema/sdl/` (where tools look for them)
so a change to the graph shows in review and
other teams can read the contract without running anything. `cfl-graph schema write` rewrites them; a
test fails while they and the code differ.

`client.graphql` is the graph `/graphql` serves, plain GraphQL that any tool builds by itself;
`cpl.graphql` and `cfl.graphql` are the federation subgraphs, as a router composes them.
`baseline/client.graphql` is the client graph of the last release: `cfl-graph schema check` compares
today's with it (docs/graphql.md).
"""

from __future__ import annotations

from pathlib import Path

from cfl_graph.doors.graph import Graph, build_schema

# The repository's schema/sdl/: files for review and tools, not part of the installed package (the
# server builds its schemas from the code).
FOLDER = Path(__file__).resolve().parents[3] / "schema" / "sdl"
FILE_NAMES = {Graph.COMBINED: "client.graphql", Graph.CPL: "cpl.graphql", Graph.CFL: "cfl.graphql"}
BASELINE = FOLDER / "baseline" / "client.graphql"


def sdl_path(graph: Graph) -> Path:
    return FOLDER / FILE_NAMES[graph]


def printed(graph: Graph) -> str:
    return build_schema(graph=graph).as_str() + "\n"


def write_sdl_files() -> list[Path]:
    written = []
    for graph in Graph:
        path = sdl_path(graph)
        path.write_text(printed(graph), encoding="utf-8")
        written.append(path)
    return written

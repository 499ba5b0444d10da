"""The client SDL is a file any GraphQL tool builds (issue 21): graphql-js builds
`schema/sdl/client.graphql` by itself, and the schema `/graphql` shows by introspection, on a real
server, is exactly that file's. Neither holds anything of federation's."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfl_graph.database import Database
from cfl_graph.doors.graph import Graph
from cfl_graph.doors.graph.sdl import sdl_path
from tests.fixtures.figures import report
from tests.fixtures.library import World, make_world, serving
from tests.fixtures.node import ROOT, run_node

CHECK = ROOT / "tests" / "graph" / "node" / "client_sdl.mjs"
SPECIFIED = {"include", "skip", "deprecated", "specifiedBy", "oneOf"}


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the schema knows no database
async def test_graphql_js_builds_the_client_sdl_and_it_is_the_schema_graphql_serves(
    world: World, node: str
) -> None:
    sdl = sdl_path(Graph.COMBINED)
    async with serving(world.app()) as url:
        run = await run_node(node, CHECK, str(sdl), f"{url}/graphql", world.tokens.supplier)
    found = run.json()
    assert found["same"], f"the file and the live schema differ: {found['differing']}"
    assert found["breaking"] == [] and found["dangerous"] == []
    assert not [name for name in found["types"] if name.startswith("_") and not name.startswith("__")]
    assert not [name for name in found["types"] if name.startswith("link__")]
    assert set(found["directives"]) <= SPECIFIED, found["directives"]
    assert {"Query", "Mutation", "DeviceModel", "CertifiedFirmware", "LibraryImage"} <= set(found["types"])
    report(
        f"client SDL: graphql-js builds {sdl.name} ({found['lines'][0]} lines printed, "
        f"{len(found['types'])} types) and it equals /graphql's introspection"
    )

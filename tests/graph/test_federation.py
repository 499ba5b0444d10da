"""The graph is extensible: Apollo's gateway composes the cpl and cfl subgraphs into the graph `/graphql`
serves, forwards each client's token, and takes a third subgraph (examples/fleet) that extends the same
entities.

The gateway is `federation/gateway.mjs` under Node, with the npm packages package-lock.json pins
(`tests.fixtures.node` runs `npm ci` when they are missing; without Node these tests fail, never skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cfl_graph.database import Database
from cfl_graph.keys import VersionKey
from examples.fleet.app import FLEET
from examples.fleet.app import create_app as create_fleet_app
from tests.fixtures.library import (
    OTHER_C1,
    OWN_A1,
    OWN_A2,
    OWN_A3,
    OWN_B_HW1,
    OWN_WITHDRAWN,
    Version,
    World,
    client,
    make_world,
    serving,
)
from tests.fixtures.node import ROOT
from tests.fixtures.parties import OWN_MANUFACTURER_ID

pytestmark = pytest.mark.postgres

GATEWAY_SCRIPT = ROOT / "federation" / "gateway.mjs"
START_SECONDS = 60.0
STOP_SECONDS = 10.0


# --- the gateway process ---------------------------------------------------------------------------


async def launch(
    node: str, subgraphs: dict[str, str], token: str, log: Path, env: dict[str, str]
) -> asyncio.subprocess.Process:
    with log.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            node,
            str(GATEWAY_SCRIPT),
            *(f"{name}={url}" for name, url in subgraphs.items()),
            cwd=ROOT,
            env={**os.environ, "CFL_GATEWAY_TOKEN": token, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )


async def stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode


@contextlib.asynccontextmanager
async def gateway(
    node: str, subgraphs: dict[str, str], token: str, log: Path, *, apq: bool = False
) -> AsyncIterator[str]:
    """The gateway composing `subgraphs` for the block; yields its URL. Its log is in `log`. With `apq`
    it sends the subgraphs automatic persisted queries."""
    process = await launch(node, subgraphs, token, log, {"CFL_GATEWAY_APQ": "1" if apq else "0"})
    try:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_SECONDS)
        except TimeoutError:
            pytest.fail(f"the gateway did not start within {START_SECONDS:.0f} s:\n{log.read_text()}")
        if not line.startswith(b"READY "):
            await stop(process)
            pytest.fail(f"the gateway did not start (exit {process.returncode}):\n{log.read_text()}")
        yield line.decode().removeprefix("READY ").strip()
    finally:
        returncode = await stop(process)
    assert returncode == 0, f"the gateway did not stop cleanly on SIGTERM:\n{log.read_text()}"


async def ask(
    url: str, token: str | None, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST a query to a graph at `url` and return the JSON answer, whatever its status."""
    async with client(url, token) as http:
        response = await http.post(url, json={"query": query, "variables": variables or {}})
    answer: dict[str, Any] = response.json()
    answer["status"] = response.status_code
    return answer


# --- the library behind the graph ----------------------------------------------------------------


def key_of(version: Version) -> VersionKey:
    return VersionKey(
        version.manufacturer_id, version.model_id, version.hardware_version, version.firmware_version
    )


@dataclass
class Federation:
    world: World
    graphql: str  # the app's /graphql, the graph the composed one must equal
    gateway: str


@pytest.fixture
async def library(db: Database, tmp_path: Path) -> World:
    """OWN_A2 published, OWN_A3 declared commercial, OWN_A1 a draft: the library's three answers."""
    world = await make_world(db, tmp_path)
    await world.publish((await world.upload(world.image(OWN_A2))).id)
    manufacturer = await world.principal(world.tokens.manufacturer)
    await world.library.declare_commercial(manufacturer, key_of(OWN_A3), "Sold only under one contract")
    await world.upload(world.image(OWN_A1))
    return world


@pytest.fixture
async def federation(library: World, node: str, tmp_path: Path) -> AsyncIterator[Federation]:
    async with serving(library.app()) as url:
        subgraphs = {"cpl": f"{url}/subgraphs/cpl/graphql", "cfl": f"{url}/subgraphs/cfl/graphql"}
        log = tmp_path / "gateway.log"
        async with gateway(node, subgraphs, library.tokens.supplier, log) as gateway_url:
            yield Federation(library, f"{url}/graphql", gateway_url)


# --- the composed graph answers as the combined one ----------------------------------------------

DEVICE_MODELS = """{
  deviceModels(first: 10) {
    totalCount
    edges { node {
      manufacturerId modelName
      certifiedFirmware {
        firmwareVersion imageHash status commercial
        libraryImage { fileSha256 state }
      }
      libraryImages { imageId }
    } }
  }
}"""

COVERAGE_GAPS = """{
  coverageGaps(first: 5) {
    totalCount
    edges { node {
      daysMissing
      deviceModel { modelName deviceType }
      certifiedFirmware { imageHash commercial }
    } }
  }
}"""

CONSISTENCY = """query ($manufacturerId: String!) {
  consistencyReport(manufacturerId: $manufacturerId) {
    findings { kind firmwareVersion deviceModel { modelName smetsVersion } certifiedFirmware { status } }
  }
}"""


async def test_cross_subgraph_queries_through_the_gateway_answer_as_the_combined_graph(
    federation: Federation,
) -> None:
    token = federation.world.tokens.manufacturer
    answers = []
    for query, variables in [
        (DEVICE_MODELS, {}),
        (COVERAGE_GAPS, {}),
        (CONSISTENCY, {"manufacturerId": OWN_MANUFACTURER_ID}),
    ]:
        direct = await ask(federation.graphql, token, query, variables)
        composed = await ask(federation.gateway, token, query, variables)
        assert "errors" not in direct, direct
        assert composed == direct, query
        answers.append(composed["data"])

    # Not equal by being empty: each answer crosses from one subgraph into the other.
    models, gaps, report = answers
    assert models["deviceModels"]["totalCount"] == 4
    versions = {
        cf["firmwareVersion"]: cf
        for edge in models["deviceModels"]["edges"]
        for cf in edge["node"]["certifiedFirmware"]
    }
    assert versions[OWN_A2.firmware_version]["libraryImage"]["state"] == "PUBLISHED"
    assert versions[OWN_A2.firmware_version]["imageHash"] == OWN_A2.cpl_hash
    assert versions[OWN_A3.firmware_version]["commercial"] is True
    assert gaps["coverageGaps"]["edges"]
    assert all(gap["node"]["deviceModel"]["modelName"] for gap in gaps["coverageGaps"]["edges"])
    assert report["consistencyReport"]["findings"]


async def test_the_gateway_sends_persisted_queries_and_the_subgraphs_answer_them(
    library: World, node: str, tmp_path: Path
) -> None:
    """Apollo's own data source speaks automatic persisted queries to the subgraphs: a hash first, the
    text once a subgraph says it does not know it, then the hash alone from then on."""
    app = library.app()
    persisted = app.state.persisted_queries
    token = library.tokens.manufacturer
    async with serving(app) as url:
        subgraphs = {"cpl": f"{url}/subgraphs/cpl/graphql", "cfl": f"{url}/subgraphs/cfl/graphql"}
        async with gateway(node, subgraphs, library.tokens.supplier, tmp_path / "gw.log", apq=True) as gw:
            direct = await ask(f"{url}/graphql", token, DEVICE_MODELS)
            first = await ask(gw, token, DEVICE_MODELS)
            registered = len(persisted)
            again = await ask(gw, token, DEVICE_MODELS)
    assert "errors" not in direct, direct
    assert first == again == direct
    # The plan fetches from both subgraphs; each operation's text was sent once, after the hash alone
    # was not known, and the second time the hashes alone were enough.
    assert registered >= 2, registered
    assert len(persisted) == registered


async def test_a_mutation_through_the_gateway_reaches_the_library(federation: Federation) -> None:
    world = federation.world
    token = world.tokens.manufacturer
    draft = await ask(
        federation.graphql, token, "{ deviceModels { edges { node { libraryImages { imageId state } } } } }"
    )
    [draft_id] = [
        image["imageId"]
        for edge in draft["data"]["deviceModels"]["edges"]
        for image in edge["node"]["libraryImages"]
        if image["state"] == "DRAFT"
    ]

    published = await ask(
        federation.gateway,
        token,
        "mutation ($id: ID!) { publishImage(id: $id) { imageId state firmwareVersion } }",
        {"id": str(draft_id)},
    )

    assert "errors" not in published, published
    assert published["data"] == {
        "publishImage": {
            "imageId": draft_id,
            "state": "PUBLISHED",
            "firmwareVersion": OWN_A1.firmware_version,
        }
    }
    query = """query ($m: String!, $d: String!, $h: String!) {
      deviceModel(manufacturerId: $m, modelId: $d, hardwareVersion: $h) {
        certifiedFirmware { firmwareVersion libraryImage { imageId state } }
      }
    }"""
    variables = {"m": OWN_A1.manufacturer_id, "d": OWN_A1.model_id, "h": OWN_A1.hardware_version}
    composed = await ask(federation.gateway, world.tokens.supplier, query, variables)
    assert composed == await ask(federation.graphql, world.tokens.supplier, query, variables)
    assert {
        "firmwareVersion": OWN_A1.firmware_version,
        "libraryImage": {"imageId": draft_id, "state": "PUBLISHED"},
    } in composed["data"]["deviceModel"]["certifiedFirmware"]


async def test_the_gateway_refuses_whom_the_subgraphs_refuse(federation: Federation) -> None:
    # The gateway answers introspection itself, so it turns away a request with no token at all ...
    anonymous = await ask(federation.gateway, None, "{ __schema { types { name } } }")
    assert anonymous["status"] == 401
    assert [e["extensions"]["code"] for e in anonymous["errors"]] == ["UNAUTHENTICATED"]
    assert "data" not in anonymous

    # ... and forwards any other token as it is: its own never stands in for a client's.
    for token in ["not-a-token", federation.world.tokens.revoked]:
        refused = await ask(federation.gateway, token, DEVICE_MODELS)
        assert refused.get("data") is None, refused
        assert {e["extensions"]["code"] for e in refused["errors"]} == {"UNAUTHENTICATED"}, refused
        direct = await ask(federation.graphql, token, DEVICE_MODELS)
        assert direct["status"] == 401


# --- a third subgraph ----------------------------------------------------------------------------

FLEET_AGAINST_LIBRARY = """{
  deviceModels(first: 50) {
    edges { node {
      manufacturerId modelId hardwareVersion modelName
      installations { firmwareVersion meterCount }
      certifiedFirmware { firmwareVersion commercial libraryImage { state } }
    } }
  }
}"""

FLEET_FIRST = """{
  installedDeviceModels {
    modelId hardwareVersion modelName
    installations { firmwareVersion meterCount certifiedFirmware { status commercial } }
  }
}"""


def newer_images(models: list[dict[str, Any]]) -> dict[VersionKey, list[str]]:
    """Installed versions with a newer, non-commercial, published image of the same model: what to roll
    out. Firmware versions are fixed-width upper-case hex, so they compare as strings."""
    found = {}
    for model in models:
        available = [
            cf["firmwareVersion"]
            for cf in model["certifiedFirmware"]
            if not cf["commercial"] and (cf["libraryImage"] or {}).get("state") == "PUBLISHED"
        ]
        for installed in model["installations"]:
            newer = sorted(v for v in available if v > installed["firmwareVersion"])
            if newer:
                key = (model["manufacturerId"], model["modelId"], model["hardwareVersion"])
                found[VersionKey(*key, installed["firmwareVersion"])] = newer
    return found


async def test_a_supplier_s_fleet_subgraph_finds_installed_versions_with_a_newer_image(
    library: World, node: str, tmp_path: Path
) -> None:
    async with serving(library.app()) as url, serving(create_fleet_app()) as fleet_url:
        subgraphs = {
            "cpl": f"{url}/subgraphs/cpl/graphql",
            "cfl": f"{url}/subgraphs/cfl/graphql",
            "fleet": f"{fleet_url}/graphql",
        }
        async with gateway(node, subgraphs, library.tokens.supplier, tmp_path / "gateway.log") as gateway_url:
            answer = await ask(gateway_url, library.tokens.supplier, FLEET_AGAINST_LIBRARY)
            from_fleet = await ask(gateway_url, library.tokens.supplier, FLEET_FIRST)

    assert "errors" not in answer, answer
    models = [edge["node"] for edge in answer["data"]["deviceModels"]["edges"]]
    installed = {
        (m["manufacturerId"], m["modelId"], m["hardwareVersion"], i["firmwareVersion"]): i["meterCount"]
        for m in models
        for i in m["installations"]
    }
    assert installed == {
        (f.manufacturer_id, f.model_id, f.hardware_version, f.firmware_version): f.meter_count for f in FLEET
    }
    # OWN_A2's image is published. The meters on the withdrawn version and on OWN_A1 can move to it; those
    # on OWN_A2 cannot move to OWN_A3, which is newer but commercial, and OWN_A1's draft counts for nothing.
    assert newer_images(models) == {
        key_of(OWN_WITHDRAWN): [OWN_A2.firmware_version],
        key_of(OWN_A1): [OWN_A2.firmware_version],
    }

    # The fleet's own root field: the gateway fetches the CPL's and the library's facts for its keys.
    assert "errors" not in from_fleet, from_fleet
    statuses = {
        (m["modelName"], i["firmwareVersion"]): (
            i["certifiedFirmware"]["status"],
            i["certifiedFirmware"]["commercial"],
        )
        for m in from_fleet["data"]["installedDeviceModels"]
        for i in m["installations"]
    }
    assert statuses == {
        (f"Model {version.model_id}", version.firmware_version): (version.status.upper(), False)
        for version in [OWN_WITHDRAWN, OWN_A1, OWN_A2, OWN_B_HW1, OTHER_C1]
    }


async def test_subgraphs_that_do_not_compose_stop_the_gateway_with_the_errors(
    node: str, tmp_path: Path
) -> None:
    # Two copies of the fleet subgraph both resolve Query.installedDeviceModels, which neither shares.
    log = tmp_path / "gateway.log"
    async with serving(create_fleet_app()) as fleet_url:
        subgraphs = {"fleet": f"{fleet_url}/graphql", "fleet_copy": f"{fleet_url}/graphql"}
        process = await launch(node, subgraphs, "unused", log, {})
        try:
            assert process.stdout is not None
            output = await asyncio.wait_for(process.stdout.read(), START_SECONDS)
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        finally:
            await stop(process)

    assert output == b""
    assert process.returncode == 1
    errors = log.read_text()
    assert "could not load or compose fleet, fleet_copy" in errors
    assert 'Non-shareable field "Query.installedDeviceModels" is resolved from multiple subgraphs' in errors

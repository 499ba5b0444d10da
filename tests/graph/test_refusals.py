"""What the graph refuses and how (issue 15): `_entities` costs what it asks for and is capped; a
representation that names no entity, lacks its keys or is no object is the caller's error at its place;
with introspection off, `_service` is refused and no error suggests the schema's names; refusals the
service meant are logged at INFO without a traceback, and only the unexpected at ERROR. Federation's
fields are the subgraphs' (issue 21): the clients' graph, `/graphql`, does not know them."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from cfl_graph.database import Database
from tests.fixtures.figures import report
from tests.fixtures.library import OWN_A1, World, make_world

pytestmark = pytest.mark.postgres

SUBGRAPHS = ["/subgraphs/cpl/graphql", "/subgraphs/cfl/graphql"]
ENTITIES = (
    "query($r: [_Any!]!) { _entities(representations: $r) { __typename ... on DeviceModel { modelId } } }"
)
A1_MODEL = {
    "__typename": "DeviceModel",
    "manufacturerId": "10B2",
    "modelId": "0001",
    "hardwareVersion": "0100",
}


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    world = await make_world(db, tmp_path)
    image = await world.upload(world.image(OWN_A1))
    await world.publish(image.id)
    return world


class Graph:
    def __init__(self, http: httpx2.AsyncClient) -> None:
        self.http = http

    async def ask(
        self, query: str, path: str = "/graphql", token: str | None = None, **variables: Any
    ) -> httpx2.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return await self.http.post(path, json={"query": query, "variables": variables}, headers=headers)


def codes(response: httpx2.Response) -> list[str]:
    return [error.get("extensions", {}).get("code") for error in response.json().get("errors", [])]


def graph(world: World, **settings: Any) -> httpx2.AsyncClient:
    app = world.app(rate_limit_per_minute=0, max_request_bytes=8 * 1024 * 1024, **settings)
    headers = {"Authorization": f"Bearer {world.tokens.supplier}"}
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t", headers=headers)


# --- A: `_entities` and list arguments count into the cost -------------------------------------------


async def test_9000_representations_are_refused_before_anything_runs(world: World) -> None:
    representations = [{**A1_MODEL, "modelId": f"{n % 0xFFFF:04X}"} for n in range(9_000)]
    async with graph(world) as http:
        for path in SUBGRAPHS:
            started = time.perf_counter()
            response = await Graph(http).ask(ENTITIES, path, r=representations)
            seconds = time.perf_counter() - started
            body = response.json()
            assert response.status_code == 200 and body.get("data") is None, body
            assert codes(response) == ["LIST_TOO_LONG"]
            assert body["errors"][0]["extensions"] == {
                "code": "LIST_TOO_LONG",
                "limit": 500,
                "measured": 9_000,
            }
            assert "`representations` at _entities, 9,000" in body["errors"][0]["message"]
            assert len(response.content) < 1_000
        unknown = await Graph(http).ask(ENTITIES, "/graphql", r=representations)
    assert set(codes(unknown)) == {"GRAPHQL_VALIDATION_FAILED"}, unknown.text
    messages = [error["message"] for error in unknown.json()["errors"]]
    assert messages == ["Unknown type '_Any'.", "Cannot query field '_entities' on type 'Query'."]
    report(
        f"_entities with 9,000 representations ({len(json.dumps(representations)) // 1024} KB): refused "
        f"LIST_TOO_LONG in {seconds * 1000:.0f} ms, {len(response.content)} bytes answered"
    )


# A model's certified versions with 13 of their facts: 14 a list, 30 such lists 420 per representation.
VERSIONS = (
    "certifiedFirmware { firmwareVersion imageHash status gbcsVersion listedOn cpaReference cpaExpiry "
    "manufacturerId modelId hardwareVersion listedOnCpl smetsVersion specificationVersion }"
)


async def test_each_representation_pays_for_the_selection_under_entities(world: World) -> None:
    selection = " ".join(f"v{n}: {VERSIONS}" for n in range(30))
    query = (
        f"query($r: [_Any!]!) {{ _entities(representations: $r) {{ ... on DeviceModel {{ {selection} }} }} }}"
    )
    async with graph(world) as http:
        many = await Graph(http).ask(query, "/subgraphs/cpl/graphql", r=[A1_MODEL] * 200)
        few = await Graph(http).ask(query, "/subgraphs/cpl/graphql", r=[A1_MODEL] * 50)
    assert codes(many) == ["QUERY_TOO_COSTLY"] and many.json().get("data") is None
    assert many.json()["errors"][0]["extensions"]["measured"] == 1 + 200 * 420
    assert "errors" not in few.json(), few.json()
    assert len(few.json()["data"]["_entities"]) == 50


async def test_list_items_count_across_aliases_and_in_literal_lists(world: World) -> None:
    async with graph(world) as http:
        two_aliases = await Graph(http).ask(
            "query($r: [_Any!]!) { a: _entities(representations: $r) { __typename } "
            "b: _entities(representations: $r) { __typename } }",
            "/subgraphs/cpl/graphql",
            r=[A1_MODEL] * 300,
        )
        one = await Graph(http).ask(ENTITIES, "/subgraphs/cpl/graphql", r=[A1_MODEL] * 500)
        # A list written in the document counts as one in a variable does: 150 items x 420 per item.
        item = '{__typename: "DeviceModel", manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100"}'
        selection = " ".join(f"v{n}: {VERSIONS}" for n in range(30))
        literal = await Graph(http).ask(
            f"{{ _entities(representations: [{', '.join([item] * 150)}]) {{ ... on DeviceModel {{ {selection} }} }} }}",
            "/subgraphs/cpl/graphql",
        )
    assert codes(two_aliases) == ["LIST_TOO_LONG"]
    assert two_aliases.json()["errors"][0]["extensions"]["measured"] == 600
    assert "errors" not in one.json() and len(one.json()["data"]["_entities"]) == 500
    assert codes(literal) == ["QUERY_TOO_COSTLY"]
    assert literal.json()["errors"][0]["extensions"]["measured"] == 1 + 150 * 420


# --- D: `_entities` with representations that name nothing ------------------------------------------


async def test_odd_representations_are_the_callers_error_at_their_place(world: World) -> None:
    odd: list[object] = [
        "DeviceModel",
        12,
        [A1_MODEL],
        {},
        {"__typename": "Nope"},
        {"__typename": "Query"},
        {"__typename": "_Service"},
        {"__typename": "LibraryImage", "id": "1"},
        {"__typename": None, "manufacturerId": "10B2"},
        {"__typename": "DeviceModel"},
        {"__typename": "DeviceModel", "manufacturerId": "10B2", "modelId": "0001"},
        {**A1_MODEL, "colour": "blue"},
        {**A1_MODEL, "manufacturerId": 4274},
        {**A1_MODEL, "modelId": ["0001"]},
        {**A1_MODEL, "hardwareVersion": {"a": 1}},
        {**A1_MODEL, "modelId": "0" * 10_000},
        {**A1_MODEL, "modelId": "٠٠٠١"},
        {**A1_MODEL, "modelId": "²"},
        {**A1_MODEL, "modelId": "ZZZZ"},
        {"__typename": "CertifiedFirmware", **{k: v for k, v in A1_MODEL.items() if k != "__typename"}},
        {**A1_MODEL, "__typename": "CertifiedFirmware", "firmwareVersion": "1.2.3"},
    ]
    async with graph(world) as http:
        for path in SUBGRAPHS:
            response = await Graph(http).ask(ENTITIES, path, r=[A1_MODEL, *odd, A1_MODEL])
            body = response.json()
            assert response.status_code == 200, body
            entities = body["data"]["_entities"]
            assert entities[0] == entities[-1] == {"__typename": "DeviceModel", "modelId": "0001"}
            assert entities[1:-1] == [None] * len(odd)
            by_index = {error["path"][1]: error for error in body["errors"]}
            assert sorted(by_index) == list(range(1, len(odd) + 1)), body["errors"]
            for index, error in by_index.items():
                assert error["extensions"]["code"] == "BAD_USER_INPUT", (path, odd[index - 1], error)
                assert len(error["message"]) < 400
            assert by_index[1]["message"].startswith("representations[1]: a representation is an object")
            assert (
                "'Nope' is not an entity of this graph (CertifiedFirmware, DeviceModel)"
                in by_index[5]["message"]
            )
            assert "hardwareVersion, manufacturerId, modelId missing" in by_index[10]["message"]
            assert by_index[11]["message"].endswith("exactly: hardwareVersion missing")
            assert "colour not among them" in by_index[12]["message"]


# --- E: introspection off means off -------------------------------------------------------------------


async def test_with_introspection_off_service_sdl_is_refused_on_every_graph(world: World) -> None:
    async with graph(world, graphql_introspection=False) as http:
        for path in SUBGRAPHS:
            response = await Graph(http).ask("{ _service { sdl } }", path)
            assert codes(response) == ["INTROSPECTION_DISABLED"], (path, response.text)
            assert "type Query" not in response.text and response.json().get("data") is None
        # The clients' graph has no `_service` at all, and suggests nothing in its place.
        unknown = await Graph(http).ask("{ _service { sdl } }")
        assert codes(unknown) == ["GRAPHQL_VALIDATION_FAILED"], unknown.text
        assert "Did you mean" not in unknown.text
    async with graph(world) as http:
        allowed = await Graph(http).ask("{ _service { sdl } }", "/subgraphs/cfl/graphql")
    assert "type Query" in allowed.json()["data"]["_service"]["sdl"]


SUGGESTING = [
    ("{ deviceModels(frist: 1) { totalCount } }", {}, "first"),
    ("{ deviceModels(first: 1) { totalCont } }", {}, "totalCount"),
    (
        '{ deviceModel(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100") { modelNam } }',
        {},
        "modelName",
    ),
    (
        "query($f: DeviceModelFilter) { deviceModels(filter: $f) { totalCount } }",
        {"f": {"deviceTyp": "ESME"}},
        "deviceType",
    ),
    (
        "query($f: DeviceModelFilter) { deviceModels(filter: $f) { totalCount } }",
        {"f": {"deviceType": "ESMEE"}},
        "ESME",
    ),
    ("{ deviceModels(filter: {deviceType: ESMEE}) { totalCount } }", {}, "ESME"),
    ("query($f: DeviceModelFiltr) { deviceModels(filter: $f) { totalCount } }", {}, "DeviceModelFilter"),
    ("{ deviceModels { edges { node { ... on DeviceModle { modelId } } } } }", {}, "DeviceModel"),
    ("{ coverageSummary(groupBy: MANUFACTURERS) { key } }", {}, "MANUFACTURER"),
]


@pytest.mark.parametrize("query,variables,suggestion", SUGGESTING)
async def test_with_introspection_off_no_error_suggests_a_name_of_the_schema(
    world: World, query: str, variables: dict[str, Any], suggestion: str
) -> None:
    async with graph(world) as http:
        on = await Graph(http).ask(query, **variables)
    assert "Did you mean" in on.text and f"'{suggestion}'" in on.text, on.text  # the control
    async with graph(world, graphql_introspection=False) as http:
        off = await Graph(http).ask(query, **variables)
    messages = [error["message"] for error in off.json()["errors"]]
    assert messages and off.json().get("data") is None
    assert not any("Did you mean" in message or f"'{suggestion}'" in message for message in messages), (
        messages
    )


# --- E: expected refusals at INFO, the unexpected at ERROR ---------------------------------------------


async def test_refusals_are_logged_at_info_without_a_traceback_and_failures_at_error(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusals = [
        (
            "FORBIDDEN",
            world.tokens.supplier,
            '{ consistencyReport(manufacturerId: "10B2") { manufacturerId } }',
        ),
        ("NOT_FOUND", world.tokens.manufacturer, 'mutation { publishImage(id: "999999") { id } }'),
        ("CONFLICT", world.tokens.manufacturer, 'mutation { publishImage(id: "1") { id } }'),
        (
            "BAD_USER_INPUT",
            world.tokens.supplier,
            '{ deviceModel(manufacturerId: "XYZW", modelId: "1", hardwareVersion: "1") { modelId } }',
        ),
        ("BAD_USER_INPUT", world.tokens.supplier, '{ libraryImage(id: "٣") { imageId } }'),
        ("PAGE_TOO_LARGE", world.tokens.supplier, "{ deviceModels(first: 501) { totalCount } }"),
        ("GRAPHQL_VALIDATION_FAILED", world.tokens.supplier, "{ deviceModels { noSuchField } }"),
        ("LIST_TOO_LONG", world.tokens.supplier, None),
    ]
    caplog.set_level(logging.DEBUG)
    async with graph(world) as http:
        for code, token, query in refusals:
            caplog.clear()
            if query is None:
                response = await Graph(http).ask(
                    ENTITIES, "/subgraphs/cpl/graphql", token, r=[A1_MODEL] * 501
                )
            else:
                response = await Graph(http).ask(query, token=token)
            assert code in codes(response) or code == "GRAPHQL_VALIDATION_FAILED", (code, response.text)
            loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert loud == [], (code, [(r.name, r.levelname, r.getMessage()[:200]) for r in loud])
            told = [
                r
                for r in caplog.records
                if r.name == "cfl_graph.doors.graph.errors" and r.levelno == logging.INFO
            ]
            assert len(told) == 1 and code in told[0].getMessage(), (code, [r.getMessage() for r in told])
            assert told[0].exc_info is None and "\n" not in told[0].getMessage()

        from cfl_graph.catalogue import reports

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the report's query failed")

        monkeypatch.setattr(reports, "coverage_summary", broken)
        caplog.clear()
        failed = await Graph(http).ask("{ coverageSummary(groupBy: MANUFACTURER) { key } }")
    assert codes(failed) == ["INTERNAL_ERROR"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (
        len(errors) == 1
        and errors[0].name == "cfl_graph.doors.graph.errors"
        and errors[0].exc_info is not None
    )
    assert failed.json()["errors"][0]["extensions"]["reference"] in errors[0].getMessage()


async def test_cpl_snapshot_refuses_an_id_that_names_no_snapshot(world: World) -> None:
    async with graph(world) as http:
        for odd in ("abc", "1e3", "LibraryImage", "-1", "99999999999"):
            response = await Graph(http).ask("query($i: ID) { cplSnapshot(id: $i) { snapshotId } }", i=odd)
            assert codes(response) == ["BAD_USER_INPUT"], (odd, response.text)

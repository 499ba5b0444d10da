"""The image lifecycle through GraphQL: every mutation but the bytes, with named problems in the errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from cfl_graph.database import Database
from tests.fixtures.library import GOOD_NOTES, OWN_A1, OWN_A3, Version, World, make_world

pytestmark = pytest.mark.postgres

IMAGE_FIELDS = "id state firmwareVersion problems { problem detail } releaseNotes { html } withdrawalReason"


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def gql(world: World, token: str | None, query: str, **variables: Any) -> dict[str, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code in (200, 401), response.text
    body: dict[str, Any] = response.json()
    return body


async def draft(world: World, version: Version, notes: str | None = GOOD_NOTES) -> str:
    return str((await world.upload(world.image(version), notes=notes)).id)


async def test_a_manufacturer_publishes_and_withdraws_through_graphql(world: World) -> None:
    image_id = await draft(world, OWN_A1)
    published = await gql(
        world,
        world.tokens.manufacturer,
        f"mutation($id: ID!) {{ publishImage(id: $id) {{ {IMAGE_FIELDS} }} }}",
        id=image_id,
    )
    assert published["data"]["publishImage"]["state"] == "PUBLISHED"
    withdrawn = await gql(
        world,
        world.tokens.manufacturer,
        f"mutation($id: ID!, $r: String!) {{ withdrawImage(id: $id, reason: $r) {{ {IMAGE_FIELDS} }} }}",
        id=image_id,
        r="bricks meters on cold start",
    )
    image = withdrawn["data"]["withdrawImage"]
    assert (image["state"], image["withdrawalReason"]) == ("WITHDRAWN", "bricks meters on cold start")


async def test_a_refused_publication_carries_its_named_problems(world: World) -> None:
    image_id = await draft(world, OWN_A1, notes=None)
    body = await gql(
        world, world.tokens.manufacturer, "mutation($id: ID!) { publishImage(id: $id) { id } }", id=image_id
    )
    [error] = body["errors"]
    assert error["extensions"]["code"] == "CONFLICT"
    assert [p["problem"] for p in error["extensions"]["problems"]] == ["release-notes-missing"]
    fixed = await gql(
        world,
        world.tokens.manufacturer,
        f"mutation($id: ID!, $md: String!) {{ updateReleaseNotes(id: $id, markdown: $md) {{ {IMAGE_FIELDS} }} }}",
        id=image_id,
        md=GOOD_NOTES,
    )
    assert fixed["data"]["updateReleaseNotes"]["problems"] == []
    assert "<li>" in fixed["data"]["updateReleaseNotes"]["releaseNotes"]["html"]


async def test_bad_release_notes_are_a_user_error_naming_why(world: World) -> None:
    image_id = await draft(world, OWN_A1)
    body = await gql(
        world,
        world.tokens.manufacturer,
        'mutation($id: ID!) { updateReleaseNotes(id: $id, markdown: "# Heading only") { id } }',
        id=image_id,
    )
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["problems"][0]["problem"] == "release-notes-invalid"
    assert "describe no change" in error["message"]


async def test_declare_commercial_then_the_upload_of_that_version_is_flagged(world: World) -> None:
    body = await gql(
        world,
        world.tokens.manufacturer,
        """mutation { declareCommercial(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100",
             firmwareVersion: "01020000", reason: "developed for one supplier under contract") {
             manufacturerId firmwareVersion reason declaredBy } }""",
    )
    assert body["data"]["declareCommercial"] == {
        "manufacturerId": "10B2",
        "firmwareVersion": "01020000",
        "reason": "developed for one supplier under contract",
        "declaredBy": "Northfield Metering Ltd",
    }
    image_id = await draft(world, OWN_A3)
    seen = await gql(
        world,
        world.tokens.manufacturer,
        "query($id: ID!) { libraryImage(id: $id) { problems { problem } } }",
        id=image_id,
    )
    assert seen["data"]["libraryImage"]["problems"] == [{"problem": "declared-commercial"}]


async def test_drafts_are_null_to_others_and_mutations_are_refused_by_role(world: World) -> None:
    image_id = await draft(world, OWN_A1)
    query = "query($id: ID!) { libraryImage(id: $id) { imageId } }"
    assert (await gql(world, world.tokens.supplier, query, id=image_id))["data"]["libraryImage"] is None
    own = await gql(world, world.tokens.manufacturer, query, id=image_id)
    assert own["data"]["libraryImage"] == {"imageId": int(image_id)}
    refused = await gql(
        world, world.tokens.supplier, "mutation($id: ID!) { publishImage(id: $id) { id } }", id=image_id
    )
    assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    declared = await gql(
        world,
        world.tokens.supplier,
        """mutation { declareCommercial(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100",
             firmwareVersion: "01020000", reason: "not ours to declare at all") { reason } }""",
    )
    assert declared["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await gql(world, None, query, id=image_id)
    assert "data" not in anonymous or anonymous.get("data") is None


async def test_a_malformed_id_is_a_clear_user_error(world: World) -> None:
    body = await gql(
        world, world.tokens.manufacturer, 'mutation { publishImage(id: "1; DROP TABLE x") { id } }'
    )
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "ids are whole numbers" in error["message"]


async def test_discard_frees_the_version_and_its_id_is_never_reused(world: World) -> None:
    image_id = await draft(world, OWN_A1)
    body = await gql(
        world, world.tokens.manufacturer, "mutation($id: ID!) { discardImage(id: $id) }", id=image_id
    )
    assert body["data"]["discardImage"] == image_id
    assert await draft(world, OWN_A1) != image_id

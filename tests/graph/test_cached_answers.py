"""The response cache, ETags and automatic persisted queries (issue 8): a repeated question costs a
token check and one read of the catalogue's state; a new snapshot or publication changes exactly the
answers that show it; nobody is given an answer made for someone who may read more."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from cfl_graph.access.parties import add_party
from cfl_graph.access.tokens import issue_token
from cfl_graph.audit import SYSTEM
from cfl_graph.database import Database
from cfl_graph.tables import Role
from cpl_sync.columns import Column
from cpl_sync.sync import sync_cpl
from tests.fixtures.cpl_files import write_csv
from tests.fixtures.library import CPL, OWN_A1, OWN_A2, OWN_A3, Version, World, make_world
from tests.fixtures.sql import counting

pytestmark = pytest.mark.postgres

MODEL = """query($m: String!, $h: String!) { deviceModel(manufacturerId: "10B2", modelId: $m,
  hardwareVersion: $h) { modelName certifiedFirmware { firmwareVersion imageHash status
  libraryImage { imageId state } } libraryImages { imageId state } } }"""
MODEL_VARIABLES = {"m": "0001", "h": "0100"}
CPL_FACTS = """{ deviceModel(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100") {
  modelName deviceType certifiedFirmware { firmwareVersion imageHash status listedOn } } }"""
GAPS = "{ coverageGaps(first: 50) { totalCount edges { node { firmwareVersion daysMissing } } } }"


@dataclass
class Client:
    http: httpx2.AsyncClient
    world: World

    async def post(self, query: str, token: str, **extra: Any) -> httpx2.Response:
        body: dict[str, Any] = {"query": query, **extra}
        return await self.http.post("/graphql", json=body, headers={"Authorization": f"Bearer {token}"})

    async def get(self, params: dict[str, str], token: str, **headers: str) -> httpx2.Response:
        return await self.http.get(
            "/graphql", params=params, headers={"Authorization": f"Bearer {token}", **headers}
        )


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


@pytest.fixture
async def client(world: World) -> AsyncIterator[Client]:
    """One app for the whole test, so that its cache lives from one request to the next."""
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Client(http, world)


def answer(response: httpx2.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]  # type: ignore[no-any-return]


async def publish(world: World, version: Version) -> int:
    image = await world.upload(world.image(version))
    await world.publish(image.id)
    return image.id


async def second_supplier(db: Database) -> str:
    async with db.sessions.begin() as session:
        party = await add_party(session, "Wessex Energy Ltd", Role.SUPPLIER, actor=SYSTEM)
        return (await issue_token(session, party, actor=SYSTEM)).text


async def test_a_repeated_question_is_answered_from_memory_for_a_token_check_and_one_read(
    client: Client, world: World, db: Database
) -> None:
    first = await client.post(MODEL, world.tokens.supplier, variables=MODEL_VARIABLES)
    assert first.headers["cache-status"] == "cfl-graph; fwd=miss"
    with counting(db) as statements:
        again = await client.post(MODEL, world.tokens.supplier, variables=MODEL_VARIABLES)
    assert again.headers["cache-status"] == "cfl-graph; hit"
    assert again.content == first.content
    # The token with its party and manufacturer ids, then the snapshot and revisions: two statements.
    assert len(statements) == 2, statements
    # Every supplier sees the same catalogue (R4), so every supplier is given the same answer.
    other = await client.post(MODEL, await second_supplier(db), variables=MODEL_VARIABLES)
    assert other.headers["cache-status"] == "cfl-graph; hit"
    assert other.content == first.content


async def test_a_publication_renews_the_answers_that_show_the_library_and_no_others(
    client: Client, world: World
) -> None:
    supplier = world.tokens.supplier
    before = answer(await client.post(MODEL, supplier, variables=MODEL_VARIABLES))
    facts = await client.post(CPL_FACTS, supplier)
    gaps = answer(await client.post(GAPS, supplier))["coverageGaps"]["totalCount"]
    image_id = await publish(world, OWN_A1)

    after = await client.post(MODEL, supplier, variables=MODEL_VARIABLES)
    assert after.headers["cache-status"] == "cfl-graph; fwd=miss"
    shown = {
        v["firmwareVersion"]: v["libraryImage"] for v in answer(after)["deviceModel"]["certifiedFirmware"]
    }
    assert shown[OWN_A1.firmware_version] == {"imageId": image_id, "state": "PUBLISHED"}
    assert before != answer(after)
    assert answer(await client.post(GAPS, supplier))["coverageGaps"]["totalCount"] == gaps - 1
    # The CPL's own facts did not change: that answer is still the kept one.
    still = await client.post(CPL_FACTS, supplier)
    assert still.headers["cache-status"] == "cfl-graph; hit"
    assert still.content == facts.content


async def test_a_new_cpl_snapshot_renews_every_answer_that_shows_cpl_facts(
    client: Client, world: World, tmp_path: Path
) -> None:
    supplier = world.tokens.supplier
    assert answer(await client.post(CPL_FACTS, supplier))["deviceModel"]["modelName"] == "Model 0001"
    renamed = [
        {**v.as_row(), **({Column.MODEL_NAME: "NM-E470 Mk2"} if v.model_id == "0001" else {})} for v in CPL
    ]
    result = await sync_cpl(world.db, str(write_csv(tmp_path / "next.csv", renamed)), work_dir=tmp_path / "s")
    assert result.outcome.value == "applied", result
    renewed = await client.post(CPL_FACTS, supplier)
    assert renewed.headers["cache-status"] == "cfl-graph; fwd=miss"
    assert answer(renewed)["deviceModel"]["modelName"] == "NM-E470 Mk2"


async def test_a_manufacturers_drafts_are_never_shown_to_others_through_the_cache(
    client: Client, world: World
) -> None:
    draft = await world.upload(world.image(OWN_A2))
    own = answer(await client.post(MODEL, world.tokens.manufacturer, variables=MODEL_VARIABLES))
    assert {"imageId": draft.id, "state": "DRAFT"} in own["deviceModel"]["libraryImages"]
    for token in (world.tokens.supplier, world.tokens.other_manufacturer, world.tokens.panel):
        response = await client.post(MODEL, token, variables=MODEL_VARIABLES)
        assert response.headers["cache-status"] == "cfl-graph; fwd=miss"
        assert answer(response)["deviceModel"]["libraryImages"] == []


async def test_a_draft_change_renews_its_manufacturers_answers_and_leaves_the_suppliers(
    client: Client, world: World
) -> None:
    await client.post(MODEL, world.tokens.supplier, variables=MODEL_VARIABLES)
    await client.post(MODEL, world.tokens.manufacturer, variables=MODEL_VARIABLES)
    draft = await world.upload(world.image(OWN_A3))
    mine = await client.post(MODEL, world.tokens.manufacturer, variables=MODEL_VARIABLES)
    assert mine.headers["cache-status"] == "cfl-graph; fwd=miss"
    assert {"imageId": draft.id, "state": "DRAFT"} in answer(mine)["deviceModel"]["libraryImages"]
    theirs = await client.post(MODEL, world.tokens.supplier, variables=MODEL_VARIABLES)
    assert theirs.headers["cache-status"] == "cfl-graph; hit"


async def test_refusals_and_errors_are_never_kept(client: Client, world: World, db: Database) -> None:
    refused = '{ consistencyReport(manufacturerId: "2C4F") { manufacturerId } }'
    for _ in range(2):
        response = await client.post(refused, world.tokens.manufacturer)
        assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "cache-status" not in response.headers
    bad = '{ deviceModel(manufacturerId: "XYZ!", modelId: "1", hardwareVersion: "1") { modelName } }'
    for _ in range(2):
        response = await client.get({"query": bad}, world.tokens.supplier)
        assert "errors" in response.json()
        assert "etag" not in response.headers


async def test_mutations_are_never_kept(client: Client, world: World) -> None:
    mutation = f'mutation {{ discardImage(id: "{(await world.upload(world.image(OWN_A1))).id}") }}'
    first = await client.post(mutation, world.tokens.manufacturer)
    assert "errors" not in first.json(), first.text
    assert "cache-status" not in first.headers
    second = await client.post(mutation, world.tokens.manufacturer)
    assert second.json()["errors"], "a second discard of the same draft must fail, not replay the first"


async def test_a_get_carries_an_etag_and_an_unchanged_answer_is_a_304_without_executing(
    client: Client, world: World, db: Database
) -> None:
    params = {"query": MODEL, "variables": json.dumps(MODEL_VARIABLES)}
    first = await client.get(params, world.tokens.supplier)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache"
    assert first.headers["vary"] == "Accept, Authorization, Cookie"
    with counting(db) as statements:
        unchanged = await client.get(params, world.tokens.supplier, **{"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    assert len(statements) == 2, statements
    await publish(world, OWN_A1)
    changed = await client.get(params, world.tokens.supplier, **{"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    # An ETag made for one reader is no validator for another who may read more.
    mine = await client.get(params, world.tokens.manufacturer, **{"If-None-Match": changed.headers["etag"]})
    assert mine.status_code == 200


async def test_concurrent_askers_of_one_question_wait_for_a_single_execution(
    client: Client, world: World, db: Database
) -> None:
    with counting(db) as statements:
        responses = await asyncio.gather(
            *(client.post(MODEL, world.tokens.supplier, variables=MODEL_VARIABLES) for _ in range(10))
        )
    assert len({r.content for r in responses}) == 1
    reads_of_certified = [s for s in statements if "FROM cpl_certified_firmware" in s]
    assert len(reads_of_certified) == 1, len(reads_of_certified)


async def test_with_the_cache_off_every_request_executes(world: World, db: Database) -> None:
    transport = httpx2.ASGITransport(app=world.app(response_cache_mb=0))
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        client = Client(http, world)
        first = await client.post(MODEL, world.tokens.supplier, variables=MODEL_VARIABLES)
        second = await client.post(MODEL, world.tokens.supplier, variables=MODEL_VARIABLES)
    assert "cache-status" not in first.headers and "cache-status" not in second.headers
    assert first.content == second.content


# --- automatic persisted queries --------------------------------------------------------------------


def persisted(query: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(query.encode()).hexdigest()}}


async def test_an_unknown_hash_asks_for_the_text_and_a_text_sent_once_is_known_by_its_hash(
    client: Client, world: World
) -> None:
    supplier = world.tokens.supplier
    http = client.http
    headers = {"Authorization": f"Bearer {supplier}"}
    unknown = await http.post("/graphql", json={"extensions": persisted(CPL_FACTS)}, headers=headers)
    assert unknown.status_code == 200  # as Apollo Server answers, so Apollo clients send the text
    assert unknown.json() == {
        "errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]
    }
    registered = await client.post(CPL_FACTS, supplier, extensions=persisted(CPL_FACTS))
    by_hash = await http.post("/graphql", json={"extensions": persisted(CPL_FACTS)}, headers=headers)
    assert answer(by_hash) == answer(registered)
    # Apollo clients send hashed queries by GET, where the answer's ETag applies as to any other.
    params = {"extensions": json.dumps(persisted(CPL_FACTS))}
    first = await client.get(params, supplier)
    assert answer(first) == answer(registered)
    assert (await client.get(params, supplier, **{"If-None-Match": first.headers["etag"]})).status_code == 304


async def test_a_text_one_party_persisted_is_unknown_to_another_by_its_hash(
    client: Client, world: World
) -> None:
    # A literal in the text (what one supplier searched for) must not be learnt by another supplier
    # sending the hash of a guess: it is told PERSISTED_QUERY_NOT_FOUND as if nobody had sent it.
    searched = '{ deviceModels(first: 5, filter: {search: "Model 0002"}) { totalCount } }'
    supplier, other = world.tokens.supplier, world.tokens.manufacturer
    assert answer(await client.post(searched, supplier, extensions=persisted(searched)))
    by_hash = {"extensions": persisted(searched)}
    own = await client.http.post("/graphql", json=by_hash, headers={"Authorization": f"Bearer {supplier}"})
    guessed = await client.http.post("/graphql", json=by_hash, headers={"Authorization": f"Bearer {other}"})
    assert answer(own) == {"deviceModels": {"totalCount": 2}}
    assert guessed.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    # The other party registers the text for itself, as an Apollo client does, and is then answered.
    assert answer(await client.post(searched, other, extensions=persisted(searched)))
    again = await client.http.post("/graphql", json=by_hash, headers={"Authorization": f"Bearer {other}"})
    assert answer(again) == {"deviceModels": {"totalCount": 2}}


async def test_a_text_sent_with_its_hash_is_registered_whichever_answers_it(
    client: Client, world: World
) -> None:
    """The cache, a 304 or the executor (issue 21): a text registered while its answer was kept was
    never stored, so every later hash-only request was PERSISTED_QUERY_NOT_FOUND."""
    supplier, manufacturer, panel = world.tokens.supplier, world.tokens.manufacturer, world.tokens.panel
    by_hash = {"extensions": persisted(CPL_FACTS)}

    def ask_by_hash(token: str) -> Any:
        return client.http.post("/graphql", json=by_hash, headers={"Authorization": f"Bearer {token}"})

    # The supplier registers as the executor answers.
    executed = await client.post(CPL_FACTS, supplier, extensions=persisted(CPL_FACTS))
    assert executed.headers["cache-status"] == "cfl-graph; fwd=miss"
    # The manufacturer asks first without the hash (its answer is kept), then registers: the cache answers.
    await client.post(CPL_FACTS, manufacturer)
    registered_from_cache = await client.post(CPL_FACTS, manufacturer, extensions=persisted(CPL_FACTS))
    assert registered_from_cache.headers["cache-status"] == "cfl-graph; hit"
    # The panel registers by a GET answered 304 from its ETag, without a body or an execution.
    params = {"query": CPL_FACTS}
    etag = (await client.get(params, panel)).headers["etag"]
    registering = {**params, "extensions": json.dumps(persisted(CPL_FACTS))}
    not_modified = await client.get(registering, panel, **{"If-None-Match": etag})
    assert not_modified.status_code == 304
    for token in (supplier, manufacturer, panel):
        assert answer(await ask_by_hash(token)) == answer(executed), token


@pytest.mark.parametrize(
    ("extensions", "message"),
    [
        ({"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}}, "Unsupported persisted query version"),
        ({"persistedQuery": {"version": 1, "sha256Hash": "XYZ"}}, "64 lower-case hex digits"),
        ({"persistedQuery": {"version": 1}}, "64 lower-case hex digits"),
        ({"persistedQuery": "abc"}, "must be an object"),
        ({"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}, "provided sha does not match query"),
    ],
)
async def test_a_malformed_persisted_query_is_a_clear_400(
    client: Client, world: World, extensions: dict[str, Any], message: str
) -> None:
    response = await client.post(CPL_FACTS, world.tokens.supplier, extensions=extensions)
    assert response.status_code == 400
    assert message in response.json()["errors"][0]["message"]


async def test_an_invalid_document_is_not_persisted(client: Client, world: World) -> None:
    invalid = "{ deviceModel { noSuchField } }"
    response = await client.post(invalid, world.tokens.supplier, extensions=persisted(invalid))
    assert response.json()["errors"]
    again = await client.http.post(
        "/graphql",
        json={"extensions": persisted(invalid)},
        headers={"Authorization": f"Bearer {world.tokens.supplier}"},
    )
    assert again.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"

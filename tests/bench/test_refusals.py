"""bench.refusals times the refusal of its hostile documents against the real server; here each is sent
to the app in-process to prove it is refused with the code the benchmark checks, so the benchmark times
refusals, not something else."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from bench.refusals import REQUEST_LIMIT, hostile_documents
from cfl_graph.database import Database
from tests.fixtures.library import World, make_world


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def test_every_hostile_document_of_the_benchmark_is_refused_with_its_code(world: World) -> None:
    app = world.app(max_request_bytes=REQUEST_LIMIT, rate_limit_per_minute=0)
    headers = {"Authorization": f"Bearer {world.tokens.supplier}"}
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://test", headers=headers
    ) as http:
        for hostile in hostile_documents():
            answer = await http.post(hostile.path, json=hostile.body)
            body = answer.json()
            assert answer.status_code < 500 and body.get("data") is None, (hostile.name, answer.text[:300])
            codes = {error["extensions"]["code"] for error in body["errors"]}
            assert codes == {hostile.code}, (hostile.name, body["errors"])

"""Every hostile image of the generated corpus gets a named problem and never a 5xx; a refused one leaves
nothing behind (no record, no blob, no staged file), a kept one cannot be published (issue 9)."""

from __future__ import annotations

import functools
from pathlib import Path

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from sqlalchemy import func, select

from cfl_graph.database import Database
from cfl_graph.tables import LibraryImage
from tests.corpus.hostile_images import image_cases
from tests.fixtures.library import GOOD_NOTES, OWN_A1, World, make_world

pytestmark = pytest.mark.postgres


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def test_every_hostile_image_gets_a_named_problem_and_no_5xx(world: World) -> None:
    good = world.image(OWN_A1)
    corpus = list(
        image_cases(
            good,
            OWN_A1.manufacturer_image,
            functools.partial(world.image, OWN_A1),
            generate_private_key(SECP256R1()),
        )
    )
    assert len(corpus) >= 100, len(corpus)
    failures = []
    transport = httpx2.ASGITransport(app=world.app())
    headers = {"Authorization": f"Bearer {world.tokens.manufacturer}"}
    async with httpx2.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
        for case in corpus:
            answer = await http.post(
                "/api/v1/images",
                files={"file": ("hostile.zigbee", case.data, "application/octet-stream")},
                data={"releaseNotes": GOOD_NOTES},
            )
            body = answer.json()
            problems = [p["problem"] for p in body.get("problems", [])]
            if answer.status_code >= 500 or answer.status_code != case.status:
                failures.append(f"{case.name}: {answer.status_code} (expected {case.status}): {body}")
            elif case.problem and case.problem not in problems:
                failures.append(f"{case.name}: no {case.problem!r} among {problems}")
            elif case.status == 201:
                published = await http.post(
                    "/graphql", json={"query": f'mutation {{ publishImage(id: "{body["id"]}") {{ state }} }}'}
                )
                if "errors" not in published.json():
                    failures.append(f"{case.name}: a draft with {problems} was published")
                discarded = await http.post(
                    "/graphql", json={"query": f'mutation {{ discardImage(id: "{body["id"]}") }}'}
                )
                assert "errors" not in discarded.json(), discarded.text
    assert not failures, f"{len(failures)} of {len(corpus)} cases mishandled:\n" + "\n".join(failures)
    async with world.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(LibraryImage)) == 0
    assert [blob async for blob in world.store.list()] == []
    assert list(world.store.staging.folder.glob("*")) == []

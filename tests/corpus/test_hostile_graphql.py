"""Every hostile GraphQL request of the generated corpus is answered with a clear error, never a 5xx,
and changes nothing (issue 9)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from sqlalchemy import func, select

from cfl_graph.database import Database
from cfl_graph.tables import AuditEvent
from tests.corpus.hostile_graphql import graphql_cases
from tests.fixtures.library import OWN_A1, World, make_world

pytestmark = pytest.mark.postgres


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    world = await make_world(db, tmp_path)
    image = await world.upload(world.image(OWN_A1))
    await world.publish(image.id)
    return world


async def _events(world: World) -> int:
    async with world.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def test_every_hostile_graphql_request_is_a_clear_error_and_changes_nothing(world: World) -> None:
    corpus = list(graphql_cases())
    assert len(corpus) >= 70, len(corpus)
    before = await _events(world)
    failures = []
    transport = httpx2.ASGITransport(app=world.app(max_request_bytes=8 * 1024 * 1024))
    headers = {"Authorization": f"Bearer {world.tokens.manufacturer}"}
    async with httpx2.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
        for case in corpus:
            if case.raw is not None:
                answer = await http.post(
                    "/graphql", content=case.raw, headers={"Content-Type": "application/json"}
                )
            else:
                answer = await http.post("/graphql", json=case.body)
            if answer.status_code >= 500:
                failures.append(f"{case.name}: {answer.status_code} {answer.text[:200]}")
                continue
            try:
                body = answer.json()
            except ValueError:
                body = None
            errors = body.get("errors") if isinstance(body, dict) else None
            if answer.status_code == 200 and not errors:
                failures.append(f"{case.name}: answered without an error: {answer.text[:200]}")
                continue
            if errors:
                codes = {(e.get("extensions") or {}).get("code") for e in errors}
                if "INTERNAL_ERROR" in codes:
                    failures.append(f"{case.name}: an internal error: {errors[0]}")
                elif case.codes and not codes & case.codes:
                    failures.append(f"{case.name}: codes {codes}, expected one of {set(case.codes)}")
                elif any(not e.get("message") for e in errors):
                    failures.append(f"{case.name}: an error without a message")
    assert not failures, f"{len(failures)} of {len(corpus)} cases mishandled:\n" + "\n".join(failures)
    assert await _events(world) == before  # nothing was changed, so nothing was recorded

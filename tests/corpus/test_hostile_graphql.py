"""Every hostile GraphQL request of the generated corpus is answered with a clear error, never a 5xx,
and changes nothing (issue 9): no audit event, no image changes state, no declaration is made."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from sqlalchemy import func, select

from cfl_graph.database import Database
from cfl_graph.tables import AuditEvent, CommercialDeclaration, LibraryImage
from tests.corpus.hostile_graphql import IMAGE_ID, graphql_cases
from tests.fixtures.library import OWN_A1, World, make_world

pytestmark = pytest.mark.postgres


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    world = await make_world(db, tmp_path)
    image = await world.upload(world.image(OWN_A1))
    await world.publish(image.id)
    return world


async def _state(world: World) -> tuple[int, list[tuple[int, str]], int]:
    """Audit events (every change is one), images and their states, commercial declarations."""
    async with world.db.sessions() as session:
        events = int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)
        images = [
            (row.id, row.state)
            for row in await session.execute(
                select(LibraryImage.id, LibraryImage.state).order_by(LibraryImage.id)
            )
        ]
        declared = int(await session.scalar(select(func.count()).select_from(CommercialDeclaration)) or 0)
    return events, images, declared


async def test_every_hostile_graphql_request_is_a_clear_error_and_changes_nothing(world: World) -> None:
    corpus = list(graphql_cases())
    assert len(corpus) >= 100, len(corpus)
    before = await _state(world)
    assert before[1] == [(IMAGE_ID, "published")]
    failures = []
    transport = httpx2.ASGITransport(app=world.app(max_request_bytes=8 * 1024 * 1024))
    headers = {"Authorization": f"Bearer {world.tokens.manufacturer}"}
    async with httpx2.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
        for case in corpus:
            if case.method == "GET":
                answer = await http.get("/graphql", params=case.params)
            elif case.raw is not None:
                answer = await http.post(
                    "/graphql", content=case.raw, headers={"Content-Type": case.content_type}
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
    assert await _state(world) == before  # nothing was changed, so nothing was recorded

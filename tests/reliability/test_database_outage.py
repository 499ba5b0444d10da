"""The database goes away and comes back (issue 9): every door answers a clear 503 meanwhile, /healthz
says so, nothing is half-written, and the service recovers without a restart.

The outage is real: the app reaches PostgreSQL through a TCP proxy on loopback that the test closes
(dropping every open connection) and opens again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from cfl_graph.database import Database
from cfl_graph.doors.web.app import create_app
from cfl_graph.tables import AuditEvent, LibraryImage
from tests.fixtures.library import GOOD_NOTES, OWN_A1, World, client, make_world, serving


class Proxy:
    """A TCP forwarder to the database that can be cut and restored, on a fixed loopback port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._pipes |= {writer, upstream_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def _eventually_ok(http: httpx2.AsyncClient, path: str, within: float = 10.0) -> httpx2.Response:
    deadline = time.monotonic() + within
    while True:
        answer = await http.get(path)
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_outage_is_a_503_everywhere_and_the_service_recovers_by_itself(
    world: World, tmp_path: Path
) -> None:
    url = make_url(world.db.url)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    through_proxy = Database.connect(url.set(port=proxy.port).render_as_string(hide_password=False))
    app = create_app(world.settings, db=through_proxy, store=world.store)
    graphql = {"query": "{ cplSnapshot { snapshotId } }"}
    try:
        async with serving(app) as base, client(base, world.tokens.manufacturer) as http:
            assert (await http.post("/graphql", json=graphql)).status_code == 200
            assert (await http.get("/healthz")).status_code == 200

            await proxy.stop()
            answers = {
                "graphql": await http.post("/graphql", json=graphql),
                "page": await http.get("/models", headers={"Accept": "text/html"}),
                "upload": await http.post(
                    "/api/v1/images",
                    files={"file": ("a1.zigbee", world.image(OWN_A1), "application/octet-stream")},
                    data={"releaseNotes": GOOD_NOTES},
                ),
                "feed": await http.get("/feeds/images.atom"),
            }
            for door, answer in answers.items():
                assert answer.status_code == 503, (door, answer.status_code, answer.text[:300])
                body = answer.json()
                # A GraphQL client reads a GraphQL response (issue 21); the other doors the service's shape.
                code = body["errors"][0]["extensions"]["code"] if door == "graphql" else body["code"]
                assert code == "SERVICE_UNAVAILABLE", door
                assert answer.headers["retry-after"] == "5", door
                assert "Internal" not in answer.text and "asyncpg" not in answer.text, door
            async with httpx2.AsyncClient(base_url=base) as anonymous:  # as a load balancer asks
                health = await anonymous.get("/healthz")
            assert (health.status_code, health.json()["database"]) == (503, "unreachable")

            await proxy.start()
            assert (await _eventually_ok(http, "/healthz")).status_code == 200
            recovered = await http.post("/graphql", json=graphql)
            assert recovered.status_code == 200 and "errors" not in recovered.json(), recovered.text
            upload = await http.post(
                "/api/v1/images",
                files={"file": ("a1.zigbee", world.image(OWN_A1), "application/octet-stream")},
                data={"releaseNotes": GOOD_NOTES},
            )
            assert upload.status_code == 201, upload.text
    finally:
        await through_proxy.dispose()
        with contextlib.suppress(AssertionError, RuntimeError):
            await proxy.stop()
    # The upload refused during the outage left nothing: exactly one image, one upload event, one blob.
    async with world.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(LibraryImage)) == 1
        uploads = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "image.uploaded")
        assert await session.scalar(uploads) == 1
    assert len([blob async for blob in world.store.list()]) == 1
    assert list(world.store.staging.folder.glob("*")) == []

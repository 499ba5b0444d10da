"""`cfl-graph serve` killed with SIGKILL in the middle of an upload (issue 9): after a restart no record
lacks its bytes, no blob is partial, nothing partial is ever served, and what the killed server was
still writing is cleaned up at start-up.

Each round streams a signed image to a real server process and kills it when the server has written a
random number of the body's bytes to its staged file, or, every few rounds, a random moment after it has
them all: while it parses them, stores the blob and writes the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import select

from cfl_graph.blobs import STAGED_SUFFIX, BlobStore
from cfl_graph.database import Database
from cfl_graph.images.integrity import verify_blobs
from cfl_graph.tables import LibraryImage
from tests.fixtures.library import OWN_A1, World, client, make_world, write_large_image
from tests.fixtures.server import ServerProcess, server_env

pytestmark = pytest.mark.postgres

IMAGE_BYTES = 3 * 1024 * 1024
CHUNK = 64 * 1024
ROUNDS = 25  # on each database: 50 kills in all
LOOP_SECONDS = 45.0
# Every AFTER_BODY_EVERY-th round the kill comes up to AFTER_BODY_DELAY seconds after the server has the
# whole body: while it parses, stores the blob and writes the record.
AFTER_BODY_EVERY = 4
AFTER_BODY_DELAY = 0.25
UPLOAD_TIMEOUT = 10.0
UPLOAD = "/api/v1/images?modelId=0001&hardwareVersion=0100"


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


def server_for(world: World, tmp_path: Path) -> ServerProcess:
    """`cfl-graph serve` over the world's database and blob folder, started again and again."""
    env = server_env(world.db.url, tmp_path / "blobs", tmp_path / "work")
    return ServerProcess(env, tmp_path / "server.log")


def staged_files(world: World) -> list[Path]:
    return sorted(world.store.staging.folder.glob(f"*{STAGED_SUFFIX}"))


async def partial_blobs(store: BlobStore, checked: set[str]) -> list[str]:
    """Blobs, referenced or not, whose bytes do not hash to their name (each looked at once: blobs never
    change, and `checked` remembers the ones seen whole)."""
    wrong = []
    async for blob in store.list():
        if blob.sha256 in checked:
            continue
        digest = hashlib.sha256()
        async for chunk in store.read(blob.sha256):
            digest.update(chunk)
        if digest.hexdigest() != blob.sha256:
            wrong.append(f"{blob.sha256} ({blob.size} bytes) hashes to {digest.hexdigest()}")
        else:
            checked.add(blob.sha256)
    return wrong


async def check_after_restart(
    world: World, server: ServerProcess, image_sha256: str, checked: set[str], where: str
) -> tuple[int, int]:
    """Everything the restarted server holds is whole; then its drafts are discarded.

    Returns how many records of this round's image there were, and whether its blob is there with no
    record (what a kill between storing the bytes and writing the record leaves; allowed)."""
    assert staged_files(world) == [], f"{where}: staged files left after start-up: {staged_files(world)}"
    report = await verify_blobs(world.db.sessions, world.store)
    assert report.intact, f"{where}: a record without its bytes: {report.problems}"
    assert await partial_blobs(world.store, checked) == [], f"{where}: a partial blob is in the store"
    async with world.db.sessions() as session:
        images = (await session.execute(select(LibraryImage))).scalars().all()
    async with client(server.base, world.tokens.manufacturer) as http:
        for image in images:
            assert (image.file_sha256, image.size) == (image_sha256, IMAGE_BYTES), (
                f"{where}: image {image.id} records {image.size} bytes hashing to {image.file_sha256}"
            )
            served = hashlib.sha256()
            size = 0
            async with http.stream("GET", f"/api/v1/images/{image.id}/file") as answer:
                assert answer.status_code == 200, f"{where}: image {image.id}: {answer.status_code}"
                async for chunk in answer.aiter_bytes():
                    served.update(chunk)
                    size += len(chunk)
            assert (served.hexdigest(), size) == (image_sha256, IMAGE_BYTES), (
                f"{where}: image {image.id} was served as {size} bytes hashing to {served.hexdigest()}"
            )
            discarded = await http.post(
                "/graphql", json={"query": f'mutation {{ discardImage(id: "{image.id}") }}'}
            )
            assert discarded.json() == {"data": {"discardImage": str(image.id)}}, discarded.text
    return len(images), sum(blob == image_sha256 for blob in report.unreferenced)


async def kill_when_staged(server: ServerProcess, world: World, offset: int, delay: float) -> bool:
    """SIGKILL the server `delay` seconds after its staged copy of the upload holds `offset` bytes."""
    # Polled, not awaited: the server's progress shows only in its staged file. `upload` cancels this
    # when the answer comes first.
    while True:
        if any(_size(path) >= offset for path in staged_files(world)):
            break
        await asyncio.sleep(0.001)
    await asyncio.sleep(delay)
    return server.kill()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # stored or abandoned since it was listed
        return 0


async def upload(
    server: ServerProcess, world: World, data: bytes, offset: int, delay: float
) -> tuple[str, bool]:
    """Stream `data` to the server and SIGKILL it `delay` seconds after it has written `offset` bytes of
    it, or once it answers if that comes first. Returns what happened, and whether the kill found the
    server alive."""

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    killer = asyncio.create_task(kill_when_staged(server, world, offset, delay))
    try:
        async with client(server.base, world.tokens.manufacturer) as http:
            http.timeout = httpx2.Timeout(UPLOAD_TIMEOUT)
            answer = await http.post(
                UPLOAD,
                content=body(),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
            )
        seen = f"answered {answer.status_code}"
    except httpx2.HTTPError as exc:
        seen = f"cut off ({type(exc).__name__})"
    finally:
        if not killer.done():
            killer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await killer
    if not killer.cancelled():
        return f"killed, then {seen}", killer.result()
    return f"{seen}, then killed", server.kill()


async def test_a_server_killed_mid_upload_never_keeps_or_serves_partial_bytes(
    world: World, tmp_path: Path
) -> None:
    rng = random.Random()
    server = server_for(world, tmp_path)
    kills = 0
    left_staged = 0
    outcomes: Counter[str] = Counter()
    checked: set[str] = set()
    slowest_start = 0.0
    loop_started = time.monotonic()
    rounds = 0
    try:
        await server.start()
        while rounds < ROUNDS and time.monotonic() - loop_started < LOOP_SECONDS:
            rounds += 1
            # A version of its own each round, so what a round leaves is told apart from the others'.
            data = signed_image(world, tmp_path, rounds)
            if rounds % AFTER_BODY_EVERY == 0:
                offset, delay = len(data), rng.uniform(0, AFTER_BODY_DELAY)
                planned = f"{delay * 1000:.0f} ms after the body was whole"
            else:
                offset, delay = rng.randrange(1, len(data)), 0.0
                planned = f"at byte {offset:,} of {len(data):,}"
            seen, killed = await upload(server, world, data, offset, delay)
            kills += killed
            where = f"round {rounds}, kill planned {planned} ({seen})"
            assert "answered" not in seen or "answered 201" in seen, f"{where}: an upload was refused"
            # Only the dead server's staged files can be here: no other server runs.
            left_staged += bool(staged_files(world))
            slowest_start = max(slowest_start, await server.start())
            kept, unreferenced = await check_after_restart(
                world, server, hashlib.sha256(data).hexdigest(), checked, where
            )
            outcomes[f"{seen}: {kept} record, {unreferenced} new unreferenced blob"] += 1

        data = signed_image(world, tmp_path, 0)
        async with client(server.base, world.tokens.manufacturer) as http:
            answer = await http.post(
                UPLOAD, content=data, headers={"Content-Type": "application/octet-stream"}
            )
            assert answer.status_code == 201, answer.text
            served = await http.get(f"/api/v1/images/{answer.json()['id']}/file")
        assert (served.status_code, hashlib.sha256(served.content).digest()) == (
            200,
            hashlib.sha256(data).digest(),
        )
        report = await verify_blobs(world.db.sessions, world.store)
        assert report.intact and report.images == 1, report
    finally:
        if server.process is not None:
            server.kill()
    elapsed = time.monotonic() - loop_started
    summary = (
        f"kill -9 of serve during uploads: {kills} kills in {rounds} rounds, {elapsed:.0f} s; "
        f"{left_staged} left staged files, all cleaned at start-up; outcomes {dict(outcomes)}; "
        f"slowest restart {slowest_start:.1f} s"
    )
    print(f"\n{summary}")
    assert kills >= 5, f"too few kills to mean anything: {summary}"


def signed_image(world: World, tmp_path: Path, number: int) -> bytes:
    path = write_large_image(
        tmp_path / "image.zigbee",
        manufacturer_code=OWN_A1.manufacturer_id,
        file_version=f"{0x01000000 + number:08X}",
        size=IMAGE_BYTES,
        key=world.key,
    )
    return path.read_bytes()

"""Disk full, or the blob store failing, during an upload (issue 9): the uploader is told plainly that
storage failed (507 Insufficient Storage when there is no room, 503 otherwise), and nothing is
recorded: no image row, no blob, no staged file, no audit event. Once there is room again the same
server takes the upload, without a restart.

The failures are real ones, not mocks: a small tmpfs mounted as the blob folder of a real `cfl-graph
serve` process and made full, out of inodes or read-only under it; a file-size limit (RLIMIT_FSIZE) on
a server process; an S3 store that nobody answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import func, select

from cfl_graph.blobs import STAGED_SUFFIX, BlobStore, Staging
from cfl_graph.blobs.local import LocalBlobStore
from cfl_graph.blobs.s3 import S3BlobStore
from cfl_graph.database import Database
from cfl_graph.tables import AuditEvent, LibraryImage
from tests.fixtures.capabilities import missing
from tests.fixtures.library import OWN_A1, World, client, make_world, write_large_image
from tests.fixtures.server import ServerProcess, free_port, server_env

pytestmark = pytest.mark.postgres

MIB = 1024 * 1024
IMAGE_BYTES = 2 * MIB
UPLOAD = f"/api/v1/images?modelId={OWN_A1.model_id}&hardwareVersion={OWN_A1.hardware_version}"
RAW = {"Content-Type": "application/octet-stream"}


@dataclass
class SmallDisk:
    """A tmpfs mounted for one test; `remount` changes its size, inodes or writability in place."""

    path: Path

    def remount(self, *, size: int = 16 * MIB, inodes: int = 1000, read_only: bool = False) -> None:
        options = f"remount,size={size},nr_inodes={inodes},{'ro' if read_only else 'rw'}"
        subprocess.run(["mount", "-o", options, str(self.path)], check=True, capture_output=True, timeout=10)

    @property
    def inodes_used(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_files - stats.f_ffree


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    folder = tmp_path / "disk"
    folder.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m,nr_inodes=1000,mode=0700", "cfl-test-disk", str(folder)],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        missing(f"cannot mount a small tmpfs for the disk-full tests (needs root): {str(detail).strip()}")
    try:
        yield SmallDisk(folder)
    finally:
        # Lazily, should anything still hold a file open there.
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True, timeout=10)


@dataclass(frozen=True)
class Recorded:
    images: int
    events: int
    blobs: tuple[str, ...]
    staged: tuple[str, ...]


async def recorded(world: World, store: BlobStore) -> Recorded:
    """Everything an upload could leave behind: its record, its audit event, its blob, its staged file."""
    async with world.db.sessions() as session:
        images = int(await session.scalar(select(func.count()).select_from(LibraryImage)) or 0)
        events = int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)
    blobs = tuple([blob.sha256 async for blob in store.list()])
    folder = store.staging.folder
    staged = tuple(sorted(p.name for p in folder.glob(f"*{STAGED_SUFFIX}"))) if folder.is_dir() else ()
    return Recorded(images, events, blobs, staged)


def big_image(world: World, tmp_path: Path) -> bytes:
    path = write_large_image(
        tmp_path / "image.zigbee",
        manufacturer_code=OWN_A1.manufacturer_id,
        file_version=OWN_A1.firmware_version,
        size=IMAGE_BYTES,
        key=world.key,
    )
    return path.read_bytes()


async def refused(
    http: httpx2.AsyncClient, data: bytes, status: int, code: str, says: str
) -> httpx2.Response:
    answer = await http.post(UPLOAD, content=data, headers=RAW)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == code, body
    assert says in body["error"] and "nothing was kept" in body["error"], body
    return answer


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def test_a_full_or_failing_disk_refuses_the_upload_plainly_and_keeps_nothing(
    world: World, small_disk: SmallDisk, tmp_path: Path
) -> None:
    store = LocalBlobStore(small_disk.path)
    server = ServerProcess(
        server_env(world.db.url, small_disk.path, tmp_path / "work"), tmp_path / "serve.log"
    )
    data = big_image(world, tmp_path)
    await server.start()
    try:
        async with client(server.base, world.tokens.manufacturer) as http:
            before = await recorded(world, store)

            # The disk fills while the upload is staged: 1 MiB of room for 2 MiB of image.
            small_disk.remount(size=1 * MIB)
            await refused(
                http, data, 507, "INSUFFICIENT_STORAGE", "the upload's staging folder's disk is full"
            )
            assert await recorded(world, store) == before

            # The same through the web upload form: the page says so, with the same status.
            page = await http.post(
                "/upload", files={"file": ("image.zigbee", data, "application/octet-stream")}
            )
            assert page.status_code == 507 and "disk is full" in page.text, page.status_code
            assert await recorded(world, store) == before

            # Staged whole, but no inode left for the blob's folders: the store itself fails.
            small_disk.remount(inodes=small_disk.inodes_used + 1)
            await refused(http, data, 507, "INSUFFICIENT_STORAGE", "the blob store's disk is full")
            assert await recorded(world, store) == before

            # A read-only blob folder (a remount after a disk error, a wrong volume) is no room problem.
            small_disk.remount(read_only=True)
            await refused(http, data, 503, "UNAVAILABLE", "the upload's staging folder cannot be written")
            assert await recorded(world, store) == before

            # Room again: the same server takes the same upload, and serves it whole.
            small_disk.remount()
            answer = await http.post(UPLOAD, content=data, headers=RAW)
            assert answer.status_code == 201, answer.text
            served = await http.get(f"/api/v1/images/{answer.json()['id']}/file")
            assert hashlib.sha256(served.content).hexdigest() == hashlib.sha256(data).hexdigest()
        after = await recorded(world, store)
        assert (after.images, after.blobs, after.staged) == (1, (hashlib.sha256(data).hexdigest(),), ())
    finally:
        server.stop()


async def test_a_file_size_limit_on_the_server_refuses_a_larger_upload_and_keeps_nothing(
    world: World, tmp_path: Path
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    env = server_env(world.db.url, tmp_path / "blobs", tmp_path / "work")
    server = ServerProcess(env, tmp_path / "serve.log")
    data = big_image(world, tmp_path)
    await server.start()
    try:
        # From now on no file the server writes may grow past 1 MiB. CPython ignores SIGXFSZ, so a write
        # past it fails with EFBIG instead of killing the process.
        assert server.process is not None
        resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (MIB, MIB))
        async with client(server.base, world.tokens.manufacturer) as http:
            before = await recorded(world, store)
            await refused(http, data, 507, "INSUFFICIENT_STORAGE", "cannot hold a file this large (EFBIG)")
            assert await recorded(world, store) == before
            assert (await http.get("/healthz")).status_code == 200  # refused, not crashed
    finally:
        server.stop()


@pytest.fixture
async def unreachable_s3(tmp_path: Path, aws_environment: None) -> AsyncIterator[S3BlobStore]:
    store = S3BlobStore(
        bucket="cfl-blobs",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        staging=Staging(tmp_path / "work" / "incoming"),
        connect_timeout=1,
        max_attempts=1,
    )
    try:
        yield store
    finally:
        await store.close()


async def test_an_unreachable_s3_store_refuses_the_upload_plainly_and_keeps_nothing(
    db: Database, tmp_path: Path, unreachable_s3: S3BlobStore
) -> None:
    world = await make_world(db, tmp_path, store=unreachable_s3)
    data = world.image(OWN_A1)
    transport = httpx2.ASGITransport(app=world.app())
    headers = {"Authorization": f"Bearer {world.tokens.manufacturer}"}
    async with httpx2.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
        async with world.db.sessions() as session:
            events = await session.scalar(select(func.count()).select_from(AuditEvent))
        await refused(http, data, 503, "UNAVAILABLE", "the S3 store could not be reached")
    async with world.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(LibraryImage)) == 0
        assert await session.scalar(select(func.count()).select_from(AuditEvent)) == events
    with contextlib.suppress(FileNotFoundError):
        assert list(unreachable_s3.staging.folder.iterdir()) == []

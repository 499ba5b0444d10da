"""A 200 MB image goes through a real server process with flat memory; the S3 store serves the same
lifecycle (upload, publish, download with Range) as the local folder."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest

from cfl_graph.blobs.s3 import S3BlobStore
from cfl_graph.database import Database
from tests.fixtures.library import GOOD_NOTES, OWN_A1, World, client, make_world, serving, write_large_image
from tests.images.test_http import check_range_spellings

pytestmark = pytest.mark.postgres

LARGE = 200 * 1024 * 1024
# The server's resident memory may grow this much while it takes 200 MB: a few chunks and buffers.
FLAT_GROWTH = 40 * 1024 * 1024


@pytest.fixture
async def served_world(db: Database, tmp_path: Path) -> World:
    """A world whose server runs in another process: on SQLite and on PostgreSQL."""
    return await make_world(db, tmp_path)


def _high_water_mark(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture
def server(served_world: World, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """`cfl-graph serve` in its own process over the world's database and blob folder."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "CFL_DATABASE_URL": served_world.db.url,
        "CFL_BLOB_DIR": str(tmp_path / "blobs"),
        "CFL_WORK_DIR": str(tmp_path / "work"),
        "CFL_MAX_IMAGE_BYTES": str(LARGE + 1024 * 1024),
        "CFL_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cfl_graph", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if httpx2.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start in 60 s"
            time.sleep(0.2)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)


async def test_a_200_mb_upload_and_download_keep_the_servers_memory_flat(
    served_world: World, server: tuple[str, int], tmp_path: Path
) -> None:
    base, pid = server
    path = write_large_image(
        tmp_path / "large.zigbee",
        manufacturer_code="10B2",
        file_version=OWN_A1.firmware_version,
        size=LARGE,
        key=served_world.key,
    )
    expected = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            expected.update(chunk)

    async def body() -> AsyncIterator[bytes]:
        with path.open("rb") as handle:
            while chunk := handle.read(1024 * 1024):
                yield chunk

    before = _high_water_mark(pid)
    async with client(base, served_world.tokens.manufacturer) as http:
        response = await http.post(
            "/api/v1/images?modelId=0001&hardwareVersion=0100",
            content=body(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(LARGE)},
        )
        assert response.status_code == 201, response.text
        uploaded = response.json()
        # Not the CPL's image (its Manufacturer Image differs), and a raw body carries no notes.
        assert [p["problem"] for p in uploaded["problems"]] == ["hash-mismatch", "release-notes-missing"]
        assert (uploaded["size"], uploaded["fileSha256"]) == (LARGE, expected.hexdigest())
        downloaded = hashlib.sha256()
        async with http.stream("GET", f"/api/v1/images/{uploaded['id']}/file") as stream:
            assert stream.status_code == 200
            async for chunk in stream.aiter_bytes():
                downloaded.update(chunk)
    growth = _high_water_mark(pid) - before
    print(f"server memory growth while taking 200 MiB: {growth / 2**20:.1f} MiB")
    assert downloaded.hexdigest() == expected.hexdigest()
    assert growth < FLAT_GROWTH, f"the server grew {growth / 2**20:.0f} MiB while taking 200 MiB"


@pytest.fixture
async def s3_world(db: Database, tmp_path: Path, s3_store: S3BlobStore) -> World:
    return await make_world(db, tmp_path, store=s3_store)


@pytest.mark.postgres
async def test_the_s3_store_serves_the_same_lifecycle(s3_world: World) -> None:
    data = s3_world.image(OWN_A1)
    async with serving(s3_world.app()) as url:
        async with client(url, s3_world.tokens.manufacturer) as http:
            response = await http.post(
                "/api/v1/images",
                files={"file": ("a1.zigbee", data, "application/octet-stream")},
                data={"releaseNotes": GOOD_NOTES},
            )
        assert response.status_code == 201, response.text
        image_id = response.json()["id"]
        await s3_world.publish(image_id)
        async with client(url, s3_world.tokens.supplier) as http:
            whole = await http.get(f"/api/v1/images/{image_id}/file")
            part = await http.get(f"/api/v1/images/{image_id}/file", headers={"Range": "bytes=10-29"})
            tail = await http.get(f"/api/v1/images/{image_id}/file", headers={"Range": "bytes=-66"})
            head = await http.head(f"/api/v1/images/{image_id}/file")
    assert (whole.status_code, whole.content) == (200, data)
    assert whole.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert (part.status_code, part.content, part.headers["content-range"]) == (
        206,
        data[10:30],
        f"bytes 10-29/{len(data)}",
    )
    assert (tail.status_code, tail.content) == (206, data[-66:])
    assert (head.status_code, head.headers["content-length"]) == (200, str(len(data)))
    assert [blob.sha256 async for blob in s3_world.store.list()] == [hashlib.sha256(data).hexdigest()]


async def test_the_s3_store_sends_exactly_the_range_its_receipt_records(s3_world: World) -> None:
    await check_range_spellings(s3_world)

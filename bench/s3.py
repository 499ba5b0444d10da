"""The S3-compatible blob store at scale (issue 8): many uploads, a large one, and many concurrent
downloads through the real app, against moto's S3 server in a process of its own.

    python -m bench.s3 [--images 200] [--image-kib 1024] [--concurrency 16] [--large-mb 100]
                       [--clients 50] [--downloads 400] [--database-url URL]

`--images` signed images (each a Manufacturer Image of `--image-kib` KiB, one certified version each) are
uploaded `--concurrency` at a time to `POST /api/v1/images` of a uvicorn child whose blob store is
`s3://…` on moto, and each is published; then one image of `--large-mb` MB (a multipart upload of 8 MiB
parts). `--clients` concurrent clients then take `--downloads` images at random, every body's SHA-256
checked against the record. Last, the library's integrity check (`cfl-graph verify`'s blob walk)
re-hashes every object in the bucket. Figures: uploads a second, MB/s, latency p50/p99, errors (any is
a failure), the server's and moto's peak memory. moto is a test double of S3 with its own costs (it
keeps objects in memory, about 5x their size): the figures are the library's path through an S3 API,
not a forecast of AWS.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from bench.cpl_sync import _drop_database, _fresh_database
from bench.images import (
    HARDWARE_VERSION,
    MB,
    MODEL_ID,
    RATE_LIMIT_PER_MINUTE,
    RELEASE_NOTES,
    Server,
    _prepare_library,
    write_cpl,
    write_signed_image,
)
from bench.records import machine_record, write_record

BUCKET = "cfl-bench"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIABENCHKEYID000001",
    "AWS_SECRET_ACCESS_KEY": "bench/secret/never/used/for/real",
    "AWS_DEFAULT_REGION": "eu-west-2",
}
MAX_IMAGE_BYTES = 1024 * 1024 * 1024
PUBLISH = "mutation($id: ID!) { publishImage(id: $id) { state } }"


@dataclass(frozen=True)
class Phase:
    name: str
    requests: int
    errors: int
    seconds: float
    megabytes: float
    p50_ms: float
    p99_ms: float

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.seconds


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def _phase(name: str, latencies: list[float], errors: int, seconds: float, nbytes: int) -> Phase:
    return Phase(
        name,
        len(latencies) + errors,
        errors,
        seconds,
        nbytes / MB,
        statistics.median(latencies) * 1000 if latencies else 0.0,
        _percentile(latencies, 0.99) * 1000,
    )


class Moto:
    """moto's S3 server in its own process, on a port of its own."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.put(f"{self.url}/{BUCKET}") as response:
                        if response.status in (200, 409):
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise SystemExit("moto's S3 server did not start")

    def peak_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
        return 0.0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _serve_s3(fd: int, database_url: str, work_dir: str, endpoint: str) -> None:
    import uvicorn

    from cfl_graph.doors.web.app import create_app
    from cfl_graph.settings import Settings

    settings = Settings(
        database_url=database_url,
        blob_dir=Path(work_dir) / "unused-local-blobs",
        work_dir=Path(work_dir),
        blob_store=f"s3://{BUCKET}/images",
        s3_endpoint_url=endpoint,
        max_image_bytes=MAX_IMAGE_BYTES,
        rate_limit_per_minute=RATE_LIMIT_PER_MINUTE,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level="warning", access_log=False, loop="auto")
    )
    # As bench.catalogue does: a socket of its real family, so uvicorn turns Nagle's algorithm off and
    # small answers (the publications) do not wait out the client's delayed ACK.
    server.run(sockets=[socket.socket(fileno=fd)])


async def _upload_all(
    url: str, token: str, images: list[Path], concurrency: int
) -> tuple[Phase, dict[int, str]]:
    """Upload and publish every image, `concurrency` at a time; the phase and {image id: file SHA-256}."""
    queue = list(images)
    latencies: list[float] = []
    errors = 0
    published: dict[int, str] = {}
    headers = {"Authorization": f"Bearer {token}"}

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal errors
        while queue:
            path = queue.pop()
            form = aiohttp.FormData()
            form.add_field("file", path.read_bytes(), filename=path.name)
            form.add_field("releaseNotes", RELEASE_NOTES)
            form.add_field("modelId", MODEL_ID)
            form.add_field("hardwareVersion", HARDWARE_VERSION)
            began = time.perf_counter()
            async with http.post(f"{url}/api/v1/images", data=form, headers=headers) as response:
                answer = await response.json()
            if response.status != 201 or answer.get("problems"):
                errors += 1
                print(f"  upload of {path.name}: {response.status} {str(answer)[:300]}", flush=True)
                continue
            body = {"query": PUBLISH, "variables": {"id": str(answer["id"])}}
            async with http.post(f"{url}/graphql", json=body, headers=headers) as response:
                result = await response.json()
            if result.get("errors"):
                errors += 1
                print(f"  publication of {answer['id']}: {result['errors']}", flush=True)
                continue
            latencies.append(time.perf_counter() - began)
            published[int(answer["id"])] = str(answer["fileSha256"])

    nbytes = sum(p.stat().st_size for p in images)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        began = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - began
    return _phase(f"{len(images)} × upload + publication", latencies, errors, seconds, nbytes), published


async def _download_all(
    url: str, token: str, images: dict[int, str], clients: int, downloads: int, seed: int = 7
) -> Phase:
    """`downloads` downloads of images picked at random, `clients` at a time, each body re-hashed."""
    picks = random.Random(seed).choices(sorted(images), k=downloads)
    latencies: list[float] = []
    errors = 0
    nbytes = 0
    headers = {"Authorization": f"Bearer {token}"}

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal errors, nbytes
        while picks:
            image_id = picks.pop()
            digest = hashlib.sha256()
            began = time.perf_counter()
            async with http.get(f"{url}/api/v1/images/{image_id}/file", headers=headers) as response:
                async for chunk in response.content.iter_chunked(1024 * 1024):
                    digest.update(chunk)
                    nbytes += len(chunk)
                status = response.status
            if status != 200 or digest.hexdigest() != images[image_id]:
                errors += 1
                print(f"  download of {image_id}: {status}, SHA-256 {digest.hexdigest()[:16]}…", flush=True)
                continue
            latencies.append(time.perf_counter() - began)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - began
    return _phase(f"{downloads} downloads, {clients} at a time", latencies, errors, seconds, nbytes)


async def _verify_bucket(database_url: str, work_dir: Path, endpoint: str) -> tuple[float, int, int]:
    """The integrity walk `cfl-graph verify` does: (seconds, blobs checked, problems found)."""
    from cfl_graph.blobs import blob_store_for
    from cfl_graph.database import Database
    from cfl_graph.images.integrity import verify_blobs
    from cfl_graph.settings import Settings

    settings = Settings(
        database_url=database_url,
        work_dir=work_dir,
        blob_store=f"s3://{BUCKET}/images",
        s3_endpoint_url=endpoint,
    )
    db = Database.connect(database_url)
    store = blob_store_for(settings)
    try:
        began = time.perf_counter()
        report = await verify_blobs(db.sessions, store)
        return time.perf_counter() - began, report.blobs, len(report.problems)
    finally:
        await store.close()
        await db.dispose()


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.update(CREDENTIALS)  # for this process's own S3 client, and inherited by the server child
    key = generate_private_key(SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with tempfile.TemporaryDirectory(prefix="cfl-bench-s3-") as tmp:
        folder = Path(tmp)
        images, hashes = [], {}
        for index in range(args.images + 1):
            version = f"{0x02000000 + index:08X}"
            size = args.large_mb * MB if index == args.images else args.image_kib * 1024
            path = folder / f"image-{version}.zigbee"
            hashes[version] = write_signed_image(path, size, version, key)
            images.append(path)
        write_cpl(folder / "cpl.csv", hashes)
        url = _fresh_database(args.database_url, folder)
        moto = Moto()
        try:
            asyncio.run(moto.ready())
            tokens = asyncio.run(_prepare_library(url, folder / "cpl.csv", folder / "sync", pem))
            server = Server("s3", url, str(folder / "work"), moto.url, module="bench.s3")
            try:
                server.wait_ready()
                rss_before = server.status_mb("VmRSS")
                small, published = asyncio.run(
                    _upload_all(server.url, tokens.manufacturer, images[:-1], args.concurrency)
                )
                large, large_published = asyncio.run(
                    _upload_all(server.url, tokens.manufacturer, images[-1:], 1)
                )
                published |= large_published
                downloads = asyncio.run(
                    _download_all(server.url, tokens.supplier, published, args.clients, args.downloads)
                )
                server_peak = server.status_mb("VmHWM")
            finally:
                server.stop()
            verify_s, checked, problems = asyncio.run(_verify_bucket(url, folder / "verify", moto.url))
            moto_peak = moto.peak_mb()
        finally:
            moto.stop()
            _drop_database(args.database_url, url)
    return {
        "phases": [asdict(p) | {"per_s": p.per_s, "mb_per_s": p.mb_per_s} for p in (small, large, downloads)],
        "verify": {"seconds": verify_s, "blobs": checked, "problems": problems},
        "server_rss_before_mb": rss_before,
        "server_peak_mb": server_peak,
        "moto_peak_mb": moto_peak,
        "errors": small.errors + large.errors + downloads.errors + problems,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--serve":
        _, fd, database_url, work_dir, endpoint = argv[1:]
        _serve_s3(int(fd), database_url, work_dir, endpoint)
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.s3", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--image-kib", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--large-mb", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--downloads", type=int, default=400)
    parser.add_argument("--database-url", help="postgresql+asyncpg://... (default: a fresh SQLite file)")
    args = parser.parse_args(argv)
    result = run(args)
    print(
        f"\nS3 blob store through the app (moto on loopback), {args.images} images of {args.image_kib} KiB:"
    )
    print("| phase | requests | errors | per second | MB/s | p50 | p99 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in result["phases"]:
        print(
            f"| {p['name']} | {p['requests']} | {p['errors']} | {p['per_s']:.1f} | {p['mb_per_s']:.1f} "
            f"| {p['p50_ms']:.0f} ms | {p['p99_ms']:.0f} ms |"
        )
    v = result["verify"]
    print(f"integrity walk: {v['blobs']} blobs re-hashed in {v['seconds']:.1f} s, {v['problems']} problems")
    print(
        f"server memory {result['server_rss_before_mb']:.0f} MB before, "
        f"peak {result['server_peak_mb']:.0f} MB; moto peak {result['moto_peak_mb']:.0f} MB"
    )
    write_record(machine_record("s3", arguments=vars(args), **result), "s3", indent=1)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

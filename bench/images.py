"""Benchmarks P5 and P6: taking in a large firmware image, and serving one to many suppliers at once.

    python -m bench.images [--size-mb 200] [--download-mb 20] [--clients 50] [--downloads 200]
                           [--repeats 3] [--database-url URL]

P5 streams a signed image of `--size-mb` MB to `POST /api/v1/images` on a real uvicorn server (a child
process on a fresh, migrated database, blobs in a local folder on the same disk as the file) and times
first byte sent to 201; the baseline is `sha256sum FILE && cp FILE DEST` on the same disk, and a stricter
one (`openssl dgst -sha256`, which uses SHA-NI as Python does, then cp and fsync) is shown beside it. The
server's peak RSS during the upload shows memory stays flat whatever the image's size.

P6 publishes an image of `--download-mb` MB and has `--clients` concurrent clients take it `--downloads`
times from `GET /api/v1/images/{id}/file` (token check, policy, an audit event per download, then the
bytes); the baseline is a bare Starlette app serving the same file with `FileResponse`. Both are single
uvicorn workers in child processes; the clients run here and discard the bytes after counting them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import (
    ECDSA,
    SECP256R1,
    EllipticCurvePrivateKey,
    generate_private_key,
)
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

from bench.records import machine_record, write_record
from cfl_graph.demo.ota_images import build_header

# The service's own modules are imported where they are used, so that the bare server child runs
# Starlette alone, as a plain file server would.

AIM_INGEST_RATIO = 1.5  # ours / (sha256sum && cp), at most
AIM_DOWNLOAD_RATIO = 0.9  # ours / bare FileResponse, in MB/s, at least

MANUFACTURER_ID = "10B2"
MODEL_ID = "0001"
HARDWARE_VERSION = "0100"
INGEST_FIRMWARE = "01000000"
DOWNLOAD_FIRMWARE = "01010000"
RELEASE_NOTES = "## Changes\n\n- Fixed the tariff switch at midnight on the last day of the month.\n"
CHUNK = 1024 * 1024
MB = 1_000_000
# High enough never to refuse a benchmark request, so the rate limiter runs but does not throttle.
RATE_LIMIT_PER_MINUTE = 10_000_000
SERVER_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class IngestMeasurement:
    file_mb: float
    baseline_s: float  # sha256sum FILE && cp FILE DEST: the aim's baseline
    # A stricter one: OpenSSL's SHA-256 (SHA-NI where the CPU has it, as Python's hashlib uses; coreutils
    # does not) and an fsync of the copy, as the server fsyncs each blob before keeping it.
    strict_baseline_s: float
    ours_s: float
    server_rss_before_mb: float
    server_peak_mb: float
    peak_is_upload_only: bool  # VmHWM was reset just before the upload (else: the peak since start)

    @property
    def ratio(self) -> float:
        return self.ours_s / self.baseline_s

    @property
    def strict_ratio(self) -> float:
        return self.ours_s / self.strict_baseline_s


@dataclass(frozen=True)
class DownloadRound:
    seconds: float
    megabytes: float
    requests: int
    server_cpu_s: float
    client_cpu_s: float

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds


@dataclass(frozen=True)
class DownloadMeasurement:
    file_mb: float
    clients: int
    downloads: int
    bare: DownloadRound
    ours: DownloadRound

    @property
    def ratio(self) -> float:
        return self.ours.mb_per_s / self.bare.mb_per_s


# --- images --------------------------------------------------------------------------------------------


def write_signed_image(
    path: Path, manufacturer_image_bytes: int, firmware_version: str, key: EllipticCurvePrivateKey
) -> str:
    """Write a signed OTA image with a Manufacturer Image of the given length, a chunk at a time; return
    the Manufacturer Image's SHA-256 (what the CPL lists for the version)."""
    header = build_header(
        manufacturer_code=MANUFACTURER_ID,
        file_version=firmware_version,
        manufacturer_image_length=manufacturer_image_bytes,
        header_string=f"CFL bench {firmware_version}",
    )
    signed = hashlib.sha256(header)
    image = hashlib.sha256()
    with path.open("wb") as out:
        out.write(header)
        written = 0
        for index in range((manufacturer_image_bytes + CHUNK - 1) // CHUNK):
            # SHAKE gives a chunk of varied bytes per call; the seed makes each version's image its own.
            size = min(CHUNK, manufacturer_image_bytes - written)
            chunk = hashlib.shake_128(f"{firmware_version}:{index}".encode()).digest(size)
            out.write(chunk)
            signed.update(chunk)
            image.update(chunk)
            written += size
        # As cfl_graph.demo.ota_images.raw_signature, over a digest taken as the bytes went by.
        r, s = decode_dss_signature(key.sign(signed.digest(), ECDSA(Prehashed(SHA256()))))
        out.write(struct.pack("<H", 64) + r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return image.hexdigest()


def write_cpl(path: Path, hashes: dict[str, str]) -> None:
    """A CPL listing one device model with the given firmware versions and Manufacturer Image hashes."""
    from cfl_graph.demo.cpl_data import CplRecord, write_csv

    write_csv(
        path,
        (
            CplRecord(
                manufacturer_name="Northfield Metering Ltd",
                manufacturer_id=MANUFACTURER_ID,
                model_name="NM-E470 Single Phase",
                model_id=MODEL_ID,
                hardware_version=HARDWARE_VERSION,
                firmware_version=version,
                device_type="ESME",
                smets_version="SMETS2",
                gbcs_version="v3.2",
                image_hash=digest,
                cpa_reference="CPA-2024-0001",
                cpa_expiry=datetime.date(2036, 1, 31),
                status="Active",
                date_added=datetime.date(2024, 1, 15),
            )
            for version, digest in hashes.items()
        ),
    )


# --- the library's database ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    manufacturer: str
    supplier: str


async def _prepare_library(database_url: str, cpl: Path, work_dir: Path, public_pem: bytes) -> Tokens:
    """Migrate, register a manufacturer (with its key) and a supplier, and sync the CPL."""
    from cfl_graph import migrate
    from cfl_graph.access.keys import add_key
    from cfl_graph.access.parties import add_party
    from cfl_graph.access.tokens import issue_token
    from cfl_graph.audit import SYSTEM
    from cfl_graph.database import Database
    from cfl_graph.tables import Role
    from cpl_sync.sync import sync_cpl

    db = Database.connect(database_url)
    try:
        await migrate.upgrade(db.engine)
        async with db.sessions.begin() as session:
            maker = await add_party(
                session,
                "Northfield Metering Ltd",
                Role.MANUFACTURER,
                manufacturer_ids=[MANUFACTURER_ID],
                actor=SYSTEM,
            )
            supplier = await add_party(session, "Calder Supply Ltd", Role.SUPPLIER, actor=SYSTEM)
            await add_key(session, [MANUFACTURER_ID], public_pem, actor=SYSTEM)
            tokens = Tokens(
                manufacturer=(await issue_token(session, maker, actor=SYSTEM)).text,
                supplier=(await issue_token(session, supplier, actor=SYSTEM)).text,
            )
        result = await sync_cpl(db, str(cpl), work_dir=work_dir, trigger="bench")
        if result.outcome.value != "applied":
            raise SystemExit(f"CPL sync did not apply: {result.outcome} {result.message}")
        return tokens
    finally:
        await db.dispose()


# --- servers -------------------------------------------------------------------------------------------


def _serve_ours(fd: int, database_url: str, blob_dir: str, work_dir: str, max_image_bytes: int) -> None:
    import uvicorn

    from cfl_graph.doors.web.app import create_app
    from cfl_graph.settings import Settings

    settings = Settings(
        database_url=database_url,
        blob_dir=Path(blob_dir),
        work_dir=Path(work_dir),
        max_image_bytes=max_image_bytes,
        rate_limit_per_minute=RATE_LIMIT_PER_MINUTE,
    )
    uvicorn.run(create_app(settings), fd=fd, log_level="warning", access_log=False, loop="auto")


def _serve_bare(fd: int, path: str, chunk_kib: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, PlainTextResponse, Response
    from starlette.routing import Route

    class Tuned(FileResponse):
        chunk_size = chunk_kib * 1024

    async def file(request: Request) -> Response:
        return Tuned(path, media_type="application/octet-stream")

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/file", file), Route("/healthz", healthz)])
    uvicorn.run(app, fd=fd, log_level="warning", access_log=False, loop="auto")


class Server:
    """A uvicorn server in a child process, listening on a socket made here (so no port race)."""

    def __init__(
        self, kind: str, *args: str, module: str = "bench.images", env: dict[str, str] | None = None
    ) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(1024)
        host, port = self._socket.getsockname()
        self.url = f"http://{host}:{port}"
        fd = self._socket.fileno()
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "--serve", kind, str(fd), *args],
            pass_fds=[fd],
            env=None if env is None else {**os.environ, **env},
        )
        self.pid = self.process.pid

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server child exited with {self.process.returncode}")
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            time.sleep(0.05)
        raise SystemExit(f"the server at {self.url} did not answer within {SERVER_START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        self._socket.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def status_mb(self, field: str) -> float:
        """A memory figure from /proc/<pid>/status (VmRSS, VmHWM), in MB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024 / MB
        raise KeyError(field)

    def reset_peak(self) -> bool:
        """Set VmHWM back to the current RSS (Linux: write 5 to clear_refs); False if not allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def serving(kind: str, *args: str) -> Iterator[Server]:
    server = Server(kind, *args)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# --- P5: ingest ----------------------------------------------------------------------------------------


def _timed_shell(script: str, *args: str) -> float:
    os.sync()  # each side starts with no dirty pages left by the one before
    start = time.perf_counter()
    subprocess.run(["sh", "-c", script, "sh", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _graphql(url: str, token: str, query: str, **variables: Any) -> dict[str, Any]:
    response = httpx2.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    body: dict[str, Any] = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise SystemExit(f"GraphQL {query.split('(')[0]} failed: {response.status_code} {body}")
    return body


def _upload(url: str, token: str, path: Path) -> tuple[float, dict[str, Any]]:
    """Stream `path` as a raw-body upload; (seconds from first byte sent to the 201, its JSON)."""
    started: list[float] = []

    def body() -> Iterator[bytes]:
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                if not started:
                    started.append(time.perf_counter())
                yield chunk

    with httpx2.Client(timeout=600) as client:
        response = client.post(
            f"{url}/api/v1/images",
            params={"modelId": MODEL_ID, "hardwareVersion": HARDWARE_VERSION},
            content=body(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/octet-stream",
                "Content-Length": str(path.stat().st_size),
            },
        )
        elapsed = time.perf_counter() - started[0]
    if response.status_code != 201:
        raise SystemExit(f"the upload was refused: {response.status_code} {response.text[:500]}")
    answer: dict[str, Any] = response.json()
    problems = [p["problem"] for p in answer["problems"]]
    if problems != ["release-notes-missing"]:  # a raw body carries no notes; anything else is a set-up bug
        raise SystemExit(f"the uploaded image has problems: {answer['problems']}")
    return elapsed, answer


def measure_ingest(server: Server, token: str, image: Path, folder: Path, repeats: int) -> IngestMeasurement:
    copy = folder / "baseline-copy.zigbee"
    baseline, strict, ours = [], [], []
    rss_before, peaks, upload_only = server.status_mb("VmRSS"), [], True
    for _ in range(repeats):
        baseline.append(_timed_shell('sha256sum "$1" && cp "$1" "$2"', str(image), str(copy)))
        copy.unlink()
        strict.append(
            _timed_shell('openssl dgst -sha256 "$1" && cp "$1" "$2" && sync "$2"', str(image), str(copy))
        )
        copy.unlink()
        os.sync()
        upload_only = server.reset_peak() and upload_only
        seconds, answer = _upload(server.url, token, image)
        peaks.append(server.status_mb("VmHWM"))
        ours.append(seconds)
        # Free the version (and its blob) for the next round: one image per version, ever.
        _graphql(server.url, token, "mutation($id: ID!) { discardImage(id: $id) }", id=answer["id"])
    return IngestMeasurement(
        file_mb=image.stat().st_size / MB,
        baseline_s=min(baseline),
        strict_baseline_s=min(strict),
        ours_s=min(ours),
        server_rss_before_mb=rss_before,
        server_peak_mb=max(peaks),
        peak_is_upload_only=upload_only,
    )


# --- P6: downloads -------------------------------------------------------------------------------------


def publish_for_download(url: str, token: str, image: Path) -> tuple[int, str]:
    """Upload `image` with release notes and publish it; (image id, the blob's SHA-256)."""
    with image.open("rb") as stream:
        response = httpx2.post(
            f"{url}/api/v1/images",
            files={"file": (image.name, stream, "application/octet-stream")},
            data={"releaseNotes": RELEASE_NOTES, "modelId": MODEL_ID, "hardwareVersion": HARDWARE_VERSION},
            headers={"Authorization": f"Bearer {token}"},
            timeout=600,
        )
    if response.status_code != 201 or response.json()["problems"]:
        raise SystemExit(
            f"the download image was not accepted cleanly: {response.status_code} {response.text}"
        )
    image_id = int(response.json()["id"])
    _graphql(url, token, "mutation($id: ID!) { publishImage(id: $id) { id state } }", id=str(image_id))
    return image_id, str(response.json()["fileSha256"])


async def _download_all(url: str, token: str | None, size: int, clients: int, downloads: int) -> float:
    """`downloads` GETs of `url`, `clients` at a time, each body counted and dropped; the seconds taken."""
    import aiohttp

    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    remaining = downloads

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with session.get(url, headers=headers) as response:
                if response.status != 200:
                    raise SystemExit(f"GET {url}: {response.status} {(await response.text())[:300]}")
                received = 0
                async for chunk in response.content.iter_chunked(CHUNK):
                    received += len(chunk)
            if received != size:
                raise SystemExit(f"GET {url}: {received:,} bytes, expected {size:,}")

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, read_bufsize=CHUNK
    ) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return time.perf_counter() - start


def _download_round(
    server: Server, path: str, token: str | None, size: int, clients: int, n: int
) -> DownloadRound:
    server_cpu, client_cpu = server.cpu_s(), time.process_time()
    seconds = asyncio.run(_download_all(f"{server.url}{path}", token, size, clients, n))
    return DownloadRound(
        seconds=seconds,
        megabytes=size * n / MB,
        requests=n,
        server_cpu_s=server.cpu_s() - server_cpu,
        client_cpu_s=time.process_time() - client_cpu,
    )


def measure_downloads(
    ours: Server,
    bare: Server,
    image_id: int,
    token: str,
    size: int,
    clients: int,
    downloads: int,
    repeats: int,
) -> DownloadMeasurement:
    sides = {"bare": (bare, "/file", None), "ours": (ours, f"/api/v1/images/{image_id}/file", token)}
    for server, path, bearer in sides.values():
        _download_round(server, path, bearer, size, clients, clients)  # warm up: a connection per client
    rounds: dict[str, list[DownloadRound]] = {"bare": [], "ours": []}
    for _ in range(repeats):
        for name, (server, path, bearer) in sides.items():
            rounds[name].append(_download_round(server, path, bearer, size, clients, downloads))
    best = {name: max(found, key=lambda r: r.mb_per_s) for name, found in rounds.items()}
    return DownloadMeasurement(size / MB, clients, downloads, best["bare"], best["ours"])


# --- the whole run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[IngestMeasurement, DownloadMeasurement]:
    from bench.cpl_sync import _drop_database, _fresh_database
    from cfl_graph.blobs.local import LocalBlobStore

    key = generate_private_key(SECP256R1())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with tempfile.TemporaryDirectory(prefix="cfl-bench-", dir=args.temp_dir) as tmp:
        folder = Path(tmp)
        ingest_image = folder / "ingest.zigbee"
        download_image = folder / "download.zigbee"
        hashes = {
            INGEST_FIRMWARE: write_signed_image(ingest_image, args.size_mb * MB, INGEST_FIRMWARE, key),
            DOWNLOAD_FIRMWARE: write_signed_image(
                download_image, args.download_mb * MB, DOWNLOAD_FIRMWARE, key
            ),
        }
        write_cpl(folder / "cpl.csv", hashes)
        url = _fresh_database(args.database_url, folder)
        try:
            tokens = asyncio.run(_prepare_library(url, folder / "cpl.csv", folder / "sync", public_pem))
            blob_dir = folder / "blobs"
            max_image_bytes = max(512 * 1024 * 1024, 2 * ingest_image.stat().st_size)
            with serving("ours", url, str(blob_dir), str(folder / "work"), str(max_image_bytes)) as ours:
                ingest = measure_ingest(ours, tokens.manufacturer, ingest_image, folder, args.repeats)
                print_ingest(ingest)
                image_id, sha256 = publish_for_download(ours.url, tokens.manufacturer, download_image)
                stored = LocalBlobStore(blob_dir).path_of(sha256)
                with serving("bare", str(stored), str(args.bare_chunk_kib)) as bare:
                    download = measure_downloads(
                        ours,
                        bare,
                        image_id,
                        tokens.supplier,
                        stored.stat().st_size,
                        args.clients,
                        args.downloads,
                        args.repeats,
                    )
                print_download(download)
        finally:
            _drop_database(args.database_url, url)
    return ingest, download


def print_ingest(m: IngestMeasurement) -> None:
    peak = "peak during upload" if m.peak_is_upload_only else "peak since start"
    print(f"P5 ingest of a {m.file_mb:.0f} MB image (seconds, best of the rounds)")
    print(f"  {'sha256sum+cp':>14} {'ours':>8} {'ratio':>6}   {'openssl+cp+sync':>16} {'ratio':>6}")
    print(
        f"  {m.baseline_s:>14.3f} {m.ours_s:>8.3f} {m.ratio:>5.2f}x   {m.strict_baseline_s:>16.3f} "
        f"{m.strict_ratio:>5.2f}x   (aim: ratio to sha256sum+cp <= {AIM_INGEST_RATIO}x)"
    )
    print(
        f"  server RSS before {m.server_rss_before_mb:.0f} MB, {peak} {m.server_peak_mb:.0f} MB", flush=True
    )


def print_download(m: DownloadMeasurement) -> None:
    print(f"P6 {m.downloads} downloads of a {m.file_mb:.0f} MB image, {m.clients} at a time (best round)")
    print(f"  {'':>5} {'MB/s':>8} {'req/s':>7} {'seconds':>8} {'server CPU s':>13} {'client CPU s':>13}")
    for name, r in (("bare", m.bare), ("ours", m.ours)):
        print(
            f"  {name:>5} {r.mb_per_s:>8.0f} {r.requests_per_s:>7.1f} {r.seconds:>8.2f} "
            f"{r.server_cpu_s:>13.2f} {r.client_cpu_s:>13.2f}"
        )
    print(f"  ratio {m.ratio:.2f}x   (aim: ratio >= {AIM_DOWNLOAD_RATIO}x)", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--serve":
        kind, fd, *rest = argv[1:]
        if kind == "ours":
            _serve_ours(int(fd), rest[0], rest[1], rest[2], int(rest[3]))
        else:
            _serve_bare(int(fd), rest[0], int(rest[1]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="P5: the uploaded image's size")
    parser.add_argument("--download-mb", type=int, default=20, help="P6: the downloaded image's size")
    parser.add_argument("--clients", type=int, default=50, help="P6: concurrent downloads")
    parser.add_argument("--downloads", type=int, default=200, help="P6: downloads per measured round")
    parser.add_argument("--repeats", type=int, default=3, help="best of N rounds for each side")
    parser.add_argument(
        "--bare-chunk-kib",
        type=int,
        default=64,
        help="P6: the bare FileResponse's read size (Starlette's default 64; ours reads 1024)",
    )
    parser.add_argument("--database-url", help="postgresql+asyncpg://... (default: a fresh SQLite file)")
    parser.add_argument("--temp-dir", help="where the images, database and blobs go (default: the system's)")
    args = parser.parse_args(argv)

    ingest, download = run(args)

    record = machine_record(
        "P5 image ingest, P6 image downloads",
        database="sqlite" if args.database_url is None else "postgresql",
        repeats=args.repeats,
        ingest={
            **asdict(ingest),
            "ratio": round(ingest.ratio, 3),
            "strict_ratio": round(ingest.strict_ratio, 3),
            "aim_ratio_max": AIM_INGEST_RATIO,
        },
        download={
            "file_mb": download.file_mb,
            "clients": download.clients,
            "downloads": download.downloads,
            **{
                name: {
                    **asdict(r),
                    "mb_per_s": round(r.mb_per_s, 1),
                    "requests_per_s": round(r.requests_per_s, 1),
                }
                for name, r in (("bare", download.bare), ("ours", download.ours))
            },
            "ratio": round(download.ratio, 3),
            "aim_ratio_min": AIM_DOWNLOAD_RATIO,
        },
    )
    write_record(record, f"images-{record['database']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks P2 and P4: a supplier's catalogue page and the coverage-gap report, against hand-written SQL.

    python -m bench.catalogue [--rows 1000 10000 100000] [--database-url URL] [--clients 20]
                              [--requests 20] [--rounds 3] [--max-images N] [--profile]

For each row count a CPL from `cfl_graph.demo.cpl_data` is synchronised by the real pipeline into a fresh,
migrated database, and the demo library (`cfl_graph.demo.library`: demo manufacturers, their keys, signed
images uploaded and published through `ImageLibrary`, some versions declared commercial; `--max-images`
raises its cap) is loaded on top; a supplier party gets a token. None of that is measured. On PostgreSQL the
setup ends with ANALYZE, as autovacuum would soon after a sync.

P2 sends the catalogue query (100 device models a page, with their certified versions, declarations and
images) to the real app, a uvicorn worker in a child process, for the first page and for a page deep in
the list (reached by following cursors): one client at a time, then `--clients` at once. The baseline is
hand-written SQL run straight on the driver (asyncpg or aiosqlite: the page with its count, then the
page's versions with declarations and visible images joined) that builds and encodes the same JSON answer,
run by as many asyncio tasks over a pool as large as the app's. Both answers are checked equal first.

P4 asks for the first 500 coverage gaps with their total, over GraphQL and by calling
`cfl_graph.reports.coverage_gaps` directly, against a hand-written anti-join; all three must agree.

Wall times suffer from whatever else the machine runs (the load average is printed); the CPU time per
request of the answering process is printed beside them. `--profile` repeats the single-client requests
on a server under cProfile and prints where its time went.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from bench.cpl_sync import LARGE_CPL_LIMITS, _drop_database, _fresh_database
from bench.images import RATE_LIMIT_PER_MINUTE, Server
from bench.records import machine_record, write_record
from cfl_graph.demo.cpl_data import generate, write_csv

AIM_GAPS_RATIO = 1.5  # P4: ours / the hand-written anti-join, at most
KEEPALIVE_S = 2.0  # the client's idle keep-alive, under uvicorn's default 5 s
FAR_OFF_RATIO = 3.0  # beyond this, ours is worth a profile (`--profile`)
PAGE_SIZE = 100
GAPS_FIRST = 500
DEEP_SHARE = 0.9  # the deep page sits this far down the list
WARM_UP = 3
PROFILE_REQUESTS = 5  # of each kind, on the profiled server
MAX_IMAGE_BYTES = 16 * 1024 * 1024  # the demo's images are about 1 KiB

CATALOGUE_QUERY = (
    "query($after: String) { deviceModels(first: 100, after: $after) { totalCount "
    "pageInfo { hasNextPage endCursor } edges { node { manufacturerId modelId hardwareVersion "
    "manufacturerName modelName deviceType smetsVersion certifiedFirmware { firmwareVersion imageHash "
    "status listedOn commercial libraryImage { imageId state fileSha256 size } } } } } }"
)
CURSORS_QUERY = (
    "query($after: String) { deviceModels(first: 100, after: $after) { pageInfo { hasNextPage endCursor } } }"
)
GAPS_QUERY = (
    "{ coverageGaps(first: 500) { totalCount edges { node { firmwareVersion daysMissing "
    "deviceModel { manufacturerId modelId hardwareVersion } } } } }"
)

# --- the hand-written SQL ------------------------------------------------------------------------------
# Plain SQL that runs unchanged on SQLite and PostgreSQL (`?` becomes `$n` for asyncpg).

CURRENT = "(SELECT snapshot_id FROM cpl_current WHERE id = 1)"
MODEL_COLUMNS = (
    "manufacturer_id, model_id, hardware_version, manufacturer_name, model_name, device_type, smets_version"
)
MODEL_KEY = "manufacturer_id, model_id, hardware_version"
MODEL_COUNT_SQL = f"SELECT count(*) FROM cpl_device_models WHERE snapshot_id = {CURRENT}"
FIRST_PAGE_SQL = (
    f"SELECT {MODEL_COLUMNS} FROM cpl_device_models WHERE snapshot_id = {CURRENT} "
    f"ORDER BY {MODEL_KEY} LIMIT ?"
)
LATER_PAGE_SQL = (
    f"SELECT {MODEL_COLUMNS} FROM cpl_device_models WHERE snapshot_id = {CURRENT} "
    f"AND ({MODEL_KEY}) > (?, ?, ?) ORDER BY {MODEL_KEY} LIMIT ?"
)


def _same_version(alias: str) -> str:
    return " AND ".join(
        f"{alias}.{column} = cf.{column}"
        for column in ("manufacturer_id", "model_id", "hardware_version", "firmware_version")
    )


# A page is a contiguous range of model keys, so its versions are one range of the primary key.
PAGE_VERSIONS_SQL = (
    "SELECT cf.manufacturer_id, cf.model_id, cf.hardware_version, cf.firmware_version, cf.image_hash, "
    "cf.status, cf.date_added, d.manufacturer_id IS NOT NULL, i.id, i.state, i.file_sha256, i.size "
    "FROM cpl_certified_firmware cf "
    f"LEFT JOIN commercial_declarations d ON {_same_version('d')} "
    f"LEFT JOIN library_images i ON {_same_version('i')} AND i.state <> 'draft' "
    f"WHERE cf.snapshot_id = {CURRENT} "
    "AND (cf.manufacturer_id, cf.model_id, cf.hardware_version) >= (?, ?, ?) "
    "AND (cf.manufacturer_id, cf.model_id, cf.hardware_version) <= (?, ?, ?) "
    "ORDER BY cf.manufacturer_id, cf.model_id, cf.hardware_version, cf.firmware_version"
)
GAPS_FROM = (
    "FROM cpl_certified_firmware cf JOIN cpl_device_models dm ON dm.snapshot_id = cf.snapshot_id "
    "AND dm.manufacturer_id = cf.manufacturer_id AND dm.model_id = cf.model_id "
    "AND dm.hardware_version = cf.hardware_version "
    f"WHERE cf.snapshot_id = {CURRENT} AND cf.status = 'active' "
    "AND dm.device_type IN ('ESME', 'GSME', 'HCALCS', 'PPMID') "
    f"AND NOT EXISTS (SELECT 1 FROM commercial_declarations d WHERE {_same_version('d')}) "
    f"AND NOT EXISTS (SELECT 1 FROM library_images i WHERE {_same_version('i')} AND i.state = 'published')"
)
GAPS_COUNT_SQL = f"SELECT count(*) {GAPS_FROM}"
GAPS_PAGE_SQL = (
    "SELECT cf.manufacturer_id, cf.model_id, cf.hardware_version, cf.firmware_version, cf.date_added "
    f"{GAPS_FROM} ORDER BY cf.date_added, cf.manufacturer_id, cf.model_id, cf.hardware_version, "
    "cf.firmware_version LIMIT ?"
)


class Connection(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]: ...


class HandPool(Protocol):
    def connection(self) -> contextlib.AbstractAsyncContextManager[Connection]: ...

    async def close(self) -> None: ...


def _numbered(sql: str) -> str:
    """`?` placeholders as asyncpg's `$1, $2, ...` (the statements above hold no other `?`)."""
    parts = sql.split("?")
    return "".join(part + (f"${index}" if index < len(parts) else "") for index, part in enumerate(parts, 1))


class _PostgresConnection:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._conn.fetch(_numbered(sql), *args)]


class PostgresPool:
    """asyncpg's own pool, sized as the app's SQLAlchemy pool."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, min_size: int, max_size: int) -> PostgresPool:
        import asyncpg

        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        return cls(await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size))

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        async with self._pool.acquire() as conn:
            yield _PostgresConnection(conn)

    async def close(self) -> None:
        await self._pool.close()


class _SqliteConnection:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self._conn.execute(sql, args) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]


class SqlitePool:
    """aiosqlite connections (a thread each), opened as needed up to the app's pool size, then shared."""

    def __init__(self, path: str, max_size: int) -> None:
        self._path = path
        self._max_size = max_size
        self._opened: list[Any] = []
        self._idle: asyncio.Queue[Any] = asyncio.Queue()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        import aiosqlite

        if self._idle.empty() and len(self._opened) < self._max_size:
            conn = await aiosqlite.connect(self._path)
            self._opened.append(conn)
        else:
            conn = await self._idle.get()
        try:
            yield _SqliteConnection(conn)
        finally:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._opened:
            await conn.close()


def app_pool_size(database_url: str) -> tuple[int, int]:
    """(kept, most) connections of the pool the app's `Database.connect` makes for this URL."""
    from cfl_graph.database import Database

    db = Database.connect(database_url)
    pool = db.engine.pool
    kept = int(pool.size()) if hasattr(pool, "size") else 1
    most = kept + max(int(getattr(pool, "_max_overflow", 0)), 0)
    asyncio.run(db.dispose())
    return kept, most


async def open_hand_pool(database_url: str, size: tuple[int, int]) -> HandPool:
    kept, most = size
    if database_url.startswith("postgresql"):
        return await PostgresPool.open(database_url, kept, most)
    return SqlitePool(database_url.split(":///", 1)[1], most)


def _cursor(key: Sequence[str]) -> str:
    # The app's cursor format (cfl_graph.catalogue.encode_cursor), so the pages can be compared.
    return base64.urlsafe_b64encode(json.dumps(["DeviceModel", *key]).encode()).decode()


def _cursor_key(cursor: str) -> list[str]:
    decoded: list[str] = json.loads(base64.urlsafe_b64decode(cursor.encode()))[1:]
    return decoded


async def hand_catalogue_page(pool: HandPool, after: str | None) -> dict[str, Any]:
    """The catalogue query's `deviceModels` answer for one page, from three hand-written statements."""
    async with pool.connection() as conn:
        total = (await conn.fetch(MODEL_COUNT_SQL))[0][0]
        if after is None:
            models = await conn.fetch(FIRST_PAGE_SQL, PAGE_SIZE + 1)
        else:
            models = await conn.fetch(LATER_PAGE_SQL, *_cursor_key(after), PAGE_SIZE + 1)
        page = models[:PAGE_SIZE]
        versions = await conn.fetch(PAGE_VERSIONS_SQL, *page[0][:3], *page[-1][:3]) if page else []
    edges = []
    certified: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for mid, model, hardware, maker, name, device_type, smets in page:
        listed: list[dict[str, Any]] = []
        certified[(mid, model, hardware)] = listed
        node = {
            "manufacturerId": mid,
            "modelId": model,
            "hardwareVersion": hardware,
            "manufacturerName": maker,
            "modelName": name,
            "deviceType": device_type,
            "smetsVersion": smets,
            "certifiedFirmware": listed,
        }
        edges.append({"node": node})
    for mid, model, hardware, firmware, digest, status, added, declared, image, state, sha, size in versions:
        certified[(mid, model, hardware)].append(
            {
                "firmwareVersion": firmware,
                "imageHash": digest,
                "status": status.upper(),
                "listedOn": str(added),
                "commercial": bool(declared),
                "libraryImage": None
                if image is None
                else {"imageId": image, "state": state.upper(), "fileSha256": sha, "size": size},
            }
        )
    return {
        "totalCount": total,
        "pageInfo": {
            "hasNextPage": len(models) > PAGE_SIZE,
            "endCursor": _cursor(page[-1][:3]) if page else None,
        },
        "edges": edges,
    }


async def hand_coverage_gaps(pool: HandPool, today: dt.date) -> dict[str, Any]:
    """The `coverageGaps(first: 500)` answer from the hand-written anti-join: its count, then its page."""
    async with pool.connection() as conn:
        total = (await conn.fetch(GAPS_COUNT_SQL))[0][0]
        rows = await conn.fetch(GAPS_PAGE_SQL, GAPS_FIRST)
    return {
        "totalCount": total,
        "edges": [
            {
                "node": {
                    "firmwareVersion": firmware,
                    "daysMissing": (today - dt.date.fromisoformat(str(added))).days,
                    "deviceModel": {"manufacturerId": mid, "modelId": model, "hardwareVersion": hardware},
                }
            }
            for mid, model, hardware, firmware, added in rows
        ],
    }


# --- the library's database ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    rows: int
    device_models: int
    in_scope_active: int  # certified versions a coverage gap can be about
    images_published: int
    images_withdrawn: int
    declarations: int
    max_images: int
    write_s: float
    sync_s: float
    library_s: float

    @property
    def seconds(self) -> float:
        return self.write_s + self.sync_s + self.library_s


async def _build_library(
    database_url: str,
    cpl: Path | None,
    work: Path,
    blob_dir: Path,
    rows: int,
    max_images: int,
    write_s: float,
) -> tuple[Setup, str]:
    """Migrate, sync the CPL, load the demo library, register a supplier; (what was built, its token).

    With `cpl` None the database already holds the synced CPL (a benchmark that timed the sync itself)."""
    from sqlalchemy import text

    from cfl_graph import migrate
    from cfl_graph.access.parties import add_party
    from cfl_graph.access.tokens import issue_token
    from cfl_graph.audit import SYSTEM
    from cfl_graph.blobs.local import LocalBlobStore
    from cfl_graph.database import Database
    from cfl_graph.demo import library as demo_library
    from cfl_graph.tables import Role
    from cpl_sync.sync import sync_cpl

    db = Database.connect(database_url)
    try:
        await migrate.upgrade(db.engine)
        start = time.perf_counter()
        if cpl is not None:
            result = await sync_cpl(db, str(cpl), work_dir=work, trigger="bench", limits=LARGE_CPL_LIMITS)
            if result.outcome.value != "applied":
                raise SystemExit(f"CPL sync did not apply: {result.outcome} {result.message}")
        synced = time.perf_counter()
        blob_dir.mkdir(parents=True, exist_ok=True)
        # The demo's cap on images, raised on request for more coverage.
        await demo_library.load_demo_library(db, LocalBlobStore(blob_dir), max_images=max_images)
        loaded = time.perf_counter()
        async with db.sessions.begin() as session:
            supplier = await add_party(session, "Calder Supply Ltd", Role.SUPPLIER, actor=SYSTEM)
            token = (await issue_token(session, supplier, actor=SYSTEM)).text
        if db.engine.dialect.name == "postgresql":
            # Standing in for autovacuum, which would analyse the new rows within a minute or so: before it
            # does, the planner takes the new snapshot for a few rows and the gap report runs ~10x slower
            # (nested loops over 74,000 versions at 100,000 rows), for the hand-written SQL as for ours.
            async with db.engine.connect() as conn:
                await conn.execute(text("ANALYZE"))
                await conn.commit()
        async with db.sessions() as session:

            async def count(sql: str) -> int:
                return int(await session.scalar(text(sql)) or 0)

            setup = Setup(
                rows=rows,
                device_models=await count(MODEL_COUNT_SQL),
                in_scope_active=await count(
                    "SELECT count(*) FROM cpl_certified_firmware cf JOIN cpl_device_models dm "
                    "ON dm.snapshot_id = cf.snapshot_id AND dm.manufacturer_id = cf.manufacturer_id "
                    "AND dm.model_id = cf.model_id AND dm.hardware_version = cf.hardware_version "
                    f"WHERE cf.snapshot_id = {CURRENT} AND cf.status = 'active' "
                    "AND dm.device_type IN ('ESME', 'GSME', 'HCALCS', 'PPMID')"
                ),
                images_published=await count("SELECT count(*) FROM library_images WHERE state = 'published'"),
                images_withdrawn=await count("SELECT count(*) FROM library_images WHERE state = 'withdrawn'"),
                declarations=await count("SELECT count(*) FROM commercial_declarations"),
                max_images=max_images,
                write_s=write_s,
                sync_s=synced - start,
                library_s=loaded - synced,
            )
        return setup, token
    finally:
        await db.dispose()


# --- the server ----------------------------------------------------------------------------------------


def _serve(fd: int, database_url: str, blob_dir: str, work_dir: str, profile: str, plans: str) -> None:
    """The real app on one uvicorn worker; under cProfile (written at shutdown) if `profile` names a file.

    The listening socket is rebuilt from the descriptor with its real family (`socket(fileno=fd)`): uvicorn's
    own `fd=` takes every descriptor for AF_UNIX, so asyncio leaves Nagle's algorithm on for the accepted
    TCP connections, and each small answer waits out the client's delayed ACK (about 40 ms).
    """
    import uvicorn

    from cfl_graph.doors.web.app import create_app
    from cfl_graph.settings import Settings

    settings = Settings(
        database_url=database_url,
        blob_dir=Path(blob_dir),
        work_dir=Path(work_dir),
        max_image_bytes=MAX_IMAGE_BYTES,
        rate_limit_per_minute=RATE_LIMIT_PER_MINUTE,
        # The read path itself is measured against the hand-written SQL: every request is executed. What
        # the response cache adds is measured by bench.peer.
        response_cache_mb=0,
        # `on`: compiled plans (the service's default); `off`: graphql-core's executor, the reference.
        graphql_plans=plans,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level="warning", access_log=False, loop="auto")
    )
    listening = socket.socket(fileno=fd)
    # uvicorn raises the SIGTERM it caught again once it has shut down; ignored, the profile is written.
    signal.signal(signal.SIGTERM, lambda *_: None)
    if not profile:
        server.run(sockets=[listening])
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        server.run(sockets=[listening])
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


class CatalogueServer(Server):
    """`bench.images.Server`, starting this module's child (which may run under cProfile)."""

    def __init__(
        self, database_url: str, blob_dir: Path, work_dir: Path, profile: Path | None, plans: str
    ) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(1024)
        host, port = self._socket.getsockname()
        self.url = f"http://{host}:{port}"
        fd = self._socket.fileno()
        args = [database_url, str(blob_dir), str(work_dir), "" if profile is None else str(profile), plans]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.catalogue", "--serve", str(fd), *args], pass_fds=[fd]
        )
        self.pid = self.process.pid


@contextlib.contextmanager
def serving(
    database_url: str, blob_dir: Path, work_dir: Path, profile: Path | None = None, plans: str = "on"
) -> Iterator[Server]:
    server = CatalogueServer(database_url, blob_dir, work_dir, profile, plans)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class GraphClient:
    """POSTs GraphQL over one aiohttp session (keep-alive, as many connections as clients)."""

    def __init__(self, server: Server, token: str, clients: int) -> None:
        self._url = f"{server.url}/graphql"
        self.server_cpu_s: Clock = server.cpu_s
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        # Idle connections are dropped before uvicorn's 5 s keep-alive closes them: a request sent on a
        # connection the server is closing at that moment is reset (seen between the measured phases).
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=clients, keepalive_timeout=KEEPALIVE_S),
            timeout=aiohttp.ClientTimeout(total=600),
        )

    async def raw(self, query: str, variables: dict[str, Any]) -> bytes:
        """The answer's bytes: what the timings cover (the JSON is parsed apart, when checked)."""
        body = json.dumps({"query": query, "variables": variables})
        async with self._session.post(self._url, data=body, headers=self._headers) as response:
            data = await response.read()
            if response.status != 200:
                raise SystemExit(f"GraphQL answered {response.status}: {data[:500]!r}")
            return data

    async def data(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(await self.raw(query, variables))
        if answer.get("errors"):
            raise SystemExit(f"GraphQL errors: {answer['errors']}")
        data: dict[str, Any] = answer["data"]
        return data

    async def get(self, path: str) -> bytes:
        async with self._session.get(self._url.removesuffix("/graphql") + path) as response:
            return await response.read()

    async def close(self) -> None:
        await self._session.close()


# --- timing --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    requests: int
    seconds: float
    median_ms: float
    p90_ms: float
    # CPU per request of the answering process: the server child for ours; this process for the hand-written
    # side (its event loop and aiosqlite's threads; a PostgreSQL backend's CPU is not in it).
    cpu_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @classmethod
    def of(cls, latencies: list[float], seconds: float, cpu_s: float) -> Timing:
        ordered = sorted(latencies)
        p90 = statistics.quantiles(ordered, n=10, method="inclusive")[8] if len(ordered) > 1 else ordered[0]
        count = len(ordered)
        return cls(count, seconds, 1000 * statistics.median(ordered), 1000 * p90, 1000 * cpu_s / count)


Clock = Callable[[], float]


async def single_client(call: Callable[[], Awaitable[object]], requests: int, cpu: Clock) -> Timing:
    for _ in range(WARM_UP):
        await call()
    latencies = []
    cpu_before, start = cpu(), time.perf_counter()
    for _ in range(requests):
        began = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - began)
    return Timing.of(latencies, time.perf_counter() - start, cpu() - cpu_before)


async def concurrent_clients(
    call: Callable[[], Awaitable[object]],
    clients: int,
    rounds: int,
    cpu: Clock,
    connect: Callable[[], Awaitable[object]],
) -> Timing:
    """`rounds` calls from each of `clients` at once, after `connect` has opened a connection per client."""
    await asyncio.gather(*(connect() for _ in range(clients)))
    latencies: list[float] = []

    async def client() -> None:
        for _ in range(rounds):
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    cpu_before, start = cpu(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Timing.of(latencies, time.perf_counter() - start, cpu() - cpu_before)


# --- P2: the catalogue page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    requests: int  # timed requests of a single-client series
    clients: int  # concurrent clients of a P2 concurrent series
    rounds: int  # timed requests each concurrent client sends


@dataclass(frozen=True)
class PageMeasurement:
    page: str
    models: int
    versions: int
    images: int
    commercial: int
    ours_single: Timing
    hand_single: Timing
    ours_concurrent: Timing
    hand_concurrent: Timing

    @property
    def cpu_ratio(self) -> float:
        """CPU per request, one client at a time: the server's over this process's (see `Timing.cpu_ms`)."""
        return self.ours_single.cpu_ms / self.hand_single.cpu_ms

    @property
    def latency_ratio(self) -> float:
        return self.ours_single.median_ms / self.hand_single.median_ms

    @property
    def throughput_ratio(self) -> float:
        """Time per request under load, ours over hand: hand's requests/s over ours."""
        return self.hand_concurrent.requests_per_s / self.ours_concurrent.requests_per_s


async def _page_cursors(client: GraphClient) -> list[str | None]:
    """The `after` of every page, by following `endCursor` from the first page to the last."""
    cursors: list[str | None] = [None]
    while True:
        info = (await client.data(CURSORS_QUERY, {"after": cursors[-1]}))["deviceModels"]["pageInfo"]
        if not info["hasNextPage"]:
            return cursors
        cursors.append(info["endCursor"])


async def measure_page(
    client: GraphClient, pool: HandPool, label: str, after: str | None, load: Load
) -> PageMeasurement:
    requests, clients, rounds = load.requests, load.clients, load.rounds
    variables = {"after": after}
    ours = (await client.data(CATALOGUE_QUERY, variables))["deviceModels"]
    hand = await hand_catalogue_page(pool, after)
    if ours != hand:
        raise SystemExit(f"the {label} page differs between GraphQL and the hand-written SQL")
    versions = [v for edge in hand["edges"] for v in edge["node"]["certifiedFirmware"]]

    async def ours_call() -> bytes:
        return await client.raw(CATALOGUE_QUERY, variables)

    async def hand_call() -> bytes:
        # Encoded too, as a server must before it answers.
        return json.dumps(await hand_catalogue_page(pool, after)).encode()

    return PageMeasurement(
        page=label,
        models=len(hand["edges"]),
        versions=len(versions),
        images=sum(v["libraryImage"] is not None for v in versions),
        commercial=sum(v["commercial"] for v in versions),
        ours_single=await single_client(ours_call, requests, client.server_cpu_s),
        hand_single=await single_client(hand_call, requests, time.process_time),
        ours_concurrent=await concurrent_clients(
            ours_call, clients, rounds, client.server_cpu_s, lambda: client.get("/healthz")
        ),
        hand_concurrent=await concurrent_clients(hand_call, clients, rounds, time.process_time, hand_call),
    )


# --- P4: coverage gaps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GapsMeasurement:
    total: int
    rows: int
    graphql: Timing
    function: Timing
    hand: Timing

    @property
    def graphql_ratio(self) -> float:
        return self.graphql.median_ms / self.hand.median_ms

    @property
    def function_ratio(self) -> float:
        return self.function.median_ms / self.hand.median_ms


async def measure_gaps(
    client: GraphClient, pool: HandPool, database_url: str, requests: int
) -> GapsMeasurement:
    from sqlalchemy import select

    from cfl_graph.catalogue import reports
    from cfl_graph.catalogue.search import DeviceModelFilter
    from cfl_graph.database import Database
    from cfl_graph.tables import CplCurrent

    db = Database.connect(database_url)

    async def report() -> dict[str, Any]:
        async with db.sessions() as session:
            snapshot = await session.scalar(select(CplCurrent.snapshot_id))
            assert snapshot is not None
            page = await reports.coverage_gaps(session, snapshot, DeviceModelFilter(), GAPS_FIRST, None)
        return {
            "totalCount": page.total,
            "edges": [
                {
                    "node": {
                        "firmwareVersion": gap.firmware_version,
                        "daysMissing": gap.days_missing,
                        "deviceModel": {
                            "manufacturerId": gap.manufacturer_id,
                            "modelId": gap.model_id,
                            "hardwareVersion": gap.hardware_version,
                        },
                    }
                }
                for gap in page.rows
            ],
        }

    try:
        today = dt.datetime.now(dt.UTC).date()
        hand = await hand_coverage_gaps(pool, today)
        ours = (await client.data(GAPS_QUERY, {}))["coverageGaps"]
        direct = await report()
        for name, found in (("GraphQL", ours), ("reports.coverage_gaps", direct)):
            if found != hand:
                raise SystemExit(
                    f"coverage gaps differ: {name} total {found['totalCount']}, hand {hand['totalCount']}"
                )

        async def graphql_call() -> bytes:
            return await client.raw(GAPS_QUERY, {})

        async def hand_call() -> dict[str, Any]:
            return await hand_coverage_gaps(pool, today)

        return GapsMeasurement(
            total=hand["totalCount"],
            rows=len(hand["edges"]),
            graphql=await single_client(graphql_call, requests, client.server_cpu_s),
            function=await single_client(report, requests, time.process_time),
            hand=await single_client(hand_call, requests, time.process_time),
        )
    finally:
        await db.dispose()


# --- the whole run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    setup: Setup
    plans: str  # how the server executed queries: `on` (compiled plans) or `off` (graphql-core alone)
    clients: int
    hand_pool: int  # connections the hand-written side may open: as many as the app's pool
    pages_total: int
    http_floor_ms: float  # GET /healthz: the middleware, one SELECT 1 and the HTTP round trip
    # The machine's 1-minute load average as measuring began and ended: others' work skews wall times.
    load: tuple[float, float]
    pages: list[PageMeasurement]
    gaps: GapsMeasurement
    profile: str  # the profiled server's report, with `--profile`


async def _measure(
    server: Server, token: str, database_url: str, pool_size: tuple[int, int], load: Load
) -> tuple[int, float, list[PageMeasurement], GapsMeasurement]:
    requests = load.requests
    client = GraphClient(server, token, load.clients)
    pool = await open_hand_pool(database_url, pool_size)
    try:
        floor = await single_client(lambda: client.get("/healthz"), requests, client.server_cpu_s)
        cursors = await _page_cursors(client)
        deep = min(int(len(cursors) * DEEP_SHARE), len(cursors) - 1)
        pages = [await measure_page(client, pool, "first", None, load)]
        if deep > 0:
            label = f"deep {deep + 1}/{len(cursors)}"
            pages.append(await measure_page(client, pool, label, cursors[deep], load))
        gaps = await measure_gaps(client, pool, database_url, requests)
        return len(cursors), floor.median_ms, pages, gaps
    finally:
        await client.close()
        await pool.close()


async def _profile_requests(server: Server, token: str, requests: int) -> None:
    """The single-client requests of the run again, for the profiled server to see."""
    client = GraphClient(server, token, 1)
    try:
        cursors = await _page_cursors(client)
        deep = cursors[min(int(len(cursors) * DEEP_SHARE), len(cursors) - 1)]
        for after in (None, deep):
            for _ in range(requests):
                await client.raw(CATALOGUE_QUERY, {"after": after})
        for _ in range(requests):
            await client.raw(GAPS_QUERY, {})
    finally:
        await client.close()


def measure(args: argparse.Namespace, rows: int) -> list[Measurement]:
    """One database of `rows` CPL rows, measured once per execution mode asked for (`--plans`), the
    servers in turn on the same data."""
    with tempfile.TemporaryDirectory(prefix="cfl-bench-") as tmp:
        folder = Path(tmp)
        cpl = folder / f"cpl-{rows}.csv"
        start = time.perf_counter()
        write_csv(cpl, generate(rows, seed=args.seed))
        write_s = time.perf_counter() - start
        url = _fresh_database(args.database_url, folder)
        measured = []
        try:
            pool_size = app_pool_size(url)
            blob_dir, work = folder / "blobs", folder / "work"
            setup, token = asyncio.run(
                _build_library(url, cpl, work, blob_dir, rows, args.max_images, write_s)
            )
            for plans in args.plans:
                with serving(url, blob_dir, work, plans=plans) as server:
                    load_before = os.getloadavg()[0]
                    pages_total, floor, pages, gaps = asyncio.run(
                        _measure(
                            server, token, url, pool_size, Load(args.requests, args.clients, args.rounds)
                        )
                    )
                    load = (load_before, os.getloadavg()[0])
                profile_text = ""
                if args.profile:
                    profile = folder / f"server-{plans}.prof"
                    with serving(url, blob_dir, work, profile, plans) as server:
                        asyncio.run(_profile_requests(server, token, min(args.requests, PROFILE_REQUESTS)))
                    profile_text = profile_report(profile, rows)
                measured.append(
                    Measurement(
                        setup,
                        plans,
                        args.clients,
                        pool_size[1],
                        pages_total,
                        floor,
                        load,
                        pages,
                        gaps,
                        profile_text,
                    )
                )
        finally:
            _drop_database(args.database_url, url)
    return measured


def _package(filename: str) -> str:
    """Where a profiled function lives: a site-packages distribution, a package of ours, or Python's own."""
    path = Path(filename)
    if filename.startswith("~"):
        return "builtins (C; epoll's idle wait too)"
    if "site-packages" in path.parts:
        return path.parts[path.parts.index("site-packages") + 1].removesuffix(".py")
    here = Path(__file__).resolve().parent.parent
    if path.is_absolute() and path.is_relative_to(here):
        return path.relative_to(here).parts[0].removesuffix(".py")
    return "asyncio" if "asyncio" in path.parts else "stdlib"


def profile_report(path: Path, rows: int, top: int = 20) -> str:
    """Own time by package, then the functions with most own time (cProfile cannot see the cyclic GC)."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    by_package: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, own, _, _) in raw.items():
        by_package[_package(filename)] += own
    busy = sum(by_package.values())
    print(f"server profile at {rows:,} rows, cProfile, own time by package:", file=out)
    for name, seconds in sorted(by_package.items(), key=lambda item: -item[1])[:12]:
        print(f"  {name:<36} {seconds:>8.2f} s {100 * seconds / busy:>5.1f} %", file=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def _ms(t: Timing) -> str:
    return f"{t.median_ms:.1f}/{t.p90_ms:.1f}"


def print_measurement(m: Measurement, database: str) -> None:
    s = m.setup
    print(
        f"\n{s.rows:,} CPL rows on {database}: {s.device_models:,} device models ({m.pages_total} pages), "
        f"{s.in_scope_active:,} active in-scope versions, {s.images_published:,} published and "
        f"{s.images_withdrawn} withdrawn images (demo library, MAX_IMAGES={s.max_images}), "
        f"{s.declarations:,} declared commercial; queries executed with plans {m.plans}"
    )
    print(
        f"setup, not measured: {s.seconds:.1f} s (CSV {s.write_s:.1f} s, sync {s.sync_s:.1f} s, "
        f"demo library {s.library_s:.1f} s); HTTP floor, GET /healthz: {m.http_floor_ms:.1f} ms median; "
        f"load average {m.load[0]:.1f} -> {m.load[1]:.1f} on {os.cpu_count()} CPUs"
    )
    first = m.pages[0]
    print(f"P2 catalogue page, {PAGE_SIZE} device models a page; ratio = ours / hand, time per request")
    print(
        f"  {'one client, ' + str(first.ours_single.requests) + ' requests':<31} {'ours ms med/p90':>16} "
        f"{'CPU ms':>7} {'hand ms med/p90':>16} {'CPU ms':>7} {'ratio':>7} {'CPU ratio':>9}"
    )
    for p in m.pages:
        page = f"{p.page} ({p.versions} vers, {p.images} imgs)"
        print(
            f"  {page:<31} {_ms(p.ours_single):>16} {p.ours_single.cpu_ms:>7.1f} {_ms(p.hand_single):>16} "
            f"{p.hand_single.cpu_ms:>7.1f} {p.latency_ratio:>6.1f}x {p.cpu_ratio:>8.1f}x"
        )
    print(
        f"  {f'{m.clients} clients x {first.ours_concurrent.requests // m.clients} requests':<31} "
        f"{'ours req/s':>10} {'ms med/p90':>14} {'CPU ms':>7} {'hand req/s':>10} {'ms med/p90':>12} "
        f"{'ratio':>7}   (hand: {m.hand_pool} connections)"
    )
    for p in m.pages:
        o, h = p.ours_concurrent, p.hand_concurrent
        print(
            f"  {p.page:<31} {o.requests_per_s:>10.1f} {o.median_ms:>6.0f}/{o.p90_ms:<7.0f} {o.cpu_ms:>7.1f} "
            f"{h.requests_per_s:>10.1f} {h.median_ms:>5.0f}/{h.p90_ms:<6.0f} {p.throughput_ratio:>7.1f}x"
        )
    if not m.profile and max(p.latency_ratio for p in m.pages) > FAR_OFF_RATIO:
        print(f"  ours is more than {FAR_OFF_RATIO:.0f}x the hand-written SQL: --profile shows where it goes")
    g = m.gaps
    print(
        f"P4 coverage gaps, first {g.rows} of {g.total:,}: one client, {g.hand.requests} requests each "
        f"(aim: ratio <= {AIM_GAPS_RATIO}x)"
    )
    print(f"  {'':<31} {'ms med/p90':>16} {'CPU ms':>7} {'ratio':>7}")
    for name, timing, ratio in (
        ("GraphQL over HTTP", g.graphql, g.graphql_ratio),
        ("reports.coverage_gaps", g.function, g.function_ratio),
        ("hand anti-join", g.hand, 1.0),
    ):
        verdict = "" if timing is g.hand else ("  ok" if ratio <= AIM_GAPS_RATIO else "  over the aim")
        print(f"  {name:<31} {_ms(timing):>16} {timing.cpu_ms:>7.1f} {ratio:>6.2f}x{verdict}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--serve":
        fd, url, blob_dir, work_dir, profile, plans = argv[1:]
        _serve(int(fd), url, blob_dir, work_dir, profile, plans)
        return 0
    from cfl_graph.demo import library as demo_library

    parser = argparse.ArgumentParser(prog="python -m bench.catalogue", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--database-url", help="postgresql+asyncpg://... (default: a fresh SQLite file)")
    parser.add_argument("--clients", type=int, default=20, help="P2: concurrent clients")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per single-client series")
    parser.add_argument("--rounds", type=int, default=3, help="P2: timed requests per concurrent client")
    parser.add_argument(
        "--max-images",
        type=int,
        default=demo_library.MAX_IMAGES,
        help=f"the demo library's cap on published images (its own: {demo_library.MAX_IMAGES})",
    )
    parser.add_argument("--seed", type=int, default=1, help="cfl_graph.demo.cpl_data's seed")
    parser.add_argument(
        "--plans",
        nargs="+",
        choices=["on", "off"],
        default=["off", "on"],
        help="execution modes to measure in turn on the same data: off is graphql-core's executor, the "
        "reference; on the compiled plans (the service's default)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also run the requests on a server under cProfile and show it"
    )
    args = parser.parse_args(argv)
    database = "sqlite" if args.database_url is None else "postgresql"

    results = []
    for rows in args.rows:
        for m in measure(args, rows):
            results.append(m)
            print_measurement(m, database)
            print(m.profile, end="", flush=True)

    record = machine_record(
        "P2 catalogue page, P4 coverage gaps",
        database=database,
        clients=args.clients,
        aim_gaps_ratio_max=AIM_GAPS_RATIO,
        results=[
            {
                "setup": {**asdict(m.setup), "seconds": round(m.setup.seconds, 2)},
                "plans": m.plans,
                "hand_pool": m.hand_pool,
                "pages_total": m.pages_total,
                "http_floor_ms": round(m.http_floor_ms, 2),
                "load_average": m.load,
                "pages": [
                    {
                        **asdict(p),
                        "latency_ratio": round(p.latency_ratio, 3),
                        "cpu_ratio": round(p.cpu_ratio, 3),
                        "throughput_ratio": round(p.throughput_ratio, 3),
                    }
                    for p in m.pages
                ],
                "gaps": {
                    **asdict(m.gaps),
                    "graphql_ratio": round(m.gaps.graphql_ratio, 3),
                    "function_ratio": round(m.gaps.function_ratio, 3),
                },
            }
            for m in results
        ],
    )
    write_record(record, f"catalogue-{database}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

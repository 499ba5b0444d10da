"""Several machines (issue 18): two `cfl-graph serve` nodes of two workers each on one PostgreSQL, one
Redis and one S3 store (moto's server), as a load balancer would have them. A publication through one
is seen through the other on the next request; a token's rate is counted once between them; the CPL
sync both schedule runs once; a persisted query registered on one answers on the other; and killing one
node outright (`kill -9` of the supervisor and its workers) in the middle of an upload loses nothing,
while the other answers throughout."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select

from cfl_graph.audit import verify_chain
from cfl_graph.blobs import Staging
from cfl_graph.blobs.s3 import S3BlobStore
from cfl_graph.database import Database
from cfl_graph.tables import CplSyncRun, LibraryImage
from tests.fixtures import capabilities
from tests.fixtures.cpl_files import write_csv
from tests.fixtures.figures import report
from tests.fixtures.library import CPL, GOOD_NOTES, OWN_A1, OWN_A2, World, make_world
from tests.fixtures.s3_server import BUCKET, PREFIX, empty_bucket, s3_client
from tests.fixtures.server import ServerProcess, free_port, server_env
from tests.fixtures.shared_redis import REDIS_TIMEOUT_SECONDS, RedisSpace

pytestmark = pytest.mark.postgres

METRICS_TOKEN = "metrics-token-for-tests-0123456789"
RATE = 30  # a minute per token (300 per address), between both nodes
MODEL = """query Model { deviceModel(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100") {
  modelName certifiedFirmware { firmwareVersion libraryImage { imageId state } } } }"""


async def post(base: str, token: str, body: dict[str, object], path: str = "/graphql") -> httpx2.Response:
    """One request on its own connection, so that the kernel hands it to either worker of the node."""
    async with httpx2.AsyncClient(base_url=base, timeout=30) as http:
        return await http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


def with_notes(image: bytes) -> dict[str, tuple[str, bytes]]:
    return {"file": ("image.zigbee", image), "releaseNotes": ("NOTES.md", GOOD_NOTES.encode())}


def shown(answer: httpx2.Response) -> dict[str, object]:
    firmware = answer.json()["data"]["deviceModel"]["certifiedFirmware"]
    return {v["firmwareVersion"]: v["libraryImage"] for v in firmware}


async def slow_body(data: bytes, started: asyncio.Event) -> AsyncIterator[bytes]:
    """The image in 16 pieces a quarter of a second apart: long enough to kill the node mid-way."""
    step = -(-len(data) // 16)
    for number, start in enumerate(range(0, len(data), step)):
        yield data[start : start + step]
        if number == 3:
            started.set()
        await asyncio.sleep(0.25)


@pytest.mark.timeout(300)
async def test_two_nodes_share_one_database_one_redis_and_one_s3(
    db: Database, tmp_path: Path, redis_space: RedisSpace, s3_endpoint: str, aws_environment: None
) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("several nodes share one PostgreSQL; a SQLite file is one machine's")
    await empty_bucket(s3_endpoint)
    store = S3BlobStore(
        bucket=BUCKET, prefix=PREFIX, endpoint_url=s3_endpoint, staging=Staging(tmp_path / "in")
    )
    world = await make_world(db, tmp_path, store=store)
    source = write_csv(tmp_path / "scheduled.csv", [v.as_row() for v in CPL])
    began = time.monotonic()

    def node(name: str) -> ServerProcess:
        env = server_env(
            db.url,
            tmp_path / name / "blobs",
            tmp_path / name / "work",
            CFL_BLOB_STORE=f"s3://{BUCKET}/{PREFIX}",
            CFL_S3_ENDPOINT_URL=s3_endpoint,
            CFL_REDIS_URL=redis_space.url,
            CFL_REDIS_TIMEOUT=str(REDIS_TIMEOUT_SECONDS),
            CFL_REDIS_PREFIX=redis_space.prefix,
            CFL_RATE_LIMIT_PER_MINUTE=str(RATE),
            CFL_CPL_SOURCE=str(source),
            CFL_CPL_SYNC_INTERVAL="1h",
        )
        return ServerProcess(env, tmp_path / f"{name}.log", workers=2)

    a, b = node("a"), node("b")
    started = await asyncio.gather(a.start(), b.start())
    try:
        await _publication_through_a_is_seen_through_b(world, a.base, b.base)
        rate = await _a_rate_is_counted_once(world.tokens.panel, a.base, b.base)
        await _a_persisted_query_registered_on_a_answers_on_b(world.tokens.supplier, a.base, b.base)
        scheduled = await _the_scheduled_sync_ran_once(db)
        figures = await _killing_a_mid_upload_loses_nothing(world, a, b, s3_endpoint)
    finally:
        a.stop()
        b.stop()
    async with db.sessions() as session:
        chain = await verify_chain(session)
    assert chain.intact, chain.problems
    report(
        f"two nodes x 2 workers on PostgreSQL, Redis and moto S3: started in {max(started):.1f} s; "
        f"scheduled sync ran once ({scheduled}); {rate}; {figures}; whole test {time.monotonic() - began:.0f} s"
    )


async def _publication_through_a_is_seen_through_b(world: World, a: str, b: str) -> None:
    before = await post(b, world.tokens.supplier, {"query": MODEL})  # B keeps this answer (in Redis)
    assert shown(before)[OWN_A1.firmware_version] is None
    async with httpx2.AsyncClient(base_url=a, timeout=30) as http:
        uploaded = await http.post(
            "/api/v1/images",
            files=with_notes(world.image(OWN_A1)),
            headers={"Authorization": f"Bearer {world.tokens.manufacturer}"},
        )
    assert uploaded.status_code == 201, uploaded.text
    image_id = uploaded.json()["id"]
    published = await post(
        a,
        world.tokens.manufacturer,
        {
            "query": "mutation P($id: ID!) { publishImage(id: $id) { state } }",
            "variables": {"id": str(image_id)},
        },
    )
    assert published.json()["data"] == {"publishImage": {"state": "PUBLISHED"}}, published.text
    after = await post(b, world.tokens.supplier, {"query": MODEL})
    assert shown(after)[OWN_A1.firmware_version] == {"imageId": image_id, "state": "PUBLISHED"}
    assert after.headers["cache-status"] == "cfl-graph; fwd=miss"  # a new revision, a new key
    again = await post(a, world.tokens.supplier, {"query": MODEL})
    assert again.headers["cache-status"] == "cfl-graph; hit" and again.content == after.content
    async with httpx2.AsyncClient(base_url=b, timeout=30) as http:  # the bytes, from the shared S3 store
        download = await http.get(
            f"/api/v1/images/{image_id}/file", headers={"Authorization": f"Bearer {world.tokens.supplier}"}
        )
    assert hashlib.sha256(download.content).hexdigest() == uploaded.json()["fileSha256"]


async def _a_rate_is_counted_once(token: str, a: str, b: str) -> str:
    statuses = Counter[int]()
    began = time.monotonic()
    for number in range(RATE + 15):  # one after another, so that the count is the rate's, not a race's
        statuses[
            (await post(a if number % 2 else b, token, {"query": "{ cplSnapshot { id } }"})).status_code
        ] += 1
    took = time.monotonic() - began
    # Four workers on two nodes would allow RATE each, all of them; shared, RATE a minute between them:
    # the burst, and one more for each 60/RATE seconds the asking took.
    refilled = int(took * RATE / 60) + 1
    assert RATE <= statuses[200] <= RATE + refilled and statuses[429] >= 15 - refilled, (statuses, took)
    assert set(statuses) == {200, 429}
    return f"{RATE + 15} asks of one token at {RATE}/min over both nodes: {statuses[200]} answered in {took:.1f} s"


async def _a_persisted_query_registered_on_a_answers_on_b(token: str, a: str, b: str) -> None:
    text = "query Persisted { cplSnapshot { id rowCount } }"
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(text.encode()).hexdigest()}}
    registered = await post(a, token, {"query": text, "extensions": extensions})
    assert registered.status_code == 200 and "errors" not in registered.json()
    for _ in range(4):  # each on a new connection: whichever worker of B takes it
        known = await post(b, token, {"extensions": extensions})
        assert known.json() == registered.json(), known.text


async def _the_scheduled_sync_ran_once(db: Database) -> str:
    deadline = time.monotonic() + 30
    while True:
        async with db.sessions() as session:
            runs = list(
                (
                    await session.execute(select(CplSyncRun.outcome).where(CplSyncRun.trigger == "schedule"))
                ).scalars()
            )
        if (runs and all(outcome.value != "running" for outcome in runs)) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    # Four workers on two nodes each started a schedule; between them they synced once in the hour.
    assert len(runs) == 1, runs
    return runs[0].value


async def _killing_a_mid_upload_loses_nothing(
    world: object, a: ServerProcess, b: ServerProcess, s3: str
) -> str:
    from tests.fixtures.library import World

    assert isinstance(world, World)
    data = world.image(OWN_A2)
    started = asyncio.Event()
    headers = {
        "Authorization": f"Bearer {world.tokens.manufacturer}",
        "Content-Type": "application/octet-stream",
    }
    b_answers: Counter[int | str] = Counter()
    stop_asking = asyncio.Event()

    async def keep_asking_b() -> None:
        while not stop_asking.is_set():
            try:
                answer = await post(
                    b.base, world.tokens.other_manufacturer, {"query": "{ cplSnapshot { id } }"}
                )
                b_answers[answer.status_code] += 1
            except httpx2.TransportError as exc:
                b_answers[type(exc).__name__] += 1
            await asyncio.sleep(0.1)

    asking = asyncio.create_task(keep_asking_b())
    async with httpx2.AsyncClient(base_url=a.base, timeout=30) as http:
        upload = asyncio.create_task(
            http.post("/api/v1/images", content=slow_body(data, started), headers=headers)
        )
        await asyncio.wait_for(started.wait(), 30)
        killed = a.kill_tree()
        with pytest.raises(httpx2.TransportError):
            await upload
    await asyncio.sleep(1.0)  # B keeps answering after A is gone
    stop_asking.set()
    await asking
    assert set(b_answers) == {200} and b_answers[200] >= 10, b_answers

    # Nothing of the cut upload was recorded, and nothing half-written is in the bucket.
    async with world.db.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(LibraryImage))
    assert count == 1  # OWN_A1's, published earlier
    async with s3_client(s3) as client:
        listed = await client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)
    sizes = sorted(item["Size"] for item in listed.get("Contents", []))
    assert len(sizes) == 1, sizes  # OWN_A1's bytes only

    # The same upload through B is whole, and can be published and downloaded there.
    async with httpx2.AsyncClient(base_url=b.base, timeout=30) as http:
        again = await http.post(
            "/api/v1/images", files=with_notes(data), headers={"Authorization": headers["Authorization"]}
        )
        assert again.status_code == 201, again.text
        published = await post(
            b.base,
            world.tokens.manufacturer,
            {
                "query": "mutation P($id: ID!) { publishImage(id: $id) { state } }",
                "variables": {"id": str(again.json()["id"])},
            },
        )
        assert published.json()["data"] == {"publishImage": {"state": "PUBLISHED"}}
        download = await http.get(
            f"/api/v1/images/{again.json()['id']}/file",
            headers={"Authorization": f"Bearer {world.tokens.supplier}"},
        )
    assert download.content == data
    return (
        f"kill -9 of node A ({len(killed)} processes) mid-upload: nothing recorded or stored, "
        f"B answered {b_answers[200]} of {sum(b_answers.values())} requests meanwhile, the upload then succeeded on B"
    )


@pytest.mark.timeout(120)
async def test_behind_a_balancer_each_client_address_is_counted_apart(
    db: Database, tmp_path: Path, redis_space: RedisSpace
) -> None:
    """Shared through Redis, the limits on anonymous requests are one count for every node: they must
    count the client's address the balancer forwards (uvicorn believes X-Forwarded-For from loopback, and from
    FORWARDED_ALLOW_IPS), not the balancer's own, or every client would share one bucket."""
    env = server_env(
        db.url,
        tmp_path / "blobs",
        tmp_path / "work",
        CFL_REDIS_URL=redis_space.url,
        CFL_REDIS_TIMEOUT=str(REDIS_TIMEOUT_SECONDS),
        CFL_REDIS_PREFIX=redis_space.prefix,
        CFL_RATE_LIMIT_PER_MINUTE="10",  # an anonymous request counts by its address at the token rate
    )
    server = ServerProcess(env, tmp_path / "server.log")
    await server.start()  # its own /healthz asks count for 127.0.0.1, not for the addresses below
    try:
        async with httpx2.AsyncClient(base_url=server.base, timeout=30) as http:
            first = [
                (await http.get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})).status_code
                for _ in range(11)
            ]
            other = await http.get("/healthz", headers={"X-Forwarded-For": "203.0.113.8"})
    finally:
        server.stop()
    assert first == [200] * 10 + [429]
    assert other.status_code == 200
    keys = {key.decode() for key in await redis_space.keys()}
    assert {
        f"{redis_space.prefix}rate:{limit}-auth:address:203.0.113.7" for limit in ("before", "after")
    } <= keys


def _redis_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    """A Redis of this test's own (the machine's is shared and must not be stopped), keeping nothing."""
    with log.open("ab") as out:
        return subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _redis_answers(url: str) -> None:
    client = Redis.from_url(url, socket_connect_timeout=1)
    try:
        for _ in range(100):
            with contextlib.suppress(RedisError, OSError):
                if await client.ping():
                    return
            await asyncio.sleep(0.05)
        raise AssertionError("the test's Redis did not start")
    finally:
        await client.aclose()


@pytest.mark.timeout(180)
async def test_redis_going_away_and_coming_back_is_never_a_failure(db: Database, tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        capabilities.missing("redis-server is not installed (Debian's redis-server package)")
    world = await make_world(db, tmp_path)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = _redis_server(port, tmp_path / "redis.log")
    await _redis_answers(url)
    env = server_env(
        db.url,
        tmp_path / "blobs",
        tmp_path / "work",
        CFL_REDIS_URL=url,
        CFL_REDIS_TIMEOUT=str(REDIS_TIMEOUT_SECONDS),
        CFL_METRICS_TOKEN=METRICS_TOKEN,
        CFL_RATE_LIMIT_PER_MINUTE="0",
    )
    server = ServerProcess(env, tmp_path / "server.log", workers=2)
    await server.start()
    asked = 0

    async def ask_all(times: int) -> Counter[int]:
        """`times` questions never asked before, so that each worker looks for its answer in Redis."""
        nonlocal asked
        statuses = Counter[int]()
        for _ in range(times):
            asked += 1
            query: dict[str, object] = {"query": f"{{ cplSnapshot {{ id rowCount }} }} # question {asked}"}
            statuses[(await post(server.base, world.tokens.supplier, query)).status_code] += 1
        return statuses

    async def redis_up() -> float:
        async with httpx2.AsyncClient(base_url=server.base, timeout=30) as http:
            scraped = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        found = [
            sample.value
            for family in text_string_to_metric_families(scraped.text)
            for sample in family.samples
            if sample.name == "cfl_redis_up"
        ]
        assert len(found) == 1, found  # one value for the node: the least of its live workers'
        return found[0]

    try:
        before = await ask_all(6)
        up_before = await redis_up()
        redis.send_signal(signal.SIGKILL)
        redis.wait(timeout=10)
        away = await ask_all(12)
        up_away = await redis_up()
        async with httpx2.AsyncClient(base_url=server.base, timeout=30) as http:
            ready = (await http.get("/readyz")).json()
        redis = _redis_server(port, tmp_path / "redis.log")
        await _redis_answers(url)
        await asyncio.sleep(2.5)  # past the 2 s in which a worker leaves a failed Redis alone
        back = await ask_all(12)
        up_back = await redis_up()
    finally:
        server.stop()
        redis.send_signal(signal.SIGKILL)
        redis.wait(timeout=10)
    assert before == {200: 6} and away == {200: 12} and back == {200: 12}, (before, away, back)
    assert (up_before, up_away, up_back) == (1, 0, 1)
    assert ready["redis"] == "unreachable" and ready["status"] == "degraded"
    log = (tmp_path / "server.log").read_text()
    gone = log.count("Redis unavailable")
    assert 1 <= gone <= 2, log[-3000:]  # once per worker that noticed, not once per request
    assert "Redis is back" in log
    assert url not in log
    report(
        f"Redis killed under a serve of 2 workers: 12 of 12 answered while it was away, {gone} log line(s)"
    )

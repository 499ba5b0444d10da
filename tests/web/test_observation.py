"""Seeing inside a running service (issue 18): Prometheus metrics summed over the workers of a real
`serve --workers 2` and read back with prometheus-client's own parser; one structured log record per
request with its id, party, route, status and duration, secrets never written; `/readyz`; and SIGTERM
draining the uploads in flight, bounded in time, with a real process."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from cfl_graph.database import Database, sqlite_path
from cfl_graph.doors.web.app import create_app
from cfl_graph.settings import Settings
from cfl_graph.tables import LibraryImage
from tests.fixtures.figures import report
from tests.fixtures.library import OWN_A1, OWN_A2, make_world
from tests.fixtures.server import ServerProcess, server_env

METRICS_TOKEN = "metrics-token-for-tests-0123456789"
QUERY = "query Snapshot { cplSnapshot { id rowCount } }"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, parsed by prometheus-client, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (sample, have), value in found.items() if sample == name and wanted <= have)


async def ask(base: str, token: str, **kwargs: object) -> httpx2.Response:
    """One request on a new connection, so that the kernel hands it to either worker."""
    async with httpx2.AsyncClient(base_url=base, timeout=30) as http:
        return await http.post(
            "/graphql",
            json={"query": QUERY, "operationName": "Snapshot"},
            headers={"Authorization": f"Bearer {token}"},
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.mark.timeout(180)
async def test_metrics_of_every_worker_are_scraped_and_parse(db: Database, tmp_path: Path) -> None:
    world = await make_world(db, tmp_path)
    image = await world.upload(world.image(OWN_A1))
    await world.publish(image.id)
    env = server_env(
        db.url,
        tmp_path / "blobs",
        tmp_path / "work",
        CFL_METRICS_TOKEN=METRICS_TOKEN,
        CFL_RATE_LIMIT_PER_MINUTE="4",
    )
    server = ServerProcess(env, tmp_path / "server.log", workers=2)
    await server.start()
    try:
        statuses = [(await ask(server.base, world.tokens.supplier)).status_code for _ in range(12)]
        async with httpx2.AsyncClient(base_url=server.base, timeout=30) as http:
            own = {"Authorization": f"Bearer {world.tokens.manufacturer}"}
            downloads = [await http.get(f"/api/v1/images/{image.id}/file", headers=own) for _ in range(2)]
            anonymous = await http.get("/metrics")
            wrong = await http.get("/metrics", headers={"Authorization": "Bearer not-the-metrics-token"})
            api_token = await http.get("/metrics", headers={"Authorization": f"Bearer {world.tokens.admin}"})
            scraped = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    finally:
        server.stop()
    assert [d.status_code for d in downloads] == [200, 200]
    assert (anonymous.status_code, wrong.status_code, api_token.status_code) == (401, 401, 401)
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    found = samples(scraped.text)
    answered, refused = statuses.count(200), statuses.count(429)
    # Four a minute per worker without Redis: at most eight of the twelve, at least four.
    assert answered + refused == 12 and 4 <= answered <= 8, statuses

    # Both workers' counts, summed by the multiprocess collector.
    assert total(found, "cfl_http_requests_total", route="/graphql", status="200") == answered
    assert total(found, "cfl_http_requests_total", route="/graphql", status="429") == refused
    assert total(found, "cfl_http_request_duration_seconds_count", route="/graphql") == 12
    assert total(found, "cfl_rate_limit_refusals_total", per="token") == refused
    ok = total(found, "cfl_graphql_operations_total", operation="Snapshot", outcome="ok")
    cached = total(found, "cfl_graphql_operations_total", operation="Snapshot", outcome="cached")
    assert ok + cached == answered and 1 <= ok <= 2  # each worker worked the answer out once at most
    assert total(found, "cfl_cache_lookups_total", cache="answers", result="hit") == cached
    assert total(found, "cfl_cache_lookups_total", cache="answers", result="miss") == ok
    statements = total(found, "cfl_sql_statements_per_request_sum", route="/graphql")
    assert statements >= answered * 2  # the token and the catalogue's state, at least, per answer
    assert total(found, "cfl_sql_statements_per_request_count", route="/graphql") == 12
    assert total(found, "cfl_downloads_total", status="200") == 2
    assert total(found, "cfl_download_bytes_total") == 2 * image.size
    # The library's state, read from the database when scraped.
    assert total(found, "cfl_library_images", state="published") == 1
    assert total(found, "cfl_library_images", state="held") == 0
    assert total(found, "cfl_cpl_sync_runs_total", outcome="applied") == 1
    assert total(found, "cfl_cpl_sync_rows_total", outcome="applied") == 7
    assert total(found, "cfl_cpl_sync_last_duration_seconds", outcome="applied") > 0
    # No Redis configured: its gauge has no sample (rather than a misleading 0).
    assert total(found, "cfl_redis_up") == 0 and not any(n == "cfl_redis_up" for n, _ in found)
    report(
        f"/metrics of 2 workers: {len(found)} samples, {answered} answers and {refused} refusals of 12 "
        f"counted exactly, {statements:.0f} SQL statements for them"
    )


def _records(log: Path) -> list[dict[str, object]]:
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


@pytest.mark.timeout(120)
async def test_json_logs_carry_a_request_id_and_never_a_secret(db: Database, tmp_path: Path) -> None:
    world = await make_world(db, tmp_path)
    env = server_env(
        db.url, tmp_path / "blobs", tmp_path / "work", CFL_LOG_FORMAT="json", CFL_LOG_LEVEL="INFO"
    )
    log = tmp_path / "server.log"
    server = ServerProcess(env, log)
    await server.start()
    secret = world.tokens.supplier
    forged = secret[:-4] + "abcd"
    try:
        async with httpx2.AsyncClient(base_url=server.base, timeout=30) as http:
            traced = await http.post(
                "/graphql",
                json={"query": QUERY},
                headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "trace-4711"},
            )
            untraced = await http.get("/api/v1/downloads", headers={"Authorization": f"Bearer {secret}"})
            odd = await http.get("/healthz", headers={"X-Request-ID": "no spaces\tor tabs"})
            bad_token = await http.get(
                f"/feeds/images.atom?token={secret}", headers={"Authorization": f"Bearer {forged}"}
            )
            missing = await http.get("/api/v1/images/999", headers={"Authorization": f"Bearer {secret}"})
    finally:
        server.stop()
    assert traced.headers["x-request-id"] == "trace-4711"
    generated = untraced.headers["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert odd.headers["x-request-id"] != "no spaces\tor tabs"
    assert (bad_token.status_code, missing.status_code) == (401, 404)

    records = _records(log)
    requests = {r["request_id"]: r for r in records if r["logger"] == "cfl_graph.requests"}
    line = requests["trace-4711"]
    assert line["party"] == "Calder Supply Ltd"
    assert (line["route"], line["method"], line["status"], line["level"]) == ("/graphql", "POST", 200, "INFO")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert isinstance(line["sql_statements"], int) and line["sql_statements"] >= 2
    assert line["error_reference"] is None
    assert requests[generated]["route"] == "/api/v1/downloads"
    # Refusals the service meant are INFO, with the route's template, not the path.
    refusals = [r for r in requests.values() if r["status"] in (401, 404)]
    assert {r["level"] for r in refusals} == {"INFO"}
    assert {r["route"] for r in refusals} == {"/feeds/images.atom", "/api/v1/images/{image_id}"}
    text = log.read_text()
    assert secret not in text and forged not in text and secret.split("_", 2)[2] not in text
    assert all(line.startswith("{") for line in text.splitlines() if line.strip()), text[:2000]


async def test_a_masked_error_s_reference_is_in_its_request_line(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A request that fails unexpectedly (here, a sync run's outcome edited behind the service's back into
    one it does not know) is logged at ERROR with the traceback where it failed, and its request line
    names the same reference."""
    world = await make_world(db, tmp_path)
    path = sqlite_path(db.url)
    if path is None:
        pytest.skip("the row is edited past its CHECK constraint, which SQLite alone lets a test switch off")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        conn.execute("UPDATE cpl_sync_runs SET outcome = 'mislaid'")
    app = create_app(Settings(database_url=db.url), db=db)
    caplog.set_level(logging.INFO)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as http:
        answer = await http.post(
            "/graphql",
            json={"query": "{ cplSyncRuns(first: 5) { outcome } }"},
            headers={"Authorization": f"Bearer {world.tokens.admin}"},
        )
    reference = answer.json()["errors"][0]["extensions"]["reference"]
    (failure,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert reference in failure.getMessage() and failure.exc_info is not None
    (line,) = [r for r in caplog.records if r.name == "cfl_graph.requests"]
    assert line.__dict__["error_reference"] == reference and line.levelno == logging.WARNING
    assert len(answer.headers["x-request-id"]) == 32


async def test_readyz_names_what_is_not_ready(db: Database, tmp_path: Path) -> None:
    from tests.fixtures.server import free_port

    dead_s3 = Settings(
        database_url=db.url, blob_store="s3://nowhere", s3_endpoint_url=f"http://127.0.0.1:{free_port()}"
    )
    app = create_app(dead_s3, db=db)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as http:
        answer = await http.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "database": "ok", "blobs": "unreachable"}


async def _slow_body(data: bytes, chunks: int, pause: float, sent: asyncio.Event) -> AsyncIterator[bytes]:
    step = -(-len(data) // chunks)
    for number, start in enumerate(range(0, len(data), step)):
        yield data[start : start + step]
        if number == 0:
            sent.set()
        await asyncio.sleep(pause)


@pytest.mark.timeout(120)
async def test_sigterm_lets_an_upload_in_flight_finish_then_exits(db: Database, tmp_path: Path) -> None:
    world = await make_world(db, tmp_path)
    env = server_env(db.url, tmp_path / "blobs", tmp_path / "work", CFL_SHUTDOWN_TIMEOUT="20")
    server = ServerProcess(env, tmp_path / "server.log")
    await server.start()
    assert server.process is not None
    async with httpx2.AsyncClient(base_url=server.base, timeout=30) as http:
        ready = await http.get("/readyz")
    assert ready.json() == {"status": "ready", "database": "ok", "blobs": "ok"}
    data = world.image(OWN_A2)
    first_sent = asyncio.Event()
    async with httpx2.AsyncClient(base_url=server.base, timeout=30) as http:
        upload = asyncio.create_task(
            http.post(
                "/api/v1/images",
                content=_slow_body(data, 8, 0.25, first_sent),
                headers={
                    "Authorization": f"Bearer {world.tokens.manufacturer}",
                    "Content-Type": "application/octet-stream",
                },
            )
        )
        await asyncio.wait_for(first_sent.wait(), 20)
        await asyncio.sleep(0.2)
        stopping = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        with pytest.raises(httpx2.TransportError):  # no new connections while draining
            async with httpx2.AsyncClient(base_url=server.base, timeout=5) as late:
                await late.get("/healthz")
        answer = await upload
    code = await asyncio.to_thread(server.process.wait, 30)
    took = time.monotonic() - stopping
    assert answer.status_code == 201, answer.text
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    assert took < 15
    assert (await world.library.get(await world.principal(world.tokens.manufacturer), answer.json()["id"])).id
    report(f"SIGTERM during an upload: the upload finished (201) and the server exited {took:.1f} s later")


@pytest.mark.timeout(120)
async def test_sigterm_stops_waiting_for_a_stalled_upload_after_the_timeout(
    db: Database, tmp_path: Path
) -> None:
    world = await make_world(db, tmp_path)
    env = server_env(db.url, tmp_path / "blobs", tmp_path / "work", CFL_SHUTDOWN_TIMEOUT="2")
    server = ServerProcess(env, tmp_path / "server.log")
    await server.start()
    assert server.process is not None
    first_sent = asyncio.Event()
    data = world.image(OWN_A2)
    async with httpx2.AsyncClient(base_url=server.base, timeout=60) as http:
        upload = asyncio.create_task(
            http.post(
                "/api/v1/images",
                content=_slow_body(data, 4, 25.0, first_sent),  # stalls far longer than the timeout
                headers={
                    "Authorization": f"Bearer {world.tokens.manufacturer}",
                    "Content-Type": "application/octet-stream",
                },
            )
        )
        await asyncio.wait_for(first_sent.wait(), 20)
        stopping = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.process.wait, 30)
        took = time.monotonic() - stopping
        upload.cancel()
    assert 1.5 < took < 8, took  # it waited for the upload, but no longer than CFL_SHUTDOWN_TIMEOUT
    async with db.sessions() as session:
        assert (await session.scalar(select(func.count()).select_from(LibraryImage))) == 0

"""Several workers behind one address (issue 8): `cfl-graph serve --workers 2` shares nothing but the
database and the blob store, yet every worker answers for the newest snapshot and publication at once
(each keeps its own response cache, keyed on state it reads from the database), and the scheduled CPL
sync runs once per interval between them, not once per worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import select

from cfl_graph.cpl_sync.columns import Column
from cfl_graph.cpl_sync.sync import sync_cpl
from cfl_graph.database import Database
from cfl_graph.tables import CplSyncRun
from tests.fixtures.cpl_files import write_csv
from tests.fixtures.library import CPL, OWN_A1, World, make_world

pytestmark = pytest.mark.postgres

WORKERS = 2
START_TIMEOUT = 90.0
ASKS = 24  # each on a new connection, so the kernel hands them to either worker
QUERY = """{ deviceModel(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100") {
  modelName certifiedFirmware { firmwareVersion libraryImage { imageId state } } } }"""


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cfl_graph", "serve", "--port", str(port), "--workers", str(WORKERS)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


@contextlib.asynccontextmanager
async def workers(world: World, tmp_path: Path, cpl_source: Path) -> AsyncIterator[str]:
    port = _port()
    env = {
        **os.environ,
        "CFL_DATABASE_URL": world.db.url,
        "CFL_BLOB_DIR": str(tmp_path / "blobs"),
        "CFL_WORK_DIR": str(tmp_path / "work"),
        "CFL_CPL_SOURCE": str(cpl_source),
        "CFL_CPL_SYNC_INTERVAL": "1h",
        "CFL_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "workers.log"
    server = _spawn(port, env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        began = time.monotonic()
        async with httpx2.AsyncClient(base_url=base, timeout=5) as http:
            while True:
                assert server.poll() is None, log.read_text()[-3000:]
                with contextlib.suppress(httpx2.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                assert time.monotonic() - began < START_TIMEOUT, "the workers did not start in time"
                await asyncio.sleep(0.1)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def ask_many(base: str, token: str) -> tuple[list[dict[str, object]], Counter[str]]:
    """ASKS answers, each over its own connection; and how the workers' caches served them."""
    answers, served = [], Counter[str]()
    for _ in range(ASKS):
        async with httpx2.AsyncClient(base_url=base, timeout=30) as http:
            response = await http.post(
                "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {token}"}
            )
        assert response.status_code == 200, response.text
        answers.append(response.json()["data"]["deviceModel"])
        served[response.headers["cache-status"]] += 1
    return answers, served


async def test_every_worker_answers_for_the_newest_state_and_the_schedule_syncs_once(
    db: Database, tmp_path: Path
) -> None:
    world = await make_world(db, tmp_path)
    source = write_csv(tmp_path / "scheduled.csv", [v.as_row() for v in CPL])
    async with workers(world, tmp_path, source) as base:
        before, _ = await ask_many(base, world.tokens.supplier)
        assert all(v["libraryImage"] is None for a in before for v in a["certifiedFirmware"])  # type: ignore[attr-defined]

        image = await world.upload(world.image(OWN_A1))
        await world.publish(image.id)
        after, served = await ask_many(base, world.tokens.supplier)
        for answer in after:
            shown = {v["firmwareVersion"]: v["libraryImage"] for v in answer["certifiedFirmware"]}  # type: ignore[attr-defined]
            assert shown[OWN_A1.firmware_version] == {"imageId": image.id, "state": "PUBLISHED"}
        # Each worker that was asked worked the new answer out once, then kept it.
        assert 1 <= served["cfl-graph; fwd=miss"] <= WORKERS, served
        print(f"after a publication, {ASKS} asks over new connections were served: {dict(served)}")

        renamed = [
            {**v.as_row(), **({Column.MODEL_NAME: "NM-E470 Mk3"} if v.model_id == "0001" else {})}
            for v in CPL
        ]
        result = await sync_cpl(db, str(write_csv(tmp_path / "next.csv", renamed)), work_dir=tmp_path / "s")
        assert result.outcome.value == "applied", result
        renewed, _ = await ask_many(base, world.tokens.supplier)
        assert {a["modelName"] for a in renewed} == {"NM-E470 Mk3"}

        async with db.sessions() as session:
            scheduled = (
                await session.execute(select(CplSyncRun.outcome).where(CplSyncRun.trigger == "schedule"))
            ).scalars()
            outcomes = list(scheduled)
    # Both workers started a scheduler; between them they synced once in the hour.
    assert len(outcomes) == 1, outcomes

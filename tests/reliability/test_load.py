"""Load (issue 9): 200 concurrent clients in a separate process on loopback against a real `cfl-graph
serve` on a demo-like library, mixing catalogue pages (device models with their certified versions),
coverage gaps, coverage summaries and image downloads, while the CPL is synchronised twice by
`cfl-graph sync-cpl` (each a new snapshot that changes every row) and images are uploaded and
published. The load starts before the first sync and stops a few seconds after the last (at most 60 s). No request fails (no 5xx or other error status, no GraphQL error, no connection failure, no
download with the wrong bytes), and every answer is read from one snapshot only.

One snapshot per answer: each request asks for `cplSnapshot { snapshotId }` beside its data, and every
row of every CPL version is marked with its version (`tests.fixtures.catalogue_load`). An answer must
show only the marker of the snapshot it names, count exactly that snapshot's device models, and equal
every other answer to the same question from the same snapshot. A request that read the current
snapshot twice and got two (its page from one, its certified versions or names from another) fails it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cfl_graph.blobs.local import LocalBlobStore
from cfl_graph.database import Database
from cfl_graph.tables import CplDeviceModel, CplSnapshot, SyncOutcome
from tests.fixtures.catalogue_load import VERSIONS, build_load_library, marker_of
from tests.fixtures.figures import report as report_figures
from tests.fixtures.server import ServerProcess, server_env

pytestmark = pytest.mark.postgres

CLIENTS = 200
MAX_LOAD_SECONDS = 60.0
UPLOADS = 6
# Load before the first sync, between syncs and after the last, this many seconds each at least.
BETWEEN_SYNCS = 3.0
REPO = Path(__file__).resolve().parents[2]


async def run_load(base: str, tokens: dict[str, str], args: list[str], out: Path) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.reliability.load_client",
        "--base",
        base,
        "--seconds",
        str(MAX_LOAD_SECONDS),
        "--clients",
        str(CLIENTS),
        "--uploads",
        str(UPLOADS),
        "--out",
        str(out),
        *args,
        cwd=REPO,
        env={**os.environ, **tokens},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=MAX_LOAD_SECONDS + 60)
    assert process.returncode == 0, output.decode()[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())
    return report


async def sync_during_load(
    database_url: str, files: list[Path], work: Path, stop: Path
) -> list[tuple[float, str]]:
    """`cfl-graph sync-cpl` of each later CPL version in turn, with load before, between and after; then
    stop the load. Returns when each sync ended and the first line it printed."""
    started = time.monotonic()
    applied = []
    for path in files:
        await asyncio.sleep(BETWEEN_SYNCS)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cfl_graph",
            "sync-cpl",
            str(path),
            env={**os.environ, "CFL_DATABASE_URL": database_url, "CFL_WORK_DIR": str(work)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, output.decode()
        applied.append((time.monotonic() - started, output.decode().strip().splitlines()[0]))
    await asyncio.sleep(BETWEEN_SYNCS)
    stop.touch()
    return applied


async def snapshot_truth(db: Database) -> tuple[dict[int, int], dict[tuple[int, str | None], int]]:
    """Each snapshot's CPL version (its marker) and its device model count, overall and per manufacturer."""
    async with db.sessions() as session:
        names = await session.execute(
            select(
                CplDeviceModel.snapshot_id,
                func.min(CplDeviceModel.model_name),
                func.max(CplDeviceModel.model_name),
            ).group_by(CplDeviceModel.snapshot_id)
        )
        version = {}
        for snapshot, first, last in names:
            assert marker_of(first) == marker_of(last) is not None, (snapshot, first, last)
            version[int(snapshot)] = marker_of(first)
        counts: dict[tuple[int, str | None], int] = {}
        for snapshot, manufacturer, count in await session.execute(
            select(CplDeviceModel.snapshot_id, CplDeviceModel.manufacturer_id, func.count()).group_by(
                CplDeviceModel.snapshot_id, CplDeviceModel.manufacturer_id
            )
        ):
            counts[(int(snapshot), str(manufacturer))] = int(count)
            counts[(int(snapshot), None)] = counts.get((int(snapshot), None), 0) + int(count)
        outcomes = (await session.execute(select(func.count()).select_from(CplSnapshot))).scalar_one()
    assert outcomes == VERSIONS, f"{outcomes} snapshots, not {VERSIONS}"
    return {s: v for s, v in version.items() if v is not None}, counts


def inconsistencies(
    observations: list[dict[str, Any]], version: dict[int, int], counts: dict[tuple[int, str | None], int]
) -> list[str]:
    """Every answer that is not wholly of the snapshot it names."""
    found = []
    same: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for seen in observations:
        snapshot = seen["snapshot"]
        if seen["markers"] != [version[snapshot]] and seen["markers"]:
            found.append(f"{seen['kind']} of snapshot {snapshot} shows CPL versions {seen['markers']}")
        if seen["kind"] == "models":
            expected = counts.get((snapshot, seen["manufacturer"]), 0)
            if seen["total"] != expected:
                found.append(
                    f"models of snapshot {snapshot}: totalCount {seen['total']}, the snapshot has {expected}"
                )
            if seen["page"] == 0:
                same[("models", snapshot, seen["manufacturer"])].add(seen["digest"])
        if seen["kind"] == "summary":
            same[("summary", snapshot)].add(seen["digest"])
    found += [f"{key}: {len(digests)} different answers" for key, digests in same.items() if len(digests) > 1]
    return found


async def test_200_clients_while_the_cpl_changes_get_no_errors_and_each_answer_reads_one_snapshot(
    db: Database, tmp_path: Path
) -> None:
    began = time.monotonic()
    store = LocalBlobStore(tmp_path / "blobs")
    library = await build_load_library(db, store, tmp_path / "cpl")
    built = time.monotonic() - began
    images = tmp_path / "images.json"
    images.write_text(json.dumps(library.images))
    env = server_env(db.url, tmp_path / "blobs", tmp_path / "work", CFL_RATE_LIMIT_PER_MINUTE="0")
    server = ServerProcess(env, tmp_path / "serve.log")
    await server.start()
    try:
        tokens = {
            "CFL_LOAD_SUPPLIER_TOKEN": library.supplier_token,
            "CFL_LOAD_MANUFACTURER_TOKEN": library.manufacturer_token,
        }
        stop = tmp_path / "stop-the-load"
        args = ["--images", str(images), "--manufacturer-id", library.manufacturer_id, "--until", str(stop)]
        report, syncs = await asyncio.gather(
            run_load(server.base, tokens, args, tmp_path / "report.json"),
            sync_during_load(db.url, library.files[1:], tmp_path / "sync-work", stop),
        )
    finally:
        server.stop()
    version, counts = await snapshot_truth(db)
    observations = report["observations"]
    seen_snapshots = sorted({o["snapshot"] for o in observations})
    kinds = ", ".join(
        f"{kind} {figures['requests']} (p50 {figures['p50'] * 1000:.0f} ms, p99 {figures['p99'] * 1000:.0f} ms)"
        for kind, figures in report["by_kind"].items()
    )
    report_figures(
        f"load on {db.engine.dialect.name}: {report['clients']} clients for {report['load_seconds']} s "
        f"(last answer at {report['seconds']} s), "
        f"{report['requests']} requests, {report['errors']} errors, p50 {report['p50'] * 1000:.0f} ms, "
        f"p99 {report['p99'] * 1000:.0f} ms, {report['throughput']} requests/s; {kinds}; "
        f"{len(report['published'])} images uploaded and published; syncs applied at "
        f"{', '.join(f'{at:.1f} s' for at, _ in syncs)}; answers from snapshots {seen_snapshots}; "
        f"library built in {built:.1f} s"
    )
    assert report["errors"] == 0, "\n".join(report["error_samples"])
    assert len(report["published"]) == UPLOADS
    assert seen_snapshots == sorted(version), "every snapshot was read while it was current"
    problems = inconsistencies(observations, version, counts)
    assert not problems, f"{len(problems)} answers mixed snapshots:\n" + "\n".join(problems[:30])
    assert all(line.startswith(SyncOutcome.APPLIED.value) or "applied" in line for _, line in syncs), syncs

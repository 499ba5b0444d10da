"""A sync end to end over real HTTP and across real processes (R6): every outcome recorded, none half-applied."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cfl_graph.catalogue.snapshots import current_snapshot
from cfl_graph.database import Database
from cfl_graph.tables import CplSnapshot, CplSyncRun
from cpl_sync.fetch import FetchLimits
from cpl_sync.lock import SyncLockBusy
from cpl_sync.sync import SyncLimits, SyncNotDue, sync_cpl
from tests.fixtures.cpl_files import versions, write_csv
from tests.fixtures.cpl_server import Publisher, serve_cpl

QUICK = SyncLimits(fetch=FetchLimits(attempts=2, backoff_base=0.01, read_timeout=0.5, total_timeout=5))


def csv_bytes(tmp_path: Path, count: int) -> bytes:
    return write_csv(tmp_path / f"cpl-{count}.csv", versions(count)).read_bytes()


async def runs(db: Database) -> list[CplSyncRun]:
    async with db.sessions() as session:
        return list((await session.execute(select(CplSyncRun).order_by(CplSyncRun.id))).scalars())


async def snapshot_count(db: Database) -> int:
    async with db.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(CplSnapshot))).scalar_one())


async def test_an_unchanged_publication_is_not_downloaded_again(db: Database, tmp_path: Path) -> None:
    publisher = Publisher(body=csv_bytes(tmp_path, 3))
    first_etag = publisher.etag
    async with serve_cpl(publisher) as url:
        first = await sync_cpl(db, url, work_dir=tmp_path, limits=QUICK)
        second = await sync_cpl(db, url, work_dir=tmp_path, limits=QUICK)
        publisher.body = csv_bytes(tmp_path, 4)
        third = await sync_cpl(db, url, work_dir=tmp_path, limits=QUICK)
    assert [first.outcome, second.outcome, third.outcome] == ["applied", "not_modified", "applied"]
    assert "If-None-Match" not in publisher.requests[0]
    assert publisher.requests[1]["If-None-Match"] == first_etag
    recorded = await runs(db)
    assert recorded[0].etag is not None and recorded[0].content_sha256 is not None
    assert recorded[1].snapshot_id == first.snapshot_id
    assert await snapshot_count(db) == 2


@pytest.mark.parametrize(
    "fault,expected",
    [
        ({"status": 500}, "HTTP 500"),
        ({"status": 404}, "not found"),
        ({"content_type": "text/html", "body": b"<!doctype html><p>Maintenance</p>"}, "HTML"),
        ({"truncate": True}, "cut short"),
        ({"hang_seconds": 2.0}, "timed out"),
    ],
)
async def test_publisher_faults_never_replace_the_current_snapshot(
    db: Database, tmp_path: Path, fault: dict[str, object], expected: str
) -> None:
    publisher = Publisher(body=csv_bytes(tmp_path, 3))
    async with serve_cpl(publisher) as url:
        good = await sync_cpl(db, url, work_dir=tmp_path, limits=QUICK)
        publisher.body = csv_bytes(tmp_path, 5)
        for name, value in fault.items():
            setattr(publisher, name, value)
        failed = await sync_cpl(db, url, work_dir=tmp_path, limits=QUICK)
    assert failed.outcome == "fetch_failed"
    assert failed.message is not None and expected.lower() in failed.message.lower()
    async with db.sessions() as session:
        current = await current_snapshot(session)
    assert current is not None and current.id == good.snapshot_id
    assert await snapshot_count(db) == 1
    assert [r.outcome for r in await runs(db)] == ["applied", "fetch_failed"]
    assert list(tmp_path.glob("cpl-*.download")) == []


def _sync_process(database_url: str, source: Path, work: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "CFL_DATABASE_URL": database_url, "CFL_WORK_DIR": str(work)}
    return subprocess.Popen(
        [sys.executable, "-m", "cfl_graph", "sync-cpl", str(source)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_two_processes_syncing_at_once_make_one_snapshot(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "cpl.csv", versions(200))
    procs = [_sync_process(database_url, source, tmp_path / f"w{i}") for i in range(2)]
    outputs = [await asyncio.to_thread(p.communicate, timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    said = sorted(out.split(":")[0] for out, _ in outputs)
    assert said == ["applied", "unchanged"]  # the second waited for the lock, then found nothing new
    assert await snapshot_count(db) == 1


async def test_a_sync_waits_for_the_lock_held_by_another_process(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    holder = _lock_holder(database_url)
    try:
        assert holder.stdout is not None
        assert await asyncio.to_thread(holder.stdout.readline) == "locked\n"
        source = write_csv(tmp_path / "cpl.csv", versions(3))
        with pytest.raises(SyncLockBusy):
            await sync_cpl(db, str(source), work_dir=tmp_path, limits=SyncLimits(lock_wait=0.3))
        assert await runs(db) == []  # a sync that never got the lock records nothing
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed with the lock held: the lock died with it.
    result = await sync_cpl(db, str(source), work_dir=tmp_path, limits=SyncLimits(lock_wait=5))
    assert result.outcome == "applied"


def _lock_holder(database_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, database_url], stdout=subprocess.PIPE, text=True
    )


HOLD_LOCK = """
import asyncio, sys
from cfl_graph.database import Database
from cpl_sync.lock import sync_lock

async def main():
    db = Database.connect(sys.argv[1])
    async with sync_lock(db.engine):
        print("locked", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_password_in_the_source_url_is_never_stored_or_logged(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = Publisher(body=csv_bytes(tmp_path, 3))
    caplog.set_level("DEBUG")
    async with serve_cpl(publisher) as url:
        secret_url = url.replace("http://", "http://cpl-reader:s3cret-Pa55@")
        applied = await sync_cpl(db, secret_url, work_dir=tmp_path, limits=QUICK)
        publisher.status = 503
        failed = await sync_cpl(db, secret_url, work_dir=tmp_path, limits=QUICK)
    assert publisher.requests[0]["Authorization"].startswith("Basic ")  # the fetch itself did use it
    assert (applied.outcome, failed.outcome) == ("applied", "fetch_failed")
    stored = [(r.source, r.message or "") for r in await runs(db)]
    async with db.sessions() as session:
        stored.append(((await session.execute(select(CplSnapshot.source))).scalar_one(), ""))
    assert all("s3cret" not in text for pair in stored for text in pair)
    assert all(source.startswith("http://cpl-reader:***@") for source, _ in stored)
    assert "s3cret" not in caplog.text


async def test_a_scheduled_sync_is_not_repeated_within_its_interval(db: Database, tmp_path: Path) -> None:
    """Every worker runs the schedule; the due check under the lock makes them sync once an interval."""
    source = str(write_csv(tmp_path / "cpl.csv", versions(3)))
    hour = dt.timedelta(hours=1)
    first = await sync_cpl(db, source, work_dir=tmp_path / "w", trigger="schedule", not_within=hour)
    assert first.outcome.value == "applied"
    with pytest.raises(SyncNotDue) as not_due:
        await sync_cpl(db, source, work_dir=tmp_path / "w", trigger="schedule", not_within=hour)
    assert 3590 < not_due.value.seconds_left <= 3600
    assert len(await runs(db)) == 1  # a sync that was not due leaves no run behind
    # Another trigger (an operator's `cfl-graph sync-cpl`) is not held back by the schedule.
    by_hand = await sync_cpl(db, source, work_dir=tmp_path / "w", trigger="cli", not_within=hour)
    assert by_hand.outcome.value == "unchanged"
    assert (
        await sync_cpl(db, source, work_dir=tmp_path / "w", trigger="schedule")
    ).outcome.value == "unchanged"

"""A CPL that changes while it downloads (issue 9): the current snapshot is only ever replaced by one
whole version of the published file, never by a mixture of two, and every outcome is recorded.

The publisher is a real local HTTP server. Its versions differ only in the image hashes, digit for
digit, so a body spliced from two of them at any byte is still a valid CPL: nothing but the fetch can
tell that it is a mixture (the first test shows that the mixture alone would validate).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cfl_graph.database import Database
from cfl_graph.tables import CplCertifiedFirmware, CplCurrent, CplSnapshot, CplSyncRun, SyncOutcome
from cpl_sync.fetch import FetchLimits
from cpl_sync.parse import read_table
from cpl_sync.sync import SyncLimits, sync_cpl
from cpl_sync.validate import validate
from tests.fixtures.cpl_files import versions, write_csv
from tests.fixtures.cpl_server import Publisher, serve_cpl

pytestmark = pytest.mark.postgres

LIMITS = SyncLimits(fetch=FetchLimits(read_timeout=2, total_timeout=10, attempts=3, backoff_base=0.01))


def published(tmp_path: Path, digit: str) -> bytes:
    """40 versions of one device model, every image hash made of `digit` and the row's number: the two
    versions of a file are the same length and line up byte for byte."""
    rows = versions(40)
    for number, row in enumerate(rows):
        row[next(c for c in row if c.value == "image_hash")] = f"{digit}{number:03x}" * 16
    return write_csv(tmp_path / f"cpl-{digit}.csv", rows).read_bytes()


def spliced(first: bytes, second: bytes) -> bytes:
    """What a server sends when the file is overwritten half-way through the answer."""
    return first[: len(first) // 2] + second[len(first) // 2 : len(first)]


async def current_hashes(db: Database) -> set[str]:
    async with db.sessions() as session:
        current = await session.scalar(select(CplCurrent.snapshot_id))
        rows = await session.execute(
            select(CplCertifiedFirmware.image_hash).where(CplCertifiedFirmware.snapshot_id == current)
        )
        return set(rows.scalars())


def hashes_of(body: bytes, tmp_path: Path) -> set[str]:
    path = tmp_path / "expected.csv"
    path.write_bytes(body)
    return {row.image_hash for row in validate(read_table(path)).firmware}


async def last_run(db: Database) -> CplSyncRun:
    async with db.sessions() as session:
        return (
            await session.execute(select(CplSyncRun).order_by(CplSyncRun.id.desc()).limit(1))
        ).scalar_one()


async def snapshot_count(db: Database) -> int:
    async with db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(CplSnapshot)) or 0)


@pytest.fixture
async def first_sync(db: Database, tmp_path: Path) -> bytes:
    """The library already holds a snapshot of the first version, as it would in production."""
    old = published(tmp_path, "0")
    source = tmp_path / "first.csv"
    source.write_bytes(old)
    assert (await sync_cpl(db, str(source), work_dir=tmp_path / "work")).outcome is SyncOutcome.APPLIED
    return old


async def test_a_file_overwritten_while_it_is_sent_is_fetched_again_whole(
    db: Database, tmp_path: Path, first_sync: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    version_a, version_b = published(tmp_path, "a"), published(tmp_path, "b")
    mixture = spliced(version_a, version_b)
    # The danger is real: the mixture alone is a valid list, of rows of both versions (and of a row
    # spliced inside its hash, of neither).
    mixed, hashes_a, hashes_b = (hashes_of(body, tmp_path) for body in (mixture, version_a, version_b))
    assert mixed & hashes_a and mixed & hashes_b and mixed not in (hashes_a, hashes_b)
    publisher = Publisher(body=version_a, overwrites=[version_b])
    caplog.set_level(logging.WARNING, logger="cpl_sync.fetch")
    async with serve_cpl(publisher) as url:
        result = await sync_cpl(db, url, work_dir=tmp_path / "work", limits=LIMITS)
    assert result.outcome is SyncOutcome.APPLIED, result.message
    assert await current_hashes(db) == hashes_of(version_b, tmp_path)
    run = await last_run(db)
    assert (run.content_sha256, run.etag) == (hashlib.sha256(version_b).hexdigest(), publisher.etag)
    assert (len(publisher.requests), publisher.heads) == (2, 2)  # the mixture, then B whole; each checked
    assert any("changed while it downloaded" in r.getMessage() for r in caplog.records)


async def test_a_retry_after_a_body_cut_short_takes_the_new_file_whole_and_splices_nothing(
    db: Database, tmp_path: Path, first_sync: bytes
) -> None:
    version_a, version_b = published(tmp_path, "a"), published(tmp_path, "b")
    # The first answer stops half-way through A; by the retry B is published.
    publisher = Publisher(body=version_a, cuts=1, next_versions=[version_b])
    async with serve_cpl(publisher) as url:
        result = await sync_cpl(db, url, work_dir=tmp_path / "work", limits=LIMITS)
    assert result.outcome is SyncOutcome.APPLIED, result.message
    assert await current_hashes(db) == hashes_of(version_b, tmp_path)
    run = await last_run(db)
    assert (run.content_sha256, run.etag, run.last_modified) == (
        hashlib.sha256(version_b).hexdigest(),
        publisher.etag,
        publisher.last_modified,
    )
    assert len(publisher.requests) == 2
    assert list((tmp_path / "work").glob("*.download")) == []


async def test_a_file_that_keeps_changing_fails_the_fetch_and_keeps_the_current_snapshot(
    db: Database, tmp_path: Path, first_sync: bytes
) -> None:
    before = await current_hashes(db), await snapshot_count(db)
    bodies = [published(tmp_path, digit) for digit in "abcdef"]
    publisher = Publisher(body=bodies[0], overwrites=bodies[1:])
    async with serve_cpl(publisher) as url:
        result = await sync_cpl(db, url, work_dir=tmp_path / "work", limits=LIMITS)
    assert result.outcome is SyncOutcome.FETCH_FAILED
    assert result.message is not None and "changed while it downloaded (3 attempts" in result.message
    assert (await current_hashes(db), await snapshot_count(db)) == before
    run = await last_run(db)
    assert run.outcome == SyncOutcome.FETCH_FAILED.value and "changed while it downloaded" in (
        run.message or ""
    )
    assert list((tmp_path / "work").glob("*.download")) == []


async def test_a_body_that_does_not_match_the_digest_announced_is_fetched_again(
    db: Database, tmp_path: Path, first_sync: bytes
) -> None:
    """Without ETag or Last-Modified there is nothing to ask again about; an announced digest still tells."""
    version_a, version_b = published(tmp_path, "a"), published(tmp_path, "b")
    publisher = Publisher(body=version_a, overwrites=[version_b], validators=False, digest=True)
    async with serve_cpl(publisher) as url:
        result = await sync_cpl(db, url, work_dir=tmp_path / "work", limits=LIMITS)
    assert result.outcome is SyncOutcome.APPLIED, result.message
    assert await current_hashes(db) == hashes_of(version_b, tmp_path)
    assert (len(publisher.requests), publisher.heads) == (2, 0)


async def test_a_body_shorter_than_its_content_length_every_time_is_recorded_and_changes_nothing(
    db: Database, tmp_path: Path, first_sync: bytes
) -> None:
    before = await current_hashes(db), await snapshot_count(db)
    publisher = Publisher(body=published(tmp_path, "a"), truncate=True)
    async with serve_cpl(publisher) as url:
        result = await sync_cpl(db, url, work_dir=tmp_path / "work", limits=LIMITS)
    assert result.outcome is SyncOutcome.FETCH_FAILED
    assert result.message is not None and "was cut short" in result.message
    assert (await current_hashes(db), await snapshot_count(db)) == before
    assert (await last_run(db)).outcome == SyncOutcome.FETCH_FAILED.value

"""The library's CPL sync (`sync_library`, which every door calls) and the background sync that `serve`
runs every CFL_CPL_SYNC_INTERVAL seconds."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from cfl_graph.database import Database
from cfl_graph.images.lifecycle import follow_snapshot
from cfl_graph.settings import Settings
from cpl_sync.fetch import FetchLimits
from cpl_sync.lock import SyncLockBusy
from cpl_sync.sync import SyncLimits, SyncNotDue, SyncResult, sync_cpl
from cpl_sync.validate import ProgressCallback

log = logging.getLogger(__name__)


def sync_limits(settings: Settings, *, lock_wait: float = 0.0) -> SyncLimits:
    return SyncLimits(
        fetch=FetchLimits(
            max_bytes=settings.cpl_max_bytes,
            attempts=settings.cpl_fetch_attempts,
            total_timeout=settings.cpl_fetch_timeout,
        ),
        max_rows=settings.cpl_max_rows,
        lock_wait=lock_wait,
    )


async def sync_library(
    db: Database,
    source: str,
    *,
    work_dir: Path,
    limits: SyncLimits | None = None,
    trigger: str = "cli",
    progress: ProgressCallback | None = None,
    not_within: dt.timedelta | None = None,
) -> SyncResult:
    """A CPL sync as the service runs it: each applied snapshot holds the published images it no longer
    certifies as they are, and releases held ones it certifies again, in the snapshot's transaction."""
    return await sync_cpl(
        db,
        source,
        work_dir=work_dir,
        limits=limits,
        trigger=trigger,
        progress=progress,
        not_within=not_within,
        follower=follow_snapshot,
    )


async def run_scheduled_sync(settings: Settings, db: Database) -> None:
    """Sync now and then every interval. Every worker of a deployment runs this; the sync lock and the
    due check under it (the last scheduled sync's start, in the database) make them sync once per
    interval between them, whichever worker it falls to."""
    assert settings.cpl_source is not None and settings.cpl_sync_interval > 0
    interval = dt.timedelta(seconds=settings.cpl_sync_interval)
    while True:
        wait = float(settings.cpl_sync_interval)
        try:
            result = await sync_library(
                db,
                settings.cpl_source,
                work_dir=settings.work_dir,
                limits=sync_limits(settings),
                trigger="schedule",
                not_within=interval,
            )
            log.info("scheduled CPL sync: %s (%s)", result.outcome.value, result.message)
        except SyncNotDue as not_due:
            wait = not_due.seconds_left
            log.debug("scheduled CPL sync not due: %s", not_due)
        except SyncLockBusy:
            log.info("scheduled CPL sync skipped: another sync is running")
        except Exception:
            # Already recorded as a failed sync run and logged with context; keep the schedule alive.
            log.warning("scheduled CPL sync failed; retrying at the next interval")
        await asyncio.sleep(wait)

"""One CPL synchronisation: fetch -> parse -> validate -> snapshot, recorded as a sync run.

Whatever happens, a `cpl_sync_runs` row says when, from where, what content, and with what outcome;
only an `applied` run changes which snapshot is current.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph.audit import Actor, record
from cfl_graph.catalogue.snapshots import current_snapshot_id
from cfl_graph.database import Database
from cfl_graph.tables import CplSnapshot, CplSyncRun, SyncOutcome
from cfl_graph.tables.base import utc_now
from cpl_sync.diff import DiffCounts
from cpl_sync.fetch import (
    Fetched,
    FetchError,
    FetchLimits,
    NotModified,
    Validators,
    fetch_cpl,
    remove_abandoned_downloads,
    shown_source,
)
from cpl_sync.lock import sync_lock
from cpl_sync.parse import read_table
from cpl_sync.problems import CplFileRejected, Problem
from cpl_sync.snapshot import validate_and_store
from cpl_sync.validate import (
    MAX_REPORTED_PROBLEMS,
    ChunkSink,
    ProgressCallback,
    ValidCpl,
    validate,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncLimits:
    fetch: FetchLimits = field(default_factory=FetchLimits)
    max_rows: int = 2_000_000
    lock_wait: float = 0.0


class FollowReport(Protocol):
    """What the library did as the CPL moved (the ids of images held and released); its `str` says it."""

    @property
    def held(self) -> Sequence[int]: ...

    @property
    def released(self) -> Sequence[int]: ...


# Run by a sync in the transaction that makes a snapshot current (or, when the CPL did not change, in the
# one that records the run): the library's side of the CPL moving. `cpl_sync` never reads the library's
# tables itself; the service passes `cfl_graph.images.lifecycle.follow_snapshot`.
Follower = Callable[[AsyncSession, int, Actor], Awaitable[FollowReport]]


@dataclass(frozen=True)
class SyncResult:
    run_id: int
    outcome: SyncOutcome
    source: str
    snapshot_id: int | None = None
    row_count: int | None = None
    device_model_count: int | None = None
    changes: DiffCounts | None = None
    errors: list[Problem] = field(default_factory=list)
    error_count: int = 0
    warnings: list[Problem] = field(default_factory=list)
    message: str | None = None
    followed: FollowReport | None = None


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Reading and storing a CPL allocate millions of tuples and none of them form cycles; left on, the
    cyclic collector re-walks that growing heap again and again (a quarter of the read and 40 % of the
    store at 100k rows). The pause is process-wide and lasts seconds; reference counting still frees
    everything meanwhile, and the collector resumes, if it was on, when done."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read(path: Path, max_rows: int, progress: ProgressCallback | None, sink: ChunkSink | None) -> ValidCpl:
    return validate(read_table(path), max_rows=max_rows, progress=progress, sink=sink)


async def _previous_validators(db: Database, source: str) -> Validators | None:
    """ETag / Last-Modified of the last good fetch of this source, if its content is still current."""
    async with db.sessions() as session:
        current = await current_snapshot_id(session)
        if current is None:
            return None
        run = (
            await session.execute(
                select(CplSyncRun)
                .where(
                    CplSyncRun.source == source,
                    CplSyncRun.outcome.in_([SyncOutcome.APPLIED, SyncOutcome.UNCHANGED]),
                    CplSyncRun.snapshot_id == current,
                )
                .order_by(CplSyncRun.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
    if run is None or (run.etag is None and run.last_modified is None):
        return None
    return Validators(run.etag, run.last_modified)


class SyncNotDue(Exception):
    """A sync of the same trigger ran recently (another worker's scheduler, say)."""

    def __init__(self, seconds_left: float) -> None:
        super().__init__(f"a sync of this kind started recently; the next is due in {seconds_left:.0f} s")
        self.seconds_left = seconds_left


async def _refuse_if_not_due(db: Database, trigger: str, interval: dt.timedelta) -> None:
    async with db.sessions() as session:
        last = await session.scalar(
            select(func.max(CplSyncRun.started_at)).where(CplSyncRun.trigger == trigger)
        )
    if last is not None and (left := (last + interval - utc_now()).total_seconds()) > 0:
        raise SyncNotDue(left)


async def _start_run(db: Database, source: str, trigger: str) -> int:
    async with db.writes.begin() as session:
        run = CplSyncRun(source=source, trigger=trigger, outcome=SyncOutcome.RUNNING, problems=[])
        session.add(run)
        await session.flush()
        return run.id


async def _finish_run(
    db: Database,
    result: SyncResult,
    fetched: Fetched | NotModified | None,
    actor: Actor,
    follower: Follower | None = None,
) -> SyncResult:
    async with db.writes.begin() as session:
        run = await session.get_one(CplSyncRun, result.run_id)
        if run.outcome != SyncOutcome.RUNNING:
            return result  # written already, in the transaction that made its snapshot current
        if (
            follower is not None
            and result.snapshot_id is not None
            and result.outcome in (SyncOutcome.UNCHANGED, SyncOutcome.NOT_MODIFIED)
        ):
            # The CPL did not move, but the library follows the current snapshot all the same: what an
            # earlier version of the service, or a sync without a follower, left behind is put right.
            result = _with_followed(result, await follower(session, result.snapshot_id, actor))
        await _write_run(session, run, result, fetched, actor)
        return result


def _with_followed(result: SyncResult, followed: FollowReport) -> SyncResult:
    if not followed.held and not followed.released:
        return replace(result, followed=followed)
    message = f"{result.message}; {followed}" if result.message else str(followed)
    return replace(result, followed=followed, message=message)


async def _write_run(
    session: AsyncSession,
    run: CplSyncRun,
    result: SyncResult,
    fetched: Fetched | NotModified | None,
    actor: Actor,
) -> None:
    """The run's outcome and its audit event, in the caller's transaction: they commit together."""
    run.finished_at = utc_now()
    run.outcome = result.outcome
    run.snapshot_id = result.snapshot_id
    run.row_count = result.row_count
    run.error_count = result.error_count
    run.warning_count = len(result.warnings)
    if result.followed is not None:
        run.images_held = len(result.followed.held)
        run.images_released = len(result.followed.released)
    run.problems = [p.as_dict() for p in (*result.errors, *result.warnings)][: MAX_REPORTED_PROBLEMS * 2]
    run.message = result.message
    if fetched is not None:
        run.etag = fetched.validators.etag
        run.last_modified = fetched.validators.last_modified
    if isinstance(fetched, Fetched):
        run.content_sha256 = fetched.sha256
        run.content_size = fetched.size
    await record(
        session,
        actor,
        f"cpl.sync.{result.outcome.value}",
        f"sync run {result.run_id}",
        {
            "source": result.source,
            "snapshot_id": result.snapshot_id,
            "row_count": result.row_count,
            "error_count": result.error_count,
            "content_sha256": run.content_sha256,
            "changes": None if result.changes is None else vars(result.changes),
            "warning_count": len(result.warnings),
            "images_held": None if result.followed is None else list(result.followed.held),
            "images_released": None if result.followed is None else list(result.followed.released),
        },
    )


async def _close_interrupted_runs(db: Database, actor: Actor) -> None:
    """Runs still `running` while we hold the lock belong to a sync that died (killed, crashed, power
    lost): record them as failed, with an audit event each, so the history says what happened."""
    async with db.writes.begin() as session:
        stale = (
            await session.execute(select(CplSyncRun).where(CplSyncRun.outcome == SyncOutcome.RUNNING))
        ).scalars()
        for run in stale:
            run.outcome = SyncOutcome.FAILED
            run.finished_at = utc_now()
            run.message = (
                "the sync stopped before it finished (its process was killed or crashed); "
                "nothing of it was applied"
            )
            await record(
                session,
                actor,
                "cpl.sync.interrupted",
                f"sync run {run.id}",
                {"source": run.source, "started_at": run.started_at.isoformat()},
            )


async def sync_cpl(
    db: Database,
    source: str,
    *,
    work_dir: Path,
    limits: SyncLimits | None = None,
    trigger: str = "cli",
    progress: ProgressCallback | None = None,
    not_within: dt.timedelta | None = None,
    follower: Follower | None = None,
) -> SyncResult:
    """Synchronise from `source` (a path or URL). Raises `SyncLockBusy` if another sync holds the lock,
    and `SyncNotDue` if `not_within` is given and a sync of the same trigger started less than that long
    ago (checked holding the lock, so several schedulers sharing a database sync once per interval).
    `follower` is the library's side of an applied snapshot, run in the snapshot's own transaction."""
    limits = limits or SyncLimits()
    work_dir.mkdir(parents=True, exist_ok=True)
    # What is stored and logged never carries a password from the URL; only the fetch sees it.
    shown = shown_source(source)
    actor = Actor.cli() if trigger == "cli" else Actor(trigger)
    async with sync_lock(db.engine, wait=limits.lock_wait):
        # Holding the lock, anything an earlier sync left behind is a dead one's.
        await _close_interrupted_runs(db, actor)
        for leftover in remove_abandoned_downloads(work_dir):
            log.warning("removed %s, left by a sync that was killed", leftover.name)
        if not_within is not None:
            await _refuse_if_not_due(db, trigger, not_within)
        run_id = await _start_run(db, shown, trigger)
        fetched: Fetched | NotModified | None = None
        try:
            try:
                previous = await _previous_validators(db, shown)
                fetched = await fetch_cpl(source, work_dir, previous=previous, limits=limits.fetch)
            except FetchError as exc:
                result = SyncResult(run_id, SyncOutcome.FETCH_FAILED, shown, message=str(exc))
            else:
                result = await _apply(db, run_id, shown, fetched, limits, progress, actor, follower)
        except Exception as exc:
            log.exception("CPL sync run %s from %s failed", run_id, shown)
            failed = SyncResult(
                run_id,
                SyncOutcome.FAILED,
                shown,
                message=f"internal error: {type(exc).__name__}; see the service log",
            )
            await _finish_run(db, failed, fetched, actor)
            raise
        finally:
            if isinstance(fetched, Fetched):
                with contextlib.suppress(FileNotFoundError):
                    fetched.path.unlink()
        result = await _finish_run(db, result, fetched, actor, follower)
        log.info("CPL sync run %s from %s: %s", run_id, shown, result.outcome.value)
        return result


async def _apply(
    db: Database,
    run_id: int,
    source: str,
    fetched: Fetched | NotModified,
    limits: SyncLimits,
    progress: ProgressCallback | None,
    actor: Actor,
    follower: Follower | None,
) -> SyncResult:
    if isinstance(fetched, NotModified):
        async with db.sessions() as session:
            current = await current_snapshot_id(session)
        return SyncResult(
            run_id,
            SyncOutcome.NOT_MODIFIED,
            source,
            snapshot_id=current,
            message="the source has not changed since the last sync",
        )
    with _cyclic_gc_paused():
        return await _read_and_store(db, run_id, source, fetched, limits, progress, actor, follower)


async def _read_and_store(
    db: Database,
    run_id: int,
    source: str,
    fetched: Fetched,
    limits: SyncLimits,
    progress: ProgressCallback | None,
    actor: Actor,
    follower: Follower | None,
) -> SyncResult:
    done: list[SyncResult] = []
    warnings: list[Problem] = []  # the file's, once validated (an applied result is made before it returns)

    def of_snapshot(
        outcome: SyncOutcome, snapshot: CplSnapshot, message: str, changes: DiffCounts | None = None
    ) -> SyncResult:
        return SyncResult(
            run_id,
            outcome,
            source,
            snapshot_id=snapshot.id,
            row_count=snapshot.row_count,
            device_model_count=snapshot.device_model_count,
            changes=changes,
            warnings=warnings,
            message=message,
        )

    def applied(snapshot: CplSnapshot) -> SyncResult:
        changes = DiffCounts(snapshot.added_count, snapshot.removed_count, snapshot.changed_count)
        return of_snapshot(SyncOutcome.APPLIED, snapshot, f"snapshot {snapshot.id} is now current", changes)

    async def record_applied(session: AsyncSession, snapshot: CplSnapshot) -> None:
        # The library follows the new snapshot, and the run's outcome and its audit event are written,
        # all in the snapshot's transaction: a sync killed after its commit leaves no image served that
        # the current CPL does not certify, and the change on the record.
        result = applied(snapshot)
        if follower is not None:
            result = _with_followed(result, await follower(session, snapshot.id, actor))
        run = await session.get_one(CplSyncRun, run_id)
        await _write_run(session, run, result, fetched, actor)
        done.append(result)

    def validation(sink: ChunkSink | None) -> ValidCpl:
        # Parsing and validating are CPU work, run in a worker thread off the event loop that serves
        # requests; on PostgreSQL the rows are stored meanwhile (`validate_and_store`).
        valid = _read(fetched.path, limits.max_rows, progress, sink)
        warnings[:] = valid.warnings
        return valid

    try:
        _, stored = await validate_and_store(
            db.sessions,
            validation,
            source=source,
            content_sha256=fetched.sha256,
            progress=progress,
            on_created=record_applied,
        )
    except CplFileRejected as rejected:
        return SyncResult(
            run_id,
            SyncOutcome.REJECTED,
            source,
            errors=rejected.problems,
            error_count=rejected.error_count,
            warnings=rejected.warnings,
            message=str(rejected),
        )
    snapshot = stored.snapshot
    if not stored.created:
        message = f"same content as current snapshot {snapshot.id}; nothing written"
        return of_snapshot(SyncOutcome.UNCHANGED, snapshot, message)
    return done[0]

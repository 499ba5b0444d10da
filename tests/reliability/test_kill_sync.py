"""A `cfl-graph sync-cpl` killed with SIGKILL at any moment (issue 9) leaves the CPL copy as it was, or as
the finished sync left it: never part of a snapshot, never a held lock, and the next sync just works.

The kills are of real child processes, on SQLite and PostgreSQL, spread over a sync's phases: before
the fetch is done, validating, inserting, and after the commit. Each child is watched from outside (its
copy of the file in the work folder, its write transaction, the move of `current`) and killed a random
time into its phase, out of that phase's length in an uninterrupted sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from cfl_graph.database import Database, sqlite_path
from cfl_graph.demo.cpl_data import generate, write_csv
from cfl_graph.tables import (
    AuditEvent,
    CplCertifiedFirmware,
    CplCurrent,
    CplDeviceModel,
    CplSnapshot,
    CplSyncRun,
    SyncOutcome,
)
from cpl_sync.lock import sync_lock
from tests.fixtures.cli import run_cli

# A few thousand rows: the sync's own work (after about a second of start-up) lasts a few tenths.
ROWS = 4_000
KILLS_PER_DATABASE = 25
LOOP_SECONDS = 60.0
# However a sync dies, the next one gets the lock within this (PostgreSQL notices the dead client).
LOCK_WAIT = 15.0
CHILD_TIMEOUT = 60.0

PHASES = ("before the fetch finished", "validating", "inserting", "after the commit")
PLANNED = (7, 6, 6, 6)  # kills per phase, in PHASES order
# Only the first part of the time between the commit and the exit, so that the kill beats the exit.
AFTER_COMMIT_SHARE = 0.8


@dataclass(frozen=True)
class CplFiles:
    first: Path
    new: tuple[Path, Path]  # two different lists, so a sync after a committed kill still writes a snapshot

    @staticmethod
    def sha256(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class KillPoint:
    phase: int  # index into PHASES
    fraction: float  # where in that phase's window, 0..1


@pytest.fixture(scope="module")
def cpl_files(tmp_path_factory: pytest.TempPathFactory) -> CplFiles:
    folder = tmp_path_factory.mktemp("cpl")
    paths = [folder / f"cpl-{seed}.csv" for seed in (1, 2, 3)]
    for seed, path in enumerate(paths, start=1):
        write_csv(path, generate(ROWS, seed))
    return CplFiles(paths[0], (paths[1], paths[2]))


@pytest.fixture(scope="module")
def kill_plan() -> list[KillPoint]:
    """The same kill points for both databases: random within each phase, in random order.

    Two of the kills after the commit come as soon as it shows, aimed at the moment between the
    snapshot's commit and the run's own record of it."""
    rng = random.Random()
    plan = [KillPoint(phase, rng.random()) for phase, count in enumerate(PLANNED) for _ in range(count)]
    plan[-2:] = [KillPoint(len(PHASES) - 1, 0.0)] * 2
    rng.shuffle(plan)
    assert len(plan) == KILLS_PER_DATABASE
    return plan


@dataclass(frozen=True)
class Timeline:
    """Seconds from an uninterrupted child's start to the end of each phase."""

    ends: tuple[float, float, float, float]  # fetched, began writing, committed, exited

    def delay(self, point: KillPoint) -> float:
        """How long after its phase began (after the start, for the first) a kill at `point` comes."""
        start = 0.0 if point.phase == 0 else self.ends[point.phase - 1]
        share = AFTER_COMMIT_SHARE if point.phase == len(PHASES) - 1 else 1.0
        return point.fraction * share * (self.ends[point.phase] - start)

    def __str__(self) -> str:
        return "fetched {:.2f} s, writing {:.2f} s, committed {:.2f} s, exited {:.2f} s".format(*self.ends)


@dataclass(frozen=True)
class CplState:
    current: int | None
    snapshots: dict[int, str]  # id -> content SHA-256
    runs: dict[int, tuple[SyncOutcome, int | None]]  # id -> (outcome, snapshot id)
    partial: list[str]  # rows that belong to no complete snapshot


async def cpl_state(db: Database) -> CplState:
    async with db.sessions() as session:
        current = (await session.execute(select(CplCurrent.snapshot_id))).scalar_one_or_none()
        snapshots = list((await session.execute(select(CplSnapshot))).scalars())
        firmware = {
            snapshot_id: count
            for snapshot_id, count in await session.execute(
                select(CplCertifiedFirmware.snapshot_id, func.count()).group_by(
                    CplCertifiedFirmware.snapshot_id
                )
            )
        }
        models = {
            snapshot_id: count
            for snapshot_id, count in await session.execute(
                select(CplDeviceModel.snapshot_id, func.count()).group_by(CplDeviceModel.snapshot_id)
            )
        }
        runs = {
            run.id: (run.outcome, run.snapshot_id)
            for run in (await session.execute(select(CplSyncRun))).scalars()
        }
    partial = [
        f"snapshot {s.id} holds {firmware.get(s.id, 0)} of its {s.row_count} certified versions and "
        f"{models.get(s.id, 0)} of its {s.device_model_count} device models"
        for s in snapshots
        if (firmware.get(s.id, 0), models.get(s.id, 0)) != (s.row_count, s.device_model_count)
    ]
    known = {s.id for s in snapshots}
    partial += [
        f"{count} {table} rows of snapshot {snapshot_id}, which has no cpl_snapshots row"
        for table, counts in (("cpl_certified_firmware", firmware), ("cpl_device_models", models))
        for snapshot_id, count in counts.items()
        if snapshot_id not in known
    ]
    return CplState(current, {s.id: s.content_sha256 for s in snapshots}, runs, partial)


async def settled_state(db: Database) -> tuple[CplState, float]:
    """The CPL copy once the sync lock is free again (no sync is writing), and how long that took."""
    started = time.monotonic()
    async with sync_lock(db.engine, wait=LOCK_WAIT):
        waited = time.monotonic() - started
        return await cpl_state(db), waited


def child_env(db: Database, tmp_path: Path) -> dict[str, str]:
    # As `run_cli(..., work=tmp_path)` runs the command, so the killed and the whole syncs share folders.
    return {
        **os.environ,
        "CFL_DATABASE_URL": db.url,
        "CFL_WORK_DIR": str(tmp_path / "work"),
        "CFL_BLOB_DIR": str(tmp_path / "blobs"),
        "COLUMNS": "200",
    }


@contextlib.contextmanager
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every child started in the block is killed and reaped at its end, however the block ends."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for child in started:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)


def spawn_sync(
    source: Path, env: dict[str, str], started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, "-m", "cfl_graph", "sync-cpl", str(source)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started.append(child)
    return child


class WriteProbe:
    """Whether another connection is inside a transaction that writes a snapshot, without waiting."""

    def __init__(self, db: Database) -> None:
        self.db = db
        path = sqlite_path(db.url)
        self._sqlite = None if path is None else sqlite3.connect(path, timeout=0, isolation_level=None)

    async def writing(self) -> bool:
        if self._sqlite is None:
            held = text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'cpl_snapshots'::regclass "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid())"
            )
            async with self.db.engine.connect() as conn:
                return bool((await conn.execute(held)).scalar_one())
        try:
            self._sqlite.execute("BEGIN IMMEDIATE")  # SQLite has one writer: this fails while it writes
        except sqlite3.OperationalError:
            return True
        self._sqlite.execute("ROLLBACK")
        return False

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()


async def current_id(db: Database) -> int | None:
    async with db.sessions() as session:
        return (await session.execute(select(CplCurrent.snapshot_id))).scalar_one_or_none()


class Watch:
    """What one running sync has done so far, seen from outside: when each of its phases ended."""

    def __init__(
        self, db: Database, probe: WriteProbe, work: Path, source: Path, current: int | None
    ) -> None:
        self.db = db
        self.probe = probe
        self.work = work
        self.size = source.stat().st_size
        self.current = current
        self.old_copies = set(work.glob("cpl-*.download"))
        self.ends: list[float] = []  # fetched, began writing, committed: in that order

    @property
    def phase(self) -> int:
        """The index in PHASES of the phase last seen."""
        return len(self.ends)

    async def look(self, now: float) -> None:
        if self.phase == 0 and any(self._fetched(path) for path in self.work.glob("cpl-*.download")):
            self.ends.append(now)
        if self.phase == 1 and await self.probe.writing():
            self.ends.append(now)
        # Checked from the fetch on: a write too short to be seen still ends in a commit.
        if 1 <= self.phase < 3 and await current_id(self.db) != self.current:
            self.ends += [now] * (3 - self.phase)

    def _fetched(self, path: Path) -> bool:
        try:
            return path not in self.old_copies and path.stat().st_size == self.size
        except FileNotFoundError:
            return False


async def timed_sync(db: Database, source: Path, env: dict[str, str], work: Path) -> Timeline:
    """Run one whole sync while watching it, and say when each phase ended."""
    probe = WriteProbe(db)
    watch = Watch(db, probe, work, source, await current_id(db))
    try:
        with children() as started:
            began = time.monotonic()
            child = spawn_sync(source, env, started)
            while child.poll() is None:
                now = time.monotonic() - began
                assert now < CHILD_TIMEOUT, "the uninterrupted sync did not finish"
                await watch.look(now)
                await asyncio.sleep(0.002)
            exited = time.monotonic() - began
            # A commit and the exit after it can both fall between two looks: one more, now it has ended.
            await watch.look(exited)
    finally:
        probe.close()
    assert child.returncode == 0, f"the uninterrupted sync failed with exit code {child.returncode}"
    assert watch.phase == 3, f"the uninterrupted sync was seen to reach only {PHASES[watch.phase]}"
    fetched, writing, committed = watch.ends
    return Timeline((fetched, writing, committed, exited))


async def kill_sync(
    db: Database, source: Path, env: dict[str, str], work: Path, timeline: Timeline, point: KillPoint
) -> int | None:
    """Start a sync and SIGKILL it at `point`; the phase it was last seen in, or None if it ended first."""
    probe = WriteProbe(db)
    watch = Watch(db, probe, work, source, await current_id(db))
    delay = timeline.delay(point)
    try:
        with children() as started:
            began = time.monotonic()
            child = spawn_sync(source, env, started)
            while child.poll() is None:
                now = time.monotonic() - began
                assert now < CHILD_TIMEOUT, f"the sync to be killed at {point} never got there"
                await watch.look(now)
                if point.phase == 0:
                    phase_began = 0.0
                else:
                    phase_began = watch.ends[point.phase - 1] if watch.phase >= point.phase else math.inf
                # A kill planned before the fetch finished comes at once if the fetch is seen to finish.
                if now >= phase_began + delay or (point.phase == 0 and watch.phase > 0):
                    child.send_signal(signal.SIGKILL)
                    child.wait(timeout=CHILD_TIMEOUT)
                    # It may have exited on its own just before the signal, which then did nothing.
                    return watch.phase if child.returncode == -signal.SIGKILL else None
                await asyncio.sleep(0.002)
    finally:
        probe.close()
    return None


async def test_a_killed_sync_leaves_the_previous_or_the_new_snapshot_whole_and_the_lock_free(
    db: Database, tmp_path: Path, cpl_files: CplFiles, kill_plan: list[KillPoint]
) -> None:
    dialect = db.engine.dialect.name
    env = child_env(db, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    digests = {path: CplFiles.sha256(path) for path in (cpl_files.first, *cpl_files.new)}
    # The first, different list, synced whole and timed: the kills start from its snapshot.
    timeline = await timed_sync(db, cpl_files.first, env, work)

    def next_source(state: CplState) -> Path:
        """The new list that is not current, so that every sync has a whole snapshot to write."""
        current = None if state.current is None else state.snapshots[state.current]
        return cpl_files.new[1] if current == digests[cpl_files.new[0]] else cpl_files.new[0]

    kills: Counter[str] = Counter()  # by the phase the sync was last seen in
    seen: Counter[str] = Counter()  # what the kill left
    finished_first = 0
    slowest_lock = 0.0
    loop_started = time.monotonic()
    for point in kill_plan:
        if time.monotonic() - loop_started > LOOP_SECONDS:
            break
        before, _ = await settled_state(db)
        source = next_source(before)
        phase = await kill_sync(db, source, env, work, timeline, point)
        if phase is None:
            finished_first += 1
        else:
            kills[PHASES[phase]] += 1

        after, waited = await settled_state(db)
        slowest_lock = max(slowest_lock, waited)
        where = (
            f"{dialect}: sync of {source.name} killed {timeline.delay(point):.3f} s into "
            f"{PHASES[point.phase]!r}, last seen {'finishing' if phase is None else PHASES[phase]!r}"
        )
        assert not after.partial, f"{where}: a half-written snapshot is visible: {after.partial}"
        assert set(before.snapshots) <= set(after.snapshots), f"{where}: snapshots disappeared"
        new = sorted(set(after.snapshots) - set(before.snapshots))
        assert len(new) <= 1, f"{where}: more than one new snapshot: {new}"
        new_id = new[0] if new else None
        if new_id is None:
            assert after.current == before.current, f"{where}: current moved without a new snapshot"
        else:
            assert after.current == new_id, f"{where}: the new snapshot {new_id} is not current"
            assert after.snapshots[new_id] == digests[source], f"{where}: the new snapshot is of another file"
        new_runs = [after.runs[run_id] for run_id in sorted(set(after.runs) - set(before.runs))]
        assert len(new_runs) <= 1, f"{where}: more than one sync run recorded: {new_runs}"
        for outcome, run_snapshot in new_runs:
            # A run killed before its commit stays `running` (the next sync records it as interrupted);
            # its record and audit event commit with its snapshot, so a current new snapshot is `applied`.
            assert outcome in ("running", "applied"), f"{where}: the killed run says {outcome}"
            if outcome == "applied":
                assert new_id is not None and run_snapshot == new_id, f"{where}: applied, but not {new_id}"
            else:
                assert new_id is None, f"{where}: snapshot {new_id} is current but its run is not recorded"
        seen[_left(new_runs[0][0] if new_runs else None, committed=new_id is not None)] += 1
    elapsed = time.monotonic() - loop_started
    done = sum(kills.values())

    leftovers = len(list(work.glob("cpl-*.download")))
    target = next_source((await settled_state(db))[0])
    whole = run_cli(db.url, "sync-cpl", str(target), work=tmp_path)
    assert whole.returncode == 0 and "applied" in whole.stdout, whole.stdout + whole.stderr
    final, _ = await settled_state(db)
    assert final.current is not None and final.snapshots[final.current] == digests[target]
    assert not final.partial, final.partial
    verify = run_cli(db.url, "verify", work=tmp_path)
    assert verify.returncode == 0 and "audit trail intact" in verify.stdout, verify.stdout + verify.stderr

    summary = (
        f"kill -9 of sync-cpl on {dialect}: {done} kills in {elapsed:.0f} s "
        f"(planned {len(kill_plan)}, {finished_first} syncs finished first); timeline {timeline}; "
        f"last seen {dict(kills)}; left {dict(seen)}; lock free within {slowest_lock:.2f} s; "
        f"{leftovers} fetched copies left in the work folder (the next sync removes them)"
    )
    print(f"\n{summary}")
    assert done >= 5, f"too few kills to mean anything: {summary}"


def _left(outcome: str | None, *, committed: bool) -> str:
    if outcome is None:
        return "no run recorded"
    if outcome == "applied":
        return "run applied"
    return "new snapshot current, run running" if committed else "previous snapshot current, run running"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_snapshot_becomes_current_only_with_its_run_record_and_audit_event(
    db: Database, tmp_path: Path, cpl_files: CplFiles
) -> None:
    """The run's record and audit event are written in the snapshot's own transaction, so there is no
    window in which a kill leaves a current snapshot unaudited. The test holds a lock on the run's row:
    the child's snapshot transaction waits on it before committing, is killed there, and nothing of it
    shows; the next sync records the killed run as interrupted and applies."""
    env = child_env(db, tmp_path)
    first = run_cli(db.url, "sync-cpl", str(cpl_files.first), work=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    before = await current_id(db)
    running = text("SELECT id FROM cpl_sync_runs WHERE outcome = 'running' FOR UPDATE")
    blocked_by = text("SELECT count(*) FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))")
    with children() as started:
        began = time.monotonic()
        child = spawn_sync(cpl_files.new[0], env, started)
        async with db.engine.connect() as holder:
            while not (run_ids := (await holder.execute(running)).scalars().all()):
                await holder.rollback()
                assert time.monotonic() - began < CHILD_TIMEOUT and child.poll() is None, "no run started"
                await asyncio.sleep(0.01)
            [run_id] = run_ids
            holder_pid = (await holder.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            waiting = blocked_by.bindparams(holder=holder_pid)
            async with db.engine.connect() as watcher:
                while not (await watcher.execute(waiting)).scalar_one():
                    await watcher.rollback()
                    assert time.monotonic() - began < CHILD_TIMEOUT and child.poll() is None, "never waited"
                    await asyncio.sleep(0.01)
            # The child has written the whole snapshot and waits to record its run, uncommitted.
            assert await current_id(db) == before
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=CHILD_TIMEOUT)
            await holder.rollback()

    state, _ = await settled_state(db)
    assert not state.partial, state.partial
    assert state.current == before
    assert state.runs[run_id] == ("running", None)
    whole = run_cli(db.url, "sync-cpl", str(cpl_files.new[0]), work=tmp_path)
    assert whole.returncode == 0 and "applied" in whole.stdout, whole.stdout + whole.stderr
    state, _ = await settled_state(db)
    assert state.runs[run_id][0] == "failed"
    async with db.sessions() as session:
        actions = {
            (event.action, event.subject)
            for event in (await session.execute(select(AuditEvent))).scalars()
            if event.action in ("cpl.sync.applied", "cpl.sync.interrupted")
        }
    assert ("cpl.sync.interrupted", f"sync run {run_id}") in actions
    assert sum(1 for action, _ in actions if action == "cpl.sync.applied") == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_copy_a_killed_sync_fetched_is_removed_by_the_next_sync(
    db: Database, tmp_path: Path, cpl_files: CplFiles
) -> None:
    env = child_env(db, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    timeline = Timeline((0.0, 0.0, 0.0, 0.0))
    # Killed as soon as its copy of the list is whole, while it validates.
    assert await kill_sync(db, cpl_files.first, env, work, timeline, KillPoint(1, 0.0)) == 1
    killed_copies = sorted(path.name for path in work.glob("cpl-*.download"))
    assert killed_copies, "the kill came before the fetch finished"
    whole = run_cli(db.url, "sync-cpl", str(cpl_files.first), work=tmp_path)
    assert whole.returncode == 0 and "applied" in whole.stdout, whole.stdout + whole.stderr
    left = sorted(path.name for path in work.glob("cpl-*.download"))
    assert left == [], f"the next sync left the killed one's copy {killed_copies} in the work folder: {left}"

"""Benchmark P1: a full CPL sync against a bare python-calamine read of the same XLSX file.

    python -m bench.cpl_sync --rows 1000 10000 100000 [--database-url URL]

Each side runs in its own child process, so the peak memory printed is that side's alone. The
sync is the real pipeline (copy + hash, parse, validate, one-transaction snapshot) into a fresh,
migrated database; the bare read opens the workbook and walks every row, doing nothing else.

Then the next sync: the list as a later release might be (`next_listing`: about 1.5 % of its rows
dropped, added or changed) synced on top of the first, as every sync but a database's first is, with
the diff against the snapshot before; it is timed against a bare read of its own file.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

from bench.records import machine_record, write_record
from cfl_graph.demo.cpl_data import SHEET_NAME, CplRecord, generate, write_xlsx
from cpl_sync.fetch import FetchLimits
from cpl_sync.sync import SyncLimits

# The benchmarks' CPLs: a million generated rows as CSV pass the 200 MiB a real CPL file is allowed (the
# real list has a few thousand rows).
LARGE_CPL_LIMITS = SyncLimits(fetch=FetchLimits(max_bytes=2 * 1024**3), max_rows=3_000_000)

AIM_RATIO = 2.0
AIM_PEAK_MB = 300.0


@dataclass(frozen=True)
class Measurement:
    rows: int
    file_mb: float
    bare_read_s: float
    bare_peak_mb: float
    sync_s: float
    sync_peak_mb: float
    # CPU seconds (user + system) of each side's process in its best run: on a shared machine a steadier
    # comparison than the wall clock. The sync's figure leaves out the PostgreSQL server's own CPU.
    bare_cpu_s: float
    sync_cpu_s: float
    # Where the best sync's time went, in seconds from its start, as its progress reports say: every row
    # checked (calamine's load and the validation, before the rows are sorted and digested), and every row
    # stored (on PostgreSQL, which stores while it validates, also the models' facts and the statistics).
    # The rest, up to `sync_s`, is the diff, `current`, the run's record and the commit.
    sync_validated_s: float | None = None
    sync_stored_s: float | None = None
    # The next sync (`next_listing` on top of the first), against a bare read of its own file.
    next_bare_read_s: float | None = None
    next_sync_s: float | None = None

    @property
    def ratio(self) -> float:
        return self.sync_s / self.bare_read_s

    @property
    def next_ratio(self) -> float | None:
        if self.next_sync_s is None or self.next_bare_read_s is None:
            return None
        return self.next_sync_s / self.next_bare_read_s


def next_listing(rows: int, seed: int) -> Iterator[CplRecord]:
    """`generate(rows, seed)` as a later CPL release might list it: every 200th version dropped, every 100th
    with its status changed, and a version added after every 200th (its key not listed before), about
    1.5 % of the rows. Lazily, as `generate` is: only the keys are held."""
    keys = {_key(record) for record in generate(rows, seed=seed)}
    for index, record in enumerate(generate(rows, seed=seed)):
        if index % 200 == 199:
            continue
        if index % 100 == 50:
            record = replace(record, status="Withdrawn" if record.status == "Active" else "Active")
        yield record
        if index % 200 == 100:
            added = replace(record, firmware_version=f"{(int(record.firmware_version, 16) + 1) % 2**32:08X}")
            if _key(added) not in keys:
                keys.add(_key(added))
                yield replace(added, image_hash=hashlib.sha256("/".join(_key(added)).encode()).hexdigest())


def _key(record: CplRecord) -> tuple[str, str, str, str]:
    return (record.manufacturer_id, record.model_id, record.hardware_version, record.firmware_version)


def _bare_read(path: str) -> float:
    from python_calamine import CalamineWorkbook

    start = time.perf_counter()
    sheet = CalamineWorkbook.from_path(path).get_sheet_by_name(SHEET_NAME)
    for _ in sheet.iter_rows():
        pass
    return time.perf_counter() - start


def _sync(path: str, database_url: str, work_dir: str) -> tuple[float, dict[str, float]]:
    """(the sync's seconds, {stage: seconds from its start at which the stage reported itself done})."""
    from cfl_graph import migrate
    from cfl_graph.database import Database
    from cfl_graph.scheduler import sync_library

    done: dict[str, float] = {}
    start = 0.0

    def progress(stage: str, count: int, total: int | None) -> None:
        if total is not None and count == total:
            done[stage] = time.perf_counter() - start

    async def run() -> float:
        nonlocal start
        db = Database.connect(database_url)
        await migrate.upgrade(db.engine)
        start = time.perf_counter()
        # As the service syncs: the library follows the snapshot (no image here, so one query).
        result = await sync_library(db, path, work_dir=Path(work_dir), trigger="bench", progress=progress)
        elapsed = time.perf_counter() - start
        await db.dispose()
        if result.outcome != "applied":
            raise SystemExit(f"sync did not apply: {result.outcome} {result.message}")
        return elapsed

    return asyncio.run(run()), done


class ChildRun(NamedTuple):
    seconds: float  # as the child measured its side
    peak_mb: float  # its peak RSS
    cpu_s: float  # the CPU seconds of the whole process
    stages: dict[str, float]  # the sync's stages (`_sync`); none for the bare read


def _child(args: list[str]) -> ChildRun:
    """Run one side in a fresh interpreter."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.cpl_sync", "--child", *args], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark child {args[0]} failed")
    reported = json.loads(output)
    return ChildRun(
        float(reported["seconds"]),
        usage.ru_maxrss / 1024,
        usage.ru_utime + usage.ru_stime,
        {stage: float(at) for stage, at in reported.get("stages", {}).items()},
    )


async def _postgres_admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _fresh_database(url: str | None, folder: Path) -> str:
    """An empty database for one measured sync: a new SQLite file, or a new database beside `url`."""
    if url is None:
        return f"sqlite+aiosqlite:///{folder}/bench.sqlite3"
    name = f"cfl_bench_{os.getpid()}_{folder.name.replace('-', '_')}"
    asyncio.run(_postgres_admin(url, f'CREATE DATABASE "{name}"'))
    return url.rsplit("/", 1)[0] + f"/{name}"


def _drop_database(admin_url: str | None, url: str) -> None:
    if admin_url is not None:
        name = url.rsplit("/", 1)[1]
        asyncio.run(_postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def measure(rows: int, database_url: str | None, seed: int = 1, repeats: int = 3) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="cfl-bench-") as tmp:
        folder = Path(tmp)
        path, next_path = folder / f"cpl-{rows}.xlsx", folder / f"cpl-{rows}-next.xlsx"
        write_xlsx(path, generate(rows, seed=seed))
        write_xlsx(next_path, next_listing(rows, seed))
        bare = [_child(["bare", str(path)]) for _ in range(repeats)]
        next_bare = [_child(["bare", str(next_path)]) for _ in range(repeats)]
        syncs, next_syncs = [], []
        for attempt in range(repeats):
            work = folder / f"work-{attempt}"
            work.mkdir()
            url = _fresh_database(database_url, work)
            try:
                syncs.append(_child(["sync", str(path), url, str(work)]))
                next_syncs.append(_child(["sync", str(next_path), url, str(work)]))
            finally:
                _drop_database(database_url, url)
        return measurement(rows, path, bare, syncs, next_bare, next_syncs)


def measurement(
    rows: int,
    path: Path,
    bare: list[ChildRun],
    syncs: list[ChildRun],
    next_bare: Sequence[ChildRun] = (),
    next_syncs: Sequence[ChildRun] = (),
) -> Measurement:
    """The best run of each side, and the highest peak of either."""
    best_bare, best_sync = min(bare, key=attrgetter("seconds")), min(syncs, key=attrgetter("seconds"))
    return Measurement(
        rows,
        path.stat().st_size / 1e6,
        best_bare.seconds,
        max(run.peak_mb for run in bare),
        best_sync.seconds,
        max(run.peak_mb for run in syncs),
        best_bare.cpu_s,
        best_sync.cpu_s,
        best_sync.stages.get("validate"),
        best_sync.stages.get("store"),
        min((run.seconds for run in next_bare), default=None),
        min((run.seconds for run in next_syncs), default=None),
    )


def _at(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f}"


def _ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        kind, *rest = argv[1:]
        if kind == "bare":
            print(json.dumps({"seconds": _bare_read(rest[0])}))
        else:
            seconds, stages = _sync(rest[0], rest[1], rest[2])
            print(json.dumps({"seconds": seconds, "stages": stages}))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.cpl_sync", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--database-url", help="postgresql+asyncpg://... (default: a fresh SQLite file)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for each side")
    args = parser.parse_args(argv)

    print(
        f"{'rows':>9} {'file MB':>8} {'bare read s':>12} {'sync s':>8} {'ratio':>6} {'sync peak MB':>13} "
        f"{'bare peak MB':>13} {'bare CPU s':>11} {'sync CPU s':>11} {'validated at':>13} {'stored at':>10} "
        f"{'next bare s':>12} {'next sync s':>12} {'next ratio':>11}"
    )
    results = []
    for rows in args.rows:
        m = measure(rows, args.database_url, repeats=args.repeats)
        results.append(m)
        print(
            f"{m.rows:>9,} {m.file_mb:>8.1f} {m.bare_read_s:>12.3f} {m.sync_s:>8.3f} {m.ratio:>5.2f}x "
            f"{m.sync_peak_mb:>13.0f} {m.bare_peak_mb:>13.0f} {m.bare_cpu_s:>11.2f} {m.sync_cpu_s:>11.2f} "
            f"{_at(m.sync_validated_s):>13} {_at(m.sync_stored_s):>10} {_at(m.next_bare_read_s):>12} "
            f"{_at(m.next_sync_s):>12} {_ratio(m.next_ratio):>11}",
            flush=True,
        )
    print(f"aim: ratio <= {AIM_RATIO}x, sync peak <= {AIM_PEAK_MB:.0f} MB at 100,000 rows")
    print("validated at / stored at: seconds into the best sync when every row was checked / stored")
    print("next: a list with 1.5 % of its rows moved, synced on top of the first (the diff included)")

    record = machine_record(
        "P1 cpl_sync",
        database="sqlite" if args.database_url is None else "postgresql",
        results=[
            {**asdict(m), "ratio": round(m.ratio, 3), "next_ratio": m.next_ratio and round(m.next_ratio, 3)}
            for m in results
        ],
    )
    write_record(record, f"cpl_sync-{record['database']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

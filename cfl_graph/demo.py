"""Demo data for `cfl-graph serve --demo`: two months of a realistic CPL, synchronised for real.

The files are made by `bench.datagen` (the same generator the benchmarks use) and go through the
ordinary sync pipeline, so the demo shows history and a diff exactly as production would.
"""

from __future__ import annotations

import datetime as dt
import logging

from bench.datagen import generate, write_xlsx
from cfl_graph.database import Database
from cfl_graph.scheduler import sync_limits
from cfl_graph.settings import Settings
from cpl_sync.snapshot import current_snapshot
from cpl_sync.sync import sync_cpl

log = logging.getLogger(__name__)

DEMO_ROWS = 3000
DEMO_SEED = 2016  # the year SECMP0009 asked for a central firmware library


async def prepare_demo(settings: Settings, db: Database) -> None:
    """Load the demo CPL unless a snapshot is already current (restarting the demo keeps its data)."""
    async with db.sessions() as session:
        if await current_snapshot(session) is not None:
            return
    folder = settings.work_dir / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    records = list(generate(DEMO_ROWS, seed=DEMO_SEED))
    newest = max(r.date_added for r in records)
    # Last quarter's list: what the CPL said before the most recent listings.
    cutoff = newest - dt.timedelta(days=90)
    earlier = folder / "cpl-previous-quarter.xlsx"
    latest = folder / "cpl-current.xlsx"
    write_xlsx(earlier, [r for r in records if r.date_added <= cutoff])
    write_xlsx(latest, records)
    for path in (earlier, latest):
        result = await sync_cpl(
            db, str(path), work_dir=settings.work_dir, limits=sync_limits(settings), trigger="demo"
        )
        log.info("demo CPL %s: %s, %s rows", path.name, result.outcome.value, result.row_count)

"""Demo data for `cfl-graph serve --demo`: two quarters of a realistic CPL, synchronised for real, and a
library of signed images for part of it (`library.py`).

The files are made by `cfl_graph.demo.cpl_data` (the same generator the benchmarks use) and go through the
ordinary sync pipeline, so the demo shows history and a diff exactly as production would.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from cfl_graph.access.parties import UnknownParty, add_party, find_party
from cfl_graph.access.tokens import issue_token
from cfl_graph.audit import Actor
from cfl_graph.blobs import BlobStore
from cfl_graph.catalogue.snapshots import current_snapshot
from cfl_graph.database import Database
from cfl_graph.demo.cpl_data import generate, write_xlsx
from cfl_graph.demo.library import demo_party_name, largest_manufacturer, load_demo_library
from cfl_graph.scheduler import sync_library, sync_limits
from cfl_graph.settings import Settings
from cfl_graph.tables import Role

log = logging.getLogger(__name__)

DEMO = Actor("demo")
DEMO_ROWS = 3000
DEMO_SEED = 2016  # the year SECMP0009 asked for a central firmware library


async def prepare_demo(settings: Settings, db: Database, store: BlobStore) -> Path:
    """Load the demo CPL and library (once) and issue fresh tokens for the demo parties; returns the
    tokens file."""
    async with db.sessions() as session:
        loaded = await current_snapshot(session) is not None
    if not loaded:
        await _load_cpl(settings, db)
    await load_demo_library(db, store)
    return await _issue_demo_tokens(settings, db)


async def _load_cpl(settings: Settings, db: Database) -> None:
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
        result = await sync_library(
            db, str(path), work_dir=settings.work_dir, limits=sync_limits(settings), trigger="demo"
        )
        log.info("demo CPL %s: %s, %s rows", path.name, result.outcome.value, result.row_count)


async def _issue_demo_tokens(settings: Settings, db: Database) -> Path:
    """One party per role (the manufacturer owns the demo CPL's manufacturer id with the most models).

    Tokens go to a file readable by its owner only, never to the log: a token in a log is a leak.
    """
    async with db.writes.begin() as session:
        biggest = await largest_manufacturer(session)
        parties = [
            ("Demo Supplier Energy Ltd", Role.SUPPLIER, ()),
            (demo_party_name(biggest[1]), Role.MANUFACTURER, (biggest[0],)),
            ("SEC Panel (demo)", Role.PANEL, ()),
            ("Library Operator (demo)", Role.ADMIN, ()),
        ]
        lines = []
        for name, role, manufacturer_ids in parties:
            try:
                party = await find_party(session, name)
            except UnknownParty:
                party = await add_party(session, name, role, actor=DEMO, manufacturer_ids=manufacturer_ids)
            issued = await issue_token(
                session, party, actor=DEMO, lifetime=dt.timedelta(days=30), description="demo"
            )
            lines.append(f"{role.value:<13} {name}\n              {issued.text}")
    path = settings.work_dir / "demo" / "tokens.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(
        "Demo API tokens (valid 30 days). Send one as `Authorization: Bearer <token>`.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    log.info("demo tokens for a supplier, a manufacturer, the panel and an admin are in %s", path)
    return path

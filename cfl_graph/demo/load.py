"""Demo data for `cfl-graph serve --demo`: a CPL published quarterly since the library opened, and what
manufacturers did with the library between the lists (`history.py`), played in the order it happened.

Every list goes through the ordinary sync pipeline and every upload, publication, declaration, pathway and
withdrawal through the library's own service, on a clock the demo moves forward (`cfl_graph.clock`): each
snapshot, image and audit event carries the day it happened in the story, as production would record it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cfl_graph import clock
from cfl_graph.access.parties import UnknownParty, add_party, find_party, operator_acting_for
from cfl_graph.access.tokens import issue_token
from cfl_graph.audit import Actor
from cfl_graph.blobs import BlobStore
from cfl_graph.catalogue.snapshots import current_snapshot
from cfl_graph.database import Database
from cfl_graph.demo import history
from cfl_graph.demo.cpl_data import generate, write_xlsx
from cfl_graph.demo.library import (
    demo_party_name,
    largest_manufacturer,
    register_manufacturers,
    upload_demo_image,
)
from cfl_graph.images.library import ImageLibrary
from cfl_graph.keys import VersionKey
from cfl_graph.scheduler import sync_library, sync_limits
from cfl_graph.settings import Settings
from cfl_graph.tables import Role

log = logging.getLogger(__name__)

DEMO = Actor("demo")
DEMO_ROWS = 3000
DEMO_SEED = 2016  # the year SECMP0009 asked for a central firmware library

# (what is being done, how many done, how many in all): the CLI draws it as a bar.
Progress = Callable[[str, int, int | None], None]
LISTS_STAGE = "CPL lists synchronised"
EVENTS_STAGE = "uploads, publications, declarations, pathways, withdrawals"


@dataclass(frozen=True)
class DemoLoaded:
    """What the demo holds, for its closing lines (counted by the story, not by reading it back)."""

    lists: int
    first_list: dt.date
    last_list: dt.date
    rows: int
    published: int
    declared: int
    pathways: int
    withdrawn: int
    held: int


async def prepare_demo(
    settings: Settings, db: Database, store: BlobStore, progress: Progress | None = None
) -> Path:
    """Load the demo's history (once) and issue fresh tokens for the demo parties; returns the tokens
    file."""
    async with db.sessions() as session:
        loaded = await current_snapshot(session) is not None
    if not loaded:
        await play_history(settings, db, store, progress)
    return await _issue_demo_tokens(settings, db)


def _no_progress(stage: str, done: int, total: int | None) -> None:
    pass


async def play_history(
    settings: Settings, db: Database, store: BlobStore, progress: Progress | None = None
) -> DemoLoaded:
    """Synchronise each quarterly list and do what the manufacturers did, in the order it happened."""
    show = progress or _no_progress
    folder = settings.work_dir / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    records = list(generate(DEMO_ROWS, seed=DEMO_SEED))
    biggest = max(
        sorted({r.manufacturer_id for r in records}),
        key=lambda m: len({(r.model_id, r.hardware_version) for r in records if r.manufacturer_id == m}),
    )
    story = history.plan(records, demo_manufacturer=biggest)
    events = story.events()
    library = ImageLibrary(db.sessions, store, max_image_bytes=16 * 1024 * 1024)
    images: dict[VersionKey, int] = {}
    held = 0
    done = {"published": 0, "declared": 0, "pathways": 0, "withdrawn": 0}
    with clock.set_to(events[0][0] - dt.timedelta(days=1)) as demo_clock:
        names = {r.manufacturer_id: r.manufacturer_name for r in records}
        await register_manufacturers(db, names)
        principals = {}
        async with db.sessions() as session:
            for manufacturer_id, name in names.items():
                party = await find_party(session, demo_party_name(name))
                principals[manufacturer_id] = await operator_acting_for(session, party)
        for number, (moment, _, event) in enumerate(events, 1):
            demo_clock.move_to(moment)
            if isinstance(event, int):
                day, rows = story.lists[event]
                path = folder / f"cpl-{day:%Y-%m-%d}.xlsx"
                write_xlsx(path, rows, published=day)
                result = await sync_library(
                    db, str(path), work_dir=settings.work_dir, limits=sync_limits(settings), trigger="demo"
                )
                if result.followed is not None:
                    held += len(result.followed.held)
                show(LISTS_STAGE, event + 1, len(story.lists))
            elif isinstance(event, history.Upload):
                key = event.publication.key
                image = await upload_demo_image(
                    library, principals[key.manufacturer_id], key, event.publication.model_name
                )
                images[key] = image.id
            elif isinstance(event, history.Publication):
                await library.publish(principals[event.key.manufacturer_id], images[event.key], actor=DEMO)
                done["published"] += 1
            elif isinstance(event, history.Declaration):
                await library.declare_commercial(
                    principals[event.key.manufacturer_id], event.key, history.COMMERCIAL_REASON
                )
                done["declared"] += 1
            elif isinstance(event, history.Pathway):
                await library.record_upgrade_pathway(
                    principals[event.model.manufacturer_id],
                    event.model,
                    event.model.firmware_version,
                    event.to_version,
                )
                done["pathways"] += 1
            elif isinstance(event, history.Withdrawal):
                await library.withdraw(
                    principals[event.key.manufacturer_id], images[event.key], history.WITHDRAWAL_REASON
                )
                done["withdrawn"] += 1
            show(EVENTS_STAGE, number, len(events))
    first, last = story.lists[0], story.lists[-1]
    return DemoLoaded(
        lists=len(story.lists),
        first_list=first[0],
        last_list=last[0],
        rows=len(last[1]),
        published=done["published"],
        declared=done["declared"],
        pathways=done["pathways"],
        withdrawn=done["withdrawn"],
        held=held,
    )


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


@dataclass(frozen=True)
class DemoFigures:
    """What the demo database holds, read back from it (the closing lines of `serve --demo`)."""

    snapshots: int
    rows: int
    images: dict[str, int]  # by state
    due: int  # certified, active, in-scope, not commercial
    available: int
    median_days: float | None
    late: int  # published more than LATE_AFTER_DAYS after listing

    @property
    def share(self) -> float:
        return self.available / self.due if self.due else 0.0


async def demo_figures(db: Database) -> DemoFigures:
    from sqlalchemy import func, select

    from cfl_graph.catalogue import reports
    from cfl_graph.tables import CplSnapshot, LibraryImage

    async with db.sessions() as session:
        snapshot = await current_snapshot(session)
        snapshots = int(await session.scalar(select(func.count()).select_from(CplSnapshot)) or 0)
        states = {
            str(state): int(count)
            for state, count in (
                await session.execute(select(LibraryImage.state, func.count()).group_by(LibraryImage.state))
            ).all()
        }
        if snapshot is None:
            return DemoFigures(snapshots, 0, states, 0, 0, None, 0)
        groups = await reports.coverage_summary(session, snapshot.id, reports.GroupBy.DEVICE_TYPE)
        overall = await reports.timeliness_overall(session, snapshot.id)
        delays, _ = await reports.publication_delays(session, snapshot.id, reports.GroupBy.DEVICE_TYPE, None)
    late = sum(1 for group in delays.values() for days in group if days > reports.LATE_AFTER_DAYS)
    return DemoFigures(
        snapshots=snapshots,
        rows=snapshot.row_count,
        images=states,
        due=sum(g.certified - g.commercial for g in groups),
        available=sum(g.available for g in groups),
        median_days=None if overall is None else overall.median_days,
        late=late,
    )

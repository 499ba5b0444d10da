"""Store a validated CPL as a new immutable snapshot and move `current` to it, in one transaction.

Either the whole snapshot is written and becomes current, or nothing of it is visible.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cfl_graph.catalogue.snapshots import current_snapshot
from cfl_graph.cpl_sync.diff import diff_counts
from cfl_graph.cpl_sync.validate import ProgressCallback, ValidCpl
from cfl_graph.database import bulk_insert, writer_of
from cfl_graph.identifiers import TechnicalSpecification
from cfl_graph.tables import CplCertifiedFirmware, CplCurrent, CplDeviceModel, CplSnapshot
from cfl_graph.tables.base import utc_now

BATCH_ROWS = 20_000
T = TypeVar("T")


@dataclass(frozen=True)
class Stored:
    snapshot: CplSnapshot
    created: bool  # False: the content equals the current snapshot's, and nothing was written


def _reported(rows: Iterator[T], total: int, progress: ProgressCallback | None) -> Iterator[T]:
    """The rows as they are read, with a "store" progress report every `BATCH_ROWS` of them."""
    if progress is None:
        yield from rows
        return
    written = 0
    for written, item in enumerate(rows, 1):
        yield item
        if written % BATCH_ROWS == 0:
            progress("store", written, total)
    if written % BATCH_ROWS:
        progress("store", written, total)


MODEL_COLUMNS = (
    "snapshot_id",
    "manufacturer_id",
    "model_id",
    "hardware_version",
    "manufacturer_name",
    "model_name",
    "device_type",
    "smets_version",
    "smets_versions",
    "firmware_count",
)
FIRMWARE_COLUMNS = (
    "snapshot_id",
    "manufacturer_id",
    "model_id",
    "hardware_version",
    "firmware_version",
    "image_hash",
    "status",
    "smets_version",
    "technical_specification",
    "specification_version",
    "gbcs_version",
    "cpa_reference",
    "cpa_expiry",
    "date_added",
    "sheet_row",
)


def _model_rows(snapshot_id: int, valid: ValidCpl) -> Iterator[tuple[Any, ...]]:
    for m in valid.device_models:
        yield (
            snapshot_id,
            m.manufacturer_id,
            m.model_id,
            m.hardware_version,
            m.manufacturer_name,
            m.model_name,
            m.device_type,
            m.smets_version,
            m.smets_versions,
            m.firmware_count,
        )


def _firmware_rows(snapshot_id: int, valid: ValidCpl) -> Iterator[tuple[Any, ...]]:
    """`(snapshot_id, *fw.content, fw.sheet_row)`, built without the intermediate tuple, and with each
    distinct specification's three columns worked out once."""
    specifications: dict[TechnicalSpecification, tuple[str, str, str | None]] = {}
    for fw in valid.firmware:
        spec = fw.specification
        if (columns := specifications.get(spec)) is None:
            columns = specifications[spec] = (spec.generation, spec.specification, spec.version)
        yield (
            snapshot_id,
            fw.manufacturer_id,
            fw.model_id,
            fw.hardware_version,
            fw.firmware_version,
            fw.image_hash,
            fw.status,
            *columns,
            fw.gbcs_version,
            fw.cpa_reference,
            fw.cpa_expiry,
            fw.date_added,
            fw.sheet_row,
        )


async def store_snapshot(
    sessions: async_sessionmaker[AsyncSession],
    valid: ValidCpl,
    *,
    source: str,
    content_sha256: str,
    progress: ProgressCallback | None = None,
    on_created: Callable[[AsyncSession, CplSnapshot], Awaitable[None]] | None = None,
) -> Stored:
    """Write `valid` as a new snapshot and make it current, unless it says what the current one says.

    `on_created` runs inside the same transaction once the snapshot is current (the sync records its
    outcome and audit event there, so they commit with it or not at all)."""
    async with writer_of(sessions).begin() as session:
        previous = await current_snapshot(session)
        if previous is not None and (
            previous.content_sha256 == content_sha256 or previous.rows_sha256 == valid.rows_sha256
        ):
            return Stored(previous, created=False)

        snapshot = CplSnapshot(
            source=source,
            content_sha256=content_sha256,
            rows_sha256=valid.rows_sha256,
            row_count=len(valid.firmware),
            device_model_count=len(valid.device_models),
            previous_id=previous.id if previous else None,
            added_count=len(valid.firmware),
            removed_count=0,
            changed_count=0,
        )
        session.add(snapshot)
        await session.flush()

        models = _model_rows(snapshot.id, valid)
        await bulk_insert(session, CplDeviceModel.__tablename__, MODEL_COLUMNS, models)
        await bulk_insert(
            session,
            CplCertifiedFirmware.__tablename__,
            FIRMWARE_COLUMNS,
            _reported(_firmware_rows(snapshot.id, valid), len(valid.firmware), progress),
        )

        if session.get_bind().dialect.name == "postgresql":
            # Statistics for the new rows, committed with them: without them the planner takes the new
            # snapshot for one row, and the diff below and the reports' joins run as nested loops (a
            # 100,000-row diff took 208 s instead of 13). ANALYZE samples this transaction's own rows.
            await session.execute(text("ANALYZE cpl_device_models, cpl_certified_firmware"))
        if previous is not None:
            counts = await diff_counts(session, previous.id, snapshot.id)
            snapshot.added_count, snapshot.removed_count, snapshot.changed_count = (
                counts.added,
                counts.removed,
                counts.changed,
            )
        now = utc_now()
        moved = await session.execute(
            update(CplCurrent).where(CplCurrent.id == 1).values(snapshot_id=snapshot.id, since=now)
        )
        if moved.rowcount == 0:  # type: ignore[attr-defined]
            session.add(CplCurrent(id=1, snapshot_id=snapshot.id, since=now))
        if on_created is not None:
            await on_created(session, snapshot)
        return Stored(snapshot, created=True)

"""The CPL side's snapshots: the library's synchronised copies of the Certified Products List, and
what changed between any two (R6)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import strawberry
from strawberry.types.nodes import SelectedField, Selection

from cfl_graph.access.policy import Action, authorise
from cfl_graph.catalogue.snapshots import recent_runs, recent_snapshots
from cfl_graph.doors.graph.context import Info
from cfl_graph.doors.graph.enums import CplStatus, DeviceType, SmetsVersion, TechnicalSpecification
from cfl_graph.doors.graph.node import BOTH, CPL, CPL_UNCACHED, Node, global_id, parse_global_id
from cfl_graph.errors import InvalidInput
from cfl_graph.identifiers import InvalidValue
from cfl_graph.row_ids import is_ascii_number, row_id
from cfl_graph.tables import CplSnapshot as CplSnapshotRow
from cfl_graph.tables import CplSyncRun as CplSyncRunRow
from cfl_graph.tables import SyncOutcome
from cpl_sync.diff import CplRow, diff_snapshots
from cpl_sync.problems import Severity

MAX_DIFF_ROWS = 500
DIFF_ROW_FIELDS = frozenset({"added", "removed", "changed"})


def selects_any(selections: Sequence[Selection], names: frozenset[str]) -> bool:
    """Whether any of `names` is among these selections, looking into fragments."""
    return not names.isdisjoint(selected_at(selections, ()))


def selects_path(selections: Sequence[Selection], path: Sequence[str]) -> bool:
    """Whether the selections reach down this path of fields (`edges`, `node`, `certifiedFirmware`),
    looking into fragments."""
    return path[-1] in selected_at(selections, path[:-1])


def selected_at(selections: Sequence[Selection], path: Sequence[str]) -> set[str]:
    """The names of the fields selected at the end of this path of fields, looking into fragments of any
    type condition and whatever their directives say: every field the request may read there, if not
    fewer."""
    found: set[str] = set()
    for selection in selections:
        if isinstance(selection, SelectedField):
            if not path:
                found.add(selection.name)
            elif selection.name == path[0]:
                found |= selected_at(selection.selections, path[1:])
        else:
            found |= selected_at(selection.selections, path)
    return found


@strawberry.type(description="A CPL row as a snapshot holds it (used in diffs).")
class CplListing:
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str
    manufacturer_name: str
    model_name: str
    device_type: DeviceType
    smets_version: SmetsVersion
    technical_specification: TechnicalSpecification
    specification_version: str | None = strawberry.field(
        description="That specification's version as the CPL lists it (`4.1` of `SMETS2 v4.1`); null where "
        "the CPL names the specification alone."
    )
    image_hash: str
    status: CplStatus
    gbcs_version: str | None
    listed_on: dt.date

    @classmethod
    def of(cls, row: CplRow) -> CplListing:
        return cls(
            manufacturer_id=row.manufacturer_id,
            model_id=row.model_id,
            hardware_version=row.hardware_version,
            firmware_version=row.firmware_version,
            manufacturer_name=row.manufacturer_name,
            model_name=row.model_name,
            device_type=DeviceType(row.device_type),
            smets_version=SmetsVersion(row.smets_version),
            technical_specification=TechnicalSpecification(row.technical_specification),
            specification_version=row.specification_version,
            image_hash=row.image_hash,
            status=CplStatus(row.status),
            gbcs_version=row.gbcs_version,
            listed_on=row.date_added,
        )


@strawberry.type
class FieldChange:
    field: str
    old: str | None
    new: str | None


@strawberry.type
class ChangedListing:
    before: CplListing
    after: CplListing
    fields: list[FieldChange]


@strawberry.type(description="What changed between two snapshots; each list holds at most `limit` rows.")
class SnapshotDiff:
    from_snapshot_id: int
    to_snapshot_id: int
    added_count: int
    removed_count: int
    changed_count: int
    added: list[CplListing]
    removed: list[CplListing]
    changed: list[ChangedListing]


@strawberry.type(description="An immutable copy of the CPL as one sync found it.")
class CplSnapshot(Node):
    snapshot_id: int
    created_at: dt.datetime
    source: str
    content_sha256: str = strawberry.field(description="SHA-256 of the file the snapshot was read from.")
    row_count: int = strawberry.field(description="Certified firmware versions (CPL rows).")
    device_model_count: int
    is_current: bool
    previous_snapshot_id: int | None

    @strawberry.federation.field(shareable=True, metadata=BOTH)
    def id(self) -> strawberry.ID:
        return global_id("CplSnapshot", self.snapshot_id)

    @classmethod
    def from_row(cls, row: CplSnapshotRow, current_id: int | None) -> CplSnapshot:
        return cls(
            snapshot_id=row.id,
            created_at=row.created_at,
            source=row.source,
            content_sha256=row.content_sha256,
            row_count=row.row_count,
            device_model_count=row.device_model_count,
            is_current=row.id == current_id,
            previous_snapshot_id=row.previous_id,
        )

    @strawberry.field(
        description="Rows added, removed and changed from `against` (default: the previous) to this."
    )
    async def diff(self, info: Info, against: int | None = None, limit: int = 100) -> SnapshotDiff | None:
        if not 0 <= limit <= MAX_DIFF_ROWS:
            raise InvalidInput(f"`limit` must be between 0 and {MAX_DIFF_ROWS}, not {limit}")
        older = self.previous_snapshot_id if against is None else against
        if older is None:
            return None
        if await info.context.loaders.cpl.snapshot.load(older) is None:
            raise InvalidInput(f"there is no snapshot {older}")
        if not any(selects_any(field.selections, DIFF_ROW_FIELDS) for field in info.selected_fields):
            limit = 0  # only counts asked: no comparison of the two snapshots' rows
        async with info.context.sessions() as session:
            found = await diff_snapshots(session, older, self.snapshot_id, limit=limit)
        return SnapshotDiff(
            from_snapshot_id=found.old_id,
            to_snapshot_id=found.new_id,
            added_count=found.counts.added,
            removed_count=found.counts.removed,
            changed_count=found.counts.changed,
            added=[CplListing.of(r) for r in found.added],
            removed=[CplListing.of(r) for r in found.removed],
            changed=[
                ChangedListing(
                    before=CplListing.of(c.old),
                    after=CplListing.of(c.new),
                    fields=[
                        FieldChange(
                            field=f.field,
                            old=None if f.old is None else str(f.old),
                            new=None if f.new is None else str(f.new),
                        )
                        for f in c.fields
                    ],
                )
                for c in found.changed
            ],
        )


def _snapshot_id(raw: str) -> int:
    """A snapshot's number, or its global id; anything else is refused, naming the argument."""
    if is_ascii_number(raw):
        try:
            return row_id(raw, "id: a snapshot's number")
        except InvalidValue as exc:
            raise InvalidInput(exc.reason) from None
    kind, parts = parse_global_id(raw)  # refuses what it did not issue, and checks a numbered kind's number
    if kind != "CplSnapshot" or len(parts) != 1:
        raise InvalidInput(f"id: snapshot ids are whole numbers or CplSnapshot global ids, not {raw[:40]!r}")
    return int(parts[0])


async def snapshot_by_id(info: Info, snapshot_id: int) -> CplSnapshot | None:
    loaders = info.context.loaders.cpl
    row = await loaders.snapshot.load(snapshot_id)
    return None if row is None else CplSnapshot.from_row(row, await loaders.current_snapshot_id())


strawberry.enum(SyncOutcome, description="How a CPL sync ended.")
strawberry.enum(
    Severity,
    name="ProblemSeverity",
    description="An error rejects a CPL file whole; a warning is applied and recorded.",
)


@strawberry.type(description="A problem a sync found in a CPL file, where a spreadsheet shows it.")
class CplFileProblem:
    row: int | None = strawberry.field(description="The sheet row; null for the file as a whole.")
    column: str | None = strawberry.field(description="The column's heading as the file writes it.")
    column_letter: str | None
    reason: str
    severity: Severity


@strawberry.type(description="One attempt to synchronise the CPL, and what came of it.")
class CplSyncRun:
    run_id: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    trigger: str
    source: str
    outcome: SyncOutcome
    snapshot_id: int | None
    row_count: int | None
    error_count: int
    warning_count: int
    images_held: int = strawberry.field(description="Published images the snapshot held.")
    images_released: int = strawberry.field(description="Held images the snapshot released.")
    message: str | None
    problems: list[CplFileProblem] = strawberry.field(
        description="The first errors and warnings, row by row (the counts are exact)."
    )

    @classmethod
    def from_row(cls, row: CplSyncRunRow) -> CplSyncRun:
        return cls(
            run_id=row.id,
            started_at=row.started_at,
            finished_at=row.finished_at,
            trigger=row.trigger,
            source=row.source,
            outcome=row.outcome,
            snapshot_id=row.snapshot_id,
            row_count=row.row_count,
            error_count=row.error_count,
            warning_count=row.warning_count,
            images_held=row.images_held,
            images_released=row.images_released,
            message=row.message,
            problems=[
                CplFileProblem(
                    row=p.get("row"),
                    column=p.get("column"),
                    column_letter=p.get("column_letter"),
                    reason=str(p.get("reason", "")),
                    severity=Severity(p.get("severity", "error")),
                )
                for p in row.problems
            ],
        )


@strawberry.type
class CplQuery:
    @strawberry.field(
        metadata=CPL,
        description="A CPL snapshot by id (number or global id); the current one when no id is given.",
    )
    async def cpl_snapshot(self, info: Info, id: strawberry.ID | None = None) -> CplSnapshot | None:
        authorise(info.context.principal, Action.READ_CATALOGUE)
        wanted = await info.context.loaders.cpl.current_snapshot_id() if id is None else _snapshot_id(str(id))
        return None if wanted is None else await snapshot_by_id(info, wanted)

    @strawberry.field(metadata=CPL, description="Snapshots, newest first.")
    async def cpl_snapshots(self, info: Info, first: int = 20) -> list[CplSnapshot]:
        authorise(info.context.principal, Action.READ_CATALOGUE)
        if not 0 <= first <= 500:
            raise InvalidInput(f"`first` must be between 0 and 500, not {first}")
        current = await info.context.loaders.cpl.current_snapshot_id()
        async with info.context.sessions() as session:
            rows = await recent_snapshots(session, first)
        return [CplSnapshot.from_row(row, current) for row in rows]

    @strawberry.field(
        metadata=CPL_UNCACHED,
        description="Sync runs, newest first: outcome, counts, and each error and warning by row.",
    )
    async def cpl_sync_runs(self, info: Info, first: int = 20) -> list[CplSyncRun]:
        authorise(info.context.principal, Action.READ_CATALOGUE)
        if not 0 <= first <= 500:
            raise InvalidInput(f"`first` must be between 0 and 500, not {first}")
        async with info.context.sessions() as session:
            rows = await recent_runs(session, first)
        return [CplSyncRun.from_row(row) for row in rows]

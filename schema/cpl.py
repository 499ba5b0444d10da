"""The CPL side of the graph: the library's synchronised copy of the Certified Products List."""

from __future__ import annotations

import datetime as dt

import strawberry

from cfl_graph.access.policy import Action, authorise
from cfl_graph.tables import CplSnapshot as CplSnapshotRow
from schema.context import Info


@strawberry.type(description="An immutable copy of the CPL as one sync found it.")
class CplSnapshot:
    id: strawberry.ID
    created_at: dt.datetime
    source: str
    content_sha256: str = strawberry.field(description="SHA-256 of the file the snapshot was read from.")
    row_count: int = strawberry.field(description="Certified firmware versions (CPL rows).")
    device_model_count: int
    is_current: bool

    @classmethod
    def from_row(cls, row: CplSnapshotRow, current_id: int | None) -> CplSnapshot:
        return cls(
            id=strawberry.ID(str(row.id)),
            created_at=row.created_at,
            source=row.source,
            content_sha256=row.content_sha256,
            row_count=row.row_count,
            device_model_count=row.device_model_count,
            is_current=row.id == current_id,
        )


def _snapshot_id(raw: strawberry.ID) -> int | None:
    return int(raw) if str(raw).isdigit() else None


@strawberry.type
class CplQuery:
    @strawberry.field(description="A CPL snapshot by id; the current one when no id is given.")
    async def cpl_snapshot(self, info: Info, id: strawberry.ID | None = None) -> CplSnapshot | None:
        authorise(info.context.principal, Action.READ_CATALOGUE)
        loaders = info.context.loaders.cpl
        current = await loaders.current_snapshot_id()
        wanted = current if id is None else _snapshot_id(id)
        if wanted is None:
            return None
        row = await loaders.snapshot.load(wanted)
        return None if row is None else CplSnapshot.from_row(row, current)

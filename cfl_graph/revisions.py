"""What every answer of the catalogue depends on, read in one statement: the current CPL snapshot and
the library's two counters; and the one place the library moves the counters.

A sync that applies a snapshot moves `cpl_current`; every write to the library's records bumps
`record_revision` in the same transaction, and a write that changes what every user sees (a
publication, a withdrawal, a declaration, a pathway) bumps `revision` too. So two requests that read
the same three values read the same catalogue, whichever worker answers them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph.tables import CatalogueRevision, CplCurrent
from cfl_graph.tables.base import utc_now


@dataclass(frozen=True)
class Revisions:
    snapshot_id: int | None  # the current CPL snapshot; None before the first sync
    served: int  # what every user sees: publications, withdrawals, declarations, pathways
    records: int  # every change to the library's records, drafts included


# Built once: every GraphQL request that reads the catalogue runs it, cached answers included.
_REVISIONS = select(
    select(CplCurrent.snapshot_id).scalar_subquery(),
    CatalogueRevision.revision,
    CatalogueRevision.record_revision,
).where(CatalogueRevision.id == 1)


async def read_revisions(session: AsyncSession) -> Revisions:
    row = (await session.execute(_REVISIONS)).one()
    return Revisions(snapshot_id=row[0], served=int(row[1]), records=int(row[2]))


async def bump(session: AsyncSession, *, served: bool) -> None:
    """Count a change to the library in the caller's transaction; `served`: every user sees it.

    Writers lock in one order, so that two of them never wait for each other: the rows they decide by
    (an image, a version's key, the current-snapshot pointer), then this counter, then the audit trail's
    head (`audit.record`), which every writer takes last."""
    values = {"record_revision": CatalogueRevision.record_revision + 1, "changed_at": utc_now()}
    if served:
        values["revision"] = CatalogueRevision.revision + 1
    await session.execute(update(CatalogueRevision).where(CatalogueRevision.id == 1).values(**values))

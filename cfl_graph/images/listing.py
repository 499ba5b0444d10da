"""The library's images as lists read them: the signed catalogue, the feeds, the home page, a
manufacturer's drafts and the operator's list. Who sees which states is the lifecycle's to say
(`lifecycle.LISTED`, `SERVED`, `own_drafts`); these are the reads, written once, that the doors call.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph.access.principal import Principal
from cfl_graph.identifiers import ManufacturerId
from cfl_graph.images import lifecycle
from cfl_graph.tables import ImageState, LibraryImage

FEED_ENTRIES = 100


@dataclass(frozen=True)
class FeedEntry:
    """The columns of one image that its entry shows, and no more."""

    id: int
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str
    state: ImageState
    size: int
    file_sha256: str
    manufacturer_image_sha256: str
    dcc_file_name: str
    release_notes_html: str | None
    release_notes_text: str | None
    published_at: dt.datetime
    withdrawn_at: dt.datetime | None
    withdrawal_reason: str | None
    held_at: dt.datetime | None
    hold_detail: str | None
    state_changed_at: dt.datetime

    @property
    def updated(self) -> dt.datetime:
        return self.state_changed_at

    @property
    def withdrawn(self) -> bool:
        return self.state == ImageState.WITHDRAWN

    @property
    def served(self) -> bool:
        return self.state in lifecycle.SERVED


_COLUMNS = (
    LibraryImage.id,
    LibraryImage.manufacturer_id,
    LibraryImage.model_id,
    LibraryImage.hardware_version,
    LibraryImage.firmware_version,
    LibraryImage.state,
    LibraryImage.size,
    LibraryImage.file_sha256,
    LibraryImage.manufacturer_image_sha256,
    LibraryImage.dcc_file_name,
    LibraryImage.release_notes_html,
    LibraryImage.release_notes_text,
    LibraryImage.published_at,
    LibraryImage.withdrawn_at,
    LibraryImage.withdrawal_reason,
    LibraryImage.held_at,
    LibraryImage.hold_detail,
    LibraryImage.state_changed_at,
)


async def feed_entries(
    session: AsyncSession, manufacturer_id: ManufacturerId | None = None, *, limit: int = FEED_ENTRIES
) -> list[FeedEntry]:
    """The newest listed images (published, held or withdrawn), most recently changed first, in one query."""
    query = (
        select(*_COLUMNS)
        .where(LibraryImage.state.in_(sorted(lifecycle.LISTED)))
        .order_by(LibraryImage.state_changed_at.desc(), LibraryImage.id.desc())
        .limit(limit)
    )
    if manufacturer_id is not None:
        query = query.where(LibraryImage.manufacturer_id == manufacturer_id)
    return [FeedEntry(**row._asdict()) for row in (await session.execute(query)).all()]


async def listed_images(session: AsyncSession) -> list[LibraryImage]:
    """Every image in the catalogue (published, held or withdrawn), by id: the signed catalogue's entries."""
    query = (
        select(LibraryImage).where(LibraryImage.state.in_(sorted(lifecycle.LISTED))).order_by(LibraryImage.id)
    )
    return list((await session.execute(query)).scalars())


async def served_count(session: AsyncSession) -> int:
    """How many images are served to every party that may download."""
    served = LibraryImage.state.in_(sorted(lifecycle.SERVED))
    return int(await session.scalar(select(func.count()).select_from(LibraryImage).where(served)) or 0)


async def latest_served(session: AsyncSession, limit: int) -> list[LibraryImage]:
    """The most recently published images that are served, newest first."""
    query = (
        select(LibraryImage)
        .where(LibraryImage.state.in_(sorted(lifecycle.SERVED)))
        .order_by(LibraryImage.published_at.desc(), LibraryImage.id.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def own_drafts(session: AsyncSession, principal: Principal, limit: int) -> list[LibraryImage]:
    """The principal's own drafts, newest first (the upload page lists them)."""
    query = (
        select(LibraryImage)
        .where(lifecycle.own_drafts(principal))
        .order_by(LibraryImage.id.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def recent_images(session: AsyncSession, state: ImageState | None, limit: int) -> list[LibraryImage]:
    """Every image, drafts included, newest first, perhaps of one state: the operator's list."""
    query = select(LibraryImage).order_by(LibraryImage.id.desc()).limit(limit)
    if state is not None:
        query = query.where(LibraryImage.state == state)
    return list((await session.execute(query)).scalars())

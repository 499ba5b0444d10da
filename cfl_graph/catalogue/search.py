"""Searching the catalogue: device models of the current CPL snapshot, filtered and paged.

Pages are keyset pages: the cursor is opaque (base64 of the sort key) and stable while rows are added.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import ColumnElement, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph import identifiers as ids
from cfl_graph.catalogue.coverage import version_is_gap
from cfl_graph.cursors import decode_cursor, encode_cursor
from cfl_graph.errors import InvalidInput, Problem
from cfl_graph.images.errors import LibraryProblem
from cfl_graph.keys import ModelKey
from cfl_graph.tables import CplCertifiedFirmware, CplDeviceModel

T = TypeVar("T")
MAX_PAGE = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[tuple[str, T]]  # (cursor, item)
    total: int
    has_next: bool
    has_previous: bool


def check_first(first: int) -> int:
    if not 0 <= first <= MAX_PAGE:
        raise InvalidInput(f"`first` must be between 0 and {MAX_PAGE}, not {first}")
    return first


@dataclass(frozen=True)
class DeviceModelFilter:
    manufacturer_id: str | None = None
    device_type: str | None = None
    smets_version: str | None = None
    has_coverage_gap: bool | None = None
    search: str | None = None

    def normalised(self) -> DeviceModelFilter:
        try:
            return DeviceModelFilter(
                manufacturer_id=None
                if self.manufacturer_id is None
                else ids.manufacturer_id(self.manufacturer_id),
                device_type=None if self.device_type is None else ids.device_type(self.device_type).value,
                smets_version=None
                if self.smets_version is None
                else ids.smets_version(self.smets_version).value,
                has_coverage_gap=self.has_coverage_gap,
                search=None if self.search is None else _search_text(self.search),
            )
        except ids.InvalidValue as exc:
            raise InvalidInput(f"filter: {exc}", [Problem(LibraryProblem.BAD_FIELD, str(exc))]) from None

    def conditions(self, versions: type[CplCertifiedFirmware] | None = None) -> list[ColumnElement[bool]]:
        """The filter over device models, or, given the certified-firmware table, over its versions."""
        found: list[ColumnElement[bool]] = []
        if self.manufacturer_id is not None:
            found.append(CplDeviceModel.manufacturer_id == self.manufacturer_id)
        if self.device_type is not None:
            found.append(CplDeviceModel.device_type == self.device_type)
        if self.smets_version is not None:
            # A model matches when any of its versions was certified against that generation; a list of
            # versions (the gaps) narrows to the versions themselves.
            if versions is None:
                found.append(CplDeviceModel.smets_versions.contains(self.smets_version))
            else:
                found.append(versions.smets_version == self.smets_version)
        if self.search:
            pattern = f"%{_escape_like(self.search.lower())}%"
            found.append(
                or_(
                    func.lower(CplDeviceModel.model_name).like(pattern, escape="\\"),
                    func.lower(CplDeviceModel.manufacturer_name).like(pattern, escape="\\"),
                    CplDeviceModel.model_id == self.search.upper(),
                    CplDeviceModel.manufacturer_id == self.search.upper(),
                )
            )
        if self.has_coverage_gap is not None:
            gap = (
                select(CplCertifiedFirmware.firmware_version)
                .where(
                    CplCertifiedFirmware.snapshot_id == CplDeviceModel.snapshot_id,
                    CplCertifiedFirmware.manufacturer_id == CplDeviceModel.manufacturer_id,
                    CplCertifiedFirmware.model_id == CplDeviceModel.model_id,
                    CplCertifiedFirmware.hardware_version == CplDeviceModel.hardware_version,
                    version_is_gap(),
                )
                .exists()
            )
            found.append(gap if self.has_coverage_gap else ~gap)
        return found


def _search_text(text: str) -> str:
    clean = " ".join(text.split())
    if len(clean) > 100:
        raise ids.InvalidValue("search text is at most 100 characters")
    # A NUL would reach PostgreSQL, which cannot hold one in text; no name holds any control character.
    if found := ids.control_character(clean):
        raise ids.InvalidValue(f"search text contains the control character {found}")
    return clean


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def device_models(
    session: AsyncSession, snapshot_id: int, where: DeviceModelFilter, first: int, after: str | None
) -> Page[CplDeviceModel]:
    """A page of the current snapshot's device models in key order, with the filter's total."""
    check_first(first)
    conditions = [CplDeviceModel.snapshot_id == snapshot_id, *where.normalised().conditions()]
    key = tuple_(CplDeviceModel.manufacturer_id, CplDeviceModel.model_id, CplDeviceModel.hardware_version)
    total = int(
        await session.scalar(select(func.count()).select_from(CplDeviceModel).where(*conditions)) or 0
    )
    query = select(CplDeviceModel).where(*conditions)
    if after is not None:
        query = query.where(key > tuple_(*decode_cursor("DeviceModel", after, 3)))
    rows = list(
        (
            await session.execute(
                query.order_by(
                    CplDeviceModel.manufacturer_id, CplDeviceModel.model_id, CplDeviceModel.hardware_version
                ).limit(first + 1)
            )
        ).scalars()
    )
    items = [
        (encode_cursor("DeviceModel", [r.manufacturer_id, r.model_id, r.hardware_version]), r)
        for r in rows[:first]
    ]
    return Page(items=items, total=total, has_next=len(rows) > first, has_previous=after is not None)


async def model_names(
    session: AsyncSession, snapshot_id: int | None, keys: Iterable[ModelKey]
) -> dict[ModelKey, CplDeviceModel]:
    """The snapshot's device models for `keys` (one statement), so pages show names beside hex ids; a
    key the snapshot does not list is absent."""
    wanted = list(dict.fromkeys(keys))
    if snapshot_id is None:
        return {}
    # Asked even for no keys, so that a page costs the same statements whatever it shows.
    rows = (
        await session.execute(
            select(CplDeviceModel).where(
                CplDeviceModel.snapshot_id == snapshot_id,
                tuple_(
                    CplDeviceModel.manufacturer_id, CplDeviceModel.model_id, CplDeviceModel.hardware_version
                ).in_(wanted),
            )
        )
    ).scalars()
    return {ModelKey.of(row): row for row in rows}

"""Searching the catalogue: device models of the current CPL snapshot, and the coverage rule.

A **coverage gap** is a certified version that is active on the current CPL, of an in-scope device type
(ESME, GSME, PPMID, HCALCS), not declared commercial, with no published image in the library (a
withdrawn or held image leaves the gap open). The rule is written once, twice over: `version_is_gap`
as SQL (the `hasCoverageGap` filter, the gap list and the reports) and `availability` for one version
in hand (the pages); a test holds the two to the same answers.

Pages are keyset pages: the cursor is opaque (base64 of the sort key) and stable while rows are added.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph import identifiers as ids
from cfl_graph.cursors import decode_cursor, encode_cursor
from cfl_graph.identifiers import LIBRARY_DEVICE_TYPES, CplStatus
from cfl_graph.images.errors import InvalidInput, LibraryProblem, Problem
from cfl_graph.tables import (
    CommercialDeclaration,
    CplCertifiedFirmware,
    CplDeviceModel,
    ImageState,
    LibraryImage,
)

T = TypeVar("T")
MAX_PAGE = 500
IN_SCOPE = sorted(t.value for t in LIBRARY_DEVICE_TYPES)


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


class Availability(StrEnum):
    """What the library offers for one certified version, as every door shows it."""

    AVAILABLE = "available"  # a published image is served
    COMMERCIAL = "commercial"  # declared commercial: listed, never distributed, not due
    NOT_ACTIVE = "not active"  # the CPL lists it as withdrawn, suspended or expired: not due
    OUT_OF_SCOPE = "out of scope"  # a device type outside the library (CHF, GPF): not due
    HELD = "held"  # a gap: its image is held, as the CPL no longer certifies it as it is
    WITHDRAWN = "withdrawn"  # a gap: its image was withdrawn
    MISSING = "missing"  # a gap: no image, or a draft only

    @property
    def is_gap(self) -> bool:
        return self in GAPS

    @property
    def is_due(self) -> bool:
        """Counted in coverage: active, in scope, not commercial (available or a gap)."""
        return self is Availability.AVAILABLE or self.is_gap


GAPS = frozenset({Availability.HELD, Availability.WITHDRAWN, Availability.MISSING})


def availability(status: str, device_type: str, image_state: str | None, *, declared: bool) -> Availability:
    """The coverage rule for one version in hand: its CPL status, its model's device type, its image's
    state (None without one) and whether it is declared commercial. `version_is_gap` is the same rule."""
    if declared:
        return Availability.COMMERCIAL
    if image_state == ImageState.PUBLISHED:
        return Availability.AVAILABLE
    if status != CplStatus.ACTIVE.value:
        return Availability.NOT_ACTIVE
    if device_type not in IN_SCOPE:
        return Availability.OUT_OF_SCOPE
    if image_state == ImageState.HELD:
        return Availability.HELD
    if image_state == ImageState.WITHDRAWN:
        return Availability.WITHDRAWN
    return Availability.MISSING


def version_is_gap(cf: type[CplCertifiedFirmware] = CplCertifiedFirmware) -> ColumnElement[bool]:
    """The coverage-gap rule for a certified-firmware row (joined to its device model)."""
    return and_(
        cf.status == CplStatus.ACTIVE.value,
        CplDeviceModel.device_type.in_(IN_SCOPE),
        ~exists().where(
            CommercialDeclaration.manufacturer_id == cf.manufacturer_id,
            CommercialDeclaration.model_id == cf.model_id,
            CommercialDeclaration.hardware_version == cf.hardware_version,
            CommercialDeclaration.firmware_version == cf.firmware_version,
        ),
        ~exists().where(
            LibraryImage.manufacturer_id == cf.manufacturer_id,
            LibraryImage.model_id == cf.model_id,
            LibraryImage.hardware_version == cf.hardware_version,
            LibraryImage.firmware_version == cf.firmware_version,
            LibraryImage.state == ImageState.PUBLISHED.value,
        ),
    )


def image_version_join(snapshot_id: int) -> ColumnElement[bool]:
    """Join a library image to its version's row in snapshot `snapshot_id`."""
    cf = CplCertifiedFirmware
    return and_(
        cf.snapshot_id == snapshot_id,
        cf.manufacturer_id == LibraryImage.manufacturer_id,
        cf.model_id == LibraryImage.model_id,
        cf.hardware_version == LibraryImage.hardware_version,
        cf.firmware_version == LibraryImage.firmware_version,
    )


def model_join() -> ColumnElement[bool]:
    return and_(
        CplDeviceModel.snapshot_id == CplCertifiedFirmware.snapshot_id,
        CplDeviceModel.manufacturer_id == CplCertifiedFirmware.manufacturer_id,
        CplDeviceModel.model_id == CplCertifiedFirmware.model_id,
        CplDeviceModel.hardware_version == CplCertifiedFirmware.hardware_version,
    )


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

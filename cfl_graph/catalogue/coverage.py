"""The coverage rule: which certified versions the library must offer, and whether it does.

A **coverage gap** is a certified version that is active on the current CPL, of an in-scope device type
(ESME, GSME, PPMID, HCALCS), not declared commercial, with no published image in the library (a
withdrawn or held image leaves the gap open). The rule is written once, twice over: `version_is_gap`
as SQL (the `hasCoverageGap` filter, the gap list and the reports) and `availability` for one version
in hand (the pages); a test holds the two to the same answers.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import ColumnElement, and_, exists

from cfl_graph.identifiers import LIBRARY_DEVICE_TYPES, CplStatus
from cfl_graph.tables import (
    CommercialDeclaration,
    CplCertifiedFirmware,
    CplDeviceModel,
    ImageState,
    LibraryImage,
)

IN_SCOPE = sorted(t.value for t in LIBRARY_DEVICE_TYPES)


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
            LibraryImage.state == ImageState.PUBLISHED,
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

"""Upgrade planning (issue 19): the fewest recorded pathways from a device's version to the newest version
a supplier may install, or the step that blocks every route (commercial, held, withdrawn, not active,
no image) or the want of any pathway."""

from __future__ import annotations

import pytest

from cfl_graph.catalogue.upgrades import Blocker, UpgradePlan, plan_upgrade
from cfl_graph.errors import InvalidInput
from cfl_graph.tables import (
    CommercialDeclaration,
    CplCertifiedFirmware,
    ImageState,
    LibraryImage,
    UpgradePathway,
)

MODEL = {"manufacturer_id": "10B2", "model_id": "0001", "hardware_version": "0100"}
V1, V2, V3, V4 = "01000000", "02000000", "03000000", "04000000"


def listed(version: str, status: str = "active") -> CplCertifiedFirmware:
    return CplCertifiedFirmware(**MODEL, firmware_version=version, status=status)


def image(version: str, state: ImageState = ImageState.PUBLISHED, number: int = 0) -> LibraryImage:
    return LibraryImage(
        **MODEL,
        id=number or int(version[:2], 16),
        firmware_version=version,
        state=state,
        hold_detail="the CPL lists another hash",
        withdrawal_reason="bricks meters",
    )


def path(start: str, end: str) -> UpgradePathway:
    return UpgradePathway(**MODEL, from_version=start, to_version=end)


def plan(
    start: str,
    certified: list[CplCertifiedFirmware],
    images: list[LibraryImage],
    pathways: list[UpgradePathway],
    declared: tuple[str, ...] = (),
) -> UpgradePlan:
    declarations = [CommercialDeclaration(**MODEL, firmware_version=v) for v in declared]
    return plan_upgrade(start, "ESME", certified, images, declarations, pathways)


EVERYTHING = [listed(v) for v in (V1, V2, V3, V4)]


def test_the_fewest_pathways_to_the_newest_installable_version_with_each_steps_image() -> None:
    found = plan(
        V1,
        EVERYTHING,
        [image(v) for v in (V1, V2, V3, V4)],
        [path(V1, V2), path(V2, V3), path(V3, V4), path(V2, V4)],
    )
    assert found.blocked is None and found.target_version == V4
    assert [(s.from_version, s.to_version, s.image.firmware_version) for s in found.steps] == [
        (V1, V2, V2),
        (V2, V4, V4),
    ]


def test_a_route_around_a_version_that_may_not_be_installed_is_taken() -> None:
    images = [image(V1), image(V2), image(V3, ImageState.HELD), image(V4)]
    found = plan(V1, EVERYTHING, images, [path(V1, V3), path(V3, V4), path(V1, V2), path(V2, V4)])
    assert [s.to_version for s in found.steps] == [V2, V4]


@pytest.mark.parametrize(
    ("blocker", "certified", "images", "declared", "said"),
    [
        (Blocker.COMMERCIAL, EVERYTHING, [image(V1), image(V3)], (V2,), "declared commercial"),
        (Blocker.HELD, EVERYTHING, [image(V1), image(V2, ImageState.HELD), image(V3)], (), "held"),
        (
            Blocker.WITHDRAWN,
            EVERYTHING,
            [image(V1), image(V2, ImageState.WITHDRAWN), image(V3)],
            (),
            "withdrawn",
        ),
        (Blocker.NO_IMAGE, EVERYTHING, [image(V1), image(V3)], (), "no published image"),
        (
            Blocker.NOT_ACTIVE,
            [listed(V1), listed(V2, "suspended"), listed(V3)],
            [image(V1), image(V3)],
            (),
            "suspended",
        ),
        (Blocker.NOT_ON_CPL, [listed(V1), listed(V3)], [image(V1), image(V3)], (), "does not list"),
    ],
)
def test_a_blocked_route_names_its_step_and_why(
    blocker: Blocker,
    certified: list[CplCertifiedFirmware],
    images: list[LibraryImage],
    declared: tuple[str, ...],
    said: str,
) -> None:
    found = plan(V1, certified, images, [path(V1, V2), path(V2, V3)], declared)
    assert (found.blocked, found.blocked_at, found.target_version, found.steps) == (blocker, V2, V3, [])
    assert said in found.detail


def test_no_pathway_up_to_date_and_nothing_installable_are_said_as_such() -> None:
    images = [image(v) for v in (V1, V2, V3)]
    assert plan(V1, EVERYTHING[:3], images, [path(V1, V2)]).blocked is Blocker.NO_PATHWAY
    assert plan(V3, EVERYTHING[:3], images, []).blocked is Blocker.UP_TO_DATE
    assert plan(V4, EVERYTHING[:3], images, []).blocked is Blocker.UP_TO_DATE  # a later build than any listed
    assert plan(V1, EVERYTHING, [], []).blocked is Blocker.NO_NEWER_VERSION


@pytest.mark.parametrize("start", ["", "1.2.3", "zz000000", "010000000"])
def test_the_installed_version_is_read_as_the_cpl_reads_one_or_refused_saying_what_it_takes(
    start: str,
) -> None:
    with pytest.raises(InvalidInput, match=r"^from: "):
        plan(start, EVERYTHING, [], [])
    assert plan("1.0.0.0", EVERYTHING, [image(V2)], [path(V1, V2)]).from_version == V1

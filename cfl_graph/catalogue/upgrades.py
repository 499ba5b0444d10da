"""Upgrade planning: from the firmware a device has, the shortest run of recorded upgrade pathways to the
newest version a supplier may install (non-commercial, published, active on the CPL), or why there is
none (a step that is commercial, held, withdrawn, not active, without an image, or no pathway at all).

A plan is worked out from one device model's facts in hand (its certified versions on the current CPL,
its images, its declarations and its pathways), which the graph's loaders and the page already hold, so
planning costs no statement of its own.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cfl_graph import identifiers as ids
from cfl_graph.catalogue.coverage import Availability, availability
from cfl_graph.errors import InvalidInput, Problem
from cfl_graph.images.errors import LibraryProblem
from cfl_graph.keys import VersionKey
from cfl_graph.tables import ImageState, UpgradePathway
from cfl_graph.tables.rows import CertifiedRow, DeclarationRow, ImageRow


class Blocker(StrEnum):
    """Why no plan reaches the newest installable version."""

    UP_TO_DATE = "UP_TO_DATE"  # the device has the newest installable version, or a later one
    NO_NEWER_VERSION = "NO_NEWER_VERSION"  # no version of the model may be installed
    NO_PATHWAY = "NO_PATHWAY"  # no recorded pathways lead from the device's version to it
    COMMERCIAL = "COMMERCIAL"  # a step's version is declared commercial: never distributed
    HELD = "HELD"  # a step's image is held: the CPL no longer certifies it as it is
    WITHDRAWN = "WITHDRAWN"  # a step's image was withdrawn by its manufacturer
    NOT_ACTIVE = "NOT_ACTIVE"  # the CPL lists a step's version as withdrawn, suspended or expired
    NO_IMAGE = "NO_IMAGE"  # a step's version has no published image in the library
    NOT_ON_CPL = "NOT_ON_CPL"  # the current CPL does not list a step's version


@dataclass(frozen=True)
class UpgradeStep:
    from_version: str
    to_version: str
    image: ImageRow  # published: its bytes and release notes


@dataclass(frozen=True)
class UpgradePlan:
    from_version: str
    target_version: str | None  # the newest version the device may be taken to
    steps: list[UpgradeStep]  # empty when blocked or up to date
    blocked: Blocker | None
    blocked_at: str | None  # the version a blocking step goes to
    detail: str


@dataclass(frozen=True)
class _Version:
    certified: CertifiedRow | None
    image: ImageRow | None
    declared: bool

    def standing(self, device_type: str) -> Availability | None:
        if self.certified is None:
            return None
        state = None if self.image is None else self.image.state
        return availability(self.certified.status, device_type, state, declared=self.declared)


def installed_version(raw: str) -> str:
    """The `from` version as a door receives it, read like the CPL's (8 hex digits, or dotted)."""
    try:
        return ids.firmware_version(raw)
    except ids.InvalidValue as exc:
        raise InvalidInput(f"from: {exc}", [Problem(LibraryProblem.BAD_FIELD, f"from: {exc}")]) from None


def plan_upgrade(
    from_version: str,
    device_type: str,
    certified: Sequence[CertifiedRow],
    images: Iterable[ImageRow],
    declarations: Iterable[DeclarationRow],
    pathways: Iterable[UpgradePathway],
) -> UpgradePlan:
    """The plan for one device model, from its facts (all of the same model)."""
    start = installed_version(from_version)
    by_image = {VersionKey.of(i).firmware_version: i for i in images}
    declared = {VersionKey.of(d).firmware_version for d in declarations}
    versions = {
        row.firmware_version: _Version(
            row, by_image.get(row.firmware_version), row.firmware_version in declared
        )
        for row in certified
    }
    installable = sorted(
        (v for v, facts in versions.items() if _installable(facts, device_type)), key=_number, reverse=True
    )
    newest = installable[0] if installable else None
    if newest is None:
        detail = "no version of this model may be installed (none is non-commercial, published and active)"
        return UpgradePlan(start, None, [], Blocker.NO_NEWER_VERSION, None, detail)
    if _number(newest) <= _number(start):
        detail = f"{start} is already the newest version that may be installed ({newest}), or later"
        return UpgradePlan(start, newest, [], Blocker.UP_TO_DATE, None, detail)
    edges: dict[str, list[str]] = {}
    for pathway in pathways:
        edges.setdefault(pathway.from_version, []).append(pathway.to_version)
    usable = _shortest(start, newest, edges, lambda v: _installable(versions.get(v), device_type))
    if usable is not None:
        steps = []
        for before, after in itertools.pairwise(usable):
            image = versions[after].image
            assert image is not None  # installable: published
            steps.append(UpgradeStep(before, after, image))
        return UpgradePlan(start, newest, steps, None, None, f"{len(steps)} step(s) from {start} to {newest}")
    # No installable route: the shortest recorded one says which step blocks it.
    anyhow = _shortest(start, newest, edges, lambda v: True)
    if anyhow is None:
        return UpgradePlan(
            start,
            newest,
            [],
            Blocker.NO_PATHWAY,
            None,
            f"no recorded upgrade pathways lead from {start} to {newest}",
        )
    for version in anyhow[1:]:
        facts = versions.get(version)
        if not _installable(facts, device_type):
            kind, why = _why_not(version, facts, device_type)
            return UpgradePlan(start, newest, [], kind, version, why)
    raise AssertionError("an uninstallable route has an uninstallable step")  # pragma: no cover


def _number(version: str) -> int:
    return int(version, 16)


def _installable(facts: _Version | None, device_type: str) -> bool:
    return (
        facts is not None
        and facts.standing(device_type) is Availability.AVAILABLE
        and (facts.image is not None and facts.image.state == ImageState.PUBLISHED)
    )


def _shortest(
    start: str, goal: str, edges: dict[str, list[str]], allowed: Callable[[str], bool]
) -> list[str] | None:
    """Fewest pathways from `start` to `goal` through versions `allowed` says may be passed (breadth
    first; among routes as short, the one through lower versions first, so the answer is stable)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        version = queue.popleft()
        if version == goal:
            route = [goal]
            while route[-1] != start:
                route.append(came_from[route[-1]])
            return route[::-1]
        for after in sorted(edges.get(version, []), key=_number):
            if after not in seen and allowed(after):
                seen.add(after)
                came_from[after] = version
                queue.append(after)
    return None


def _why_not(version: str, facts: _Version | None, device_type: str) -> tuple[Blocker, str]:
    if facts is None:
        return Blocker.NOT_ON_CPL, f"the current CPL does not list {version}"
    standing = facts.standing(device_type)
    image = facts.image
    if standing is Availability.COMMERCIAL:
        return Blocker.COMMERCIAL, f"{version} is declared commercial: listed, never distributed"
    if standing is Availability.NOT_ACTIVE:
        status = facts.certified.status if facts.certified is not None else "not active"
        return Blocker.NOT_ACTIVE, f"the CPL lists {version} as {status}"
    if image is not None and image.state == ImageState.HELD:
        return Blocker.HELD, f"image {image.id} of {version} is held: {image.hold_detail}"
    if image is not None and image.state == ImageState.WITHDRAWN:
        return Blocker.WITHDRAWN, f"image {image.id} of {version} was withdrawn: {image.withdrawal_reason}"
    return Blocker.NO_IMAGE, f"{version} has no published image in the library"

"""The Panel's and suppliers' reports (R7, R12): coverage gaps, coverage by group, consistency of a
manufacturer's CFL listing with its CPL listing, and timeliness of publication.

Each report is one or two statements over the current CPL snapshot and the library tables; GraphQL,
the CSV/XLSX exports and the web pages all call these functions, so they cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from cfl_graph import clock
from cfl_graph.catalogue.coverage import IN_SCOPE, image_version_join, model_join, version_is_gap
from cfl_graph.catalogue.search import DeviceModelFilter, Page, check_first
from cfl_graph.cursors import decode_cursor, encode_cursor
from cfl_graph.errors import InvalidInput
from cfl_graph.identifiers import CplStatus, specification_text
from cfl_graph.keys import ModelKey
from cfl_graph.tables import (
    CommercialDeclaration,
    CplCertifiedFirmware,
    CplDeviceModel,
    CplSnapshot,
    ImageState,
    LibraryImage,
)
from cfl_graph.tables.base import UtcDateTime

# A version published more than this long after its CPL listing is a late publication (R7).
LATE_AFTER_DAYS = 30


class GroupBy(StrEnum):
    MANUFACTURER = "MANUFACTURER"
    DEVICE_TYPE = "DEVICE_TYPE"
    SMETS_VERSION = "SMETS_VERSION"


class FindingKind(StrEnum):
    MISSING_IMAGE = "MISSING_IMAGE"
    HASH_MISMATCH = "HASH_MISMATCH"
    DELISTED_FROM_CPL = "DELISTED_FROM_CPL"
    NOT_ON_CPL = "NOT_ON_CPL"
    LATE_PUBLICATION = "LATE_PUBLICATION"


@dataclass(frozen=True)
class Gap:
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str
    listed_on: dt.date
    days_missing: int
    specification: str  # what the CPL's SMETS/CHTS column says of the version (`SMETS2 v4.1`)


@dataclass(frozen=True)
class CoverageGroup:
    key: str
    label: str
    certified: int  # active, in-scope certified versions
    commercial: int
    available: int  # with a published image
    missing: int

    @property
    def coverage(self) -> float | None:
        """Available over what should be available (certified, less commercial); None if nothing should."""
        expected = self.certified - self.commercial
        return None if expected == 0 else self.available / expected


class Finding(NamedTuple):
    """A disagreement at one version (a tuple: a big manufacturer's report makes tens of thousands)."""

    kind: FindingKind
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str
    detail: str
    image_id: int | None = None


@dataclass(frozen=True)
class TimelinessGroup:
    key: str
    label: str
    published: int
    median_days: float
    p90_days: float
    worst_days: int


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


async def coverage_gaps(
    session: AsyncSession,
    snapshot_id: int,
    where: DeviceModelFilter,
    first: int,
    after: str | None,
    *,
    today: dt.date | None = None,
    count: bool = True,
) -> Page[Gap]:
    """Gaps, longest missing first (then by key); the filter narrows the device models.

    `count=False` skips the total (reported as -1) for callers walking every page, who know it already."""
    check_first(first)
    today = today or _today()
    cf = CplCertifiedFirmware
    model_conditions = where.normalised().conditions(cf)
    base = (
        select(
            cf.manufacturer_id,
            cf.model_id,
            cf.hardware_version,
            cf.firmware_version,
            cf.date_added,
            cf.technical_specification,
            cf.specification_version,
        )
        .select_from(cf)
        .join(CplDeviceModel, model_join())
        .where(cf.snapshot_id == snapshot_id, version_is_gap(), *model_conditions)
    )
    total = -1
    if count:
        total = int(await session.scalar(select(func.count()).select_from(base.subquery())) or 0)
    order = (cf.date_added, cf.manufacturer_id, cf.model_id, cf.hardware_version, cf.firmware_version)
    query = base
    if after is not None:
        values = decode_cursor("Gap", after, 5)
        values[0] = dt.date.fromisoformat(values[0])
        query = query.where(tuple_(*order) > tuple_(*values))
    rows = (await session.execute(query.order_by(*order).limit(first + 1))).all()
    gaps = [
        Gap(mid, model, hardware, firmware, listed, (today - listed).days, specification_text(spec, version))
        for mid, model, hardware, firmware, listed, spec, version in rows[:first]
    ]
    return Page(gaps, gap_cursor, total, has_next=len(rows) > first, has_previous=after is not None)


def gap_cursor(gap: Gap) -> str:
    """The cursor that asks for the gaps after this one (`coverage_gaps`' `after`)."""
    return encode_cursor(
        "Gap",
        [
            gap.listed_on.isoformat(),
            gap.manufacturer_id,
            gap.model_id,
            gap.hardware_version,
            gap.firmware_version,
        ],
    )


def _group_column(group_by: GroupBy) -> tuple[Any, Any]:
    if group_by is GroupBy.MANUFACTURER:
        return CplDeviceModel.manufacturer_id, func.max(CplDeviceModel.manufacturer_name)
    if group_by is GroupBy.DEVICE_TYPE:
        return CplDeviceModel.device_type, CplDeviceModel.device_type
    # The generation each version was certified against, not its model's.
    return CplCertifiedFirmware.smets_version, CplCertifiedFirmware.smets_version


async def coverage_summary(session: AsyncSession, snapshot_id: int, group_by: GroupBy) -> list[CoverageGroup]:
    """Per group: active in-scope certified versions, how many are commercial, available, missing."""
    key, label = _group_column(group_by)
    return await _coverage(session, snapshot_id, [key], label)


async def coverage_by_model(
    session: AsyncSession, snapshot_id: int, manufacturer_id: str
) -> dict[ModelKey, CoverageGroup]:
    """The same counts per device model of one manufacturer (keyed by model key; models with nothing
    due, such as a comms hub's, are absent)."""
    keys = [CplDeviceModel.manufacturer_id, CplDeviceModel.model_id, CplDeviceModel.hardware_version]
    groups = await _coverage(
        session,
        snapshot_id,
        keys,
        func.max(CplDeviceModel.model_name),
        CplDeviceModel.manufacturer_id == manufacturer_id,
    )
    found = {}
    for group in groups:
        manufacturer, model, hardware = group.key.split("/")
        found[ModelKey(manufacturer, model, hardware)] = group
    return found


async def _coverage(
    session: AsyncSession,
    snapshot_id: int,
    keys: list[Any],
    label: Any,
    *where: ColumnElement[bool],
) -> list[CoverageGroup]:
    """The coverage rule's counts (`catalogue.version_is_gap`'s terms) grouped by `keys`."""
    cf = CplCertifiedFirmware
    declared = (
        select(CommercialDeclaration.firmware_version)
        .where(
            CommercialDeclaration.manufacturer_id == cf.manufacturer_id,
            CommercialDeclaration.model_id == cf.model_id,
            CommercialDeclaration.hardware_version == cf.hardware_version,
            CommercialDeclaration.firmware_version == cf.firmware_version,
        )
        .exists()
    )
    published = (
        select(LibraryImage.id)
        .where(
            LibraryImage.manufacturer_id == cf.manufacturer_id,
            LibraryImage.model_id == cf.model_id,
            LibraryImage.hardware_version == cf.hardware_version,
            LibraryImage.firmware_version == cf.firmware_version,
            LibraryImage.state == ImageState.PUBLISHED,
        )
        .exists()
    )
    rows = (
        await session.execute(
            select(
                *keys,
                label,
                func.count(),
                func.sum(case((declared, 1), else_=0)),
                func.sum(case((and_(~declared, published), 1), else_=0)),
            )
            .select_from(cf)
            .join(CplDeviceModel, model_join())
            .where(
                cf.snapshot_id == snapshot_id,
                cf.status == CplStatus.ACTIVE.value,
                CplDeviceModel.device_type.in_(IN_SCOPE),
                *where,
            )
            .group_by(*keys)
            .order_by(*keys)
        )
    ).all()
    width = len(keys)
    return [
        CoverageGroup(
            key="/".join(map(str, row[:width])),
            label=str(name),
            certified=int(certified),
            commercial=int(commercial or 0),
            available=int(available or 0),
            missing=int(certified) - int(commercial or 0) - int(available or 0),
        )
        for row in rows
        for name, certified, commercial, available in [row[width:]]
    ]


@dataclass(frozen=True)
class CoverageAt:
    """Coverage while one snapshot was current, as it stood when the next one replaced it (or now)."""

    snapshot_id: int
    since: dt.datetime
    until: dt.datetime | None  # None for the current snapshot: as it stands now
    groups: list[CoverageGroup]

    @property
    def total(self) -> CoverageGroup:
        return CoverageGroup(
            "all",
            "All",
            sum(g.certified for g in self.groups),
            sum(g.commercial for g in self.groups),
            sum(g.available for g in self.groups),
            sum(g.missing for g in self.groups),
        )


MAX_HISTORY = 100


async def coverage_history(
    session: AsyncSession, group_by: GroupBy, last: int = 20, *, now: dt.datetime | None = None
) -> list[CoverageAt]:
    """Coverage per snapshot, oldest first, for the `last` snapshots, in one statement.

    Each snapshot is judged by its own rows (what it certified, active, in scope) against the library as
    it was at the end of the snapshot's time as current: declarations made and images published by then,
    less images withdrawn by then; an image whose hash the snapshot does not list was held, so it does not
    count. The current snapshot's figures are `coverage_summary`'s."""
    if not 1 <= last <= MAX_HISTORY:
        raise InvalidInput(f"last must be between 1 and {MAX_HISTORY} snapshots, not {last}")
    moment = now or clock.now()
    cf = CplCertifiedFirmware
    later = aliased(CplSnapshot)
    following = select(func.min(later.created_at)).where(later.id > CplSnapshot.id).scalar_subquery()
    windows = (
        select(
            CplSnapshot.id.label("snapshot_id"),
            CplSnapshot.created_at.label("since"),
            following.label("until"),
        )
        .order_by(CplSnapshot.id.desc())
        .limit(last)
        .subquery()
    )
    until = func.coalesce(windows.c.until, literal(moment, UtcDateTime()))

    def same_version(table: type[CommercialDeclaration] | type[LibraryImage]) -> ColumnElement[bool]:
        return and_(
            table.manufacturer_id == cf.manufacturer_id,
            table.model_id == cf.model_id,
            table.hardware_version == cf.hardware_version,
            table.firmware_version == cf.firmware_version,
        )

    declared = (
        select(CommercialDeclaration.firmware_version)
        .where(same_version(CommercialDeclaration), CommercialDeclaration.declared_at <= until)
        .exists()
    )
    available = (
        select(LibraryImage.id)
        .where(
            same_version(LibraryImage),
            LibraryImage.published_at <= until,
            or_(LibraryImage.withdrawn_at.is_(None), LibraryImage.withdrawn_at > until),
            LibraryImage.manufacturer_image_sha256 == cf.image_hash,
        )
        .exists()
    )
    key, label = _group_column(group_by)
    rows = (
        await session.execute(
            select(
                windows.c.snapshot_id,
                windows.c.since,
                windows.c.until,
                key,
                label,
                func.count(),
                func.sum(case((declared, 1), else_=0)),
                func.sum(case((and_(~declared, available), 1), else_=0)),
            )
            .select_from(cf)
            .join(windows, windows.c.snapshot_id == cf.snapshot_id)
            .join(CplDeviceModel, model_join())
            .where(cf.status == CplStatus.ACTIVE.value, CplDeviceModel.device_type.in_(IN_SCOPE))
            .group_by(windows.c.snapshot_id, windows.c.since, windows.c.until, key)
            .order_by(windows.c.snapshot_id, key)
        )
    ).all()
    history: dict[int, CoverageAt] = {}
    for snapshot_id, since, ended, group, name, certified, commercial, shown in rows:
        point = history.setdefault(
            snapshot_id, CoverageAt(snapshot_id, _aware(since), None if ended is None else _aware(ended), [])
        )
        point.groups.append(
            CoverageGroup(
                key=str(group),
                label=str(name),
                certified=int(certified),
                commercial=int(commercial or 0),
                available=int(shown or 0),
                missing=int(certified) - int(commercial or 0) - int(shown or 0),
            )
        )
    return list(history.values())


def _aware(moment: dt.datetime | str) -> dt.datetime:
    """A time read through a subquery's bare column (SQLite gives text, naive in UTC)."""
    value = dt.datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


async def consistency_report(
    session: AsyncSession, snapshot_id: int, manufacturer_id: str, *, today: dt.date | None = None
) -> list[Finding]:
    """Where a manufacturer's library listing and CPL listing disagree, each finding at a version, in
    `_finding_order` (by version, then kind).

    A big manufacturer's report holds tens of thousands of gaps: rows are read as plain columns, and what
    a detail says of a listing date (its text, its days) is worked out once per distinct date."""
    today = today or _today()
    cf = CplCertifiedFirmware
    # Core rows, not the ORM's: nothing here needs an entity, and the ORM's row loading was a third of it.
    connection = await session.connection()
    findings: list[Finding] = []
    gaps = (
        await connection.execute(
            select(cf.model_id, cf.hardware_version, cf.firmware_version, cf.date_added, cf.sheet_row)
            .select_from(cf)
            .join(CplDeviceModel, model_join())
            .where(cf.snapshot_id == snapshot_id, cf.manufacturer_id == manufacturer_id, version_is_gap())
            .order_by(cf.model_id, cf.hardware_version, cf.firmware_version)
        )
    ).all()
    since: dict[dt.date, tuple[str, int]] = {}
    missing = FindingKind.MISSING_IMAGE
    for model, hardware, firmware, listed, sheet_row in gaps:
        if (listed_text := since.get(listed)) is None:
            listed_text = since[listed] = (f"{listed:%Y-%m-%d}", (today - listed).days)
        findings.append(
            Finding(
                missing,
                manufacturer_id,
                model,
                hardware,
                firmware,
                f"certified on the CPL since {listed_text[0]} (sheet row {sheet_row}), "
                f"{listed_text[1]} days without a published image",
            )
        )
    about_images: list[Finding] = []
    # Any: the outer join's CPL columns are None where the CPL has no row, which their types do not say.
    images: Sequence[Any] = (
        await connection.execute(
            select(
                LibraryImage.id,
                LibraryImage.model_id,
                LibraryImage.hardware_version,
                LibraryImage.firmware_version,
                LibraryImage.state,
                LibraryImage.held_at,
                LibraryImage.published_at,
                LibraryImage.manufacturer_image_sha256,
                cf.snapshot_id,  # None where the outer join found no row
                cf.status,
                cf.image_hash,
                cf.date_added,
                cf.sheet_row,
            )
            .outerjoin(cf, image_version_join(snapshot_id))
            .where(
                LibraryImage.manufacturer_id == manufacturer_id,
                # Held images too: the CPL moved under them, which is what this report is for.
                LibraryImage.state.in_([ImageState.PUBLISHED, ImageState.HELD]),
            )
            .order_by(LibraryImage.model_id, LibraryImage.hardware_version, LibraryImage.firmware_version)
        )
    ).all()
    for (
        image_id,
        model,
        hardware,
        firmware,
        state,
        held_at,
        published_at,
        image_sha256,
        listed_in,
        status,
        cpl_hash,
        listed,
        sheet_row,
    ) in images:
        where = (manufacturer_id, model, hardware, firmware)
        standing = (
            f"is held since {held_at:%Y-%m-%d} and not served"
            if state == ImageState.HELD and held_at is not None
            else "is published"
        )
        if listed_in is None:
            about_images.append(
                Finding(
                    FindingKind.NOT_ON_CPL,
                    *where,
                    f"image {image_id} {standing}: the current CPL does not list this version",
                    image_id,
                )
            )
            continue
        if status != CplStatus.ACTIVE.value:
            about_images.append(
                Finding(
                    FindingKind.DELISTED_FROM_CPL,
                    *where,
                    f"image {image_id} {standing}: the CPL now lists the version as {status} "
                    f"(sheet row {sheet_row})",
                    image_id,
                )
            )
        if cpl_hash != image_sha256:
            about_images.append(
                Finding(
                    FindingKind.HASH_MISMATCH,
                    *where,
                    f"image {image_id} {standing}: its Manufacturer Image SHA-256 is "
                    f"{image_sha256}; the CPL lists {cpl_hash} (sheet row {sheet_row})",
                    image_id,
                )
            )
        assert published_at is not None
        delay = (published_at.date() - listed).days
        if delay > LATE_AFTER_DAYS:
            about_images.append(
                Finding(
                    FindingKind.LATE_PUBLICATION,
                    *where,
                    f"image {image_id} was published {delay} days after the CPL listed the version "
                    f"({listed:%Y-%m-%d}); the aim is {LATE_AFTER_DAYS}",
                    image_id,
                )
            )
    # One order for every door (the graph's pages, the page, the exports): by version, then kind. The
    # database's collation need not sort as Python does, so Python sorts: the gaps (all of the first kind)
    # and then the rest in kind order, then by version alone, keeping that order within a version.
    findings.extend(sorted(about_images, key=lambda finding: _KIND_ORDER[finding.kind]))
    findings.sort(key=_by_version)
    return findings


_KIND_ORDER = {kind: rank for rank, kind in enumerate(FindingKind)}


_by_version = attrgetter("model_id", "hardware_version", "firmware_version")


def _finding_order(finding: Finding) -> tuple[str, str, str, int]:
    return finding.model_id, finding.hardware_version, finding.firmware_version, _KIND_ORDER[finding.kind]


def finding_cursor(finding: Finding) -> str:
    """The cursor that asks for the findings after this one (`page_findings`' `after`)."""
    return encode_cursor(
        "Finding", [finding.model_id, finding.hardware_version, finding.firmware_version, finding.kind.value]
    )


@dataclass(frozen=True)
class FindingsPage:
    """One page of a consistency report, and how many findings of each kind the whole report holds."""

    findings: list[Finding]  # the page's, in the report's order
    total: int  # findings of the kinds asked for, on every page
    has_next: bool
    has_previous: bool
    counts: dict[FindingKind, int]

    @cached_property
    def page(self) -> Page[Finding]:
        """The findings as a page of a list, each one's cursor worked out when asked."""
        return Page(self.findings, finding_cursor, self.total, self.has_next, self.has_previous)


def page_findings(
    findings: Sequence[Finding],
    kinds: Collection[FindingKind] | None,
    first: int,
    after: str | None,
    *,
    check: bool = True,
) -> FindingsPage:
    """Of a report's findings (as `consistency_report` gives them: by version, then kind), those of the
    `kinds` asked (all if None or empty), `first` of them after the cursor `after` (`check=False`: `first`
    is the caller's own count)."""
    if check:
        check_first(first)
    found = Counter(finding.kind for finding in findings)
    counts = {kind: found[kind] for kind in FindingKind}
    wanted = set(kinds or FindingKind)
    chosen = list(findings) if wanted == _EVERY_KIND else [f for f in findings if f.kind in wanted]
    total = len(chosen)
    if after is not None:
        model, hardware, firmware, kind = decode_cursor("Finding", after, 4)
        position = (model, hardware, firmware, _KIND_ORDER[FindingKind(kind)])
        chosen = [f for f in chosen if _finding_order(f) > position]
    return FindingsPage(chosen[:first], total, len(chosen) > first, after is not None, counts)


_EVERY_KIND = frozenset(FindingKind)


def parse_finding_kinds(raw: Iterable[str]) -> list[FindingKind]:
    """Kinds as a door receives them (any case); an unknown one is refused naming the kinds there are."""
    kinds = []
    for value in raw:
        try:
            kinds.append(FindingKind(value.strip().upper()))
        except ValueError:
            raise InvalidInput(
                f"kind must be one of {', '.join(k.value for k in FindingKind)}, not {value!r}"
            ) from None
    return kinds


def _percentile(sorted_values: list[int], share: float) -> float:
    """Linear interpolation between closest ranks (as numpy's default)."""
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    position = (len(sorted_values) - 1) * share
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


async def timeliness(
    session: AsyncSession, snapshot_id: int, group_by: GroupBy, since: dt.date | None
) -> list[TimelinessGroup]:
    """Days from CPL listing to library publication, per group, for images published since `since`."""
    delays, labels = await publication_delays(session, snapshot_id, group_by, since)
    return [_timeliness_group(group, labels[group], delays[group]) for group in sorted(delays)]


async def timeliness_overall(
    session: AsyncSession, snapshot_id: int, since: dt.date | None = None
) -> TimelinessGroup | None:
    """The same figures over every image published since `since` (None when there is none)."""
    delays, _ = await publication_delays(session, snapshot_id, GroupBy.DEVICE_TYPE, since)
    every = [days for group in delays.values() for days in group]
    return _timeliness_group("all", "All manufacturers", every) if every else None


async def publication_delays(
    session: AsyncSession, snapshot_id: int, group_by: GroupBy, since: dt.date | None
) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Each published image's days from CPL listing to publication, per group, and the groups' labels."""
    cf = CplCertifiedFirmware
    key, label = _group_column(group_by)
    label_column = CplDeviceModel.manufacturer_name if group_by is GroupBy.MANUFACTURER else label
    query = (
        select(key, label_column, cf.date_added, LibraryImage.published_at)
        .select_from(LibraryImage)
        .join(
            cf,
            image_version_join(snapshot_id),
        )
        .join(CplDeviceModel, model_join())
        .where(LibraryImage.published_at.is_not(None))
    )
    if since is not None:
        query = query.where(LibraryImage.published_at >= dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC))
    delays: dict[str, list[int]] = defaultdict(list)
    labels: dict[str, str] = {}
    for group, name, listed, published_at in (await session.execute(query)).all():
        delays[str(group)].append(max((published_at.date() - listed).days, 0))
        labels[str(group)] = str(name)
    return delays, labels


def _timeliness_group(key: str, label: str, delays: list[int]) -> TimelinessGroup:
    values = sorted(delays)
    return TimelinessGroup(
        key=key,
        label=label,
        published=len(values),
        median_days=_percentile(values, 0.5),
        p90_days=_percentile(values, 0.9),
        worst_days=values[-1],
    )


def parse_group_by(raw: str) -> GroupBy:
    try:
        return GroupBy(raw.upper())
    except ValueError:
        raise InvalidInput(
            f"groupBy must be one of {', '.join(g.value for g in GroupBy)}, not {raw!r}"
        ) from None

"""The catalogue graph: device models, certified firmware and library images, with the reports.

One set of types serves three schemas. Each field says which subgraph owns it (`metadata`): `cpl` (the
CPL's facts), `cfl` (the library's), `both` (entity keys and global ids), or `combined` (only on the
single-node `/graphql`, such as `node`). `cfl_graph.doors.graph.build_schemas` filters the fields per
subgraph, so the
subgraphs and the combined graph cannot drift apart: they are the same code.

Resolvers stay thin: they read through the request's loaders (one statement per entity kind per
request) or call a report function; nothing here writes SQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Generic, Protocol, Self, TypeVar

import strawberry
from strawberry.types.base import get_object_definition
from strawberry.utils.str_converters import to_camel_case

from cfl_graph import identifiers as ids
from cfl_graph.access.policy import Action, authorise
from cfl_graph.catalogue import reports, upgrades
from cfl_graph.catalogue.search import DeviceModelFilter as FilterSpec
from cfl_graph.catalogue.search import Page, device_models
from cfl_graph.doors.graph.context import Info
from cfl_graph.doors.graph.cpl import CplSnapshot, selected_at, selects_any, selects_path, snapshot_by_id
from cfl_graph.doors.graph.enums import (
    CplStatus,
    DeviceType,
    FindingKind,
    ReportGroupBy,
    SmetsVersion,
    TechnicalSpecification,
    UpgradeBlocker,
)
from cfl_graph.doors.graph.images import CommercialDeclaration, LibraryImage
from cfl_graph.doors.graph.node import (
    BOTH,
    CFL,
    COMBINED,
    CPL,
    CPL_FILTERED_BY_LIBRARY,
    Node,
    global_id,
    parse_global_id,
)
from cfl_graph.doors.graph.plans import READ, UNREAD, RowFact
from cfl_graph.errors import InvalidInput
from cfl_graph.images.errors import ImageNotFound
from cfl_graph.keys import ModelKey, VersionKey
from cfl_graph.tables.rows import CertifiedRow, DeclarationRow, ImageRow, ModelRow
from loaders.catalogue import VERSION_KEY_COLUMNS, VersionFacts

MODEL_KEY = "manufacturerId modelId hardwareVersion"
VERSION_KEY = "manufacturerId modelId hardwareVersion firmwareVersion"
T = TypeVar("T")
E = TypeVar("E", bound=Enum)


# --- enums and inputs ----------------------------------------------------------------------------


@strawberry.input(description="Narrows device models; every given condition must hold.")
class DeviceModelFilter:
    manufacturer_id: str | None = None
    device_type: DeviceType | None = None
    smets_version: SmetsVersion | None = strawberry.field(
        default=None,
        description="Models with a version certified against this generation (in coverageGaps: the "
        "versions themselves).",
    )
    has_coverage_gap: bool | None = strawberry.field(
        default=None, description="Models with at least one coverage gap (true) or none (false)."
    )
    search: str | None = strawberry.field(
        default=None,
        description="Words in the model or manufacturer name, or an exact model or manufacturer id.",
    )

    def spec(self) -> FilterSpec:
        return FilterSpec(
            manufacturer_id=self.manufacturer_id,
            device_type=None if self.device_type is None else self.device_type.value,
            smets_version=None if self.smets_version is None else self.smets_version.value,
            has_coverage_gap=self.has_coverage_gap,
            search=self.search,
        )


def _spec(where: DeviceModelFilter | None) -> FilterSpec:
    return FilterSpec() if where is None else where.spec()


# --- connections ---------------------------------------------------------------------------------


@strawberry.federation.type(shareable=True)
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    """A row of a page and its node. The row's cursor is written only if asked for (`Page.cursor_of`)."""

    cursor: str = strawberry.field(resolver=lambda self: self.page.cursor_of(self.row))
    node: T
    row: strawberry.Private[Any]
    page: strawberry.Private[Page[Any]]


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int


def connection(page: Page[Any], convert: Any) -> Any:
    rows = page.rows
    return Connection(
        edges=[Edge(node=convert(row), row=row, page=page) for row in rows],
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=page.cursor_of(rows[0]) if rows else None,
            end_cursor=page.end_cursor,
        ),
        total_count=page.total,
    )


class _NotLoaded:
    """Marks a fact not read with the object: its resolver asks the request's loader instead."""


NOT_LOADED = _NotLoaded()


@dataclass(frozen=True)
class _LibraryFacts:
    """What the library holds for one certified version, read with its model's versions."""

    image: ImageRow | None
    declaration: DeclarationRow | None


_NOTHING = _LibraryFacts(image=None, declaration=None)  # the library holds nothing for the version


# --- entities ------------------------------------------------------------------------------------


class _HasCplRow(Protocol):
    cpl_row: Any

    def _fact(self, info: Info, pick: Callable[[Any], Any]) -> Any: ...


def _cpl_fact(
    fact: str | Callable[[Any], Any],
    type_: object,
    description: str | None = None,
    deprecation_reason: str | None = None,
    *,
    enum: type[Enum] | None = None,
) -> Any:
    """A CPL fact of a device model or a certified version: a column of its CPL row (as a member of
    `enum`, looked up by value, where one is named), or a function of the row. Its resolver reads the
    object's row at hand, or asks the loader for it; a compiled plan reads the row at hand itself
    (`plans.READ`, inline for a column: `plans.RowFact`) and calls the resolver only when the row was not
    loaded with the object. Both read it with the same pick."""
    read: Callable[[Any], Any]
    pick: Callable[[Any], Any]
    if isinstance(fact, str):
        column = RowFact("cpl_row", fact, _NotLoaded, enum=enum)
        pick, read = column.pick, column
    else:
        if enum is not None:
            raise TypeError("an enum names the members of a column; a function of the row picks its own")
        pick = fact

        def read(entity: _HasCplRow) -> Any:
            row = entity.cpl_row
            if isinstance(row, _NotLoaded):
                return UNREAD
            return None if row is None else pick(row)

    def resolve(self: _HasCplRow, info: Info) -> Any:
        return self._fact(info, pick)

    return strawberry.field(
        resolver=resolve,
        graphql_type=type_,
        description=description,
        deprecation_reason=deprecation_reason,
        metadata={**CPL, READ: read},
    )


@strawberry.federation.type(
    keys=[MODEL_KEY], description="A device model: (manufacturer id, model id, hardware version)."
)
class DeviceModel(Node):
    manufacturer_id: str
    model_id: str
    hardware_version: str
    cpl_row: strawberry.Private[ModelRow | _NotLoaded | None] = NOT_LOADED
    # Its certified versions with the library's facts, when the page that made it read them for all its
    # models at once (`CatalogueQuery.device_models`).
    versions: strawberry.Private[list[VersionFacts] | _NotLoaded] = NOT_LOADED

    @property
    def key(self) -> ModelKey:
        return ModelKey.of(self)

    @strawberry.federation.field(shareable=True, metadata=BOTH)
    def id(self) -> strawberry.ID:
        return global_id("DeviceModel", *self.key)

    @classmethod
    def of(cls, row: ModelRow, versions: list[VersionFacts] | _NotLoaded = NOT_LOADED) -> Self:
        return cls(
            manufacturer_id=row.manufacturer_id,
            model_id=row.model_id,
            hardware_version=row.hardware_version,
            cpl_row=row,
            versions=versions,
        )

    @classmethod
    def resolve_reference(cls, manufacturerId: str, modelId: str, hardwareVersion: str) -> Self:
        """An entity reference from another subgraph; the keys arrive under their GraphQL names."""
        key = ModelKey(manufacturerId, modelId, hardwareVersion).normalised()
        return cls(
            manufacturer_id=key.manufacturer_id, model_id=key.model_id, hardware_version=key.hardware_version
        )

    @classmethod
    def at(cls, key: VersionKey) -> Self:
        """The device model of a version, by key alone: its facts come through the request's loaders."""
        return cls(
            manufacturer_id=key.manufacturer_id, model_id=key.model_id, hardware_version=key.hardware_version
        )

    def _fact(self, info: Info, pick: Callable[[ModelRow], T]) -> T | None:
        """From the row the object was made with, at once; else from the loader (an awaitable, which
        graphql-core awaits). A page of models thus costs no asyncio task per field."""
        if not isinstance(self.cpl_row, _NotLoaded):
            return None if self.cpl_row is None else pick(self.cpl_row)
        return self._load_fact(info, pick)  # type: ignore[return-value]

    async def _load_fact(self, info: Info, pick: Callable[[ModelRow], T]) -> T | None:
        row = await info.context.loaders.catalogue.device_model.load(self.key)
        return None if row is None else pick(row)

    @strawberry.field(
        metadata=CPL, description="Whether the current CPL lists this model; if not, its CPL facts are null."
    )
    def listed_on_cpl(self, info: Info) -> bool:
        if isinstance(self.cpl_row, _NotLoaded):
            return self._load_listed(info)  # type: ignore[return-value]
        return self.cpl_row is not None

    async def _load_listed(self, info: Info) -> bool:
        return await self._load_fact(info, lambda row: True) is not None

    manufacturer_name = _cpl_fact("manufacturer_name", str | None)
    model_name = _cpl_fact("model_name", str | None)
    device_type = _cpl_fact("device_type", DeviceType | None, enum=DeviceType)
    smets_version = _cpl_fact(
        "smets_version",
        SmetsVersion | None,
        enum=SmetsVersion,
        deprecation_reason="The CPL certifies each firmware version against a SMETS generation of its own: "
        "use smetsVersions, or CertifiedFirmware.smetsVersion. This is the generation of the most recently "
        "listed version.",
    )
    smets_versions = _cpl_fact(
        lambda row: [SmetsVersion(v) for v in row.smets_versions.split(",")],
        list[SmetsVersion] | None,
        "The SMETS generations its certified versions were certified against (two when a firmware upgrade "
        "moved the model from one to the other).",
    )

    @strawberry.field(
        metadata={**CPL, READ: lambda model: model._read_certified_firmware()},
        description="Its certified firmware versions on the current CPL, oldest first.",
    )
    def certified_firmware(self, info: Info) -> list[CertifiedFirmware]:
        if isinstance(self.versions, _NotLoaded):
            return self._load_certified_firmware(info)  # type: ignore[return-value]
        return _certified_versions(self.versions)

    def _read_certified_firmware(self) -> list[CertifiedFirmware]:
        """For a compiled plan (`plans.READ`): the versions the page read with the model, else UNREAD."""
        return UNREAD if isinstance(self.versions, _NotLoaded) else _certified_versions(self.versions)

    async def _load_certified_firmware(self, info: Info) -> list[CertifiedFirmware]:
        return _certified_versions(await info.context.loaders.catalogue.versions_by_model.load(self.key))

    @strawberry.field(
        metadata=CFL, description="Its images in the library (drafts only to their manufacturer)."
    )
    async def library_images(self, info: Info) -> list[LibraryImage]:
        rows = await info.context.loaders.catalogue.images_by_model.load(self.key)
        return [LibraryImage.from_row(row) for row in rows]

    @strawberry.field(
        metadata=CFL,
        description="From the firmware a device of this model has (`from`: 8 hex digits, or dotted), the "
        "fewest recorded upgrade pathways to the newest version that is non-commercial, published and active "
        "on the CPL, each step with its image and release notes; or why there is none.",
    )
    async def upgrade_plan(
        self, info: Info, from_: Annotated[str, strawberry.argument(name="from")]
    ) -> UpgradePlan:
        start = upgrades.installed_version(from_)
        loaders = info.context.loaders.catalogue
        model, rows, images, declarations, pathways = await asyncio.gather(
            loaders.device_model.load(self.key),
            loaders.certified_by_model.load(self.key),
            loaders.images_by_model.load(self.key),
            loaders.declarations_by_model.load(self.key),
            loaders.pathways_by_model.load(self.key),
        )
        device_type = "" if model is None else model.device_type
        plan = upgrades.plan_upgrade(start, device_type, rows, images, declarations, pathways)
        return UpgradePlan.of(plan)


def _certified_versions(versions: list[VersionFacts]) -> list[CertifiedFirmware]:
    """A model's certified versions, each with what the library holds for it: `commercial` and
    `libraryImage` then answer without a loader or a task each."""
    return [
        CertifiedFirmware.of(
            row,
            library=_NOTHING if image is None and declaration is None else _LibraryFacts(image, declaration),
        )
        for row, image, declaration in versions
    ]


def _library_field(
    column: str,
    type_: object,
    description: str | None = None,
    *,
    convert: Callable[[Any], Any] | None = None,
    present: bool = False,
) -> Any:
    """What the library holds for a certified version (a column of its `_LibraryFacts`, made into the
    field's object by `convert`, or whether it is there at all), read as `_cpl_fact` reads a column."""
    fact = RowFact("library", column, _NotLoaded, convert=convert, present=present)

    def resolve(self: CertifiedFirmware, info: Info) -> Any:
        return self._library_fact(info, fact.pick)

    return strawberry.field(
        resolver=resolve, graphql_type=type_, description=description, metadata={**CFL, READ: fact}
    )


@strawberry.federation.type(
    keys=[VERSION_KEY], description="A firmware version the CPL certifies for a device model."
)
class CertifiedFirmware(Node):
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str
    cpl_row: strawberry.Private[CertifiedRow | _NotLoaded | None] = NOT_LOADED
    library: strawberry.Private[_LibraryFacts | _NotLoaded] = NOT_LOADED

    @property
    def key(self) -> VersionKey:
        return VersionKey.of(self)

    @strawberry.federation.field(shareable=True, metadata=BOTH)
    def id(self) -> strawberry.ID:
        return global_id("CertifiedFirmware", *self.key)

    @classmethod
    def of(cls, row: CertifiedRow, library: _LibraryFacts | _NotLoaded = NOT_LOADED) -> Self:
        """The version of this row. A page makes about a thousand: each is made with its attributes set
        one by one rather than through the dataclass's keyword `__init__` (a third of the cost, and
        cheaper than updating its `__dict__` from keywords); every field is set, as
        `tests/graph/test_catalogue.py` checks against the dataclass's own."""
        version = object.__new__(cls)
        version.manufacturer_id = row.manufacturer_id
        version.model_id = row.model_id
        version.hardware_version = row.hardware_version
        version.firmware_version = row.firmware_version
        version.cpl_row = row
        version.library = library
        return version

    @classmethod
    def resolve_reference(
        cls,
        manufacturerId: str,
        modelId: str,
        hardwareVersion: str,
        firmwareVersion: str,
    ) -> Self:
        """An entity reference from another subgraph; the keys arrive under their GraphQL names."""
        return cls.at(VersionKey(manufacturerId, modelId, hardwareVersion, firmwareVersion).normalised())

    @classmethod
    def at(cls, key: VersionKey) -> Self:
        """A reference by key alone: its facts come through the request's loaders."""
        return cls(
            manufacturer_id=key.manufacturer_id,
            model_id=key.model_id,
            hardware_version=key.hardware_version,
            firmware_version=key.firmware_version,
        )

    def _fact(self, info: Info, pick: Callable[[CertifiedRow], T]) -> T | None:
        """As `DeviceModel._fact`: the row at hand, or the loader's awaitable."""
        if not isinstance(self.cpl_row, _NotLoaded):
            return None if self.cpl_row is None else pick(self.cpl_row)
        return self._load_fact(info, pick)  # type: ignore[return-value]

    async def _load_fact(self, info: Info, pick: Callable[[CertifiedRow], T]) -> T | None:
        row = await info.context.loaders.catalogue.certified.load(self.key)
        return None if row is None else pick(row)

    def _library_fact(self, info: Info, pick: Callable[[_LibraryFacts], T]) -> T:
        if not isinstance(self.library, _NotLoaded):
            return None if self.library is None else pick(self.library)
        return self._load_library_fact(info, pick)  # type: ignore[return-value]

    async def _load_library_fact(self, info: Info, pick: Callable[[_LibraryFacts], T]) -> T:
        loaders = info.context.loaders.catalogue
        image, declaration = await asyncio.gather(
            loaders.image_for(self.key), loaders.declaration_for(self.key)
        )
        return pick(_LibraryFacts(image, declaration))

    @strawberry.field(
        metadata=CPL,
        description="Whether the current CPL lists this version; if not, its CPL facts are null.",
    )
    def listed_on_cpl(self, info: Info) -> bool:
        if isinstance(self.cpl_row, _NotLoaded):
            return self._load_listed(info)  # type: ignore[return-value]
        return self.cpl_row is not None

    async def _load_listed(self, info: Info) -> bool:
        return await self._load_fact(info, lambda row: True) is not None

    image_hash = _cpl_fact(
        "image_hash", str | None, "SHA-256 of the Manufacturer Image, as the CPL lists it."
    )
    status = _cpl_fact("status", CplStatus | None, enum=CplStatus)
    smets_version = _cpl_fact(
        "smets_version",
        SmetsVersion | None,
        "The SMETS generation this version was certified against (a firmware upgrade can move a meter to "
        "another).",
        enum=SmetsVersion,
    )
    technical_specification = _cpl_fact(
        "technical_specification",
        TechnicalSpecification | None,
        "The technical specification this version was certified against.",
        enum=TechnicalSpecification,
    )
    specification_version = _cpl_fact(
        "specification_version",
        str | None,
        "That specification's version as the CPL lists it (`4.1` of `SMETS2 v4.1`); null where the CPL "
        "names the specification alone.",
    )
    gbcs_version = _cpl_fact("gbcs_version", str | None)
    listed_on = _cpl_fact("date_added", dt.date | None, "The date the CPL lists the version as added.")
    cpa_reference = _cpl_fact("cpa_reference", str | None)
    cpa_expiry = _cpl_fact("cpa_expiry", dt.date | None)
    commercial = _library_field(
        "declaration",
        bool,
        "Declared commercial by its manufacturer: listed, never distributed (R2).",
        present=True,
    )
    commercial_declaration = _library_field(
        "declaration",
        CommercialDeclaration | None,
        convert=CommercialDeclaration.from_row,
    )
    library_image = _library_field(
        "image",
        LibraryImage | None,
        "The library's image of this version, if any (drafts only to their manufacturer).",
        convert=LibraryImage.from_row,
    )

    @strawberry.field(
        metadata=CFL, description="Versions of the same model that may upgrade straight to this one."
    )
    async def upgrades_from(self, info: Info) -> list[CertifiedFirmware]:
        pathways = await info.context.loaders.catalogue.pathways_by_model.load(self.key.model)
        return [self._sibling(p.from_version) for p in pathways if p.to_version == self.firmware_version]

    @strawberry.field(metadata=CFL, description="Versions this one may upgrade straight to.")
    async def upgrades_to(self, info: Info) -> list[CertifiedFirmware]:
        pathways = await info.context.loaders.catalogue.pathways_by_model.load(self.key.model)
        return [self._sibling(p.to_version) for p in pathways if p.from_version == self.firmware_version]

    def _sibling(self, firmware_version: str) -> CertifiedFirmware:
        return CertifiedFirmware.at(
            VersionKey(self.manufacturer_id, self.model_id, self.hardware_version, firmware_version)
        )


# --- report types --------------------------------------------------------------------------------


@strawberry.type(description="A certified, active, non-commercial, in-scope version with no published image.")
class CoverageGap:
    device_model: DeviceModel
    certified_firmware: CertifiedFirmware
    firmware_version: str
    listed_on: dt.date
    days_missing: int = strawberry.field(description="Days since the CPL listed the version.")

    @classmethod
    def of(cls, gap: reports.Gap) -> CoverageGap:
        return cls(
            device_model=DeviceModel.at(_key_of(gap)),
            certified_firmware=CertifiedFirmware.at(_key_of(gap)),
            firmware_version=gap.firmware_version,
            listed_on=gap.listed_on,
            days_missing=gap.days_missing,
        )


@strawberry.type
class CoverageGroup:
    key: str
    label: str
    certified: int = strawberry.field(description="Active certified versions of in-scope device types.")
    commercial: int
    available: int = strawberry.field(description="With a published image.")
    missing: int
    coverage: float | None = strawberry.field(
        description="available / (certified - commercial); null if none due."
    )

    @classmethod
    def of(cls, group: reports.CoverageGroup) -> CoverageGroup:
        return cls(
            key=group.key,
            label=group.label,
            certified=group.certified,
            commercial=group.commercial,
            available=group.available,
            missing=group.missing,
            coverage=group.coverage,
        )


@strawberry.type(description="One upgrade: a recorded pathway, and the image that takes the device there.")
class UpgradeStep:
    from_version: str
    to_version: str
    library_image: LibraryImage = strawberry.field(description="Published: download it, read its notes.")


@strawberry.type(description="How a device of a model gets to the newest version it may be given.")
class UpgradePlan:
    from_version: str
    target_version: str | None = strawberry.field(
        description="The newest non-commercial version with a published image, active on the CPL."
    )
    steps: list[UpgradeStep] = strawberry.field(description="In order; empty when blocked or up to date.")
    blocked: UpgradeBlocker | None = strawberry.field(
        description="Why there is no plan; null if there is one."
    )
    blocked_at: str | None = strawberry.field(description="The version the blocking step goes to, if any.")
    detail: str

    @classmethod
    def of(cls, plan: upgrades.UpgradePlan) -> UpgradePlan:
        return cls(
            from_version=plan.from_version,
            target_version=plan.target_version,
            steps=[
                UpgradeStep(
                    from_version=s.from_version,
                    to_version=s.to_version,
                    library_image=LibraryImage.from_row(s.image),
                )
                for s in plan.steps
            ],
            blocked=plan.blocked,
            blocked_at=plan.blocked_at,
            detail=plan.detail,
        )


@strawberry.type(
    description="Coverage while one CPL snapshot was current, as it stood when the next replaced it (R12)."
)
class CoverageAtSnapshot:
    snapshot_id: int
    current_from: dt.datetime = strawberry.field(description="When the snapshot became current.")
    current_until: dt.datetime | None = strawberry.field(
        description="When the next snapshot replaced it; null for the current one (as it stands now)."
    )
    total: CoverageGroup
    groups: list[CoverageGroup]

    @classmethod
    def of(cls, point: reports.CoverageAt) -> CoverageAtSnapshot:
        return cls(
            snapshot_id=point.snapshot_id,
            current_from=point.since,
            current_until=point.until,
            total=CoverageGroup.of(point.total),
            groups=[CoverageGroup.of(group) for group in point.groups],
        )


def _finding_version(root: ConsistencyFinding) -> CertifiedFirmware:
    return CertifiedFirmware.at(_key_of(root.finding))


def _finding_cursor(root: ConsistencyFinding) -> str:
    return reports.finding_cursor(root.finding)


@strawberry.type
class ConsistencyFinding:
    """A finding of the report; its certified version and its cursor are made only when asked, and one
    device model serves every finding of that model (a big manufacturer's report holds tens of thousands
    of findings about far fewer models)."""

    kind: FindingKind
    device_model: DeviceModel
    certified_firmware: CertifiedFirmware = strawberry.field(resolver=_finding_version)
    firmware_version: str
    detail: str
    library_image_id: int | None
    cursor: str = strawberry.field(
        resolver=_finding_cursor, description="Pass as `after` for the findings that follow this one."
    )
    finding: strawberry.Private[reports.Finding]

    @strawberry.field(description="The library's image the finding is about, if it is about one.")
    async def library_image(self, info: Info) -> LibraryImage | None:
        if self.library_image_id is None:
            return None
        row = await info.context.loaders.catalogue.image_for(_key_of(self.finding))
        return None if row is None or row.id != self.library_image_id else LibraryImage.from_row(row)

    @classmethod
    def of(cls, finding: reports.Finding, models: dict[tuple[str, str], DeviceModel]) -> ConsistencyFinding:
        """The finding, its device model taken from `models` (one report's: a model by id and hardware
        version) or added to it."""
        model = models.get((finding.model_id, finding.hardware_version))
        if model is None:
            model = models[(finding.model_id, finding.hardware_version)] = DeviceModel.at(_key_of(finding))
        return cls(
            kind=finding.kind,
            device_model=model,
            firmware_version=finding.firmware_version,
            detail=finding.detail,
            library_image_id=finding.image_id,
            finding=finding,
        )


@strawberry.type
class FindingCount:
    kind: FindingKind
    count: int


@strawberry.type
class ConsistencyReport:
    manufacturer_id: str
    findings: list[ConsistencyFinding] = strawberry.field(
        description="The findings asked for (`kinds`, `first`, `after`), by version, then kind."
    )
    generated_at: dt.datetime
    total_count: int = strawberry.field(description="Findings of the kinds asked for, on every page.")
    counts: list[FindingCount] = strawberry.field(description="Findings of each kind in the whole report.")
    page_info: PageInfo


@strawberry.type(description="Days from CPL listing to library publication (R12).")
class TimelinessGroup:
    key: str
    label: str
    published: int
    median_days: float
    p90_days: float
    worst_days: int


# --- root fields ---------------------------------------------------------------------------------


async def _snapshot_id(info: Info) -> int | None:
    return await info.context.loaders.catalogue.snapshot_id()


def _asks_total(info: Info) -> bool:
    """Whether the request asks a connection for its `totalCount`: counting every row the filter matches
    costs more than the page itself on a large CPL, so it is done only when asked."""
    return any(selects_any(field.selections, frozenset({"totalCount"})) for field in info.selected_fields)


_VERSIONS_PATH = ("edges", "node", "certifiedFirmware")


def _asks_versions(info: Info) -> bool:
    """Whether the request asks a page of device models for their certified versions."""
    return any(selects_path(field.selections, _VERSIONS_PATH) for field in info.selected_fields)


# Whether a page whose versions' fields read few of their row's columns reads only those
# (`_version_columns`); off, every page reads whole rows, the reference the narrow reads are tested against.
NARROW_VERSION_READS = True
# Fields of a certified version that read no column of its CPL row: its key (set on the object), its
# presence on the CPL, its pathways (their own loader), its type's name.
_READ_NO_VERSION_COLUMN = frozenset(
    {
        "id",
        "manufacturerId",
        "modelId",
        "hardwareVersion",
        "firmwareVersion",
        "listedOnCpl",
        "upgradesFrom",
        "upgradesTo",
        "__typename",
    }
)


@functools.cache
def version_field_columns() -> dict[str, frozenset[str]]:
    """The columns of a version's CPL row each field of `CertifiedFirmware` reads, by the field's GraphQL
    name: a CPL fact's column (its `RowFact`), nothing for what the library holds (read with the version,
    as its image and declaration) or for `_READ_NO_VERSION_COLUMN`. A field not named here, a fact read by
    a function of the whole row among them, is read from whole rows."""
    columns: dict[str, frozenset[str]] = {name: frozenset() for name in _READ_NO_VERSION_COLUMN}
    for field in get_object_definition(CertifiedFirmware, strict=True).fields:
        name = field.graphql_name or to_camel_case(field.python_name)
        fact = field.metadata.get(READ)
        if isinstance(fact, RowFact) and fact.holder == "cpl_row":
            columns[name] = frozenset({fact.column})
        elif isinstance(fact, RowFact) and fact.holder == "library":
            columns[name] = frozenset()
    return columns


def _version_columns(info: Info) -> frozenset[str] | None:
    """The columns of their CPL rows a page's versions are asked for, besides their keys; None where a
    field asked needs the whole row (or narrow reads are off)."""
    if not NARROW_VERSION_READS:
        return None
    known = version_field_columns()
    wanted: set[str] = set()
    for field in info.selected_fields:
        for name in selected_at(field.selections, _VERSIONS_PATH):
            if (columns := known.get(name)) is None:
                return None
            wanted |= columns
    return frozenset(wanted - set(VERSION_KEY_COLUMNS))


def _empty_connection() -> Any:
    return Connection(
        edges=[],
        page_info=PageInfo(has_next_page=False, has_previous_page=False, start_cursor=None, end_cursor=None),
        total_count=0,
    )


@strawberry.type
class CatalogueQuery:
    @strawberry.field(
        metadata=CPL_FILTERED_BY_LIBRARY, description="Device models on the current CPL, in key order."
    )
    async def device_models(
        self,
        info: Info,
        filter: DeviceModelFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[DeviceModel]:
        authorise(info.context.principal, Action.READ_CATALOGUE)
        snapshot = await _snapshot_id(info)
        if snapshot is None:
            return _empty_connection()  # type: ignore[no-any-return]
        async with info.context.reads() as session:
            page = await device_models(
                session, snapshot, _spec(filter), first, after, count=_asks_total(info)
            )
        loaders = info.context.loaders.catalogue
        rows = page.rows
        loaders.prime_models(rows)
        if rows and _asks_versions(info):
            # The page's versions, images and declarations read at once, for every model of the page:
            # each model's `certifiedFirmware` then answers without awaiting anything.
            keys = [ModelKey.of(row) for row in rows]
            columns = _version_columns(info)
            if columns is None:
                found = await loaders.versions_by_model.load_many(keys)
            else:  # only the columns asked for: not kept for the loaders, which answer with whole rows
                found = await loaders.page_versions(keys, columns)
            versions = dict(zip((id(row) for row in rows), found, strict=True))
            return connection(page, lambda row: DeviceModel.of(row, versions[id(row)]))  # type: ignore[no-any-return]
        return connection(page, DeviceModel.of)  # type: ignore[no-any-return]

    @strawberry.field(metadata=CPL, description="One device model of the current CPL, or null.")
    async def device_model(
        self, info: Info, manufacturer_id: str, model_id: str, hardware_version: str
    ) -> DeviceModel | None:
        authorise(info.context.principal, Action.READ_CATALOGUE)
        key = ModelKey(manufacturer_id, model_id, hardware_version).normalised()
        row = await info.context.loaders.catalogue.device_model.load(key)
        return None if row is None else DeviceModel.of(row)

    @strawberry.field(metadata=CFL, description="Coverage gaps, longest missing first.")
    async def coverage_gaps(
        self,
        info: Info,
        filter: DeviceModelFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[CoverageGap]:
        authorise(info.context.principal, Action.READ_REPORTS)
        snapshot = await _snapshot_id(info)
        if snapshot is None:
            return _empty_connection()  # type: ignore[no-any-return]
        async with info.context.sessions() as session:
            page = await reports.coverage_gaps(
                session, snapshot, _spec(filter), first, after, count=_asks_total(info)
            )
        return connection(page, CoverageGap.of)  # type: ignore[no-any-return]

    @strawberry.field(
        metadata=CFL, description="Certified, commercial, available and missing versions per group."
    )
    async def coverage_summary(self, info: Info, group_by: ReportGroupBy) -> list[CoverageGroup]:
        authorise(info.context.principal, Action.READ_REPORTS)
        snapshot = await _snapshot_id(info)
        if snapshot is None:
            return []
        async with info.context.sessions() as session:
            groups = await reports.coverage_summary(session, snapshot, group_by)
        return [CoverageGroup.of(group) for group in groups]

    @strawberry.field(
        metadata=CFL,
        description="Coverage per CPL snapshot, oldest first, the last `last` (1-100) of them, per group.",
    )
    async def coverage_history(
        self, info: Info, group_by: ReportGroupBy, last: int = 20
    ) -> list[CoverageAtSnapshot]:
        authorise(info.context.principal, Action.READ_REPORTS)
        async with info.context.sessions() as session:
            history = await reports.coverage_history(session, group_by, last)
        return [CoverageAtSnapshot.of(point) for point in history]

    @strawberry.field(
        metadata=CFL, description="Where a manufacturer's library and CPL listings disagree (R7)."
    )
    async def consistency_report(
        self,
        info: Info,
        manufacturer_id: str,
        kinds: list[FindingKind] | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> ConsistencyReport:
        wanted = _manufacturer(manufacturer_id)
        authorise(info.context.principal, Action.READ_CONSISTENCY, manufacturer_id=wanted)
        snapshot = await _snapshot_id(info)
        findings: Sequence[reports.Finding] = []
        if snapshot is not None:
            async with info.context.sessions() as session:
                findings = await reports.consistency_report(session, snapshot, wanted)
        # Without `first`, every finding, as before the report had pages.
        size = len(findings) if first is None else first
        found = reports.page_findings(findings, kinds, size, after, check=first is not None)
        shown = found.findings
        models: dict[tuple[str, str], DeviceModel] = {}
        return ConsistencyReport(
            manufacturer_id=wanted,
            findings=[ConsistencyFinding.of(f, models) for f in shown],
            generated_at=info.context.now,
            total_count=found.total,
            counts=[FindingCount(kind=k, count=n) for k, n in found.counts.items()],
            page_info=PageInfo(
                has_next_page=found.has_next,
                has_previous_page=found.has_previous,
                start_cursor=reports.finding_cursor(shown[0]) if shown else None,
                end_cursor=reports.finding_cursor(shown[-1]) if shown else None,
            ),
        )

    @strawberry.field(metadata=CFL, description="Days from CPL listing to publication per group (R12).")
    async def timeliness(
        self, info: Info, group_by: ReportGroupBy, since: dt.date | None = None
    ) -> list[TimelinessGroup]:
        authorise(info.context.principal, Action.READ_REPORTS)
        snapshot = await _snapshot_id(info)
        if snapshot is None:
            return []
        async with info.context.sessions() as session:
            groups = await reports.timeliness(session, snapshot, group_by, since)
        return [
            TimelinessGroup(
                key=g.key,
                label=g.label,
                published=g.published,
                median_days=g.median_days,
                p90_days=g.p90_days,
                worst_days=g.worst_days,
            )
            for g in groups
        ]

    @strawberry.field(metadata=COMBINED, description="Any object by its global id.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        authorise(info.context.principal, Action.READ_CATALOGUE)
        kind, parts = parse_global_id(str(id))
        # Keys read from an id are normalised like any other (a forged id may hold anything).
        if kind == "DeviceModel" and len(parts) == 3:
            key = ModelKey(parts[0], parts[1], parts[2]).normalised()
            row = await info.context.loaders.catalogue.device_model.load(key)
            return None if row is None else DeviceModel.of(row)
        if kind == "CertifiedFirmware" and len(parts) == 4:
            v = VersionKey(parts[0], parts[1], parts[2], parts[3]).normalised()
            found = await info.context.loaders.catalogue.certified.load(v)
            return None if found is None else CertifiedFirmware.of(found)
        # parse_global_id has checked a numbered kind's number (ASCII digits, within the id columns).
        if kind == "LibraryImage" and len(parts) == 1:
            try:
                image = await info.context.library.get(info.context.principal, int(parts[0]))
            except ImageNotFound:
                return None
            return LibraryImage.from_row(image)
        if kind == "CplSnapshot" and len(parts) == 1:
            return await snapshot_by_id(info, int(parts[0]))
        raise InvalidInput(f"{str(id)[:60]!r} is not an id this graph issued")


def _key_of(row: reports.Gap | reports.Finding) -> VersionKey:
    return VersionKey(row.manufacturer_id, row.model_id, row.hardware_version, row.firmware_version)


def _manufacturer(raw: str) -> str:
    try:
        return ids.manufacturer_id(raw)
    except ids.InvalidValue as exc:
        raise InvalidInput(str(exc)) from None


__all__ = ["CatalogueQuery", "CertifiedFirmware", "CplSnapshot", "DeviceModel", "LibraryImage", "Node"]

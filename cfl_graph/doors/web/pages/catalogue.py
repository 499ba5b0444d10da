"""The catalogue's pages (R5): the device models with search and paging, one device model with its
certified versions beside the library, and one manufacturer's models with their coverage. They read the
same services as the graph (`cfl_graph.catalogue`, `loaders.catalogue`), so no rule is
written twice."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cfl_graph import identifiers as ids
from cfl_graph.access.policy import AccessDenied, Action, allowed, authorise
from cfl_graph.catalogue import reports, upgrades
from cfl_graph.catalogue.coverage import Availability, availability
from cfl_graph.catalogue.search import DeviceModelFilter, device_models
from cfl_graph.catalogue.snapshots import current_snapshot_id
from cfl_graph.cursors import cursor_problem
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.pages.render import done_message, not_found, refused, render
from cfl_graph.doors.web.services import services
from cfl_graph.errors import InvalidInput
from cfl_graph.keys import ModelKey, VersionKey
from cfl_graph.tables import UpgradePathway
from cfl_graph.tables.rows import CertifiedRow, DeclarationRow, ImageRow, ModelRow
from loaders import Loaders
from loaders.catalogue import CatalogueLoaders

PAGE_SIZE = 50
# A manufacturer's page lists its models on one page; past this it links to the searchable list.
MANUFACTURER_MODELS = 500


@dataclass(frozen=True)
class VersionRow:
    """One certified version beside the library, as the device model page shows it."""

    certified: CertifiedRow
    image: ImageRow | None
    declaration: DeclarationRow | None
    upgrades_from: list[str]
    upgrades_to: list[str]
    today: dt.date
    availability: Availability

    @property
    def days_missing(self) -> int:
        return (self.today - self.certified.date_added).days

    @property
    def specification(self) -> str:
        return ids.specification_text(
            self.certified.technical_specification, self.certified.specification_version
        )


@dataclass(frozen=True)
class ModelCoverage:
    model: ModelRow
    coverage: reports.CoverageGroup | None  # None: nothing of it is due (a comms hub, say)


async def _version_rows(
    loaders: CatalogueLoaders, model: ModelRow, key: ModelKey, rows: list[CertifiedRow]
) -> list[VersionRow]:
    images = {VersionKey.of(i): i for i in await loaders.images_by_model.load(key)}
    declarations = {VersionKey.of(d): d for d in await loaders.declarations_by_model.load(key)}
    pathways: list[UpgradePathway] = await loaders.pathways_by_model.load(key)
    today = dt.datetime.now(dt.UTC).date()
    versions = []
    for row in reversed(rows):  # newest version first
        image = images.get(VersionKey.of(row))
        declaration = declarations.get(VersionKey.of(row))
        versions.append(
            VersionRow(
                certified=row,
                image=image,
                declaration=declaration,
                upgrades_from=[p.from_version for p in pathways if p.to_version == row.firmware_version],
                upgrades_to=[p.to_version for p in pathways if p.from_version == row.firmware_version],
                today=today,
                availability=availability(
                    row.status,
                    model.device_type,
                    None if image is None else image.state,
                    declared=declaration is not None,
                ),
            )
        )
    return versions


async def models(request: Request) -> Response:
    try:
        authorise(principal_of(request.scope), Action.READ_CATALOGUE)
    except AccessDenied as exc:
        return refused(request, exc)
    query = request.query_params
    gap = query.get("gap")
    where = DeviceModelFilter(
        manufacturer_id=query.get("manufacturerId") or None,
        device_type=query.get("deviceType") or None,
        has_coverage_gap=None if gap not in ("yes", "no") else gap == "yes",
        search=query.get("search") or None,
    )
    after = query.get("after") or None
    if after is not None and (problem := cursor_problem(after, "DeviceModel", 3)) is not None:
        error = f"This is not a page of this list ({problem}); start again from the first page."
        return render(request, "models.html", 422, page=None, error=error, query=dict(query))
    async with services(request).sessions() as session:
        snapshot = await current_snapshot_id(session)
        try:
            page = (
                None if snapshot is None else await device_models(session, snapshot, where, PAGE_SIZE, after)
            )
        except InvalidInput as exc:
            return render(request, "models.html", 422, page=None, error=str(exc), query=dict(query))
    next_query = None
    if page is not None and page.has_next:
        next_query = urlencode({**dict(query), "after": page.end_cursor})
    return render(request, "models.html", page=page, error=None, query=dict(query), next_query=next_query)


async def model(request: Request) -> Response:
    principal = principal_of(request.scope)
    try:
        authorise(principal, Action.READ_CATALOGUE)
        key = ModelKey(
            ids.manufacturer_id(request.path_params["manufacturer_id"]),
            ids.model_id(request.path_params["model_id"]),
            ids.hardware_version(request.path_params["hardware_version"]),
        )
    except AccessDenied as exc:
        return refused(request, exc)
    except ids.InvalidValue as exc:
        return not_found(request, f"No such device model: {exc}")
    loaders = Loaders.for_request(services(request).sessions, principal).catalogue
    row = await loaders.device_model.load(key)
    if row is None:
        return not_found(request, "The current CPL lists no such device model.")
    certified = await loaders.certified_by_model.load(key)
    versions = await _version_rows(loaders, row, key, certified)
    listed = {VersionKey.of(c) for c in certified}
    # Images whose version the current CPL no longer lists (held, or withdrawn): still the library's.
    images = await loaders.images_by_model.load(key)
    unlisted = [i for i in images if VersionKey.of(i) not in listed]
    # An upgrade plan from the version a device has (`?from=`), worked out from what is loaded already.
    plan, plan_error, start = None, None, request.query_params.get("from", "").strip()
    if start:
        try:
            plan = upgrades.plan_upgrade(
                start,
                row.device_type,
                certified,
                images,
                await loaders.declarations_by_model.load(key),
                await loaders.pathways_by_model.load(key),
            )
        except InvalidInput as exc:
            plan_error = str(exc)
    return render(
        request,
        "model.html",
        400 if plan_error else 200,
        model=row,
        versions=versions,
        unlisted=unlisted,
        plan=plan,
        plan_error=plan_error,
        plan_from=start,
        may_declare=allowed(principal, Action.DECLARE_COMMERCIAL, manufacturer_id=key.manufacturer_id),
        done=done_message(request),
    )


async def manufacturer(request: Request) -> Response:
    principal = principal_of(request.scope)
    try:
        authorise(principal, Action.READ_CATALOGUE)
        mid = ids.manufacturer_id(request.path_params["manufacturer_id"])
    except AccessDenied as exc:
        return refused(request, exc)
    except ids.InvalidValue as exc:
        return not_found(request, f"No such manufacturer: {exc}")
    async with services(request).sessions() as session:
        snapshot = await current_snapshot_id(session)
        where = DeviceModelFilter(manufacturer_id=mid)
        page = (
            None
            if snapshot is None
            else await device_models(session, snapshot, where, MANUFACTURER_MODELS, None)
        )
        by_model = {} if snapshot is None else await reports.coverage_by_model(session, snapshot, mid)
    rows = [] if page is None else page.rows
    coverage = [ModelCoverage(m, by_model.get(ModelKey.of(m))) for m in rows]
    return render(
        request,
        "manufacturer.html",
        manufacturer_id=mid,
        manufacturer_name=rows[0].manufacturer_name if rows else mid,
        coverage=coverage,
        more=page is not None and page.has_next,
        may_consistency=allowed(principal, Action.READ_CONSISTENCY, manufacturer_id=mid),
    )


routes = [
    Route("/models", models, methods=["GET"]),
    Route("/models/{manufacturer_id}/{model_id}/{hardware_version}", model, methods=["GET"]),
    Route("/manufacturers/{manufacturer_id}", manufacturer, methods=["GET"]),
]

"""The web interface's catalogue pages (R5): server-rendered, readable without JavaScript, and reading the
same services as the graph (`cfl_graph.catalogue`, `cfl_graph.reports`, `loaders.catalogue`,
`ImageLibrary`), so no rule is written twice.

Every page asks the policy before it reads; forms post with the session's CSRF token (the upload form
carries it in its action's query string, as its body is multipart). A refusal renders the page again
with the reason, never a bare error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cfl_graph import identifiers as ids
from cfl_graph.access.middleware import principal_of
from cfl_graph.access.policy import AccessDenied, Action, allowed, authorise
from cfl_graph.audit import recent_events
from cfl_graph.blobs import BlobStoreFailed
from cfl_graph.catalogue import reports
from cfl_graph.catalogue.coverage import Availability, availability
from cfl_graph.catalogue.search import DeviceModelFilter, device_models
from cfl_graph.catalogue.snapshots import current_snapshot_id, recent_runs, recent_snapshots
from cfl_graph.cursors import cursor_problem
from cfl_graph.errors import InvalidInput, Refusal
from cfl_graph.identifiers import InvalidValue
from cfl_graph.images import lifecycle
from cfl_graph.images.errors import ImageNotFound
from cfl_graph.images.library import ImageLibrary, download_name
from cfl_graph.images.listing import own_drafts
from cfl_graph.keys import ModelKey, VersionKey
from cfl_graph.row_ids import row_id
from cfl_graph.tables import (
    CommercialDeclaration,
    CplCertifiedFirmware,
    CplDeviceModel,
    LibraryImage,
    UpgradePathway,
)
from cfl_graph.views.images import take_upload
from cfl_graph.views.pages import render
from cfl_graph.views.refusals import http_status
from cpl_sync.diff import diff_snapshots
from loaders import Loaders
from loaders.catalogue import CatalogueLoaders

PAGE_SIZE = 50
IMAGE_ID_REFUSAL = "Image ids are whole numbers (0-9) that name an image."
AUDIT_PAGE = 100
Page = Callable[[Request], Awaitable[Response]]

# Messages a redirect may carry back to a page (`?done=`): fixed texts, never echoed input.
DONE = {
    "published": "Published: every supplier can now download it.",
    "approved": "Approved: it can now be published.",
    "withdrawn": "Withdrawn: it stays listed with your reason and is no longer served.",
    "discarded": "Draft discarded.",
    "notes": "Release notes saved.",
    "declared": "Declared commercial: listed as such, never distributed.",
    "rechecked": "Checked again against the current CPL, keys and declarations.",
}


@dataclass(frozen=True)
class VersionRow:
    """One certified version beside the library, as the device model page shows it."""

    certified: CplCertifiedFirmware
    image: LibraryImage | None
    declaration: CommercialDeclaration | None
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
    model: CplDeviceModel
    coverage: reports.CoverageGroup | None  # None: nothing of it is due (a comms hub, say)


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _refused(request: Request, exc: Exception, status: int | None = None) -> Response:
    return render(request, "refused.html", status or http_status(exc), reason=str(exc))


async def _version_rows(
    loaders: CatalogueLoaders, model: CplDeviceModel, key: ModelKey, rows: list[CplCertifiedFirmware]
) -> list[VersionRow]:
    images = {VersionKey.of(i): i for i in await loaders.images_by_model.load(key)}
    declarations = {VersionKey.of(d): d for d in await loaders.declarations_by_model.load(key)}
    pathways: list[UpgradePathway] = await loaders.pathways_by_model.load(key)
    today = _today()
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


def _bar_chart(groups: list[reports.CoverageGroup], width: int = 640) -> dict[str, Any]:
    """Geometry for a server-made horizontal bar chart of coverage (no script, no CDN)."""
    bar, gap, label_width = 22, 8, 280
    scale = width - label_width - 60
    rows = []
    for index, group in enumerate(groups):
        ratio = group.coverage or 0.0
        rows.append(
            {
                "y": index * (bar + gap),
                "label": f"{group.label} ({group.key})" if group.label != group.key else group.key,
                "available": round(scale * ratio, 1),
                "percent": "—" if group.coverage is None else f"{group.coverage:.0%}",
                "title": f"{group.available} of {group.certified - group.commercial} available, "
                f"{group.missing} missing, {group.commercial} commercial",
            }
        )
    return {
        "rows": rows,
        "bar": bar,
        "label_width": label_width,
        "scale": scale,
        "width": width,
        "height": max(len(groups) * (bar + gap), bar),
    }


def _timeliness_chart(groups: list[reports.TimelinessGroup], width: int = 640) -> dict[str, Any]:
    bar, gap, label_width = 22, 8, 280
    longest = max((g.worst_days for g in groups), default=1) or 1
    scale = (width - label_width - 80) / longest
    rows = [
        {
            "y": index * (bar + gap),
            "label": group.label,
            "median": round(group.median_days * scale, 1),
            "p90": round(group.p90_days * scale, 1),
            "worst": round(group.worst_days * scale, 1),
            "text": f"median {group.median_days:g} d, p90 {group.p90_days:g} d, worst {group.worst_days} d",
        }
        for index, group in enumerate(groups)
    ]
    return {
        "rows": rows,
        "bar": bar,
        "label_width": label_width,
        "width": width,
        "height": max(len(groups) * (bar + gap), bar),
    }


def _image_page(
    request: Request,
    image: LibraryImage,
    status: int = 200,
    *,
    done: str | None = None,
    error: Exception | None = None,
) -> Response:
    """An image's page: what the lifecycle lets this principal see and do (no form it may not use)."""
    principal = principal_of(request.scope)
    return render(
        request,
        "image.html",
        status,
        image=image,
        file_name=download_name(image),
        steps=lifecycle.steps_for(principal, image),
        may_download=allowed(principal, Action.DOWNLOAD_IMAGE)
        and lifecycle.download_refusal(principal, image) is None,
        done=done,
        error=error,
    )


def _image_id(request: Request) -> int | None:
    try:
        return row_id(request.path_params["image_id"], "an image id")
    except InvalidValue:
        return None


def site_routes(sessions: async_sessionmaker[AsyncSession], library: ImageLibrary) -> list[Route]:
    async def models(request: Request) -> Response:
        principal = principal_of(request.scope)
        try:
            authorise(principal, Action.READ_CATALOGUE)
        except AccessDenied as exc:
            return _refused(request, exc)
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
        async with sessions() as session:
            snapshot = await current_snapshot_id(session)
            try:
                page = (
                    None
                    if snapshot is None
                    else await device_models(session, snapshot, where, PAGE_SIZE, after)
                )
            except InvalidInput as exc:
                return render(request, "models.html", 422, page=None, error=str(exc), query=dict(query))
        next_query = None
        if page is not None and page.has_next:
            next_query = urlencode({**dict(query), "after": page.items[-1][0]})
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
            return _refused(request, exc)
        except ids.InvalidValue as exc:
            return render(request, "refused.html", 404, reason=f"No such device model: {exc}")
        loaders = Loaders.for_request(sessions, principal).catalogue
        row = await loaders.device_model.load(key)
        if row is None:
            return render(request, "refused.html", 404, reason="The current CPL lists no such device model.")
        certified = await loaders.certified_by_model.load(key)
        versions = await _version_rows(loaders, row, key, certified)
        listed = {VersionKey.of(c) for c in certified}
        # Images whose version the current CPL no longer lists (held, or withdrawn): still the library's.
        unlisted = [i for i in await loaders.images_by_model.load(key) if VersionKey.of(i) not in listed]
        may_declare = allowed(principal, Action.DECLARE_COMMERCIAL, manufacturer_id=key[0])
        return render(
            request,
            "model.html",
            model=row,
            versions=versions,
            unlisted=unlisted,
            may_declare=may_declare,
            done=DONE.get(request.query_params.get("done", "")),
        )

    async def manufacturer(request: Request) -> Response:
        principal = principal_of(request.scope)
        try:
            authorise(principal, Action.READ_CATALOGUE)
            mid = ids.manufacturer_id(request.path_params["manufacturer_id"])
        except AccessDenied as exc:
            return _refused(request, exc)
        except ids.InvalidValue as exc:
            return render(request, "refused.html", 404, reason=f"No such manufacturer: {exc}")
        async with sessions() as session:
            snapshot = await current_snapshot_id(session)
            page = (
                None
                if snapshot is None
                else await device_models(session, snapshot, DeviceModelFilter(manufacturer_id=mid), 500, None)
            )
            by_model = {} if snapshot is None else await reports.coverage_by_model(session, snapshot, mid)
        rows = [] if page is None else [item for _, item in page.items]
        coverage = [
            ModelCoverage(m, by_model.get((m.manufacturer_id, m.model_id, m.hardware_version))) for m in rows
        ]
        name = rows[0].manufacturer_name if rows else mid
        may_consistency = allowed(principal, Action.READ_CONSISTENCY, manufacturer_id=mid)
        return render(
            request,
            "manufacturer.html",
            manufacturer_id=mid,
            manufacturer_name=name,
            coverage=coverage,
            more=page is not None and page.has_next,
            may_consistency=may_consistency,
        )

    async def image(request: Request) -> Response:
        principal = principal_of(request.scope)
        image_id = _image_id(request)
        if image_id is None:
            return render(request, "refused.html", 404, reason=IMAGE_ID_REFUSAL)
        try:
            found = await library.get(principal, image_id)
        except (AccessDenied, Refusal) as exc:
            return _refused(request, exc)
        return _image_page(request, found, done=DONE.get(request.query_params.get("done", "")))

    def image_action(verb: str) -> Page:
        async def act(request: Request) -> Response:
            principal = principal_of(request.scope)
            image_id = _image_id(request)
            if image_id is None:
                return render(request, "refused.html", 404, reason=IMAGE_ID_REFUSAL)
            form = await request.form()
            try:
                if verb == "publish":
                    await library.publish(principal, image_id)
                elif verb == "approve":
                    await library.approve(principal, image_id)
                elif verb == "withdraw":
                    await library.withdraw(principal, image_id, str(form.get("reason", "")))
                elif verb == "recheck":
                    await library.recheck(principal, image_id)
                elif verb == "notes":
                    await library.update_release_notes(principal, image_id, str(form.get("markdown", "")))
                elif verb == "discard":
                    await library.discard(principal, image_id)
                    return RedirectResponse("/upload?done=discarded", status_code=303)
            except ImageNotFound as exc:
                return _refused(request, exc)
            except (AccessDenied, Refusal) as exc:
                try:
                    found = await library.get(principal, image_id)
                except (AccessDenied, Refusal):
                    return _refused(request, exc)
                return _image_page(request, found, http_status(exc, 409), error=exc)
            done = {"publish": "published", "approve": "approved", "withdraw": "withdrawn"}.get(verb, verb)
            return RedirectResponse(
                f"/images/{image_id}?done={'rechecked' if verb == 'recheck' else done}", 303
            )

        return act

    async def declare(request: Request) -> Response:
        principal = principal_of(request.scope)
        form = await request.form()
        path = request.path_params
        key = VersionKey(
            path["manufacturer_id"],
            path["model_id"],
            path["hardware_version"],
            str(form.get("firmwareVersion", "")),
        )
        try:
            await library.declare_commercial(principal, key, str(form.get("reason", "")))
        except (AccessDenied, Refusal) as exc:
            return _refused(request, exc)
        where = f"/models/{path['manufacturer_id']}/{path['model_id']}/{path['hardware_version']}"
        return RedirectResponse(f"{where}?done=declared", status_code=303)

    async def upload_form(request: Request) -> Response:
        principal = principal_of(request.scope)
        if not allowed(principal, Action.UPLOAD_IMAGE, manufacturer_id="*"):
            return render(request, "refused.html", 403, reason="Uploads are for manufacturer parties.")
        assert principal is not None
        async with sessions() as session:
            drafts = await own_drafts(session, principal, 50)
        return render(
            request,
            "upload.html",
            drafts=drafts,
            refusal=None,
            done=DONE.get(request.query_params.get("done", "")),
        )

    async def upload(request: Request) -> Response:
        try:
            found = await take_upload(library, request)
        except (AccessDenied, Refusal, BlobStoreFailed) as exc:
            return render(request, "upload.html", http_status(exc, 503), drafts=[], refusal=exc, done=None)
        except ClientDisconnect:
            return Response(status_code=400)
        return RedirectResponse(f"/images/{found.id}", status_code=303)

    async def coverage(request: Request) -> Response:
        principal = principal_of(request.scope)
        try:
            authorise(principal, Action.READ_REPORTS)
        except AccessDenied as exc:
            return _refused(request, exc)
        async with sessions() as session:
            snapshot = await current_snapshot_id(session)
            by_manufacturer = (
                []
                if snapshot is None
                else await reports.coverage_summary(session, snapshot, reports.GroupBy.MANUFACTURER)
            )
            by_type = (
                []
                if snapshot is None
                else await reports.coverage_summary(session, snapshot, reports.GroupBy.DEVICE_TYPE)
            )
            timely = (
                []
                if snapshot is None
                else await reports.timeliness(session, snapshot, reports.GroupBy.MANUFACTURER, None)
            )
        totals = reports.CoverageGroup(
            "all",
            "All manufacturers",
            sum(g.certified for g in by_manufacturer),
            sum(g.commercial for g in by_manufacturer),
            sum(g.available for g in by_manufacturer),
            sum(g.missing for g in by_manufacturer),
        )
        return render(
            request,
            "coverage.html",
            totals=totals,
            by_manufacturer=by_manufacturer,
            by_type=by_type,
            timeliness=timely,
            manufacturer_chart=_bar_chart(by_manufacturer),
            type_chart=_bar_chart(by_type),
            timeliness_chart=_timeliness_chart(timely),
        )

    async def consistency(request: Request) -> Response:
        principal = principal_of(request.scope)
        try:
            mid = ids.manufacturer_id(request.path_params["manufacturer_id"])
            authorise(principal, Action.READ_CONSISTENCY, manufacturer_id=mid)
        except ids.InvalidValue as exc:
            return render(request, "refused.html", 404, reason=f"No such manufacturer: {exc}")
        except AccessDenied as exc:
            return _refused(request, exc)
        async with sessions() as session:
            snapshot = await current_snapshot_id(session)
            findings = [] if snapshot is None else await reports.consistency_report(session, snapshot, mid)
        counts: dict[str, int] = {}
        for finding in findings:
            counts[finding.kind.value] = counts.get(finding.kind.value, 0) + 1
        return render(request, "consistency.html", manufacturer_id=mid, findings=findings, counts=counts)

    async def cpl(request: Request) -> Response:
        principal = principal_of(request.scope)
        try:
            authorise(principal, Action.READ_CATALOGUE)
        except AccessDenied as exc:
            return _refused(request, exc)
        query = request.query_params
        async with sessions() as session:
            snapshots = await recent_snapshots(session, 50)
            runs = await recent_runs(session, 50)
            current = await current_snapshot_id(session)
            diff = None
            error = None
            if query.get("from") and query.get("to"):
                known = {s.id for s in snapshots}
                try:
                    older, newer = row_id(query["from"]), row_id(query["to"])
                except InvalidValue:
                    older = newer = 0
                if older not in known or newer not in known:
                    error = "Choose two snapshots from the list."
                else:
                    diff = await diff_snapshots(session, older, newer, limit=200)
        return render(
            request,
            "cpl.html",
            snapshots=snapshots,
            runs=runs,
            current=current,
            diff=diff,
            error=error,
            query=dict(query),
        )

    async def audit(request: Request) -> Response:
        principal = principal_of(request.scope)
        try:
            authorise(principal, Action.READ_AUDIT)
        except AccessDenied as exc:
            return _refused(request, exc)
        query = request.query_params
        action = (query.get("action") or "").strip()[:64]
        actor = (query.get("actor") or "").strip()[:200]
        nothing: dict[str, Any] = {"events": [], "action": "", "actor": "", "older": None, "export": None}
        before: int | None = None
        if query.get("before"):
            try:
                before = row_id(query["before"], "`before` (an event id)")
            except InvalidValue as exc:
                return render(request, "audit.html", 422, error=exc.reason, **nothing)
        if ids.control_character(action + actor):
            # No action or actor holds one, and a NUL would reach PostgreSQL, which cannot compare it.
            error = "the filter holds a control character; no action or actor does"
            return render(request, "audit.html", 422, error=error, **nothing)
        async with sessions() as session:
            events = await recent_events(session, AUDIT_PAGE + 1, action=action, actor=actor, before=before)
        more = len(events) > AUDIT_PAGE
        events = events[:AUDIT_PAGE]
        older = (
            urlencode({"action": action, "actor": actor, "before": events[-1].id})
            if more and events
            else None
        )
        export = (
            f"/api/v1/audit/events?{urlencode({'from': events[-1].id, 'to': events[0].id})}"
            if events
            else None
        )
        return render(
            request,
            "audit.html",
            events=events,
            action=action,
            actor=actor,
            older=older,
            export=export,
            error=None,
        )

    return [
        Route("/models", models, methods=["GET"]),
        Route("/models/{manufacturer_id}/{model_id}/{hardware_version}", model, methods=["GET"]),
        Route("/models/{manufacturer_id}/{model_id}/{hardware_version}/declare", declare, methods=["POST"]),
        Route("/manufacturers/{manufacturer_id}", manufacturer, methods=["GET"]),
        Route("/manufacturers/{manufacturer_id}/consistency", consistency, methods=["GET"]),
        Route("/images/{image_id}", image, methods=["GET"]),
        *(
            Route(f"/images/{{image_id}}/{verb}", image_action(verb), methods=["POST"])
            for verb in ("publish", "approve", "withdraw", "recheck", "notes", "discard")
        ),
        Route("/upload", upload_form, methods=["GET"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/coverage", coverage, methods=["GET"]),
        Route("/cpl", cpl, methods=["GET"]),
        Route("/audit", audit, methods=["GET"]),
    ]

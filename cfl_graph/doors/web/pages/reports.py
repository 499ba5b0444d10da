"""The Panel's pages (R8, R9): coverage and timeliness with server-drawn charts (no script, no CDN), and
a manufacturer's consistency report, the same reports the graph and the exports answer from."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cfl_graph import identifiers as ids
from cfl_graph.access.policy import AccessDenied, Action, authorise
from cfl_graph.catalogue import reports
from cfl_graph.catalogue.snapshots import current_snapshot_id
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.pages.render import not_found, refused, render
from cfl_graph.doors.web.services import services

CHART_WIDTH = 640
_BAR, _GAP, _LABEL_WIDTH = 22, 8, 280


def bar_chart(groups: list[reports.CoverageGroup], width: int = CHART_WIDTH) -> dict[str, Any]:
    """Geometry for a server-made horizontal bar chart of coverage."""
    scale = width - _LABEL_WIDTH - 60
    rows = []
    for index, group in enumerate(groups):
        ratio = group.coverage or 0.0
        rows.append(
            {
                "y": index * (_BAR + _GAP),
                "label": f"{group.label} ({group.key})" if group.label != group.key else group.key,
                "available": round(scale * ratio, 1),
                "percent": "—" if group.coverage is None else f"{group.coverage:.0%}",
                "title": f"{group.available} of {group.certified - group.commercial} available, "
                f"{group.missing} missing, {group.commercial} commercial",
            }
        )
    return {
        "rows": rows,
        "bar": _BAR,
        "label_width": _LABEL_WIDTH,
        "scale": scale,
        "width": width,
        "height": max(len(groups) * (_BAR + _GAP), _BAR),
    }


def timeliness_chart(groups: list[reports.TimelinessGroup], width: int = CHART_WIDTH) -> dict[str, Any]:
    """Geometry for the median, p90 and worst days from certification to publication, per group."""
    longest = max((g.worst_days for g in groups), default=1) or 1
    scale = (width - _LABEL_WIDTH - 80) / longest
    rows = [
        {
            "y": index * (_BAR + _GAP),
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
        "bar": _BAR,
        "label_width": _LABEL_WIDTH,
        "width": width,
        "height": max(len(groups) * (_BAR + _GAP), _BAR),
    }


async def coverage(request: Request) -> Response:
    try:
        authorise(principal_of(request.scope), Action.READ_REPORTS)
    except AccessDenied as exc:
        return refused(request, exc)
    by_manufacturer: list[reports.CoverageGroup] = []
    by_type: list[reports.CoverageGroup] = []
    timely: list[reports.TimelinessGroup] = []
    async with services(request).sessions() as session:
        snapshot = await current_snapshot_id(session)
        if snapshot is not None:
            by_manufacturer = await reports.coverage_summary(session, snapshot, reports.GroupBy.MANUFACTURER)
            by_type = await reports.coverage_summary(session, snapshot, reports.GroupBy.DEVICE_TYPE)
            timely = await reports.timeliness(session, snapshot, reports.GroupBy.MANUFACTURER, None)
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
        manufacturer_chart=bar_chart(by_manufacturer),
        type_chart=bar_chart(by_type),
        timeliness_chart=timeliness_chart(timely),
    )


async def consistency(request: Request) -> Response:
    try:
        mid = ids.manufacturer_id(request.path_params["manufacturer_id"])
        authorise(principal_of(request.scope), Action.READ_CONSISTENCY, manufacturer_id=mid)
    except ids.InvalidValue as exc:
        return not_found(request, f"No such manufacturer: {exc}")
    except AccessDenied as exc:
        return refused(request, exc)
    async with services(request).sessions() as session:
        snapshot = await current_snapshot_id(session)
        findings = [] if snapshot is None else await reports.consistency_report(session, snapshot, mid)
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.kind.value] = counts.get(finding.kind.value, 0) + 1
    return render(request, "consistency.html", manufacturer_id=mid, findings=findings, counts=counts)


routes = [
    Route("/coverage", coverage, methods=["GET"]),
    Route("/manufacturers/{manufacturer_id}/consistency", consistency, methods=["GET"]),
]

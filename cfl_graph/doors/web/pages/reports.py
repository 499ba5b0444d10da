"""The Panel's pages (R8, R9): coverage and timeliness with server-drawn charts (no script, no CDN), and
a manufacturer's consistency report, the same reports the graph and the exports answer from."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cfl_graph import identifiers as ids
from cfl_graph.access.policy import AccessDenied, Action, authorise
from cfl_graph.catalogue import reports
from cfl_graph.catalogue.search import model_names
from cfl_graph.catalogue.snapshots import current_snapshot_id
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.pages.render import not_found, refused, render
from cfl_graph.doors.web.services import services
from cfl_graph.errors import InvalidInput
from cfl_graph.keys import ModelKey

CHART_WIDTH = 640
NARROW_CHART_WIDTH = 560  # the charts read on a phone too (scaled to about two thirds at 390 px)
HISTORY_SNAPSHOTS = 12  # three years of quarterly lists
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


def _nice_top(value: float) -> tuple[int, int]:
    """An axis end at or above `value` and its tick step: 5 or so ticks of 1, 2 or 5 times a power of 10."""
    value = max(value, 1.0)
    magnitude = 10 ** math.floor(math.log10(value / 5)) if value >= 5 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude * 5 >= value)
    return int(math.ceil(value / step) * step), int(step)


_ROW, _LABEL_LINE, _TIMELY_BAR = 42, 18, 16
_PAD = 8


def timeliness_chart(
    groups: list[reports.TimelinessGroup], width: int = NARROW_CHART_WIDTH
) -> dict[str, Any]:
    """Geometry for the median, p90 and worst days from listing to publication, per group: each group's
    name on a line of its own above its bars (so no name is cut), a day axis with ticks, the late line,
    and a legend of the three shades."""
    top, step = _nice_top(max((g.worst_days for g in groups), default=1))
    plot = width - 2 * _PAD
    scale = plot / top
    legend = 24
    rows = [
        {
            "y": legend + index * _ROW,
            "label": group.label,
            "median": round(group.median_days * scale, 1),
            "p90": round(group.p90_days * scale, 1),
            "worst": round(group.worst_days * scale, 1),
            "text": f"median {group.median_days:g} d, p90 {group.p90_days:g} d, worst {group.worst_days} d",
        }
        for index, group in enumerate(groups)
    ]
    axis_y = legend + len(groups) * _ROW + 4
    return {
        "rows": rows,
        "pad": _PAD,
        "label_line": _LABEL_LINE,
        "bar": _TIMELY_BAR,
        "width": width,
        "axis_y": axis_y,
        "ticks": [
            {
                "x": round(_PAD + day * scale, 1),
                "label": str(day),
                "anchor": "end" if day == top else "middle",
            }
            for day in range(0, top + 1, step)
        ],
        "late": None
        if top < reports.LATE_AFTER_DAYS
        else {"x": round(_PAD + reports.LATE_AFTER_DAYS * scale, 1), "days": reports.LATE_AFTER_DAYS},
        "height": axis_y + 36,
    }


# Each series its own colour and dash, so the lines differ without colour too.
_SERIES_STYLES = (
    ("#1b1f24", ""),
    ("#0b5394", "6 3"),
    ("#b35806", "2 3"),
    ("#116329", "8 3 2 3"),
    ("#6639ba", "1 2"),
)


def history_chart(points: list[reports.CoverageAt], width: int = NARROW_CHART_WIDTH) -> dict[str, Any]:
    """Geometry for coverage over time: one line for all versions and one per group (device type), over
    the snapshots, with a 0-100 % axis, each snapshot's date below it and a legend."""
    left, right, top, plot_height = 44, 24, 12, 180
    plot_width = width - left - right
    keys = sorted({g.key for p in points for g in p.groups})
    series_defs = [("all", "All versions")] + [(key, key) for key in keys]
    count = max(len(points) - 1, 1)

    def x(index: int) -> float:
        return round(left + plot_width * (index / count if len(points) > 1 else 0.5), 1)

    def y(ratio: float) -> float:
        return round(top + plot_height * (1 - ratio), 1)

    series = []
    for number, (key, name) in enumerate(series_defs):
        colour, dash = _SERIES_STYLES[number % len(_SERIES_STYLES)]
        dots = []
        for index, point in enumerate(points):
            group = point.total if key == "all" else next((g for g in point.groups if g.key == key), None)
            if group is not None and group.coverage is not None:
                dots.append({"x": x(index), "y": y(group.coverage), "percent": f"{group.coverage:.0%}"})
        series.append(
            {
                "name": name,
                "colour": colour,
                "dash": dash,
                "wide": key == "all",
                "points": " ".join(f"{d['x']},{d['y']}" for d in dots),
                "dots": dots,
            }
        )
    legend_y = top + plot_height + 58
    return {
        "width": width,
        "height": legend_y + 20 * math.ceil(len(series) / 3),
        "left": left,
        "right": width - right,
        "top": top,
        "bottom": top + plot_height,
        "grid": [{"y": y(r / 100), "label": f"{r}%"} for r in (0, 25, 50, 75, 100)],
        "ticks": [{"x": x(i), "label": p.since.strftime("%Y-%m-%d")} for i, p in enumerate(points)],
        "series": series,
        "legend": [
            {"x": left + (n % 3) * 170, "y": legend_y + 20 * (n // 3), **s} for n, s in enumerate(series)
        ],
    }


async def coverage(request: Request) -> Response:
    try:
        authorise(principal_of(request.scope), Action.READ_REPORTS)
    except AccessDenied as exc:
        return refused(request, exc)
    by_manufacturer: list[reports.CoverageGroup] = []
    by_type: list[reports.CoverageGroup] = []
    timely: list[reports.TimelinessGroup] = []
    history: list[reports.CoverageAt] = []
    async with services(request).sessions() as session:
        snapshot = await current_snapshot_id(session)
        if snapshot is not None:
            by_manufacturer = await reports.coverage_summary(session, snapshot, reports.GroupBy.MANUFACTURER)
            by_type = await reports.coverage_summary(session, snapshot, reports.GroupBy.DEVICE_TYPE)
            timely = await reports.timeliness(session, snapshot, reports.GroupBy.MANUFACTURER, None)
        history = await reports.coverage_history(session, reports.GroupBy.DEVICE_TYPE, HISTORY_SNAPSHOTS)
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
        history=history,
        history_chart=history_chart(history),
        late_after=reports.LATE_AFTER_DAYS,
    )


FINDINGS_PER_PAGE = 50


async def consistency(request: Request) -> Response:
    try:
        mid = ids.manufacturer_id(request.path_params["manufacturer_id"])
        authorise(principal_of(request.scope), Action.READ_CONSISTENCY, manufacturer_id=mid)
    except ids.InvalidValue as exc:
        return not_found(request, f"No such manufacturer: {exc}")
    except AccessDenied as exc:
        return refused(request, exc)
    try:
        kinds = reports.parse_finding_kinds(request.query_params.getlist("kind"))
    except InvalidInput as exc:
        return refused(request, exc, 400)
    after = request.query_params.get("after") or None
    async with services(request).sessions() as session:
        snapshot = await current_snapshot_id(session)
        findings = [] if snapshot is None else await reports.consistency_report(session, snapshot, mid)
        try:
            found = reports.page_findings(findings, kinds, FINDINGS_PER_PAGE, after)
        except InvalidInput as exc:
            return refused(request, exc, 400)
        shown = found.findings
        names = await model_names(
            session, snapshot, (ModelKey(mid, f.model_id, f.hardware_version) for f in shown)
        )
        manufacturer = next(iter(names.values()), None)
    next_page = None
    if found.page.has_next:
        next_page = "?" + urlencode([*(("kind", k.value) for k in kinds), ("after", found.page.end_cursor)])
    return render(
        request,
        "consistency.html",
        manufacturer_id=mid,
        manufacturer_name=None if manufacturer is None else manufacturer.manufacturer_name,
        findings=[(f, names.get(ModelKey(mid, f.model_id, f.hardware_version))) for f in shown],
        counts=found.counts,
        total=found.page.total,
        kinds=[k.value for k in kinds],
        everything=sum(found.counts.values()),
        next_page=next_page,
        first_page=found.page.has_previous,
    )


routes = [
    Route("/coverage", coverage, methods=["GET"]),
    Route("/manufacturers/{manufacturer_id}/consistency", consistency, methods=["GET"]),
]

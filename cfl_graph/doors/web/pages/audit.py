"""The audit page (R10): the trail newest first, filtered by action and actor, with a link to export the
events shown."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cfl_graph import identifiers as ids
from cfl_graph.access.policy import AccessDenied, Action, authorise
from cfl_graph.audit import recent_events
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.pages.render import refused, render
from cfl_graph.doors.web.services import services
from cfl_graph.identifiers import InvalidValue
from cfl_graph.row_ids import row_id

AUDIT_PAGE = 100
_NOTHING: dict[str, Any] = {"events": [], "action": "", "actor": "", "older": None, "export": None}


async def audit(request: Request) -> Response:
    try:
        authorise(principal_of(request.scope), Action.READ_AUDIT)
    except AccessDenied as exc:
        return refused(request, exc)
    query = request.query_params
    action = (query.get("action") or "").strip()[:64]
    actor = (query.get("actor") or "").strip()[:200]
    before: int | None = None
    if query.get("before"):
        try:
            before = row_id(query["before"], "`before` (an event id)")
        except InvalidValue as exc:
            return render(request, "audit.html", 422, error=exc.reason, **_NOTHING)
    if ids.control_character(action + actor):
        # No action or actor holds one, and a NUL would reach PostgreSQL, which cannot compare it.
        error = "the filter holds a control character; no action or actor does"
        return render(request, "audit.html", 422, error=error, **_NOTHING)
    async with services(request).sessions() as session:
        events = await recent_events(session, AUDIT_PAGE + 1, action=action, actor=actor, before=before)
    more = len(events) > AUDIT_PAGE
    events = events[:AUDIT_PAGE]
    older = (
        urlencode({"action": action, "actor": actor, "before": events[-1].id}) if more and events else None
    )
    export = (
        f"/api/v1/audit/events?{urlencode({'from': events[-1].id, 'to': events[0].id})}" if events else None
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


routes = [Route("/audit", audit, methods=["GET"])]

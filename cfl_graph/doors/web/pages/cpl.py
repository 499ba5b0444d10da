"""The CPL page: recent snapshots and sync runs, and what changed between two snapshots."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cfl_graph.access.policy import AccessDenied, Action, authorise
from cfl_graph.catalogue.snapshots import current_snapshot_id, recent_runs, recent_snapshots
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.pages.render import refused, render
from cfl_graph.doors.web.services import services
from cfl_graph.identifiers import InvalidValue
from cfl_graph.row_ids import row_id
from cpl_sync.diff import diff_snapshots

SHOWN = 50  # snapshots and runs listed
DIFF_ROWS = 200  # changes shown of a diff; the CLI and the graph page through the rest


async def cpl(request: Request) -> Response:
    try:
        authorise(principal_of(request.scope), Action.READ_CATALOGUE)
    except AccessDenied as exc:
        return refused(request, exc)
    query = request.query_params
    async with services(request).sessions() as session:
        snapshots = await recent_snapshots(session, SHOWN)
        runs = await recent_runs(session, SHOWN)
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
                diff = await diff_snapshots(session, older, newer, limit=DIFF_ROWS)
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


routes = [Route("/cpl", cpl, methods=["GET"])]

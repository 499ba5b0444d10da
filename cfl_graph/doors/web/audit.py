"""`GET /api/v1/audit/events`: a range of the audit trail as JSON lines, ending with the chain head."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cfl_graph.access.policy import AccessDenied, Action, authorise
from cfl_graph.audit import export_range
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.refusals import refusal_response
from cfl_graph.doors.web.services import services
from cfl_graph.identifiers import InvalidValue
from cfl_graph.row_ids import row_id


def _bound(request: Request, name: str) -> int | None:
    """An event id from the query string; checked before the answer starts, since a value the id
    column cannot hold would otherwise stop the stream half-way with the status already sent."""
    raw = request.query_params.get(name)
    return None if raw is None else row_id(raw, f"`{name}` (an event id)")


async def events(request: Request) -> Response:
    try:
        authorise(principal_of(request.scope), Action.READ_AUDIT)
    except AccessDenied as exc:
        return refusal_response(exc)
    try:
        first, last = _bound(request, "from") or 1, _bound(request, "to")
    except InvalidValue as exc:
        return JSONResponse({"error": exc.reason, "code": "BAD_USER_INPUT", "problems": []}, status_code=400)
    if last is not None and last < first:
        return JSONResponse(
            {"error": "`to` must not be before `from`", "code": "BAD_USER_INPUT", "problems": []}, 400
        )
    sessions = services(request).sessions

    async def lines() -> AsyncIterator[bytes]:
        async with sessions() as session:
            async for item in export_range(session, first, last):
                yield (json.dumps(item, ensure_ascii=False) + "\n").encode()

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="cfl-audit-{first}-{last or "head"}.jsonl"'},
    )


routes = [Route("/api/v1/audit/events", events, methods=["GET"])]

"""The web interface's pages (R5): server-rendered, readable without JavaScript, one module per domain.

Every page asks the policy before it reads; a refusal renders a page with the reason, never a bare
error."""

from __future__ import annotations

from starlette.routing import Route

from cfl_graph.doors.web.pages import audit, catalogue, cpl, images, reports, session

routes: list[Route] = [
    *session.routes,
    *catalogue.routes,
    *images.routes,
    *reports.routes,
    *cpl.routes,
    *audit.routes,
]

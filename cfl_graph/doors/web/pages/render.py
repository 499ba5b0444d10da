"""What every web page shares: the templates, `render` (the principal and the CSRF token go to every
template), the refusal page, and the fixed messages a redirect may carry back to a page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates

from cfl_graph.doors.web.middleware import csrf_token_of, principal_of
from cfl_graph.doors.web.refusals import http_status

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))

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


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    return TEMPLATES.TemplateResponse(
        request,
        name,
        {"principal": principal_of(request.scope), "csrf_token": csrf_token_of(request.scope), **context},
        status_code=status,
    )


def refused(request: Request, exc: Exception, status: int | None = None) -> Response:
    """The refusal page, with the refusal's reason and the status its code maps to."""
    return render(request, "refused.html", status or http_status(exc), reason=str(exc))


def not_found(request: Request, reason: str) -> Response:
    return render(request, "refused.html", 404, reason=reason)


def done_message(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))


# Paths of the machine doors: an unknown one there is answered in JSON, as their refusals are.
_MACHINE_PATHS = ("/api/", "/reports/", "/feeds/", "/subgraphs/", "/static/")


async def unknown_path(request: Request, exc: Exception) -> Response:
    """A 404 for a path no route serves (Starlette's own is a bare "Not Found"): the site's page for a
    browser, the refusals' JSON on the machine doors."""
    reason = getattr(exc, "detail", None) or "Not Found"
    if request.url.path.startswith(_MACHINE_PATHS):
        return JSONResponse(
            {"error": f"nothing is served at {request.url.path}", "code": "NOT_FOUND", "problems": []},
            status_code=404,
        )
    if reason != "Not Found":
        return render(request, "refused.html", 404, reason=str(reason))
    return render(request, "not_found.html", 404, path=request.url.path)

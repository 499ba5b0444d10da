"""Signing in (a session opened from a token), signing out, and the home page."""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cfl_graph.access.policy import Action, allowed
from cfl_graph.access.sessions import LOGIN_CSRF_COOKIE, SESSION_COOKIE, end_session, open_session
from cfl_graph.access.tokens import TokenError
from cfl_graph.catalogue.search import model_names
from cfl_graph.catalogue.snapshots import current_snapshot
from cfl_graph.database import writer_of
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.pages.render import render
from cfl_graph.doors.web.services import services
from cfl_graph.images.listing import latest_served, served_count
from cfl_graph.keys import ModelKey
from cfl_graph.tables.base import utc_now


def _safe_next(raw: str | None) -> str:
    """Only a path on this site: never another host (`//evil`) or scheme (an open redirect)."""
    if raw and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/"


async def login_form(request: Request, error: str | None = None, status: int = 200) -> Response:
    if principal_of(request.scope) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    login_csrf = secrets.token_urlsafe(32)
    next_path = _safe_next(request.query_params.get("next"))
    response = render(request, "login.html", status, login_csrf=login_csrf, next=next_path, error=error)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        login_csrf,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def login(request: Request) -> Response:
    form = await request.form()
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    given = str(form.get("csrf_token", ""))
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return await login_form(request, "The sign-in form expired; please try again.", 403)
    try:
        async with writer_of(services(request).sessions).begin() as session:
            opened = await open_session(session, str(form.get("token", "")))
    except TokenError as exc:
        return await login_form(request, f"Not signed in: {exc}.", 401)
    response = RedirectResponse(_safe_next(str(form.get("next", ""))), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        opened.cookie_value,
        max_age=int((opened.expires_at - utc_now()).total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


async def logout(request: Request) -> Response:
    # The middleware has already checked this request's CSRF token against the session.
    principal = principal_of(request.scope)
    cookie = request.cookies.get(SESSION_COOKIE)
    if principal is not None and cookie:
        async with writer_of(services(request).sessions).begin() as session:
            await end_session(session, cookie, principal)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def home(request: Request) -> Response:
    principal = principal_of(request.scope)
    async with services(request).sessions() as session:
        snapshot = await current_snapshot(session)
        published = await served_count(session)
        latest = await latest_served(session, 10)
        names = await model_names(
            session, None if snapshot is None else snapshot.id, map(ModelKey.of, latest)
        )
    return render(
        request,
        "home.html",
        snapshot=snapshot,
        published=published,
        latest=[(image, names.get(ModelKey.of(image))) for image in latest],
        may_read=allowed(principal, Action.READ_CATALOGUE),
    )


routes = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]

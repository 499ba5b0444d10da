"""Web sessions (R8): sign in with a token, then a cookie that is HttpOnly, SameSite and Secure over TLS;
every unsafe request the cookie authenticates needs the session's CSRF token; sign-out and token
revocation end the session."""

from __future__ import annotations

import re

import httpx2
import pytest
from sqlalchemy import select

from cfl_graph.access.tokens import TOKEN_PATTERN, revoke_token
from cfl_graph.audit import SYSTEM
from cfl_graph.database import Database
from cfl_graph.doors.web.app import create_app
from cfl_graph.settings import Settings
from cfl_graph.tables import AuditEvent
from tests.fixtures.parties import Tokens, make_tokens

PAGE = {"Accept": "text/html"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def tokens(db: Database) -> Tokens:
    return await make_tokens(db)


def browser(db: Database, base_url: str = "http://cfl.test") -> httpx2.AsyncClient:
    app = create_app(Settings(database_url=db.url), db=db)
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=base_url)


async def sign_in(http: httpx2.AsyncClient, token: str, next_path: str = "/") -> httpx2.Response:
    form = await http.get(f"/login?next={next_path}", headers=PAGE)
    found = CSRF.search(form.text)
    assert found is not None
    return await http.post("/login", data={"token": token, "csrf_token": found.group(1), "next": next_path})


def page_csrf(page: httpx2.Response) -> str:
    found = CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


async def test_anonymous_pages_lead_to_sign_in(db: Database) -> None:
    async with browser(db) as http:
        home = await http.get("/", headers=PAGE)
        form = await http.get("/login", headers=PAGE)
        css = await http.get("/static/site.css")
    assert (home.status_code, home.headers["location"]) == (303, "/login?next=%2F")
    assert form.status_code == 200 and 'name="token"' in form.text
    assert "script" not in form.text and "style=" not in form.text  # nothing the CSP would have to allow
    assert "frame-ancestors 'none'" in form.headers["Content-Security-Policy"]
    login_cookie = form.headers["set-cookie"]
    assert "HttpOnly" in login_cookie and "SameSite=strict" in login_cookie and "Path=/login" in login_cookie
    assert css.status_code == 200


async def test_signing_in_opens_a_session_with_a_safe_cookie(db: Database, tokens: Tokens) -> None:
    async with browser(db) as http:
        signed_in = await sign_in(http, tokens.supplier, "/")
        cookie = signed_in.headers["set-cookie"]
        home = await http.get("/", headers=PAGE)
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/")
    assert "cfl_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    assert tokens.supplier not in cookie  # the cookie is a session id, not the token
    assert home.status_code == 200
    assert "Calder Supply Ltd" in home.text and "supplier" in home.text
    assert "The library has not synchronised the CPL yet." in home.text


async def test_over_tls_the_cookie_is_secure(db: Database, tokens: Tokens) -> None:
    async with browser(db, "https://cfl.test") as http:
        signed_in = await sign_in(http, tokens.supplier)
    assert "Secure" in signed_in.headers["set-cookie"]


async def test_sign_in_refusals_say_why(db: Database, tokens: Tokens) -> None:
    async with browser(db) as http:
        bad_token = await sign_in(http, tokens.revoked)
        stale = await http.post("/login", data={"token": tokens.supplier, "csrf_token": "forged"})
    assert (
        bad_token.status_code == 401
        and "Not signed in: the token has been revoked; ask for a new one." in bad_token.text
    )
    assert stale.status_code == 403 and "The sign-in form expired" in stale.text
    assert "cfl_session" not in stale.headers.get("set-cookie", "")


async def test_no_redirect_off_the_site_after_sign_in(db: Database, tokens: Tokens) -> None:
    async with browser(db) as http:
        signed_in = await sign_in(http, tokens.supplier, "//evil.example/steal")
    assert signed_in.headers["location"] == "/"


async def test_unsafe_requests_from_the_session_need_its_csrf_token(db: Database, tokens: Tokens) -> None:
    query = {"query": "{ cplSnapshot { id } }"}
    async with browser(db) as http:
        await sign_in(http, tokens.manufacturer)
        csrf = page_csrf(await http.get("/", headers=PAGE))
        read = await http.get("/graphql", params=query)
        without = await http.post("/graphql", json=query)
        wrong = await http.post("/graphql", json=query, headers={"X-CSRF-Token": "x" * 43})
        with_token = await http.post("/graphql", json=query, headers={"X-CSRF-Token": csrf})
        cross_site = await http.post(
            "/graphql", json=query, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
        )
    assert read.status_code == 200
    assert without.status_code == 403 and "CSRF" in without.json()["errors"][0]["message"]
    assert without.json()["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
    assert wrong.status_code == 403
    assert (with_token.status_code, with_token.json()) == (200, {"data": {"cplSnapshot": None}})
    assert cross_site.status_code == 403 and "cross-site request" in cross_site.json()["errors"][0]["message"]


async def test_signing_out_ends_the_session(db: Database, tokens: Tokens) -> None:
    async with browser(db) as http:
        await sign_in(http, tokens.panel)
        csrf = page_csrf(await http.get("/", headers=PAGE))
        forged = await http.post("/logout", data={"csrf_token": "forged"})
        out = await http.post("/logout", data={"csrf_token": csrf})
        after = await http.get("/", headers=PAGE)
    assert forged.status_code == 403
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert after.status_code == 303  # back to sign-in
    async with db.sessions() as session:
        actions = list((await session.execute(select(AuditEvent.action))).scalars())
    assert actions.count("session.opened") == 1 and actions.count("session.ended") == 1


async def test_revoking_the_token_ends_its_sessions(db: Database, tokens: Tokens) -> None:
    async with browser(db) as http:
        await sign_in(http, tokens.supplier)
        assert (await http.get("/", headers=PAGE)).status_code == 200
        public_id = TOKEN_PATTERN.fullmatch(tokens.supplier)
        assert public_id is not None
        async with db.sessions() as session, session.begin():
            await revoke_token(session, public_id.group(1), actor=SYSTEM)
        assert (await http.get("/", headers=PAGE)).status_code == 303

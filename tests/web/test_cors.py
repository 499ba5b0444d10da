"""CORS by allow-list (issue 21): with `CFL_CORS_ORIGINS` unset no answer carries a CORS header; with it,
a page of a listed origin may call `/graphql` and the downloads with a bearer token, its preflight
answered before sign-in; any other origin's preflight is refused; no answer ever allows credentials, so a
session cookie never works cross-origin; and no other path gains CORS. (In Chromium:
tests/browser/test_cors.py.)"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from cfl_graph.database import Database
from cfl_graph.settings import SettingsError, from_env
from tests.fixtures.library import OWN_A1, World, make_world

pytestmark = pytest.mark.postgres

DASHBOARD = "https://dash.example.org"
ELSEWHERE = "https://evil.example"
QUERY = {"query": "{ cplSnapshot { rowCount } }"}


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    world = await make_world(db, tmp_path)
    await world.publish((await world.upload(world.image(OWN_A1))).id)
    return world


def http(world: World, *origins: str) -> httpx2.AsyncClient:
    app = world.app(cors_origins=origins)
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://cfl.test")


def preflight(
    origin: str, method: str = "POST", headers: str = "authorization, content-type"
) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


def cors_headers(response: httpx2.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


async def test_without_origins_no_answer_carries_a_cors_header(world: World) -> None:
    token = {"Authorization": f"Bearer {world.tokens.supplier}"}
    async with http(world) as client:
        answers = [
            await client.post("/graphql", json=QUERY, headers={**token, "Origin": DASHBOARD}),
            await client.options("/graphql", headers=preflight(DASHBOARD)),
            await client.get("/api/v1/images/1/file", headers={**token, "Origin": DASHBOARD}),
        ]
    assert [cors_headers(answer) for answer in answers] == [{}, {}, {}]
    assert answers[0].status_code == 200
    assert answers[1].status_code == 401  # as before: a preflight is just another anonymous request


async def test_a_listed_origin_s_preflight_is_answered_before_sign_in(world: World) -> None:
    async with http(world, DASHBOARD) as client:
        graphql = await client.options("/graphql", headers=preflight(DASHBOARD))
        download = await client.options(
            "/api/v1/images/1/file", headers=preflight(DASHBOARD, "GET", "authorization, range")
        )
    for answer, methods in ((graphql, "GET, POST"), (download, "GET, HEAD")):
        assert answer.status_code == 204, answer.text
        allowed = cors_headers(answer)
        assert allowed["access-control-allow-origin"] == DASHBOARD
        assert allowed["access-control-allow-methods"] == methods
        assert {"Authorization", "Content-Type", "Range"} <= {
            h.strip() for h in allowed["access-control-allow-headers"].split(",")
        }
        assert "access-control-allow-credentials" not in allowed
        assert "Origin" in answer.headers["vary"]


async def test_another_origin_s_preflight_is_refused(world: World) -> None:
    async with http(world, DASHBOARD) as client:
        graphql = await client.options("/graphql", headers=preflight(ELSEWHERE))
        download = await client.options("/api/v1/images/1/file", headers=preflight(ELSEWHERE, "GET"))
        # An origin differs by scheme and port too.
        near = await client.options("/graphql", headers=preflight("http://dash.example.org"))
    assert graphql.status_code == 403 and cors_headers(graphql) == {}
    assert graphql.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert download.status_code == 403 and cors_headers(download) == {} and "error" in download.json()
    assert near.status_code == 403 and cors_headers(near) == {}


async def test_a_listed_origin_reads_answers_and_refusals_with_a_bearer_token(world: World) -> None:
    token = {"Authorization": f"Bearer {world.tokens.supplier}"}
    async with http(world, DASHBOARD) as client:
        answered = await client.post("/graphql", json=QUERY, headers={**token, "Origin": DASHBOARD})
        kept = await client.get("/graphql", params=QUERY, headers={**token, "Origin": DASHBOARD})
        refused = await client.post("/graphql", json=QUERY, headers={"Origin": DASHBOARD})
        image = await client.get(
            "/api/v1/images/1/file", headers={**token, "Origin": DASHBOARD, "Range": "bytes=0-9"}
        )
        other = await client.post("/graphql", json=QUERY, headers={**token, "Origin": ELSEWHERE})
    assert answered.json() == {"data": {"cplSnapshot": {"rowCount": 7}}}
    for answer in (answered, kept, refused, image):
        allowed = cors_headers(answer)
        assert allowed["access-control-allow-origin"] == DASHBOARD, answer.status_code
        assert "ETag" in allowed["access-control-expose-headers"]
        assert "access-control-allow-credentials" not in allowed
    assert kept.headers["vary"] == "Accept, Authorization, Cookie, Origin"
    assert (
        refused.status_code == 401 and refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    )
    assert image.status_code == 206 and len(image.content) == 10
    assert "Content-Range" in cors_headers(image)["access-control-expose-headers"]
    # Another origin's request is answered (a server cannot stop it being sent), but says nothing that
    # would let its page read the answer.
    assert cors_headers(other) == {} and "Origin" in other.headers["vary"]


async def test_no_other_path_gains_cors(world: World) -> None:
    token = {"Authorization": f"Bearer {world.tokens.supplier}"}
    async with http(world, DASHBOARD) as client:
        answers = {
            path: await client.get(path, headers={**token, "Origin": DASHBOARD})
            for path in ("/api/v1/downloads", "/api/v1/images/1", "/feeds/images.atom", "/models", "/healthz")
        }
        subgraph = await client.post(
            "/subgraphs/cfl/graphql", json=QUERY, headers={**token, "Origin": DASHBOARD}
        )
        pages_preflight = await client.options("/models", headers=preflight(DASHBOARD, "GET"))
    for path, answer in {**answers, "subgraph": subgraph, "preflight /models": pages_preflight}.items():
        assert cors_headers(answer) == {}, path
    assert pages_preflight.status_code == 401


async def test_a_session_cookie_never_authenticates_a_cross_origin_call(world: World) -> None:
    async with http(world, DASHBOARD) as client:
        form = await client.get("/login", headers={"Accept": "text/html"})
        csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        signed_in = await client.post("/login", data={"token": world.tokens.supplier, "csrf_token": csrf})
        assert signed_in.status_code == 303
        # The browser sends the cookie only with credentials: "include", and would then refuse the answer
        # (no Access-Control-Allow-Credentials); a POST is refused by the CSRF rule before that.
        posted = await client.post("/graphql", json=QUERY, headers={"Origin": DASHBOARD})
    assert posted.status_code == 403 and "cross-site request" in posted.json()["errors"][0]["message"]
    assert "access-control-allow-credentials" not in cors_headers(posted)


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("", ()),
        ("https://Dash.Example.org", ("https://dash.example.org",)),
        ("https://dash.example.org/", ("https://dash.example.org",)),
        (
            "https://a.example:443, http://localhost:8080,,https://a.example",
            ("https://a.example", "http://localhost:8080"),
        ),
        ("http://[::1]:3000", ("http://[::1]:3000",)),
    ],
)
def test_cors_origins_are_kept_as_a_browser_writes_its_origin(raw: str, kept: tuple[str, ...]) -> None:
    assert from_env({"CFL_CORS_ORIGINS": raw}).cors_origins == kept
    assert from_env({}).cors_origins == ()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("*", "'*' is no origin: name each, like https://dash.example.org"),
        ("https://a.example, null", "'null' is no origin: name each, like https://dash.example.org"),
        ("https://dash.example.org/app", "an origin is scheme://host[:port] alone, without '/app'"),
        ("dash.example.org", "expected an http:// or https:// URL with a host"),
        ("https://user:pw@dash.example.org", "an origin carries no user name or password"),
        ("https://dash.example.org?x", "an origin has no query (?) or fragment (#)"),
    ],
)
def test_a_bad_cors_origin_is_refused_naming_the_variable_and_why(raw: str, reason: str) -> None:
    with pytest.raises(SettingsError) as refused:
        from_env({"CFL_CORS_ORIGINS": raw})
    assert str(refused.value) == f"CFL_CORS_ORIGINS={raw!r}: {reason}"

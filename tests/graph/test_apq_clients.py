"""Automatic persisted queries stick however the query is answered (issue 21): Apollo Client's own
persisted-query link, in Node against a real server whose response cache already holds the answer,
registers its query once and is answered by the hash alone from then on, over POST and over GET.

Before the fix, a text sent with its hash and answered from the cache was never stored: every later
hash-only request was `PERSISTED_QUERY_NOT_FOUND`, for exactly the queries dashboards send most.
The 304 and executed paths are proved at the HTTP level in tests/graph/test_cached_answers.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cfl_graph.database import Database
from tests.fixtures.figures import report
from tests.fixtures.library import World, make_world, serving
from tests.fixtures.node import ROOT, run_node

pytestmark = pytest.mark.postgres

CLIENT = ROOT / "tests" / "graph" / "node" / "apq_client.mjs"
SNAPSHOT = {
    "cplSnapshot": {"__typename": "CplSnapshot", "snapshotId": 1, "rowCount": 7, "deviceModelCount": 4}
}


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


def step(request: dict[str, Any]) -> tuple[str, str, int, list[str], str | None]:
    """What one request of the link was: its method, what it sent, its status, codes and cache outcome."""
    sent = (
        "text+hash"
        if request["withText"] and request["withHash"]
        else "hash"
        if request["withHash"]
        else "text"
    )
    cache = request["cacheStatus"].removeprefix("cfl-graph; ") if request["cacheStatus"] else None
    return request["method"], sent, request["status"], request["codes"], cache


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_apollo_clients_persisted_queries_stick_when_the_cache_already_holds_the_answer(
    world: World, node: str, method: str
) -> None:
    async with serving(world.app()) as url:
        token = world.tokens.supplier
        warm = (await run_node(node, CLIENT, f"{url}/graphql", token, "plain")).json()
        dashboards = (await run_node(node, CLIENT, f"{url}/graphql", token, method)).json()

    # Another dashboard asked the same query first, with its text: the answer is in the cache.
    assert [step(r) for r in warm["requests"]] == [("POST", "text", 200, [], "fwd=miss")]
    # The link sends the hash; not known yet, so the text with it, answered from the cache, and stored.
    # From then on the hash alone is enough, for this client and for the next one (a reload).
    hashed = "GET" if method == "GET" else "POST"
    assert [step(r) for r in dashboards["requests"]] == [
        (hashed, "hash", 200, ["PERSISTED_QUERY_NOT_FOUND"], None),
        ("POST", "text+hash", 200, [], "hit"),
        (hashed, "hash", 200, [], "hit"),
        (hashed, "hash", 200, [], "hit"),
        (hashed, "hash", 200, [], "hit"),
    ]
    assert all(
        r["contentType"].startswith("application/graphql-response+json") for r in dashboards["requests"]
    )
    assert dashboards["answers"] == [{"data": SNAPSHOT, "error": None}] * 4
    report(
        f"Apollo Client 4 persisted queries over {method} against a warm cache: "
        f"{len(dashboards['requests'])} requests for 4 answers, the text sent once"
    )

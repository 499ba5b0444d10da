"""Every door that reads an id, a key, a cursor, a date or a Range header, sent the generated corpus of
odd ones (`tests/corpus/odd_ids.py`) over a real HTTP connection: URL paths, query strings, headers, and
GraphQL arguments as literals and as variables. Each answer is a 4xx, or a GraphQL error with
`BAD_USER_INPUT` (or another refusal's code): never a 5xx, never `INTERNAL_ERROR`, never an error
logged, never a decoder's, driver's or library's words (issue 21), and the audit export either refuses
at once or ends with its chain head."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from sqlalchemy import select

from cfl_graph.database import Database
from cfl_graph.row_ids import MAX_ROW_ID
from cfl_graph.tables import LibraryImage
from tests.corpus.odd_ids import (
    LIBRARY_WORDS,
    odd_cursors,
    odd_dates,
    odd_global_ids,
    odd_numbers,
    odd_ranges,
)
from tests.fixtures.figures import report
from tests.fixtures.library import OWN_A1, World, client, make_world, serving

pytestmark = pytest.mark.postgres

# Paths with one id in them, each asked by a party that may otherwise use the door.
PATHS = [
    ("GET", "/api/v1/images/{}", "supplier"),
    ("GET", "/api/v1/images/{}/file", "supplier"),
    ("HEAD", "/api/v1/images/{}/file", "supplier"),
    ("GET", "/images/{}", "supplier"),
    ("POST", "/images/{}/publish", "manufacturer"),
    ("GET", "/feeds/manufacturers/{}/images.atom", "supplier"),
    ("GET", "/manufacturers/{}", "supplier"),
    ("GET", "/manufacturers/{}/consistency", "panel"),
    ("GET", "/models/{}/0001/0100", "supplier"),
    ("GET", "/reports/consistency/{}.csv", "panel"),
]
QUERIES = [
    ("/api/v1/audit/events", "from", "panel"),
    ("/api/v1/audit/events", "to", "panel"),
    ("/audit", "before", "panel"),
    ("/cpl", "from", "supplier"),
    ("/models", "manufacturerId", "supplier"),
    ("/reports/gaps.csv", "manufacturerId", "supplier"),
    ("/reports/timeliness.csv", "since", "supplier"),
]
# GraphQL arguments: (document with $v, the variable's type, the party asking).
ARGUMENTS = [
    ("query($v: ID!) { libraryImage(id: $v) { imageId } }", "manufacturer"),
    ("query($v: ID!) { node(id: $v) { id } }", "supplier"),
    ("query($v: ID) { cplSnapshot(id: $v) { snapshotId } }", "supplier"),
    ("mutation($v: ID!) { publishImage(id: $v) { imageId } }", "manufacturer"),
    ("mutation($v: ID!) { discardImage(id: $v) }", "manufacturer"),
    (
        'query($v: String!) { deviceModel(manufacturerId: $v, modelId: "0001", hardwareVersion: "0100") { modelId } }',
        "supplier",
    ),
    (
        'query($v: String!) { deviceModel(manufacturerId: "10B2", modelId: $v, hardwareVersion: $v) { modelId } }',
        "supplier",
    ),
    ("query($v: String!) { consistencyReport(manufacturerId: $v) { manufacturerId } }", "panel"),
]
DATE_ARGUMENTS = [
    ("query($v: Date) { timeliness(groupBy: MANUFACTURER, since: $v) { key } }", "panel"),
]
CURSOR_ARGUMENTS = [
    ("query($v: String) { deviceModels(first: 2, after: $v) { totalCount } }", "supplier"),
    ("query($v: String) { coverageGaps(first: 2, after: $v) { totalCount } }", "supplier"),
]
ENTITY = "query($r: [_Any!]!) { _entities(representations: $r) { __typename } }"


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    world = await make_world(db, tmp_path)
    image = await world.upload(world.image(OWN_A1))
    await world.publish(image.id)
    return world


def must_refuse(value: str) -> bool:
    """A value every GraphQL door must refuse as the caller's error: not ASCII, or a bare number that
    no id column holds (as a hex key it is too long, as an id too large)."""
    digits = value.lstrip("0")
    too_large = value.isascii() and value.isdigit() and (len(digits) > 10 or int(digits or "0") > MAX_ROW_ID)
    return not value.isascii() or too_large


def graphql_literal(value: str) -> str:
    """A GraphQL string literal of `value` (JSON's escapes are GraphQL's, bar lone surrogates)."""
    return json.dumps(value)


async def test_every_door_refuses_every_odd_id_without_a_5xx_or_an_internal_error(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    numbers, global_ids, cursors = odd_numbers(), odd_global_ids(), odd_cursors()
    assert len(numbers) >= 60 and len(global_ids) >= 40 and len(cursors) >= 15
    tokens = {
        "supplier": world.tokens.supplier,
        "manufacturer": world.tokens.manufacturer,
        "panel": world.tokens.panel,
    }
    async with world.db.sessions() as session:
        image_id = await session.scalar(select(LibraryImage.id))
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    caplog.set_level(logging.WARNING)
    async with serving(world.app(rate_limit_per_minute=0, max_request_bytes=4 * 1024 * 1024)) as url:
        http = {party: client(url, token) for party, token in tokens.items()}

        def check(where: str, response: httpx2.Response) -> None:
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code} {response.text[:200]}")
            refusal = response.text if response.status_code >= 400 or '"errors"' in response.text[:20] else ""
            if found := LIBRARY_WORDS.search(refusal):
                failures.append(f"{where}: a library's words, {found.group(0)!r}: {refusal[:300]}")

        def check_graphql(where: str, response: httpx2.Response, value: str) -> None:
            check(where, response)
            if response.status_code >= 500:
                return
            try:
                body: dict[str, Any] = response.json()
            except ValueError:
                failures.append(f"{where}: not JSON: {response.text[:200]}")
                return
            found = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
            if "INTERNAL_ERROR" in found:
                failures.append(f"{where}: {response.text[:300]}")
            # What no id or key is: other scripts' digits, superscripts, numbers past the id columns.
            if must_refuse(value) and "BAD_USER_INPUT" not in found:
                failures.append(f"{where}: not refused: {response.text[:300]}")

        for number in numbers:
            segment = quote(number, safe="")
            for method, path, party in PATHS:
                check(
                    f"{method} {path} {number[:20]!r}",
                    await http[party].request(method, path.format(segment)),
                )
            for path, name, party in QUERIES:
                response = await http[party].get(
                    path, params={name: number, **({"to": "1"} if path == "/cpl" else {})}
                )
                check(f"{path}?{name}={number[:20]!r}", response)
                if path == "/api/v1/audit/events" and response.status_code == 200:
                    last = response.text.strip().splitlines()[-1]
                    if "chain_head" not in last:
                        failures.append(f"{path}?{name}={number[:20]!r}: the export stopped half-way")
        for value in [*numbers, *global_ids]:
            for document, party in ARGUMENTS:
                as_variable = await http[party].post(
                    "/graphql", json={"query": document, "variables": {"v": value}}
                )
                check_graphql(f"{document[:40]} $v={value[:20]!r}", as_variable, value)
                operation, selection = document.split(") ", 1)
                keyword = "mutation " if operation.startswith("mutation") else ""
                literal = keyword + selection.replace("$v", graphql_literal(value))
                as_literal = await http[party].post("/graphql", json={"query": literal})
                check_graphql(f"{literal[:60]!r}", as_literal, value)
        for day in odd_dates():
            for document, party in DATE_ARGUMENTS:
                as_variable = await http[party].post(
                    "/graphql", json={"query": document, "variables": {"v": day}}
                )
                check(f"{document[:40]} $v={day!r}", as_variable)
                selection = document.split(") ", 1)[1]
                as_literal = await http[party].post(
                    "/graphql", json={"query": selection.replace("$v", graphql_literal(day))}
                )
                check(f"since: {day!r}", as_literal)
                # A variable that does not fit its type, or a literal that does not validate.
                for found, code in (
                    (as_variable, "BAD_USER_INPUT"),
                    (as_literal, "GRAPHQL_VALIDATION_FAILED"),
                ):
                    errors = found.json().get("errors") or [{}]
                    if errors[0].get("extensions", {}).get("code") != code or "YYYY-MM-DD" not in found.text:
                        failures.append(
                            f"since: {day!r}: not a {code} saying what a date is: {found.text[:300]}"
                        )
            for path in ("/reports/timeliness.csv", "/reports/timeliness.xlsx"):
                check(f"{path}?since={day!r}", await http["panel"].get(path, params={"since": day}))
        for header in odd_ranges():
            for range_header in ({"Range": header}, {"Range": "bytes=0-1", "If-Range": header}):
                response = await http["supplier"].get(f"/api/v1/images/{image_id}/file", headers=range_header)
                check(f"file with {range_header}", response)
        for cursor in [*cursors, *global_ids[:10]]:
            for document, party in CURSOR_ARGUMENTS:
                response = await http[party].post(
                    "/graphql", json={"query": document, "variables": {"v": cursor}}
                )
                check_graphql(f"{document[:40]} after={cursor[:20]!r}", response, cursor)
            if len(cursor) < 8_000:  # longer is no URL a client sends
                response = await http["supplier"].get("/models", params={"after": cursor})
                check(f"/models?after={cursor[:20]!r}", response)
        for value in numbers[::2]:
            for key in ("manufacturerId", "modelId", "hardwareVersion"):
                representation = {
                    "__typename": "DeviceModel",
                    "manufacturerId": "10B2",
                    "modelId": "0001",
                    "hardwareVersion": "0100",
                    key: value,
                }
                for path in ("/subgraphs/cpl/graphql", "/subgraphs/cfl/graphql"):
                    response = await http["supplier"].post(
                        path, json={"query": ENTITY, "variables": {"r": [representation]}}
                    )
                    check_graphql(f"_entities {key}={value[:20]!r}", response, value)
        for each in http.values():
            await each.aclose()
    seconds = time.monotonic() - started
    logged = [
        f"{r.name} {r.levelname}: {r.getMessage()[:200]}"
        for r in caplog.records
        if r.levelno >= logging.ERROR
    ]
    assert failures == [], "\n".join(failures[:40])
    assert logged == [], "\n".join(logged[:20])
    total = sum(statuses.values())
    assert total > 2_000
    report(
        f"odd ids: {len(numbers)} numbers, {len(global_ids)} global ids, {len(cursors)} cursors, "
        f"{len(odd_dates())} dates, {len(odd_ranges())} Range headers; {total:,} "
        f"requests to {len(PATHS)} paths, {len(QUERIES)} query parameters, "
        f"{len(ARGUMENTS) + len(CURSOR_ARGUMENTS) + len(DATE_ARGUMENTS) + 1} GraphQL arguments in "
        f"{seconds:.1f} s; statuses "
        + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
    )

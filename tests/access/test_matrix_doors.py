"""The authorisation matrix through the real doors (R4, R8): every write and every protected read, sent over
a real HTTP connection to uvicorn (GraphQL at POST /graphql, and the HTTP endpoints), as every kind of
principal; each cell's outcome written out by hand.

The expected table is written from DESIGN.md ("Access") and the README ("Access", "Firmware images"), not
derived from the code; `tests/access/test_policy.py` proves the same rules one level down, on the policy
alone. Here a cell also proves that a refusal changed nothing: no image, declaration or audit event moved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from cfl_graph.access.tokens import issue_token
from cfl_graph.audit import SYSTEM
from cfl_graph.database import Database
from cfl_graph.tables import AuditEvent, CommercialDeclaration, LibraryImage, Party
from cpl_sync.sync import sync_cpl
from tests.fixtures.cpl_files import write_csv
from tests.fixtures.library import CPL, GOOD_NOTES, Version, World, client, make_world, serving
from tests.fixtures.parties import OWN_MANUFACTURER_ID

pytestmark = pytest.mark.postgres

# Who asks, and the token each sends (None: no Authorization header). "other manufacturer" is a
# manufacturer registered for 2C4F acting on 10B2's objects; every object in the matrix is 10B2's.
PRINCIPALS: dict[str, str | None] = {
    "nobody": None,
    "supplier": "supplier",
    "manufacturer": "manufacturer",
    "other manufacturer": "other_manufacturer",
    "manufacturer read-only": "read_only_manufacturer",
    "panel": "panel",
    "panel granted downloads": "panel_with_downloads",
    "admin": "admin",
    "expired token": "expired",
    "revoked token": "revoked",
    "disabled party": "disabled_party",
}
COLUMNS = list(PRINCIPALS)

# ok: allowed (GraphQL: data, no errors; HTTP: 200, or 201 for an upload).
# 401: refused at the HTTP door before any handler or GraphQL runs (no token, or one that is bad, expired,
#      revoked or of a disabled party).
# 403: not allowed (GraphQL: FORBIDDEN).
# 404: not found, because drafts are seen by their own manufacturer only and are not revealed to anyone
#      else, whatever they ask to do with one (GraphQL: NOT_FOUND; for the libraryImage query, null).
# 410: withdrawn: still listed, its bytes no longer served to anyone but its own manufacturer ("drafts
#      are 404 to others; withdrawn images are 410 with the reason"), whether or not they may download.
# A read-only token stores nothing: every mutation that keeps a result is 403 to it, a recheck included.
MATRIX: dict[str, list[str]] = {
    #                                       nobody supplier manuf  other  m-ro   panel  p+dl   admin  expired revoked disabled
    "cplSnapshot":                          ["401", "ok",   "ok",  "ok",  "ok",  "ok",  "ok",  "ok",  "401",  "401",  "401"],
    "libraryImage(draft)":                  ["401", "404",  "ok",  "404", "ok",  "404", "404", "404", "401",  "401",  "401"],
    "libraryImage(published)":              ["401", "ok",   "ok",  "ok",  "ok",  "ok",  "ok",  "ok",  "401",  "401",  "401"],
    "publishImage":                         ["401", "404",  "ok",  "404", "403", "404", "404", "404", "401",  "401",  "401"],
    "approveImage":                         ["401", "404",  "ok",  "404", "403", "404", "404", "404", "401",  "401",  "401"],
    "withdrawImage":                        ["401", "403",  "ok",  "403", "403", "403", "403", "403", "401",  "401",  "401"],
    "updateReleaseNotes":                   ["401", "404",  "ok",  "404", "403", "404", "404", "404", "401",  "401",  "401"],
    "recheckImage":                         ["401", "404",  "ok",  "404", "403", "404", "404", "404", "401",  "401",  "401"],
    "discardImage":                         ["401", "404",  "ok",  "404", "403", "404", "404", "404", "401",  "401",  "401"],
    "declareCommercial":                    ["401", "403",  "ok",  "403", "403", "403", "403", "403", "401",  "401",  "401"],
    "POST /api/v1/images":                  ["401", "403",  "ok",  "403", "403", "403", "403", "403", "401",  "401",  "401"],
    "GET /api/v1/images/{draft}":           ["401", "404",  "ok",  "404", "ok",  "404", "404", "404", "401",  "401",  "401"],
    "GET /api/v1/images/{published}/file":  ["401", "ok",   "ok",  "ok",  "ok",  "403", "ok",  "403", "401",  "401",  "401"],
    "GET /api/v1/images/{draft}/file":      ["401", "404",  "ok",  "404", "ok",  "404", "404", "404", "401",  "401",  "401"],
    "GET /api/v1/images/{withdrawn}/file":  ["401", "410",  "ok",  "410", "ok",  "410", "410", "410", "401",  "401",  "401"],
    "GET /api/v1/downloads":                ["401", "ok",   "ok",  "ok",  "ok",  "403", "ok",  "403", "401",  "401",  "401"],
    "GET /api/v1/audit/events":             ["401", "403",  "403", "403", "403", "ok",  "ok",  "ok",  "401",  "401",  "401"],
    "GET /feeds/images.atom":               ["401", "ok",   "ok",  "ok",  "ok",  "ok",  "ok",  "ok",  "401",  "401",  "401"],
    "GET /api/v1/catalogue.json":           ["401", "ok",   "ok",  "ok",  "ok",  "ok",  "ok",  "ok",  "401",  "401",  "401"],
    "recordUpgradePathway":                 ["401", "403",  "ok",  "403", "403", "403", "403", "403", "401",  "401",  "401"],
    "coverageGaps":                         ["401", "ok",   "ok",  "ok",  "ok",  "ok",  "ok",  "ok",  "401",  "401",  "401"],
    "consistencyReport(10B2)":              ["401", "403",  "ok",  "403", "ok",  "ok",  "ok",  "ok",  "401",  "401",  "401"],
    "GET /reports/coverage.csv":            ["401", "ok",   "ok",  "ok",  "ok",  "ok",  "ok",  "ok",  "401",  "401",  "401"],
    "GET /reports/consistency/10B2.xlsx":   ["401", "403",  "ok",  "403", "ok",  "ok",  "ok",  "ok",  "401",  "401",  "401"],
}  # fmt: skip

# Cells where the service does not do what the rules say, each with why; they run on their own, as strict
# expected failures, so the rest of their row still proves its cells.
# Cells whose outcome contradicted the rules are left out of their row while a bug is open; none is.
# (recheckImage as a read-only manufacturer was one: recheck stores a new check, so it is now a write.)
KNOWN_BUGS: dict[tuple[str, str], str] = {}

REASON = "bricks meters on cold start"
NEW_NOTES = "## Changes\n\n- Fixed the display of the standing charge on the in-home display.\n"

# Besides the every-world CPL: one certified 10B2 version per principal, so that in a row that writes,
# every cell starts from an object of its own that no other cell has touched.
OWN_VERSIONS = {
    who: Version(OWN_MANUFACTURER_ID, "0003", "0100", f"{0x04000000 + (i << 8):08X}")
    for i, who in enumerate(COLUMNS)
}


@dataclass(frozen=True)
class Scene:
    """A world whose CPL also lists `OWN_VERSIONS`, and a second token of 10B2's manufacturer (four-eyes)."""

    world: World
    second_manufacturer_token: str


@dataclass(frozen=True)
class Target:
    """The object one cell acts on."""

    version: Version
    image_id: int | None = None
    data: bytes = b""


async def make_scene(db: Database, tmp_path: Path) -> Scene:
    world = await make_world(db, tmp_path)
    source = write_csv(tmp_path / "cpl-matrix.csv", [v.as_row() for v in [*CPL, *OWN_VERSIONS.values()]])
    result = await sync_cpl(db, str(source), work_dir=tmp_path / "sync")
    assert result.outcome.value == "applied", result
    async with db.sessions.begin() as session:
        party = (
            await session.execute(select(Party).where(Party.name == "Northfield Metering Ltd"))
        ).scalar_one()
        second = await issue_token(session, party, actor=SYSTEM)
    return Scene(world, second.text)


# --- the state a cell starts from, built through the service --------------------------------------


async def version_only(scene: Scene, version: Version) -> Target:
    return Target(version, data=scene.world.image(version))


async def draft(scene: Scene, version: Version) -> Target:
    data = scene.world.image(version)
    return Target(version, (await scene.world.upload(data)).id, data)


async def draft_by_second_token(scene: Scene, version: Version) -> Target:
    """A draft another token of the same manufacturer uploaded, so that `manufacturer` may approve it."""
    data = scene.world.image(version)
    return Target(version, (await scene.world.upload(data, token=scene.second_manufacturer_token)).id, data)


async def published(scene: Scene, version: Version) -> Target:
    target = await draft(scene, version)
    assert target.image_id is not None
    await scene.world.publish(target.image_id)
    return target


async def withdrawn(scene: Scene, version: Version) -> Target:
    target = await published(scene, version)
    assert target.image_id is not None
    world = scene.world
    await world.library.withdraw(await world.principal(world.tokens.manufacturer), target.image_id, REASON)
    return target


# --- the requests ---------------------------------------------------------------------------------

# One client per row, its connection kept alive; each cell sends its own principal's credentials.
Send = Callable[[httpx2.AsyncClient, Target, dict[str, str]], Awaitable[httpx2.Response]]


def graphql(document: str, **variables: Callable[[Target], Any]) -> Send:
    async def send(http: httpx2.AsyncClient, target: Target, headers: dict[str, str]) -> httpx2.Response:
        values = {name: value(target) for name, value in variables.items()}
        return await http.post("/graphql", json={"query": document, "variables": values}, headers=headers)

    return send


def get(path: Callable[[Target], str]) -> Send:
    async def send(http: httpx2.AsyncClient, target: Target, headers: dict[str, str]) -> httpx2.Response:
        return await http.get(path(target), headers=headers)

    return send


async def upload(http: httpx2.AsyncClient, target: Target, headers: dict[str, str]) -> httpx2.Response:
    return await http.post(
        "/api/v1/images",
        files={"file": ("image.zigbee", target.data, "application/octet-stream")},
        data={"releaseNotes": GOOD_NOTES},
        headers=headers,
    )


def _next_version(version: Version) -> str:
    """The firmware version of the next column's own version (the same device model)."""
    versions = list(OWN_VERSIONS.values())
    return versions[(versions.index(version) + 1) % len(versions)].firmware_version


def image_id(target: Target) -> str:
    return str(target.image_id)


@dataclass(frozen=True)
class Operation:
    """One row: what it starts from, what it sends, and what an allowed cell leaves behind."""

    prepare: Callable[[Scene, Version], Awaitable[Target]]
    send: Send
    field: str | None = None  # the GraphQL root field; None for an HTTP endpoint
    fresh: bool = False  # a write: every cell gets its own object
    effect: tuple[str, ...] = ()  # the audit actions an allowed cell appends
    ok_status: int = 200
    null_is_not_found: bool = False  # a query that answers null for what the caller may not see
    serves_bytes: bool = False  # an allowed cell answers with the image's bytes


def _id_mutation(name: str, fields: str = "id state") -> str:
    return f"mutation($id: ID!) {{ {name}(id: $id) {{ {fields} }} }}"


OPERATIONS: dict[str, Operation] = {
    "cplSnapshot": Operation(version_only, graphql("{ cplSnapshot { id rowCount } }"), "cplSnapshot"),
    "libraryImage(draft)": Operation(
        draft,
        graphql("query($id: ID!) { libraryImage(id: $id) { id state } }", id=image_id),
        "libraryImage",
        null_is_not_found=True,
    ),
    "libraryImage(published)": Operation(
        published,
        graphql("query($id: ID!) { libraryImage(id: $id) { id state } }", id=image_id),
        "libraryImage",
        null_is_not_found=True,
    ),
    "publishImage": Operation(
        draft,
        graphql(_id_mutation("publishImage"), id=image_id),
        "publishImage",
        fresh=True,
        effect=("image.published",),
    ),
    "approveImage": Operation(
        draft_by_second_token,
        graphql(_id_mutation("approveImage", "id approvedAt"), id=image_id),
        "approveImage",
        fresh=True,
        effect=("image.approved",),
    ),
    "withdrawImage": Operation(
        published,
        graphql(
            "mutation($id: ID!, $reason: String!) { withdrawImage(id: $id, reason: $reason) { id state } }",
            id=image_id,
            reason=lambda _: REASON,
        ),
        "withdrawImage",
        fresh=True,
        effect=("image.withdrawn",),
    ),
    "updateReleaseNotes": Operation(
        draft,
        graphql(
            "mutation($id: ID!, $md: String!) { updateReleaseNotes(id: $id, markdown: $md) { id } }",
            id=image_id,
            md=lambda _: NEW_NOTES,
        ),
        "updateReleaseNotes",
        fresh=True,
        effect=("image.notes_updated",),
    ),
    # Keeps no audit event (it records a check, not a decision), but it does store the check's result.
    "recheckImage": Operation(
        draft, graphql(_id_mutation("recheckImage", "id checkedAt"), id=image_id), "recheckImage", fresh=True
    ),
    "discardImage": Operation(
        draft,
        graphql("mutation($id: ID!) { discardImage(id: $id) }", id=image_id),
        "discardImage",
        fresh=True,
        effect=("image.discarded",),
    ),
    "declareCommercial": Operation(
        version_only,
        graphql(
            "mutation($m: String!, $model: String!, $hw: String!, $fw: String!, $reason: String!) {"
            " declareCommercial(manufacturerId: $m, modelId: $model, hardwareVersion: $hw,"
            " firmwareVersion: $fw, reason: $reason) { firmwareVersion } }",
            m=lambda t: t.version.manufacturer_id,
            model=lambda t: t.version.model_id,
            hw=lambda t: t.version.hardware_version,
            fw=lambda t: t.version.firmware_version,
            reason=lambda _: "developed under contract for one supplier",
        ),
        "declareCommercial",
        fresh=True,
        effect=("version.declared_commercial",),
    ),
    "POST /api/v1/images": Operation(
        version_only, upload, fresh=True, effect=("image.uploaded",), ok_status=201
    ),
    "GET /api/v1/images/{draft}": Operation(draft, get(lambda t: f"/api/v1/images/{t.image_id}")),
    "GET /api/v1/images/{published}/file": Operation(
        published,
        get(lambda t: f"/api/v1/images/{t.image_id}/file"),
        effect=("image.downloaded",),
        serves_bytes=True,
    ),
    "GET /api/v1/images/{draft}/file": Operation(
        draft,
        get(lambda t: f"/api/v1/images/{t.image_id}/file"),
        effect=("image.downloaded",),
        serves_bytes=True,
    ),
    "GET /api/v1/images/{withdrawn}/file": Operation(
        withdrawn,
        get(lambda t: f"/api/v1/images/{t.image_id}/file"),
        effect=("image.downloaded",),
        serves_bytes=True,
    ),
    "GET /api/v1/downloads": Operation(published, get(lambda _: "/api/v1/downloads")),
    "GET /api/v1/audit/events": Operation(published, get(lambda _: "/api/v1/audit/events")),
    "GET /feeds/images.atom": Operation(published, get(lambda _: "/feeds/images.atom")),
    "GET /api/v1/catalogue.json": Operation(published, get(lambda _: "/api/v1/catalogue.json")),
    # From the cell's own version to the next column's, both certified versions of one model: every cell
    # records a pathway no other cell touches.
    "recordUpgradePathway": Operation(
        version_only,
        graphql(
            "mutation($m: String!, $model: String!, $hw: String!, $from: String!, $to: String!) {"
            " recordUpgradePathway(manufacturerId: $m, modelId: $model, hardwareVersion: $hw,"
            " fromVersion: $from, toVersion: $to) { fromVersion toVersion } }",
            m=lambda t: t.version.manufacturer_id,
            model=lambda t: t.version.model_id,
            hw=lambda t: t.version.hardware_version,
            **{"from": lambda t: t.version.firmware_version, "to": lambda t: _next_version(t.version)},
        ),
        "recordUpgradePathway",
        fresh=True,
        effect=("pathway.recorded",),
    ),
    "coverageGaps": Operation(
        published, graphql("{ coverageGaps(first: 10) { totalCount } }"), "coverageGaps"
    ),
    "consistencyReport(10B2)": Operation(
        published,
        graphql('{ consistencyReport(manufacturerId: "10B2") { findings { kind } } }'),
        "consistencyReport",
    ),
    "GET /reports/coverage.csv": Operation(published, get(lambda _: "/reports/coverage.csv")),
    "GET /reports/consistency/10B2.xlsx": Operation(
        published, get(lambda _: "/reports/consistency/10B2.xlsx")
    ),
}

GRAPHQL_CODES = {"FORBIDDEN": "403", "NOT_FOUND": "404", "GONE": "410"}


def outcome(operation: Operation, response: httpx2.Response, target: Target) -> str:
    """The cell's outcome in the table's words, or a description of whatever else happened."""
    if response.status_code == 401:
        return "401"
    if operation.field is None:
        if response.status_code == operation.ok_status:
            if operation.serves_bytes and response.content != target.data:
                return "ok, but not the image's bytes"
            return "ok"
        if response.status_code in (403, 404, 410):
            return str(response.status_code)
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    body = response.json()
    if body.get("errors"):
        error = body["errors"][0]
        code = str((error.get("extensions") or {}).get("code"))
        # UNAUTHENTICATED in a GraphQL answer means the request got past the HTTP door: not a "401".
        return GRAPHQL_CODES.get(code, f"{code}: {error.get('message')}")
    if (body.get("data") or {}).get(operation.field) is None:
        return "404" if operation.null_is_not_found else "null"
    return "ok"


@dataclass(frozen=True)
class LibraryState:
    images: list[tuple[Any, ...]]
    declarations: list[tuple[Any, ...]]
    last_event_id: int


async def library_state(world: World) -> LibraryState:
    async with world.db.sessions() as session:
        images = (await session.execute(select(LibraryImage.__table__).order_by(LibraryImage.id))).all()
        declarations = (
            await session.execute(
                select(CommercialDeclaration.__table__).order_by(
                    CommercialDeclaration.model_id, CommercialDeclaration.firmware_version
                )
            )
        ).all()
        last = await session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
    return LibraryState([tuple(r) for r in images], [tuple(r) for r in declarations], last or 0)


async def events_since(world: World, last_event_id: int) -> list[str]:
    async with world.db.sessions() as session:
        actions = await session.scalars(
            select(AuditEvent.action).where(AuditEvent.id > last_event_id).order_by(AuditEvent.id)
        )
        return list(actions)


async def run_cell(scene: Scene, http: httpx2.AsyncClient, name: str, who: str, target: Target) -> str | None:
    """Send the row's request as `who`; None if the cell holds, else what went wrong."""
    operation = OPERATIONS[name]
    expected = MATRIX[name][COLUMNS.index(who)]
    attribute = PRINCIPALS[who]
    headers = (
        {} if attribute is None else {"Authorization": f"Bearer {scene.world.tokens.as_dict()[attribute]}"}
    )
    before = await library_state(scene.world)
    response = await operation.send(http, target, headers)
    actual = outcome(operation, response, target)
    if actual != expected:
        return f"{name} as {who}: expected {expected}, got {actual}"
    after = await library_state(scene.world)
    events = await events_since(scene.world, before.last_event_id)
    if expected != "ok":
        if events or replace(after, last_event_id=before.last_event_id) != before:
            return f"{name} as {who}: refused ({actual}) yet changed the library (events {events})"
        return None
    if events != list(operation.effect):
        return f"{name} as {who}: allowed, with audit events {events}, not {list(operation.effect)}"
    if not operation.fresh and (after.images, after.declarations) != (before.images, before.declarations):
        return f"{name} as {who}: a read changed the library"
    return None


def test_the_matrix_covers_every_operation_and_principal() -> None:
    assert set(MATRIX) == set(OPERATIONS)
    assert all(len(row) == len(COLUMNS) for row in MATRIX.values())
    assert all(cell in {"ok", "401", "403", "404", "410"} for row in MATRIX.values() for cell in row)
    assert all(name in MATRIX and who in PRINCIPALS for name, who in KNOWN_BUGS)


@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_every_principal_through_the_door(db: Database, tmp_path: Path, name: str) -> None:
    """One row of the matrix: one world and one server; a fresh object per cell where the row writes."""
    scene = await make_scene(db, tmp_path)
    operation = OPERATIONS[name]
    asking = [who for who in COLUMNS if (name, who) not in KNOWN_BUGS]
    if operation.fresh:
        targets = {who: await operation.prepare(scene, OWN_VERSIONS[who]) for who in asking}
    else:
        shared = await operation.prepare(scene, OWN_VERSIONS["manufacturer"])
        targets = dict.fromkeys(asking, shared)
    failures = []
    async with serving(scene.world.app()) as url, client(url, None) as http:
        for who in asking:
            failure = await run_cell(scene, http, name, who, targets[who])
            if failure is not None:
                failures.append(failure)
    assert not failures, "\n".join(failures)

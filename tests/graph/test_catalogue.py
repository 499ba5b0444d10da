"""The catalogue graph answers what suppliers, manufacturers and the Panel ask (R6, R7, R10, R12), in a
constant number of SQL statements whatever the page size."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import json
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx2
import pytest
from sqlalchemy import select

from cfl_graph.catalogue import search
from cfl_graph.catalogue.search import _model_cursor as model_cursor
from cfl_graph.database import Database
from cfl_graph.doors.graph.graph import CertifiedFirmware
from cfl_graph.doors.graph.plans import without_comparison
from cfl_graph.keys import ModelKey, VersionKey
from cfl_graph.tables import AuditEvent
from cpl_sync.columns import Column
from cpl_sync.sync import sync_cpl
from loaders import Loaders
from loaders import catalogue as loaders_catalogue
from loaders import cpl as loaders_cpl
from loaders.catalogue import CatalogueLoaders
from tests.fixtures.cpl_files import row, write_csv
from tests.fixtures.library import CPL, OWN_A1, OWN_A2, OWN_A3, OWN_B_HW1, Version, World, make_world
from tests.fixtures.sql import counting

pytestmark = pytest.mark.postgres

CATALOGUE = """
query($first: Int!, $after: String, $filter: DeviceModelFilter) {
  deviceModels(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor node {
      id manufacturerId modelId hardwareVersion manufacturerName modelName deviceType smetsVersion listedOnCpl
      certifiedFirmware {
        id firmwareVersion imageHash status gbcsVersion listedOn commercial
        commercialDeclaration { reason }
        libraryImage { imageId state fileSha256 manufacturerImageSha256 }
      }
      libraryImages { imageId firmwareVersion state }
    } }
  }
}
"""


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def ask(world: World, query: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token or world.tokens.supplier}"},
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def data(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]
    return result


async def publish(world: World, version: Version) -> int:
    image = await world.upload(world.image(version))
    await world.publish(image.id)
    return image.id


async def declare(
    world: World, version: Version, reason: str = "built for one supplier under contract"
) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    key = VersionKey(
        version.manufacturer_id, version.model_id, version.hardware_version, version.firmware_version
    )
    await world.library.declare_commercial(principal, key, reason)


async def test_a_device_model_shows_its_cpl_facts_beside_the_library(world: World) -> None:
    image_id = await publish(world, OWN_A1)
    await declare(world, OWN_A2)
    answer = data(await ask(world, CATALOGUE, first=10))["deviceModels"]
    assert answer["totalCount"] == 4
    model = answer["edges"][0]["node"]
    assert (model["manufacturerId"], model["modelId"], model["hardwareVersion"]) == ("10B2", "0001", "0100")
    assert (model["manufacturerName"], model["deviceType"], model["smetsVersion"], model["listedOnCpl"]) == (
        "Northfield Metering Ltd",
        "ESME",
        "SMETS2",
        True,
    )
    versions = {v["firmwareVersion"]: v for v in model["certifiedFirmware"]}
    assert list(versions) == ["00900000", "01000000", "01010000", "01020000"]
    assert versions["01000000"]["libraryImage"]["imageId"] == image_id
    assert (
        versions["01000000"]["libraryImage"]["manufacturerImageSha256"] == versions["01000000"]["imageHash"]
    )
    assert versions["01010000"]["commercial"] is True
    assert versions["01010000"]["commercialDeclaration"] == {
        "reason": "built for one supplier under contract"
    }
    assert versions["01010000"]["libraryImage"] is None
    assert versions["00900000"]["status"] == "WITHDRAWN"
    assert versions["01000000"]["listedOn"] == "2024-01-15"
    assert model["libraryImages"] == [
        {"imageId": image_id, "firmwareVersion": "01000000", "state": "PUBLISHED"}
    ]


async def test_pages_follow_cursors_to_the_end(world: World) -> None:
    seen: list[str] = []
    after = None
    while True:
        page = data(await ask(world, CATALOGUE, first=3, after=after))["deviceModels"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    everything = data(await ask(world, CATALOGUE, first=10))["deviceModels"]["edges"]
    assert seen == [edge["node"]["id"] for edge in everything]
    assert len(seen) == 4


async def test_a_catalogue_page_begins_no_transaction_on_postgresql(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's reads each stand by themselves (`Database.reads`): on PostgreSQL no BEGIN and ROLLBACK
    around them, two round trips a session. On SQLite, where a transaction is one snapshot for all its
    statements, the reads keep theirs."""
    await publish(world, OWN_A1)
    if world.db.engine.dialect.name != "postgresql":
        assert world.db.reads is world.db.sessions
        return
    data(await ask(world, CATALOGUE, first=10))  # whatever the app does once, done
    begun: list[asyncpg.Connection] = []
    transaction = asyncpg.Connection.transaction

    def counted(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
        begun.append(self)
        return transaction(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "transaction", counted)
    answer = data(await ask(world, CATALOGUE, first=10))["deviceModels"]
    assert answer["edges"][0]["node"]["certifiedFirmware"][1]["libraryImage"]["state"] == "PUBLISHED"
    assert begun == []
    # What the reads would have done in the engine's own sessions, for the test's sake.
    async with world.db.sessions() as session:
        await session.execute(select(AuditEvent.id).limit(1))
    assert len(begun) == 1


async def test_a_request_makes_only_the_loaders_it_asks_for(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every GraphQL request has its loaders made, and made again once it is answered
    (`Context.release`): each is made when first asked for, so that `{ __typename }` makes none."""
    made: list[str] = []

    def counted(module: Any) -> Any:
        weak_loader = module.weak_loader

        def making(method: Any) -> Any:
            made.append(method.__name__)
            return weak_loader(method)

        return making

    monkeypatch.setattr(loaders_catalogue, "weak_loader", counted(loaders_catalogue))
    monkeypatch.setattr(loaders_cpl, "weak_loader", counted(loaders_cpl))
    with without_comparison():
        assert data(await ask(world, "{ __typename }")) == {"__typename": "Query"}
        assert made == []
        data(await ask(world, CATALOGUE, first=10))
    # of seven; the page's versions are read with the columns it asks for, outside the loaders
    assert sorted(made) == ["_load_images"]


async def test_a_page_s_device_models_are_found_again_by_key_without_a_statement(world: World) -> None:
    """`device_model` answers for a model a page read from the page's own row; a model no page read is
    read, one statement for all those asked at once, and then known too."""
    loaders = Loaders.for_request(world.db.reads, None).catalogue
    snapshot = await loaders.snapshot_id()
    assert snapshot is not None
    async with world.db.reads() as session:
        page = await search.device_models(session, snapshot, search.DeviceModelFilter(), 1, None)
    loaders.prime_models(page.rows)
    on_page = [ModelKey.of(row) for row in page.rows]
    other = ModelKey(*OWN_B_HW1.key[:3])
    elsewhere = [other, ModelKey("FFFF", "FFFF", "FFFF")]
    assert not set(elsewhere) & set(on_page)
    with counting(world.db) as statements:
        assert await loaders.device_model.load_many(on_page) == list(page.rows)
    assert statements == []
    with counting(world.db) as statements:
        found = await loaders.device_model.load_many([on_page[0], *elsewhere])
    assert len(statements) == 1
    assert found[0] is page.rows[0] and found[1] is not None and found[2] is None
    assert ModelKey.of(found[1]) == other
    with counting(world.db) as statements:
        again = loaders.afresh(loaders.snapshot_id)
        assert await again.device_model.load(other) == found[1]
    assert len(statements) == 1  # loaders afresh have read nothing


# Each field of a certified version, with what it needs below it.
VERSION_FIELD_SELECTIONS = {
    "commercialDeclaration": "commercialDeclaration { reason declaredAt declaredBy firmwareVersion }",
    "libraryImage": "libraryImage { imageId state fileSha256 size header { headerVersion } }",
    "upgradesFrom": "upgradesFrom { firmwareVersion imageHash listedOn }",
    "upgradesTo": "upgradesTo { firmwareVersion status cpaExpiry }",
}


def versions_page(selection: str, head: str = "", tail: str = "") -> str:
    return (
        f"query{head} {{ deviceModels(first: 10) {{ edges {{ node {{ modelId certifiedFirmware "
        f"{{ {selection} }} }} }} }} {tail} }}"
    )


def narrow_cases() -> dict[str, tuple[str, dict[str, Any]]]:
    from cfl_graph.doors.graph.graph import version_field_columns

    fields = [VERSION_FIELD_SELECTIONS.get(name, name) for name in sorted(version_field_columns())]
    gbcs = "fragment G on CertifiedFirmware { gbcsVersion cpaReference }"
    a1 = f'deviceModel(manufacturerId: "{OWN_A1.manufacturer_id}", modelId: "{OWN_A1.model_id}", '
    a1 += f'hardwareVersion: "{OWN_A1.hardware_version}")'
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        f"{field.split()[0]} alone": (versions_page(field), {}) for field in fields
    }
    cases |= {
        "every field": (versions_page(" ".join(fields)), {}),
        "the benchmark's page": (
            versions_page("firmwareVersion imageHash status listedOn commercial libraryImage { imageId }"),
            {},
        ),
        "aliases": (versions_page("a: gbcsVersion b: status c: listedOn"), {}),
        "inline fragment": (versions_page("... on CertifiedFirmware { smetsVersion cpaExpiry }"), {}),
        "fragment on an interface": (versions_page("status ... on Node { id }"), {}),
        "named fragment": (versions_page("status ...G") + " " + gbcs, {}),
        "included": (
            versions_page("status gbcsVersion @include(if: $yes)", "($yes: Boolean!)"),
            {"yes": True},
        ),
        "not included": (
            versions_page("status gbcsVersion @include(if: $yes)", "($yes: Boolean!)"),
            {"yes": False},
        ),
        "skipped": (versions_page("status technicalSpecification @skip(if: true)"), {}),
        "a model asked beside the page": (
            versions_page("status", tail=f"{a1} {{ certifiedFirmware {{ gbcsVersion cpaExpiry status }} }}"),
            {},
        ),
        "two pages, two selections": (
            "{ a: deviceModels(first: 10) { edges { node { certifiedFirmware { status } } } } "
            "b: deviceModels(first: 10) { edges { node { certifiedFirmware { gbcsVersion "
            "specificationVersion } } } } }",
            {},
        ),
    }
    return cases


def test_every_field_of_a_certified_version_says_which_columns_of_its_row_it_reads() -> None:
    """A field added to `CertifiedFirmware` is classified (a `RowFact`, a library fact, or a field that
    reads no column); unclassified, every page that asks it would read whole rows."""
    from cfl_graph.doors.graph import Graph, build_schema
    from cfl_graph.doors.graph.graph import version_field_columns
    from cfl_graph.doors.graph.protection import QueryLimits

    schema = build_schema(QueryLimits(introspection=True), Graph.COMBINED)
    fields = set(schema._schema.get_type("CertifiedFirmware").fields)  # type: ignore[union-attr]
    assert fields | {"__typename"} == set(version_field_columns())


@pytest.mark.parametrize("case", sorted(narrow_cases()))
async def test_a_page_reads_only_the_version_columns_its_fields_ask_for_and_answers_as_whole_rows_do(
    world: World, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """Issue 17: a page of models reads of its versions' CPL rows only the columns the fields asked read
    (a row is two dozen columns; the catalogue page reads five). Whatever the selection (every field of a
    certified version alone and together, aliases, fragments, directives, a model asked beside the page),
    the answer is the one read from whole rows, byte for byte."""
    from cfl_graph.doors.graph import graph as graph_module

    image_id = await publish(world, OWN_A1)
    await declare(world, OWN_A2)
    query, variables = narrow_cases()[case]
    with counting(world.db) as narrow_statements:
        narrow = await ask(world, query, **variables)
    monkeypatch.setattr(graph_module, "NARROW_VERSION_READS", False)
    with counting(world.db) as whole_statements:
        whole = await ask(world, query, **variables)
    assert json.dumps(narrow, sort_keys=False) == json.dumps(whole, sort_keys=False)
    assert "errors" not in narrow, narrow
    # Narrow rows are not kept for the loaders: versions of the same models asked again, as whole rows
    # or for other columns, are read again (their images too): at most two statements more, however long
    # the page. Not exactly two: read whole, the model beside the page joins the page's batch or is read in
    # a batch of its own, by which of the two root fields' resolvers the event loop runs first.
    if case in ("a model asked beside the page", "two pages, two selections"):
        assert len(narrow_statements) <= len(whole_statements) + 2
    else:
        assert len(narrow_statements) == len(whole_statements)
    if case == "the benchmark's page":
        versions = [s for s in narrow_statements if "declaration_reason" in s]
        assert len(versions) == 1 and "gbcs_version" not in versions[0] and "date_added" in versions[0]
        assert [s for s in whole_statements if "declaration_reason" in s and "gbcs_version" in s]
        assert str(image_id) in json.dumps(narrow)


async def test_an_edge_s_cursor_is_written_only_when_asked_for(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page whose edges' cursors are not asked for writes none but its own first and last (a page of
    100 models spent 0.2 ms on cursors nobody read); asked for, each edge's is the one that goes on
    after it, and the last is the page's end."""
    written: list[str] = []

    def counted(row: Any) -> str:
        written.append(cursor := model_cursor(row))
        return cursor

    monkeypatch.setattr(search, "_model_cursor", counted)
    lean = "{ deviceModels(first: 10) { pageInfo { endCursor } edges { node { modelId } } } }"
    with without_comparison():  # one execution, not the plan's and the reference's
        page = data(await ask(world, lean))["deviceModels"]
        assert len(page["edges"]) == 4
        assert len(written) == 2  # the page's start and end
        written.clear()
        edges = data(await ask(world, CATALOGUE, first=10))["deviceModels"]["edges"]
    assert [edge["cursor"] for edge in edges] == written[2:]
    assert edges[-1]["cursor"] == page["pageInfo"]["endCursor"]
    after_first = data(await ask(world, CATALOGUE, first=10, after=edges[0]["cursor"]))["deviceModels"]
    assert [edge["node"]["id"] for edge in after_first["edges"]] == [edge["node"]["id"] for edge in edges[1:]]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"manufacturerId": "2c4f"}, [("2C4F", "0007", "0001")]),
        ({"search": "model 0002"}, [("10B2", "0002", "0100"), ("10B2", "0002", "0200")]),
        ({"search": "harrow"}, [("2C4F", "0007", "0001")]),
        ({"search": "0007"}, [("2C4F", "0007", "0001")]),
        ({"search": "100%_"}, []),
        ({"deviceType": "GSME"}, []),
        (
            {"smetsVersion": "SMETS2", "manufacturerId": "10B2"},
            [("10B2", "0001", "0100"), ("10B2", "0002", "0100"), ("10B2", "0002", "0200")],
        ),
    ],
)
async def test_filters_narrow_the_device_models(
    world: World, where: dict[str, Any], expected: list[tuple[str, str, str]]
) -> None:
    edges = data(await ask(world, CATALOGUE, first=50, filter=where))["deviceModels"]["edges"]
    assert [
        (e["node"]["manufacturerId"], e["node"]["modelId"], e["node"]["hardwareVersion"]) for e in edges
    ] == expected


async def test_has_coverage_gap_follows_publications_and_declarations(world: World) -> None:
    async def gapped(flag: bool) -> list[tuple[str, str]]:
        edges = data(await ask(world, CATALOGUE, first=50, filter={"hasCoverageGap": flag}))["deviceModels"][
            "edges"
        ]
        return [(e["node"]["modelId"], e["node"]["hardwareVersion"]) for e in edges]

    assert await gapped(False) == []
    # Model 0002 hardware 0100 has one version: publishing it closes that model's gap.
    await publish(world, OWN_B_HW1)
    assert await gapped(False) == [("0002", "0100")]
    # Model 0001 has three active versions: one published, one commercial, one still missing.
    await publish(world, OWN_A1)
    await declare(world, OWN_A2)
    assert ("0001", "0100") in await gapped(True)
    await publish(world, OWN_A3)
    assert await gapped(False) == [("0001", "0100"), ("0002", "0100")]


async def test_coverage_gaps_list_what_is_missing_and_for_how_long(world: World) -> None:
    await publish(world, OWN_A1)
    await declare(world, OWN_A2)
    body = data(
        await ask(
            world,
            """{ coverageGaps(first: 50) { totalCount edges { node {
                 firmwareVersion listedOn daysMissing deviceModel { modelId hardwareVersion modelName }
                 certifiedFirmware { imageHash commercial } } } } }""",
        )
    )["coverageGaps"]
    gaps = [
        (
            g["node"]["deviceModel"]["modelId"],
            g["node"]["deviceModel"]["hardwareVersion"],
            g["node"]["firmwareVersion"],
        )
        for g in body["edges"]
    ]
    # Active, in scope, not commercial, not published; the withdrawn CPL version is no gap.
    assert gaps == [
        ("0001", "0100", "01020000"),
        ("0002", "0100", "02000000"),
        ("0002", "0200", "02000000"),
        ("0007", "0001", "03000000"),
    ]
    assert body["totalCount"] == 4
    expected_days = (dt.datetime.now(dt.UTC).date() - dt.date(2024, 1, 15)).days
    assert {g["node"]["daysMissing"] for g in body["edges"]} == {expected_days}
    assert all(g["node"]["certifiedFirmware"]["commercial"] is False for g in body["edges"])


async def test_coverage_gaps_filtered_by_whether_their_model_has_a_gap(world: World) -> None:
    """Every gap's model has a gap: `hasCoverageGap: true` keeps them all, `false` none. (The filter's
    subquery was correlated to the gap's own row as well as its model's, and the request failed.)"""
    await publish(world, OWN_A1)
    query = "query($gap: Boolean) { coverageGaps(first: 50, filter: {hasCoverageGap: $gap}) { totalCount } }"
    counts = [
        data(await ask(world, query, gap=gap))["coverageGaps"]["totalCount"] for gap in (None, True, False)
    ]
    assert counts == [5, 5, 0]


@pytest.mark.parametrize("connection", ["coverageGaps", "deviceModels"])
async def test_a_list_counts_its_rows_only_when_asked_for_its_total(world: World, connection: str) -> None:
    """P4: `totalCount` costs a count of every matching row, so a page that does not ask for it does
    not pay for it."""
    page = f"{{ {connection}(first: 2) {{ edges {{ cursor }} }} }}"
    counted_page = f"{{ {connection}(first: 2) {{ totalCount edges {{ cursor }} }} }}"
    with counting(world.db) as without_total:
        data(await ask(world, page))
    with counting(world.db) as with_total:
        total = data(await ask(world, counted_page))[connection]["totalCount"]
    assert total > 0
    assert not [s for s in without_total if "count(" in s.lower()], without_total
    assert len(with_total) == len(without_total) + 1


async def test_coverage_summary_counts_per_group(world: World) -> None:
    await publish(world, OWN_A1)
    await declare(world, OWN_A2)
    groups = data(
        await ask(
            world,
            "{ coverageSummary(groupBy: MANUFACTURER) { key label certified commercial available missing coverage } }",
        )
    )["coverageSummary"]
    assert groups == [
        {
            "key": "10B2",
            "label": "Northfield Metering Ltd",
            "certified": 5,
            "commercial": 1,
            "available": 1,
            "missing": 3,
            "coverage": 0.25,
        },
        {
            "key": "2C4F",
            "label": "Harrow Instruments plc",
            "certified": 1,
            "commercial": 0,
            "available": 0,
            "missing": 1,
            "coverage": 0.0,
        },
    ]
    by_type = data(await ask(world, "{ coverageSummary(groupBy: DEVICE_TYPE) { key certified } }"))
    assert by_type["coverageSummary"] == [{"key": "ESME", "certified": 6}]


async def test_the_consistency_report_finds_each_kind_of_disagreement(world: World, tmp_path: Path) -> None:
    a1, a2, a3 = (await publish(world, OWN_A1), await publish(world, OWN_A2), await publish(world, OWN_A3))
    # The next CPL withdraws A2, drops A3 and changes A1's hash.
    changed = [v.as_row() for v in CPL if v not in (OWN_A1, OWN_A2, OWN_A3)]
    changed.append(OWN_A1.as_row() | {Column.IMAGE_HASH: "cd" * 32})
    changed.append(OWN_A2.as_row() | {Column.STATUS: "Withdrawn"})
    result = await sync_cpl(
        world.db, str(write_csv(tmp_path / "next.csv", changed)), work_dir=tmp_path / "sync2"
    )
    assert result.outcome.value == "applied", result
    report = data(
        await ask(
            world,
            """query($m: String!) { consistencyReport(manufacturerId: $m) { manufacturerId findings {
                 kind firmwareVersion libraryImageId detail deviceModel { modelId } } } }""",
            token=world.tokens.manufacturer,
            m="10b2",
        )
    )["consistencyReport"]
    assert report["manufacturerId"] == "10B2"
    found = {(f["kind"], f["firmwareVersion"], f["libraryImageId"]) for f in report["findings"]}
    assert found == {
        ("MISSING_IMAGE", "02000000", None),
        ("HASH_MISMATCH", "01000000", a1),
        ("LATE_PUBLICATION", "01000000", a1),
        ("DELISTED_FROM_CPL", "01010000", a2),
        ("LATE_PUBLICATION", "01010000", a2),
        ("NOT_ON_CPL", "01020000", a3),
    }
    assert sum(1 for f in report["findings"] if f["kind"] == "MISSING_IMAGE") == 2  # both hardware versions


async def test_timeliness_gives_days_from_listing_to_publication(world: World) -> None:
    await publish(world, OWN_A1)
    await publish(world, OWN_B_HW1)
    groups = data(
        await ask(
            world,
            "{ timeliness(groupBy: MANUFACTURER) { key label published medianDays p90Days worstDays } }",
        )
    )["timeliness"]
    days = (dt.datetime.now(dt.UTC).date() - dt.date(2024, 1, 15)).days
    assert groups == [
        {
            "key": "10B2",
            "label": "Northfield Metering Ltd",
            "published": 2,
            "medianDays": days,
            "p90Days": days,
            "worstDays": days,
        }
    ]
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    later = data(await ask(world, f'{{ timeliness(groupBy: DEVICE_TYPE, since: "{tomorrow}") {{ key }} }}'))
    assert later["timeliness"] == []


async def test_node_fetches_every_kind_of_entity_by_its_global_id(world: World) -> None:
    image_id = await publish(world, OWN_A1)
    listing = data(
        await ask(
            world,
            """query($image: ID!) { deviceModels(first: 1) { edges { node { id certifiedFirmware { id } } } }
                 cplSnapshot { id } libraryImage(id: $image) { id } }""",
            image=str(image_id),
        )
    )
    model = listing["deviceModels"]["edges"][0]["node"]
    ids = [
        model["id"],
        model["certifiedFirmware"][1]["id"],
        listing["cplSnapshot"]["id"],
        listing["libraryImage"]["id"],
    ]
    for global_id in ids:
        fetched = data(await ask(world, "query($id: ID!) { node(id: $id) { id __typename } }", id=global_id))
        assert fetched["node"]["id"] == global_id
    assert [
        data(await ask(world, "query($id: ID!) { node(id: $id) { __typename } }", id=i))["node"]["__typename"]
        for i in ids
    ] == [
        "DeviceModel",
        "CertifiedFirmware",
        "CplSnapshot",
        "LibraryImage",
    ]
    refused = await ask(world, 'query { node(id: "bm9wZQ==") { id } }')
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_snapshots_and_their_diff(world: World, tmp_path: Path) -> None:
    rows = [v.as_row() for v in CPL if v != OWN_A3]
    await sync_cpl(world.db, str(write_csv(tmp_path / "next.csv", rows)), work_dir=tmp_path / "sync2")
    body = data(
        await ask(
            world,
            """{ cplSnapshots { snapshotId isCurrent diff { fromSnapshotId removedCount addedCount
                 removed { modelId firmwareVersion } } } }""",
        )
    )["cplSnapshots"]
    assert [(s["snapshotId"], s["isCurrent"]) for s in body] == [(2, True), (1, False)]
    assert body[0]["diff"] == {
        "fromSnapshotId": 1,
        "removedCount": 1,
        "addedCount": 0,
        "removed": [{"modelId": "0001", "firmwareVersion": "01020000"}],
    }
    assert body[1]["diff"] is None


async def test_a_diff_asked_for_its_counts_alone_does_not_compare_the_snapshots_rows(
    world: World, tmp_path: Path
) -> None:
    """The counts a sync stored answer `diff { addedCount ... }`; the row comparisons (three full reads of
    both snapshots: 9 s at a million rows) run only when a row list is asked, through a fragment too."""
    rows = [v.as_row() for v in CPL if v != OWN_A3]
    await sync_cpl(world.db, str(write_csv(tmp_path / "next.csv", rows)), work_dir=tmp_path / "sync2")
    counts_only = "{ cplSnapshot { diff { addedCount removedCount changedCount } } }"
    with_rows = """{ cplSnapshot { diff { removedCount ...Rows } } }
                   fragment Rows on SnapshotDiff { removed { firmwareVersion } }"""

    with counting(world.db) as counted:
        brief = data(await ask(world, counts_only))["cplSnapshot"]["diff"]
    with counting(world.db) as counted_with_rows:
        full = data(await ask(world, with_rows))["cplSnapshot"]["diff"]

    assert brief == {"addedCount": 0, "removedCount": 1, "changedCount": 0}
    assert full == {"removedCount": 1, "removed": [{"firmwareVersion": "01020000"}]}
    assert len(counted_with_rows) == len(counted) + 3, (counted, counted_with_rows)


async def test_bad_arguments_are_user_errors(world: World) -> None:
    cursor = await ask(world, CATALOGUE, first=2, after="not-a-cursor")
    assert cursor["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "`after`" in cursor["errors"][0]["message"]
    assert "not a cursor of this list" in cursor["errors"][0]["message"]
    too_many = await ask(world, CATALOGUE, first=5000)
    assert too_many["errors"][0]["extensions"]["code"] == "PAGE_TOO_LARGE"
    bad_id = await ask(world, '{ consistencyReport(manufacturerId: "XYZ!") { manufacturerId } }')
    assert bad_id["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    bad_filter = await ask(world, CATALOGUE, first=5, filter={"manufacturerId": "nothex"})
    assert bad_filter["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_device_model_is_found_by_its_key_in_any_spelling_the_cpl_accepts(world: World) -> None:
    loose = '{ deviceModel(manufacturerId: "10b2", modelId: "1", hardwareVersion: "100") { modelId } }'
    assert data(await ask(world, loose))["deviceModel"] == {"modelId": "0001"}
    bad = await ask(
        world, '{ deviceModel(manufacturerId: "10B2", modelId: "XYZ!", hardwareVersion: "1") { modelId } }'
    )
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "XYZ!" in bad["errors"][0]["message"]


async def test_reports_are_refused_to_anonymous_callers(world: World) -> None:
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.post(
            "/graphql", json={"query": "{ coverageSummary(groupBy: MANUFACTURER) { key } }"}
        )
    assert answer.status_code == 401


# --- statements per request (P3) ----------------------------------------------------------------------


async def test_statements_per_request_do_not_grow_with_the_page(db: Database, tmp_path: Path) -> None:
    world = await make_world(db, tmp_path)
    # A CPL of 120 device models, two versions each, with images for some of them.
    many = [
        row(
            model_id=f"{m:04X}",
            model_name=f"Model {m}",
            firmware_version=f"{v + 1:02X}000000",
            image_hash=f"{m * 10 + v:064x}",
        )
        for m in range(1, 121)
        for v in range(2)
    ]
    await sync_cpl(db, str(write_csv(tmp_path / "many.csv", many)), work_dir=tmp_path / "sync2")
    await declare(world, Version("10B2", "0001", "0100", "01000000"))
    counts = {}
    for first in (10, 100):
        with counting(db) as statements:
            body = data(await ask(world, CATALOGUE, first=first))
        assert len(body["deviceModels"]["edges"]) == first
        counts[first] = len(statements)
    print(f"statements per catalogue request: {counts}")
    assert counts[10] == counts[100], counts
    assert counts[100] <= 7, counts


async def test_a_page_reads_its_versions_once_when_asked_for_them_however_the_document_asks(
    world: World,
) -> None:
    """The page reads its models' versions, images and declarations at once (each table in one statement)
    when the document selects them, directly or through fragments and aliases, and not at all when it
    does not."""
    plain = (
        "{ deviceModels(first: 10) { edges { node { certifiedFirmware { firmwareVersion commercial } } } } }"
    )
    fragments = """
      query { deviceModels(first: 10) { edges { ...Edge } } }
      fragment Edge on DeviceModelEdge { node { ... on DeviceModel { ...Versions } } }
      fragment Versions on DeviceModel { versions: certifiedFirmware { firmwareVersion commercial } }"""
    without = "{ deviceModels(first: 10) { pageInfo { hasNextPage } edges { node { modelId } } } }"
    await declare(world, OWN_A2)

    def reads_of(statements: list[str], table: str) -> int:
        return sum(f" {table}." in statement for statement in statements)

    with counting(world.db) as plain_statements:
        plain_answer = data(await ask(world, plain))["deviceModels"]["edges"]
    with counting(world.db) as fragment_statements:
        fragment_answer = data(await ask(world, fragments))["deviceModels"]["edges"]
    with counting(world.db) as without_statements:
        data(await ask(world, without))
    assert [e["node"]["certifiedFirmware"] for e in plain_answer] == [
        e["node"]["versions"] for e in fragment_answer
    ]
    assert any(v["commercial"] for e in plain_answer for v in e["node"]["certifiedFirmware"])
    assert len(plain_statements) == len(fragment_statements)
    for statements in (plain_statements, fragment_statements):
        assert [reads_of(statements, t) for t in TABLES_OF_VERSIONS] == [1, 1, 1], statements
    assert [reads_of(without_statements, t) for t in TABLES_OF_VERSIONS] == [0, 0, 0], without_statements


TABLES_OF_VERSIONS = ("cpl_certified_firmware", "library_images", "commercial_declarations")


async def test_one_request_reads_the_current_snapshot_once_however_many_fields_ask_at_once(
    world: World,
) -> None:
    """Root fields resolve concurrently: had each read the pointer itself, a sync committing between two
    reads would make one answer of two snapshots (the load test caught `cplSnapshot` naming snapshot 1
    beside a page of snapshot 2)."""
    query = """{ cplSnapshot { snapshotId } deviceModels(first: 5) { totalCount
      edges { node { certifiedFirmware { firmwareVersion } } } }
      coverageGaps(first: 5) { totalCount } coverageSummary(groupBy: MANUFACTURER) { key } }"""
    with counting(world.db) as statements:
        data(await ask(world, query))
    reads = [statement for statement in statements if "FROM cpl_current" in statement]
    assert len(reads) == 1, reads


RECORD_PATHWAY = """mutation($from: String!, $to: String!) {
  recordUpgradePathway(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100",
                       fromVersion: $from, toVersion: $to) { fromVersion toVersion recordedBy } }"""


async def test_upgrade_pathways_a_manufacturer_records_show_on_both_versions(world: World) -> None:
    recorded = data(
        await ask(
            world, RECORD_PATHWAY, token=world.tokens.manufacturer, **{"from": "1000000", "to": "01020000"}
        )
    )
    assert recorded["recordUpgradePathway"] == {
        "fromVersion": "01000000",
        "toVersion": "01020000",
        "recordedBy": "Northfield Metering Ltd",
    }
    data(
        await ask(
            world, RECORD_PATHWAY, token=world.tokens.manufacturer, **{"from": "01010000", "to": "01020000"}
        )
    )
    model = data(
        await ask(
            world,
            """{ deviceModel(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100") {
                 certifiedFirmware { firmwareVersion upgradesFrom { firmwareVersion } upgradesTo { firmwareVersion } } } }""",
        )
    )["deviceModel"]
    paths = {
        v["firmwareVersion"]: (
            [f["firmwareVersion"] for f in v["upgradesFrom"]],
            [t["firmwareVersion"] for t in v["upgradesTo"]],
        )
        for v in model["certifiedFirmware"]
    }
    assert paths == {
        "00900000": ([], []),
        "01000000": ([], ["01020000"]),
        "01010000": ([], ["01020000"]),
        "01020000": (["01000000", "01010000"], []),
    }


@pytest.mark.parametrize(
    ("token_name", "versions", "code", "message"),
    [
        ("manufacturer", ("01000000", "01990000"), "BAD_USER_INPUT", "is not on the current CPL"),
        ("manufacturer", ("01000000", "01000000"), "BAD_USER_INPUT", "not to itself"),
        ("manufacturer", ("01020000", "01000000"), "BAD_USER_INPUT", "01000000 is lower than 01020000"),
        ("manufacturer", ("01010000", "00900000"), "BAD_USER_INPUT", "goes to a higher firmware version"),
        ("other_manufacturer", ("01000000", "01020000"), "FORBIDDEN", "not registered to Harrow"),
        ("supplier", ("01000000", "01020000"), "FORBIDDEN", "the supplier role does not include it"),
    ],
)
async def test_upgrade_pathways_are_checked(
    world: World, token_name: str, versions: tuple[str, str], code: str, message: str
) -> None:
    refused = await ask(
        world,
        RECORD_PATHWAY,
        token=getattr(world.tokens, token_name),
        **{"from": versions[0], "to": versions[1]},
    )
    assert refused["errors"][0]["extensions"]["code"] == code
    assert message in refused["errors"][0]["message"]


REMOVE_PATHWAY = """mutation($from: String!, $to: String!) {
  removeUpgradePathway(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100",
                       fromVersion: $from, toVersion: $to) { fromVersion toVersion } }"""


async def test_pathways_only_go_up_so_a_cycle_cannot_be_recorded(world: World) -> None:
    """ZigBee OTA orders versions as numbers: 01000000 → 01010000 → 01020000, and back is refused at
    every step, so no chain of pathways ever returns to where it started."""
    for start, end in (("01000000", "01010000"), ("01010000", "01020000")):
        data(await ask(world, RECORD_PATHWAY, token=world.tokens.manufacturer, **{"from": start, "to": end}))
    for start, end in (("01020000", "01000000"), ("01020000", "01010000"), ("01010000", "01000000")):
        back = await ask(world, RECORD_PATHWAY, token=world.tokens.manufacturer, **{"from": start, "to": end})
        assert back["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", back
        assert "is lower than" in back["errors"][0]["message"]


async def test_a_manufacturer_removes_its_pathway_and_the_audit_trail_keeps_it(world: World) -> None:
    versions = {"from": "01000000", "to": "01020000"}
    data(await ask(world, RECORD_PATHWAY, token=world.tokens.manufacturer, **versions))
    refused = await ask(world, REMOVE_PATHWAY, token=world.tokens.other_manufacturer, **versions)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    removed = data(await ask(world, REMOVE_PATHWAY, token=world.tokens.manufacturer, **versions))
    assert removed["removeUpgradePathway"] == {"fromVersion": "01000000", "toVersion": "01020000"}
    again = await ask(world, REMOVE_PATHWAY, token=world.tokens.manufacturer, **versions)
    assert again["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    model = data(
        await ask(
            world,
            """{ deviceModel(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100") {
                 certifiedFirmware { upgradesTo { firmwareVersion } } } }""",
        )
    )["deviceModel"]
    assert all(v["upgradesTo"] == [] for v in model["certifiedFirmware"])
    async with world.db.sessions() as session:
        actions = (
            (
                await session.execute(
                    select(AuditEvent.action)
                    .where(AuditEvent.action.like("pathway.%"))
                    .order_by(AuditEvent.id)
                )
            )
            .scalars()
            .all()
        )
    assert actions == ["pathway.recorded", "pathway.removed"]


def test_a_version_made_from_its_row_has_every_field_the_dataclass_would_give_it() -> None:
    """`CertifiedFirmware.of` sets the object's fields itself (a page makes about a thousand): a field
    added to the type without being set there would be missing from every version of a page."""
    row = SimpleNamespace(
        manufacturer_id="10B2", model_id="0001", hardware_version="0100", firmware_version="01000000"
    )
    made = CertifiedFirmware.of(row)
    by_keyword = CertifiedFirmware(
        manufacturer_id="10B2",
        model_id="0001",
        hardware_version="0100",
        firmware_version="01000000",
        cpl_row=row,
    )
    assert vars(made) == vars(by_keyword)
    assert set(vars(made)) == {field.name for field in dataclasses.fields(CertifiedFirmware) if field.init}


async def test_a_request_s_reads_are_freed_when_it_is_answered_without_the_cyclic_collector(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row a page read goes with the request: nothing it read is left for the cyclic collector,
    which would otherwise walk a page's worth of rows for every request in flight (issue 17). The
    request's loaders are freed by their reference counts alone."""
    made: list[weakref.ref[CatalogueLoaders]] = []
    init = CatalogueLoaders.__init__

    def recorded(self: CatalogueLoaders, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(CatalogueLoaders, "__init__", recorded)
    await publish(world, OWN_A1)
    query = (
        "{ deviceModels(first: 10) { edges { node { modelId certifiedFirmware { firmwareVersion "
        "libraryImage { state } } libraryImages { imageId } } } } }"
    )
    gc.collect()
    gc.disable()
    try:
        answered = data(await ask(world, query))
        assert answered["deviceModels"]["edges"]
        # Alive still (held by graphql-core's executor, itself a cycle) are only loaders that read nothing.
        alive = [loaders for reference in made if (loaders := reference()) is not None]
        assert len(alive) < len(made)
        assert all(not loaders._read_versions and not loaders._read_images for loaders in alive)
    finally:
        gc.enable()

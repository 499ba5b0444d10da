"""Query plans of the catalogue's hot paths on PostgreSQL at scale (issue 8): no sequential scan of the
CPL tables, and statements per request that do not grow with the page.

    python -m bench.plans [--rows 1000000] [--history 3] [--database-url postgresql://...] [--keep]

A CPL of `--rows` rows from `cfl_graph.demo.cpl_data` is synchronised through the real pipeline into a fresh
database, after `--history` earlier snapshots of it (the list as it stood 3, 6, 9 ... months before), as
a library that has run for a while holds them: the hot paths must read the current snapshot alone, not
the whole history. The demo library (signed images published through the service) goes on top, then
ANALYZE. Each request below is then sent to the real app in this process, with the response cache off,
once to warm up and once recorded: every statement it issues is run again under
`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` with the same parameters, and each plan node that reads a CPL
table is listed. A `Seq Scan` of `cpl_device_models` or `cpl_certified_firmware` in a request marked
hot fails the run (exit 1); the whole-snapshot reports (coverage summary, timeliness, the gap count)
read every row of the current snapshot by their nature, and so do the catalogue's `hasCoverageGap`
filter (its total) and a diff of two snapshots: they are shown, not gated.

Results go to bench/results/plans-<date>.json (machine, commit, every plan); the summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import event, select, text

from bench.cpl_sync import LARGE_CPL_LIMITS, _drop_database, _fresh_database
from bench.records import machine_record, write_record
from cfl_graph.demo.cpl_data import generate, write_csv

CPL_TABLES = frozenset({"cpl_device_models", "cpl_certified_firmware"})
HISTORY_STEP_DAYS = 90
DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

CATALOGUE = (
    "query($after: String, $filter: DeviceModelFilter, $first: Int!) { deviceModels(first: $first, "
    "after: $after, filter: $filter) { totalCount pageInfo { hasNextPage endCursor } edges { node { "
    "manufacturerId modelId hardwareVersion manufacturerName modelName deviceType smetsVersion "
    "certifiedFirmware { firmwareVersion imageHash status listedOn commercial "
    "libraryImage { imageId state fileSha256 size } } libraryImages { imageId state } } } } }"
)
MODEL = (
    "query($m: String!, $d: String!, $h: String!) { deviceModel(manufacturerId: $m, modelId: $d, "
    "hardwareVersion: $h) { modelName certifiedFirmware { firmwareVersion imageHash status commercial "
    "libraryImage { imageId fileSha256 } upgradesTo { firmwareVersion } } libraryImages { imageId } } }"
)
GAPS = (
    "query($filter: DeviceModelFilter) { coverageGaps(first: 500, filter: $filter) { totalCount edges { "
    "node { firmwareVersion daysMissing deviceModel { manufacturerId modelId hardwareVersion } } } } }"
)
SUMMARY = "query($by: ReportGroupBy!) { coverageSummary(groupBy: $by) { key certified available missing } }"
CONSISTENCY = (
    "query($m: String!) { consistencyReport(manufacturerId: $m) { findings { kind firmwareVersion } } }"
)
TIMELINESS = "{ timeliness(groupBy: MANUFACTURER) { key published medianDays p90Days worstDays } }"
SNAPSHOTS = (
    "query($id: ID) { cplSnapshot(id: $id) { id rowCount diff(against: null, limit: 100) { addedCount } } }"
)


@dataclass(frozen=True)
class Ask:
    name: str
    query: str
    variables: dict[str, Any]
    hot: bool = True  # a Seq Scan of a CPL table here fails the run


@dataclass
class Scan:
    node: str  # e.g. "Index Scan", "Seq Scan", "Bitmap Heap Scan"
    relation: str
    index: str | None
    rows: int


@dataclass
class StatementPlan:
    sql: str
    execution_ms: float
    planning_ms: float
    cpl_scans: list[Scan]
    plan: Any = field(repr=False)


@dataclass
class AskResult:
    name: str
    hot: bool
    statements: int
    request_ms: float
    plans: list[StatementPlan]

    @property
    def seq_scans(self) -> list[Scan]:
        return [s for p in self.plans for s in p.cpl_scans if s.node == "Seq Scan"]


def _scans(node: dict[str, Any]) -> Iterator[Scan]:
    relation = node.get("Relation Name")
    if relation in CPL_TABLES:
        yield Scan(node["Node Type"], relation, node.get("Index Name"), int(node.get("Actual Rows", 0)))
    for child in node.get("Plans", ()):
        yield from _scans(child)


async def _build(database_url: str, folder: Path, rows: int, history: int) -> dict[str, str]:
    """The CPL with its history, the demo library, tokens; returns the tokens by role."""
    from cfl_graph import migrate
    from cfl_graph.access.parties import add_party
    from cfl_graph.access.tokens import issue_token
    from cfl_graph.audit import SYSTEM
    from cfl_graph.blobs.local import LocalBlobStore
    from cfl_graph.database import Database
    from cfl_graph.demo import library as demo_library
    from cfl_graph.tables import Role
    from cpl_sync.sync import sync_cpl

    limits = LARGE_CPL_LIMITS
    records = list(generate(rows, seed=1))
    newest = max(r.date_added for r in records)
    db = Database.connect(database_url)
    try:
        await migrate.upgrade(db.engine)
        for back in range(history, -1, -1):
            cutoff = newest - dt.timedelta(days=HISTORY_STEP_DAYS * back)
            path = folder / f"cpl-{back}.csv"
            write_csv(path, [r for r in records if r.date_added <= cutoff])
            began = time.perf_counter()
            result = await sync_cpl(db, str(path), work_dir=folder / "work", trigger="bench", limits=limits)
            if result.outcome.value != "applied":
                raise SystemExit(f"the CPL as of {cutoff} did not apply: {result.outcome.value} {result}")
            print(
                f"  snapshot {result.snapshot_id}: {result.row_count:,} rows as of {cutoff} "
                f"({result.outcome.value}, {time.perf_counter() - began:.0f} s)",
                flush=True,
            )
            path.unlink()
        await demo_library.load_demo_library(db, LocalBlobStore(folder / "blobs"))
        tokens = {}
        async with db.sessions.begin() as session:
            for role in (Role.SUPPLIER, Role.PANEL):
                party = await add_party(session, f"Bench {role.value}", role, actor=SYSTEM)
                tokens[role.value] = (await issue_token(session, party, actor=SYSTEM)).text
        # What autovacuum does soon after a sync's inserts: statistics, and the visibility map that lets
        # counts and key lookups read the index alone.
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
        return tokens
    finally:
        await db.dispose()


async def _asks(database_url: str) -> list[Ask]:
    """The requests, with keys picked from the data: a big manufacturer, a model, a deep cursor."""
    from cfl_graph.cursors import encode_cursor
    from cfl_graph.database import Database
    from cfl_graph.tables import CplCurrent, CplDeviceModel

    db = Database.connect(database_url)
    try:
        async with db.sessions() as session:
            current = select(CplCurrent.snapshot_id).scalar_subquery()
            models = (
                await session.execute(
                    select(
                        CplDeviceModel.manufacturer_id,
                        CplDeviceModel.model_id,
                        CplDeviceModel.hardware_version,
                    )
                    .where(CplDeviceModel.snapshot_id == current)
                    .order_by(
                        CplDeviceModel.manufacturer_id,
                        CplDeviceModel.model_id,
                        CplDeviceModel.hardware_version,
                    )
                )
            ).all()
            name = await session.scalar(
                select(CplDeviceModel.model_name).where(CplDeviceModel.snapshot_id == current).limit(1)
            )
    finally:
        await db.dispose()
    deep = models[int(len(models) * 0.9)]
    middle = models[len(models) // 2]
    word = str(name).split()[-1]
    cursor = encode_cursor("DeviceModel", list(deep))
    first_page = {"first": 100, "after": None, "filter": None}
    return [
        *(Ask(f"catalogue page of {n}", CATALOGUE, {**first_page, "first": n}) for n in (10, 100, 500)),
        Ask("catalogue page 90% down", CATALOGUE, {**first_page, "after": cursor}),
        Ask("catalogue by manufacturer", CATALOGUE, {**first_page, "filter": {"manufacturerId": middle[0]}}),
        Ask("catalogue by device type", CATALOGUE, {**first_page, "filter": {"deviceType": "GSME"}}),
        Ask("catalogue search", CATALOGUE, {**first_page, "filter": {"search": word}}),
        # Its total needs every version of the snapshot checked against the library: a whole-snapshot
        # report that happens to be asked through the catalogue's list.
        Ask("catalogue with gaps", CATALOGUE, {**first_page, "filter": {"hasCoverageGap": True}}, hot=False),
        Ask("one device model", MODEL, {"m": middle[0], "d": middle[1], "h": middle[2]}),
        Ask("coverage gaps of a manufacturer", GAPS, {"filter": {"manufacturerId": middle[0]}}),
        Ask("consistency of a manufacturer", CONSISTENCY, {"m": middle[0]}),
        Ask("current snapshot and its diff", SNAPSHOTS, {"id": None}, hot=False),
        Ask("coverage gaps, all", GAPS, {"filter": None}, hot=False),
        Ask("coverage summary", SUMMARY, {"by": "MANUFACTURER"}, hot=False),
        Ask("timeliness", TIMELINESS, {}, hot=False),
    ]


async def _measure(
    database_url: str, folder: Path, tokens: dict[str, str], asks: list[Ask]
) -> list[AskResult]:
    from cfl_graph.database import Database
    from cfl_graph.doors.web.app import create_app
    from cfl_graph.settings import Settings

    settings = Settings(
        database_url=database_url,
        blob_dir=folder / "blobs",
        work_dir=folder / "work",
        response_cache_mb=0,
        rate_limit_per_minute=0,
    )
    db = Database.connect(database_url)
    recorded: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        recorded.append((statement, parameters))

    results = []
    try:
        app = create_app(settings, db=db)
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as http:
            for ask in asks:
                token = tokens["panel" if ask.query is CONSISTENCY else "supplier"]
                body = {"query": ask.query, "variables": ask.variables}
                headers = {"Authorization": f"Bearer {token}"}
                warm = await http.post("/graphql", json=body, headers=headers)
                answer = warm.json()
                if warm.status_code != 200 or answer.get("errors"):
                    raise SystemExit(f"{ask.name}: {warm.status_code} {str(answer)[:500]}")
                recorded.clear()
                event.listen(db.engine.sync_engine, "before_cursor_execute", record)
                began = time.perf_counter()
                await http.post("/graphql", json=body, headers=headers)
                request_ms = (time.perf_counter() - began) * 1000
                event.remove(db.engine.sync_engine, "before_cursor_execute", record)
                statements = list(recorded)
                plans = [await _explain(db, sql, parameters) for sql, parameters in statements]
                results.append(AskResult(ask.name, ask.hot, len(statements), request_ms, plans))
                print(f"  {ask.name}: {len(statements)} statements, {request_ms:.0f} ms", flush=True)
    finally:
        await db.dispose()
    return results


async def _explain(db: Any, sql: str, parameters: Any) -> StatementPlan:
    async with db.engine.connect() as conn:
        explained = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, parameters)
        document = explained.scalar_one()
        await conn.rollback()  # EXPLAIN ANALYZE runs the statement: an UPDATE of the audit head stays undone
    top = (json.loads(document) if isinstance(document, str) else document)[0]
    return StatementPlan(
        sql=" ".join(sql.split())[:300],
        execution_ms=float(top.get("Execution Time", 0.0)),
        planning_ms=float(top.get("Planning Time", 0.0)),
        cpl_scans=list(_scans(top["Plan"])),
        plan=top["Plan"],
    )


def _report(rows: int, history: int, results: list[AskResult]) -> int:
    print(f"\nPlans at {rows:,} CPL rows with {history} earlier snapshots (PostgreSQL):\n")
    print("| request | gated | statements | request | slowest statement | scans of CPL tables |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    failures = []
    for result in results:
        scans = sorted(
            {
                f"{s.node} on {s.relation}" + (f" ({s.index})" if s.index else "")
                for p in result.plans
                for s in p.cpl_scans
            }
        )
        slowest = max((p.execution_ms for p in result.plans), default=0.0)
        gated = "yes" if result.hot else "no"
        print(
            f"| {result.name} | {gated} | {result.statements} | {result.request_ms:.0f} ms "
            f"| {slowest:.1f} ms | {'; '.join(scans) or '—'} |"
        )
        if result.hot and result.seq_scans:
            failures.append(result.name)
    pages = {r.name: r.statements for r in results if r.name.startswith("catalogue page of")}
    print(f"\nstatements per catalogue request by page size: {pages}")
    if len(set(pages.values())) != 1:
        print("FAIL: the statement count grows with the page size")
        failures.append("statements per page")
    if failures:
        print(f"FAIL: sequential scans of CPL tables on hot paths: {failures}")
        return 1
    print("OK: no sequential scan of a CPL table on a hot path; statements constant in the page size")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--history", type=int, default=3, help="earlier snapshots to load first")
    parser.add_argument(
        "--database-url", default=DEFAULT_URL, help="PostgreSQL server to create a database on"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args(argv)
    if not args.database_url.startswith("postgresql"):
        parser.error("query plans are checked on PostgreSQL, the production database")
    with tempfile.TemporaryDirectory(prefix="cfl-plans-") as tmp:
        folder = Path(tmp)
        url = _fresh_database(args.database_url, folder)
        try:
            print(
                f"building {args.rows:,} rows and {args.history} earlier snapshots in {url.rsplit('/', 1)[1]}"
            )
            began = time.perf_counter()
            tokens = asyncio.run(_build(url, folder, args.rows, args.history))
            print(f"built in {time.perf_counter() - began:.0f} s; asking")
            results = asyncio.run(_measure(url, folder, tokens, asyncio.run(_asks(url))))
        finally:
            if not args.keep:
                _drop_database(args.database_url, url)
    status = _report(args.rows, args.history, results)
    record = machine_record(
        "plans",
        database="postgresql",
        rows=args.rows,
        history=args.history,
        passed=status == 0,
        results=[asdict(r) for r in results],
    )
    write_record(record, "plans", indent=1)
    return status


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark P4: the reports over GraphQL, the response cache off, against hand-written SQL.

    python -m bench.reports [--rows 100000 1000000] [--database-url URL] [--requests 10] [--cache var/bench]

For each row count a CPL from `cfl_graph.demo.cpl_data` (written once to `--cache` and reused) is
synchronised by the real pipeline into a fresh PostgreSQL database and the demo library loaded on top
(`bench.catalogue`'s set-up, not measured). The real app then answers on one uvicorn worker with the
response cache off (`bench.catalogue.serving`: every request executed), one client at a time:

- the coverage gaps, the first 500 with their total, against `bench.catalogue.hand_coverage_gaps` (the
  anti-join and its count);
- the consistency report of the manufacturer with the most device models (the demo library's
  `largest_manufacturer`), every finding with its detail, against `hand_consistency_report`: one
  statement on asyncpg that finds the same disagreements and writes the same details, whose rows are
  turned into the same JSON answer here.

The answers are compared equal before anything is timed. Ours is timed over HTTP (the request's wall time
and the server's CPU), the hand-written side in this process (its wall time and CPU, the answer encoded as
a server must). Aim: every report at most 1.5x its hand-written SQL (issue 17, P4).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.catalogue import (
    AIM_GAPS_RATIO,
    CURRENT,
    GAPS_QUERY,
    GapsMeasurement,
    GraphClient,
    HandPool,
    Timing,
    _same_version,
    app_pool_size,
    measure_gaps,
    open_hand_pool,
    single_client,
)
from bench.growth import CACHE, cached_cpl
from bench.peer import OurServer, ServerProcess, add_database_argument, library, running
from bench.records import machine_record, write_record

AIM_RATIO = AIM_GAPS_RATIO  # every report: ours / its hand-written SQL, at most
REQUESTS = 10

CONSISTENCY_QUERY = (
    "query($m: String!) { consistencyReport(manufacturerId: $m) { manufacturerId totalCount "
    "counts { kind count } findings { kind firmwareVersion detail libraryImageId "
    "deviceModel { manufacturerId modelId hardwareVersion } } } }"
)

# The kinds in the report's own order (`reports.FindingKind`): a version's findings are listed in it.
KINDS = ("MISSING_IMAGE", "HASH_MISMATCH", "DELISTED_FROM_CPL", "NOT_ON_CPL", "LATE_PUBLICATION")
LATE_AFTER_DAYS = 30

# Every finding of one manufacturer, in the report's order, its detail written by PostgreSQL: the gaps
# (active, in scope, not declared commercial, no published image), then each published or held image
# against its version's row in the current snapshot (none, not active, another hash, published late).
# `$1` the manufacturer, `$2` today (UTC). Keys are compared by code point, as Python sorts strings.
_STANDING = (
    "CASE WHEN i.state = 'held' AND i.held_at IS NOT NULL THEN 'is held since ' "
    "|| to_char(i.held_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' and not served' ELSE 'is published' END"
)
CONSISTENCY_SQL = f"""
SELECT * FROM (
SELECT 0 AS rank, cf.model_id, cf.hardware_version, cf.firmware_version,
       'certified on the CPL since ' || to_char(cf.date_added, 'YYYY-MM-DD') || ' (sheet row '
       || cf.sheet_row || '), ' || ($2::date - cf.date_added) || ' days without a published image' AS detail,
       NULL::integer AS image_id
FROM cpl_certified_firmware cf
JOIN cpl_device_models dm ON dm.snapshot_id = cf.snapshot_id AND dm.manufacturer_id = cf.manufacturer_id
     AND dm.model_id = cf.model_id AND dm.hardware_version = cf.hardware_version
WHERE cf.snapshot_id = {CURRENT} AND cf.manufacturer_id = $1 AND cf.status = 'active'
  AND dm.device_type IN ('ESME', 'GSME', 'HCALCS', 'PPMID')
  AND NOT EXISTS (SELECT 1 FROM commercial_declarations d WHERE {_same_version("d")})
  AND NOT EXISTS (SELECT 1 FROM library_images i WHERE {_same_version("i")} AND i.state = 'published')
UNION ALL
SELECT k.rank, i.model_id, i.hardware_version, i.firmware_version, k.detail, i.id
FROM library_images i
LEFT JOIN cpl_certified_firmware cf ON cf.snapshot_id = {CURRENT} AND {_same_version("i")}
CROSS JOIN LATERAL (VALUES
  (3, cf.manufacturer_id IS NULL,
   'image ' || i.id || ' ' || {_STANDING} || ': the current CPL does not list this version'),
  (2, cf.status <> 'active',
   'image ' || i.id || ' ' || {_STANDING} || ': the CPL now lists the version as ' || cf.status
   || ' (sheet row ' || cf.sheet_row || ')'),
  (1, cf.image_hash <> i.manufacturer_image_sha256,
   'image ' || i.id || ' ' || {_STANDING} || ': its Manufacturer Image SHA-256 is '
   || i.manufacturer_image_sha256 || '; the CPL lists ' || cf.image_hash || ' (sheet row ' || cf.sheet_row
   || ')'),
  (4, (i.published_at AT TIME ZONE 'UTC')::date - cf.date_added > {LATE_AFTER_DAYS},
   'image ' || i.id || ' was published ' || ((i.published_at AT TIME ZONE 'UTC')::date - cf.date_added)
   || ' days after the CPL listed the version (' || to_char(cf.date_added, 'YYYY-MM-DD') || '); the aim is '
   || {LATE_AFTER_DAYS})
) AS k (rank, applies, detail)
WHERE i.manufacturer_id = $1 AND i.state IN ('published', 'held') AND k.applies
) AS f
ORDER BY f.model_id COLLATE "C", f.hardware_version COLLATE "C", f.firmware_version COLLATE "C", f.rank
"""


async def hand_consistency_report(pool: HandPool, manufacturer_id: str, today: dt.date) -> dict[str, Any]:
    """The `consistencyReport` answer of `CONSISTENCY_QUERY`, from one hand-written statement."""
    async with pool.connection() as conn:
        rows = await conn.fetch(CONSISTENCY_SQL, manufacturer_id, today)
    findings = [
        {
            "kind": KINDS[rank],
            "firmwareVersion": firmware,
            "detail": detail,
            "libraryImageId": image_id,
            "deviceModel": {"manufacturerId": manufacturer_id, "modelId": model, "hardwareVersion": hardware},
        }
        for rank, model, hardware, firmware, detail, image_id in rows
    ]
    counts = Counter(finding["kind"] for finding in findings)
    return {
        "manufacturerId": manufacturer_id,
        "totalCount": len(findings),
        "counts": [{"kind": kind, "count": counts[kind]} for kind in KINDS],
        "findings": findings,
    }


# --- measuring -----------------------------------------------------------------------------------------

SERVER = OurServer("ours, 1 worker, cache off", env={"CFL_RESPONSE_CACHE_MB": "0"})


@dataclass(frozen=True)
class ReportRound:
    """One round: ours, then the hand-written side, each a series of one-client requests."""

    ours: Timing
    hand: Timing

    @property
    def ratio(self) -> float:
        return self.ours.median_ms / self.hand.median_ms


@dataclass(frozen=True)
class ReportMeasurement:
    report: str
    detail: str  # what was asked, and how much came back
    answer_bytes: int
    rounds: list[ReportRound]

    @property
    def ratio(self) -> float:
        """The median of the rounds' ratios (each round's sides measured back to back)."""
        return statistics.median(r.ratio for r in self.rounds)


async def measure_consistency(
    client: GraphClient, pool: HandPool, manufacturer_id: str, requests: int, rounds: int
) -> ReportMeasurement:
    today = dt.datetime.now(dt.UTC).date()
    variables = {"m": manufacturer_id}
    ours = (await client.data(CONSISTENCY_QUERY, variables))["consistencyReport"]
    hand = await hand_consistency_report(pool, manufacturer_id, today)
    if ours != hand:
        difference = next(
            (f"{a} against {b}" for a, b in zip(ours["findings"], hand["findings"], strict=False) if a != b),
            f"{ours['counts']} against {hand['counts']}",
        )
        raise SystemExit(f"the consistency report differs from the hand-written SQL: {difference}")
    answer = await client.raw(CONSISTENCY_QUERY, variables)

    async def ours_call() -> bytes:
        return await client.raw(CONSISTENCY_QUERY, variables)

    async def hand_call() -> bytes:
        # Encoded too, as a server must before it answers.
        return json.dumps(await hand_consistency_report(pool, manufacturer_id, today)).encode()

    measured = []
    for _ in range(rounds):
        ours_timing = await single_client(ours_call, requests, client.server_cpu_s)
        hand_timing = await single_client(hand_call, requests, time.process_time)
        measured.append(ReportRound(ours_timing, hand_timing))
    counts = ", ".join(f"{c['count']:,} {c['kind']}" for c in hand["counts"] if c["count"])
    return ReportMeasurement(
        "consistency",
        f"manufacturer {manufacturer_id}: {hand['totalCount']:,} findings ({counts})",
        len(answer),
        measured,
    )


async def measure_coverage_gaps(
    client: GraphClient, pool: HandPool, url: str, requests: int, rounds: int
) -> ReportMeasurement:
    measured = []
    gaps: GapsMeasurement | None = None
    for _ in range(rounds):
        gaps = await measure_gaps(client, pool, url, requests)
        measured.append(ReportRound(gaps.graphql, gaps.hand))
    assert gaps is not None
    answer = await client.raw(GAPS_QUERY, {})
    return ReportMeasurement("coverage gaps", f"first {gaps.rows} of {gaps.total:,}", len(answer), measured)


async def _panel(url: str) -> tuple[str, str]:
    """(a Panel party's token, the manufacturer with the most device models)."""
    from cfl_graph.access.parties import add_party
    from cfl_graph.access.tokens import issue_token
    from cfl_graph.audit import SYSTEM
    from cfl_graph.database import Database
    from cfl_graph.demo.library import largest_manufacturer
    from cfl_graph.tables import Role

    db = Database.connect(url)
    try:
        async with db.sessions.begin() as session:
            party = await add_party(session, "Bench Panel", Role.PANEL, actor=SYSTEM)
            token = (await issue_token(session, party, actor=SYSTEM)).text
            manufacturer_id, _ = await largest_manufacturer(session)
        return token, manufacturer_id
    finally:
        await db.dispose()


async def _measure(
    server: ServerProcess,
    supplier: str,
    panel: str,
    manufacturer_id: str,
    url: str,
    pool_size: tuple[int, int],
    args: argparse.Namespace,
) -> list[ReportMeasurement]:
    pool = await open_hand_pool(url, pool_size)
    reading, auditing = GraphClient(server, supplier, 1), GraphClient(server, panel, 1)
    try:
        return [
            await measure_coverage_gaps(reading, pool, url, args.requests, args.rounds),
            await measure_consistency(auditing, pool, manufacturer_id, args.requests, args.rounds),
        ]
    finally:
        await reading.close()
        await auditing.close()
        await pool.close()


@dataclass(frozen=True)
class SizeResult:
    rows: int
    device_models: int
    load: tuple[float, float]  # the 1-minute load average as measuring began and ended
    reports: list[ReportMeasurement]


def measure(rows: int, args: argparse.Namespace) -> SizeResult:
    cpl, write_s = cached_cpl(args.cache, rows, args.seed, suffix="csv")
    with tempfile.TemporaryDirectory(prefix="cfl-bench-") as tmp:
        folder = Path(tmp)
        with library(args.database_url, folder, cpl, rows, args.max_images, write_s) as lib:
            print(
                f"\n{rows:,} CPL rows: {lib.setup.device_models:,} device models, "
                f"{lib.setup.images_published} published images "
                f"(set-up {lib.setup.seconds:.0f} s, not measured)",
                flush=True,
            )
            panel, manufacturer_id = asyncio.run(_panel(lib.url))
            pool_size = app_pool_size(lib.url)
            server = SERVER.start(lib.url, lib.blob_dir, lib.work_dir, folder / "server.log")
            with running([server]):
                before = os.getloadavg()[0]
                reports = asyncio.run(
                    _measure(server, lib.token, panel, manufacturer_id, lib.url, pool_size, args)
                )
                load = (before, os.getloadavg()[0])
    return SizeResult(rows, lib.setup.device_models, load, reports)


def print_size(result: SizeResult) -> None:
    print(
        f"P4 at {result.rows:,} CPL rows, ours over HTTP on one worker with the cache off, against the "
        f"hand-written SQL, one client; load average {result.load[0]:.1f} -> {result.load[1]:.1f} on "
        f"{os.cpu_count()} CPUs (aim: ratio <= {AIM_RATIO}x)"
    )
    for m in result.reports:
        print(f"  {m.report}, {m.detail}; our answer {m.answer_bytes / 1000:,.0f} KB")
        for index, r in enumerate(m.rounds, 1):
            print(
                f"    round {index}: ours {r.ours.median_ms:.1f} ms (server CPU {r.ours.cpu_ms:.1f} ms), "
                f"hand {r.hand.median_ms:.1f} ms (CPU {r.hand.cpu_ms:.1f} ms): {r.ratio:.2f}x"
            )
        verdict = "met" if m.ratio <= AIM_RATIO else "missed"
        print(f"    ratio {m.ratio:.2f}x, {verdict}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from cfl_graph.demo import library as demo_library

    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100000])
    add_database_argument(parser)
    parser.add_argument("--requests", type=int, default=REQUESTS, help="timed requests per side and round")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds, each timing ours then the hand-written SQL"
    )
    parser.add_argument(
        "--max-images", type=int, default=demo_library.MAX_IMAGES, help="the demo library's cap"
    )
    parser.add_argument("--seed", type=int, default=1, help="cfl_graph.demo.cpl_data's seed")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the generated CSV files are kept")
    args = parser.parse_args(argv)
    results = []
    for rows in args.rows:
        result = measure(rows, args)
        print_size(result)
        results.append(result)
    record = machine_record(
        "P4 reports against hand-written SQL",
        database="postgresql",
        aim_ratio_max=AIM_RATIO,
        requests=args.requests,
        results=[
            {
                **asdict(r),
                "ratios": {m.report: round(m.ratio, 3) for m in r.reports},
            }
            for r in results
        ],
    )
    write_record(record, "reports-postgresql")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.catalogue import (
    AIM_GAPS_RATIO,
    CURRENT,
    GapsMeasurement,
    GraphClient,
    HandPool,
    Timing,
    _same_version,
    app_pool_size,
    measure_gaps,
    open_hand_pool,
    serving,
    single_client,
)
from bench.growth import CACHE, cached_cpl
from bench.peer import DEFAULT_DATABASE_URL, library
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

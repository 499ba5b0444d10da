"""How fast hostile GraphQL documents are refused by `cfl-graph serve` (issue 9's limits, timed here rather
than in the tests, which check each refusal's code and message).

    python -m bench.refusals [--database-url URL] [--repeat 5]

A small CPL (1,000 rows) is synchronised into a fresh PostgreSQL database with the demo library on top and
a supplier's token (`bench.fixed_cost.served`); `cfl-graph serve` runs with one worker and an 8 MiB request
limit (so that the 5 MB document reaches the GraphQL limits rather than the body limit). Each document is
sent `--repeat` times over loopback, each answer checked for its refusal code; the median and the slowest
are printed against each document's aim. The documents:

- 5 MB of `cplSnapshot { snapshotId }` repeated: refused by its token count, the parser stopping at 5,001;
- a fragment that doubles at every level, 2**40 fields once expanded: refused by its cost, computed
  without expanding it;
- two fragment cycles (a spread cycle, and a cycle through fields): refused by validation;
- `_entities` with 9,000 representations on each subgraph: refused by the list's length before any is
  resolved.

Exit 1 when a document is not refused with its code, or its slowest refusal misses its aim.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from bench.fixed_cost import served
from bench.growth import CACHE
from bench.peer import OurServer, add_database_argument
from bench.records import machine_record, write_record

REQUEST_LIMIT = 8 * 1024 * 1024
SERVER = OurServer("ours (cfl-graph serve, 1 worker)", env={"CFL_MAX_REQUEST_BYTES": str(REQUEST_LIMIT)})


@dataclass(frozen=True)
class Hostile:
    name: str
    path: str
    body: dict[str, Any]
    code: str  # the refusal's `extensions.code`
    aim_ms: float  # the slowest refusal, at most


def _doubling_fragments(levels: int) -> str:
    fragments = " ".join(
        f"fragment F{n} on DeviceModel {{ ...F{n - 1} ...F{n - 1} }}" for n in range(1, levels + 1)
    )
    return (
        f"{{ deviceModels(first: 1) {{ edges {{ node {{ ...F{levels} }} }} }} }} "
        f"fragment F0 on DeviceModel {{ modelId }} {fragments}"
    )


def hostile_documents() -> list[Hostile]:
    representation = {"__typename": "DeviceModel", "manufacturerId": "A1B2", "hardwareVersion": "0100"}
    representations = [{**representation, "modelId": f"{n % 0xFFFF:04X}"} for n in range(9_000)]
    entities = "query($r: [_Any!]!) { _entities(representations: $r) { __typename } }"
    return [
        Hostile(
            "5 MB of fields, refused at token 5,001",
            "/graphql",
            {"query": "{ " + "cplSnapshot { snapshotId } " * (5 * 1024 * 1024 // 28) + "}"},
            "TOO_MANY_TOKENS",
            2000,
        ),
        Hostile(
            "a fragment doubling 40 times (2**40 fields)",
            "/graphql",
            {"query": _doubling_fragments(40)},
            "QUERY_TOO_COSTLY",
            1000,
        ),
        Hostile(
            "a fragment spread cycle",
            "/graphql",
            {
                "query": "{ deviceModels(first: 1) { edges { node { ...A } } } } "
                "fragment A on DeviceModel { ...B } fragment B on DeviceModel { ...A }"
            },
            "GRAPHQL_VALIDATION_FAILED",
            1000,
        ),
        Hostile(
            "a fragment cycle through fields",
            "/graphql",
            {
                "query": "{ deviceModels(first: 1) { edges { node { certifiedFirmware { ...A } } } } } "
                "fragment A on CertifiedFirmware { upgradesTo { ...A } }"
            },
            "GRAPHQL_VALIDATION_FAILED",
            1000,
        ),
        *(
            Hostile(
                f"_entities, 9,000 representations, {path}",
                path,
                {"query": entities, "variables": {"r": representations}},
                "LIST_TOO_LONG",
                5000,
            )
            for path in ("/subgraphs/cpl/graphql", "/subgraphs/cfl/graphql")
        ),
    ]


@dataclass(frozen=True)
class Timing:
    hostile: Hostile
    body_bytes: int
    milliseconds: list[float]

    @property
    def slowest(self) -> float:
        return max(self.milliseconds)

    @property
    def met(self) -> bool:
        return self.slowest <= self.hostile.aim_ms


def time_refusals(url: str, token: str, repeat: int) -> list[Timing]:
    timings = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx2.Client(timeout=120, headers=headers) as client:
        for hostile in hostile_documents():
            body = json.dumps(hostile.body).encode()
            taken = []
            for _ in range(repeat):
                began = time.perf_counter()
                response = client.post(url + hostile.path, content=body)
                taken.append(1000 * (time.perf_counter() - began))
                codes = {e.get("extensions", {}).get("code") for e in response.json().get("errors") or []}
                if response.status_code >= 500 or response.json().get("data") is not None:
                    raise SystemExit(
                        f"{hostile.name}: answered {response.status_code}: {response.text[:300]}"
                    )
                if codes != {hostile.code}:
                    raise SystemExit(f"{hostile.name}: refused with {codes}, not {hostile.code}")
            timings.append(Timing(hostile, len(body), taken))
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.refusals", description=__doc__.splitlines()[0])
    add_database_argument(parser)
    parser.add_argument("--repeat", type=int, default=5, help="times each document is sent")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the generated CSV is kept")
    args = parser.parse_args(argv)
    with served(SERVER, args.database_url, args.cache) as (server, lib, _):
        timings = time_refusals(server.url, lib.token, args.repeat)
    print(f"\nrefusals of hostile documents: {args.repeat} each, one at a time, over loopback")
    print(f"  {'document':<58} {'body':>9} {'median ms':>9} {'slowest':>8} {'aim':>7}")
    for t in timings:
        verdict = "" if t.met else "  MISSED"
        print(
            f"  {t.hostile.name:<58} {t.body_bytes / 1024:>7.0f} K {statistics.median(t.milliseconds):>9.1f} "
            f"{t.slowest:>8.1f} {t.hostile.aim_ms:>7.0f}{verdict}"
        )
    record = machine_record(
        "refusals of hostile documents",
        database="postgresql",
        repeat=args.repeat,
        results=[
            {
                "document": t.hostile.name,
                "code": t.hostile.code,
                "body_bytes": t.body_bytes,
                "milliseconds": [round(ms, 2) for ms in t.milliseconds],
                "aim_ms": t.hostile.aim_ms,
                "met": t.met,
            }
            for t in timings
        ],
    )
    write_record(record, "refusals-postgresql")
    return 0 if all(t.met for t in timings) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The load test's load generator: a separate process that runs CLIENTS concurrent clients against a
real server on loopback, mixing catalogue pages, coverage gaps, coverage summaries and image downloads,
while one more client uploads and publishes images, until the file `--until` appears (at most
`--seconds`); then writes what it saw as JSON.

    CFL_LOAD_SUPPLIER_TOKEN=... CFL_LOAD_MANUFACTURER_TOKEN=... \\
        python -m tests.reliability.load_client --base http://127.0.0.1:8000 --seconds 60 --until stop \\
            --clients 200 --images images.json --manufacturer-id 10B2 --uploads 6 --out report.json

Every answer about the CPL is recorded with the snapshot it says it read (`cplSnapshot { snapshotId }`
asked in the same request) and the CPL versions its rows are marked with (`tests.fixtures.
catalogue_load`), so the test can check each answer against one snapshot. Errors are every answer that
is not a 2xx, every GraphQL error, every connection failure or timeout, and every download whose bytes
do not hash to the image's SHA-256.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from cfl_graph.demo.cpl_data import manufacturer_image_for_key
from cfl_graph.demo.library import demo_signing_key
from cfl_graph.demo.ota_images import build_image
from tests.fixtures.catalogue_load import marker_of

PAGE = """query($filter: DeviceModelFilter, $after: String) {
  cplSnapshot { snapshotId }
  deviceModels(first: 20, filter: $filter, after: $after) {
    totalCount
    pageInfo { endCursor hasNextPage }
    edges { node {
      manufacturerId modelId hardwareVersion manufacturerName modelName
      certifiedFirmware { firmwareVersion imageHash status cpaReference }
    } }
  }
}"""
GAPS = """query($filter: DeviceModelFilter) {
  cplSnapshot { snapshotId }
  coverageGaps(first: 25, filter: $filter) {
    totalCount
    edges { node {
      firmwareVersion daysMissing
      deviceModel { manufacturerId modelId hardwareVersion manufacturerName modelName }
      certifiedFirmware { imageHash cpaReference }
    } }
  }
}"""
SUMMARY = """{
  cplSnapshot { snapshotId }
  coverageSummary(groupBy: MANUFACTURER) { key label certified commercial available missing }
}"""
PUBLISH = "mutation($id: ID!) { publishImage(id: $id) { imageId state } }"
NOTES = "## Changes\n\n- Fixed the tariff switch at midnight on the last day of the month.\n"
TIMEOUT = aiohttp.ClientTimeout(total=120)  # a queued request is slow, not failed; the load itself is bounded


@dataclass
class Load:
    base: str
    supplier: str
    manufacturer: str
    manufacturer_id: str
    images: list[tuple[int, str]]
    manufacturers: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    observations: list[dict[str, Any]] = field(default_factory=list)
    published: list[int] = field(default_factory=list)
    last_start: float = 0.0  # when the last request began

    def error(self, what: str) -> None:
        self.error_count += 1
        if len(self.errors) < 50:
            self.errors.append(what)


def _markers(*texts: str | None) -> set[int | None]:
    return {marker_of(text) for text in texts}


async def _graphql(
    load: Load, http: aiohttp.ClientSession, kind: str, token: str, query: str, variables: dict[str, Any]
) -> dict[str, Any] | None:
    started = time.perf_counter()
    try:
        async with http.post(
            f"{load.base}/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        ) as answer:
            text = await answer.text()
            status = answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        load.error(f"{kind}: {type(exc).__name__}: {exc}")
        return None
    load.latencies[kind].append(time.perf_counter() - started)
    if status != 200:
        load.error(f"{kind}: HTTP {status}: {text[:300]}")
        return None
    body: dict[str, Any] = json.loads(text)
    if body.get("errors"):
        load.error(f"{kind}: {body['errors'][0]}")
        return None
    data: dict[str, Any] = body["data"]
    return data


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


async def catalogue_page(load: Load, http: aiohttp.ClientSession, rng: random.Random) -> None:
    manufacturer = rng.choice([None, *load.manufacturers])
    variables: dict[str, Any] = {"filter": None if manufacturer is None else {"manufacturerId": manufacturer}}
    after = None
    for page in range(rng.choice((1, 1, 2))):  # sometimes on to the next page, from whatever is current
        variables["after"] = after
        data = await _graphql(load, http, "catalogue page", load.supplier, PAGE, variables)
        if data is None:
            return
        models = data["deviceModels"]
        nodes = [edge["node"] for edge in models["edges"]]
        texts = [t for n in nodes for t in (n["manufacturerName"], n["modelName"])]
        texts += [f["cpaReference"] for n in nodes for f in n["certifiedFirmware"]]
        load.observations.append(
            {
                "kind": "models",
                "snapshot": data["cplSnapshot"]["snapshotId"],
                "manufacturer": manufacturer,
                "page": page,
                "total": models["totalCount"],
                "markers": sorted(_markers(*texts), key=str),
                "digest": _digest(nodes),
                "keys": [[n["manufacturerId"], n["modelId"], n["hardwareVersion"]] for n in nodes],
            }
        )
        if not models["pageInfo"]["hasNextPage"]:
            return
        after = models["pageInfo"]["endCursor"]


async def coverage_gaps(load: Load, http: aiohttp.ClientSession, rng: random.Random) -> None:
    manufacturer = rng.choice([None, *load.manufacturers])
    variables = {"filter": None if manufacturer is None else {"manufacturerId": manufacturer}}
    data = await _graphql(load, http, "coverage gaps", load.supplier, GAPS, variables)
    if data is None:
        return
    nodes = [edge["node"] for edge in data["coverageGaps"]["edges"]]
    texts = [t for n in nodes for t in (n["deviceModel"]["manufacturerName"], n["deviceModel"]["modelName"])]
    texts += [n["certifiedFirmware"]["cpaReference"] for n in nodes]
    load.observations.append(
        {
            "kind": "gaps",
            "snapshot": data["cplSnapshot"]["snapshotId"],
            "markers": sorted(_markers(*texts), key=str),
        }
    )


async def coverage_summary(load: Load, http: aiohttp.ClientSession, rng: random.Random) -> None:
    data = await _graphql(load, http, "coverage summary", load.supplier, SUMMARY, {})
    if data is None:
        return
    groups = data["coverageSummary"]
    load.observations.append(
        {
            "kind": "summary",
            "snapshot": data["cplSnapshot"]["snapshotId"],
            "markers": sorted(_markers(*(g["label"] for g in groups)), key=str),
            # What depends on the CPL alone (not on the images published meanwhile).
            "digest": _digest([(g["key"], g["certified"]) for g in groups]),
        }
    )


async def image_download(load: Load, http: aiohttp.ClientSession, rng: random.Random) -> None:
    image_id, sha256 = rng.choice(load.images)
    started = time.perf_counter()
    digest = hashlib.sha256()
    try:
        async with http.get(
            f"{load.base}/api/v1/images/{image_id}/file", headers={"Authorization": f"Bearer {load.supplier}"}
        ) as answer:
            status = answer.status
            async for chunk in answer.content.iter_chunked(64 * 1024):
                digest.update(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        load.error(f"image download: {type(exc).__name__}: {exc}")
        return
    load.latencies["image download"].append(time.perf_counter() - started)
    if status != 200:
        load.error(f"image download {image_id}: HTTP {status}")
    elif digest.hexdigest() != sha256:
        load.error(f"image download {image_id}: bytes hash to {digest.hexdigest()}, not {sha256}")


MIX: list[tuple[Callable[[Load, aiohttp.ClientSession, random.Random], Awaitable[None]], int]] = [
    (catalogue_page, 40),
    (coverage_gaps, 15),
    (coverage_summary, 15),
    (image_download, 30),
]


def going_on(deadline: float, until: Path) -> bool:
    return time.monotonic() < deadline and not until.exists()


async def client(load: Load, http: aiohttp.ClientSession, deadline: float, until: Path, seed: int) -> None:
    rng = random.Random(seed)
    kinds, weights = zip(*MIX, strict=True)
    while going_on(deadline, until):
        load.last_start = time.monotonic()
        await rng.choices(kinds, weights)[0](load, http, rng)


async def uploader(load: Load, http: aiohttp.ClientSession, count: int, every: float) -> None:
    """Upload and publish `count` images for the manufacturer's gaps, one every `every` seconds."""
    data = await _graphql(
        load,
        http,
        "coverage gaps",
        load.manufacturer,
        GAPS,
        {"filter": {"manufacturerId": load.manufacturer_id}},
    )
    if data is None:
        return
    gaps = [edge["node"] for edge in data["coverageGaps"]["edges"]][:count]
    key = demo_signing_key(load.manufacturer_id)
    for gap in gaps:
        await asyncio.sleep(every)
        model = gap["deviceModel"]
        image = build_image(
            manufacturer_image_for_key(
                model["manufacturerId"], model["modelId"], model["hardwareVersion"], gap["firmwareVersion"]
            ),
            manufacturer_code=model["manufacturerId"],
            file_version=gap["firmwareVersion"],
            private_key=key,
        )
        form = aiohttp.FormData()
        form.add_field("file", image, filename="image.zigbee", content_type="application/octet-stream")
        form.add_field("releaseNotes", NOTES)
        form.add_field("modelId", model["modelId"])
        form.add_field("hardwareVersion", model["hardwareVersion"])
        started = time.perf_counter()
        try:
            async with http.post(
                f"{load.base}/api/v1/images",
                data=form,
                headers={"Authorization": f"Bearer {load.manufacturer}"},
            ) as answer:
                status, body = answer.status, await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            load.error(f"upload: {type(exc).__name__}: {exc}")
            continue
        load.latencies["upload"].append(time.perf_counter() - started)
        if status != 201 or body["problems"]:
            load.error(f"upload: HTTP {status}: {body}")
            continue
        published = await _graphql(load, http, "publish", load.manufacturer, PUBLISH, {"id": str(body["id"])})
        if published is not None and published["publishImage"]["state"] == "PUBLISHED":
            load.published.append(body["id"])
        elif published is not None:
            load.error(f"publish: {published}")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)] if ordered else 0.0


async def run(load: Load, clients: int, seconds: float, until: Path, uploads: int) -> dict[str, Any]:
    # Idle connections are dropped well before the server's keep-alive timeout (uvicorn's 5 s), so no
    # request is ever sent on a connection the server is closing at that moment.
    connector = aiohttp.TCPConnector(limit=clients + 10, keepalive_timeout=1.0)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as http:
        summary = await _graphql(load, http, "coverage summary", load.supplier, SUMMARY, {})
        load.manufacturers = [] if summary is None else [g["key"] for g in summary["coverageSummary"]]
        load.latencies.clear()
        started = time.monotonic()
        print(f"load: {clients} clients, at most {seconds:.0f} s", flush=True)
        await asyncio.gather(
            uploader(load, http, uploads, 2.0),
            *(client(load, http, started + seconds, until, seed) for seed in range(clients)),
        )
        elapsed = time.monotonic() - started
    every = [value for values in load.latencies.values() for value in values]
    return {
        "clients": clients,
        "load_seconds": round(load.last_start - started, 2),  # new requests were started for this long
        "seconds": round(elapsed, 2),  # and the last one was answered this long after the first
        "requests": len(every),
        "errors": load.error_count,
        "error_samples": load.errors,
        "throughput": round(len(every) / elapsed, 1),
        "p50": round(_percentile(every, 0.50), 4),
        "p99": round(_percentile(every, 0.99), 4),
        "by_kind": {
            kind: {
                "requests": len(values),
                "p50": round(_percentile(values, 0.50), 4),
                "p99": round(_percentile(values, 0.99), 4),
            }
            for kind, values in sorted(load.latencies.items())
        },
        "published": load.published,
        "observations": load.observations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.load_client")
    parser.add_argument("--base", required=True)
    parser.add_argument("--seconds", type=float, default=60, help="the longest the load runs")
    parser.add_argument("--until", type=Path, required=True, help="no new requests once this file exists")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--uploads", type=int, default=6)
    parser.add_argument("--images", type=Path, required=True, help="JSON list of [image id, file SHA-256]")
    parser.add_argument("--manufacturer-id", required=True, help="whose gaps the uploader fills")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    images = [(int(i), str(sha)) for i, sha in json.loads(args.images.read_text())]
    load = Load(
        base=args.base,
        supplier=os.environ["CFL_LOAD_SUPPLIER_TOKEN"],
        manufacturer=os.environ["CFL_LOAD_MANUFACTURER_TOKEN"],
        manufacturer_id=args.manufacturer_id,
        images=images,
    )
    report = asyncio.run(run(load, args.clients, args.seconds, args.until, args.uploads))
    args.out.write_text(json.dumps(report))
    print(
        f"load: {report['requests']} requests, {report['errors']} errors, p50 {report['p50'] * 1000:.0f} ms, "
        f"p99 {report['p99'] * 1000:.0f} ms, {report['throughput']} requests/s",
        flush=True,
    )


if __name__ == "__main__":
    main()

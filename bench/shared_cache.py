"""Catalogue requests a second with the answers kept in Redis (shared by every node) against each worker's
own memory (issue 18).

    python -m bench.shared_cache [--rows 10000] [--workers 2] [--connections 16] [--seconds 10]
                                 [--rounds 2] [--database-url URL] [--redis-url URL]

A CPL of `--rows` rows and the demo library are loaded into a fresh PostgreSQL database beside
`--database-url` (dropped afterwards); then `cfl-graph serve --workers N` is started twice on it, once
without Redis (each worker keeps its answers in memory) and once with CFL_REDIS_URL (answers kept in
Redis, compressed, under a prefix of this run, deleted afterwards). Each serves the first catalogue page
(100 device models with their versions and images) to `wrk` for `--seconds` after a warm-up, every
answer a hit. With Redis each worker still keeps the answers it has given or fetched in memory, in
front of Redis, so the second mode measures what sharing costs in the steady state (the first hit of
each answer on each worker is a Redis round trip plus decompression). The modes take turns, round after
round, and every round is printed: on a machine shared with other work the position of a run in its
round has mattered more than its mode. Rate limits are off for both. Figures are printed and written to
bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

from bench.catalogue import CATALOGUE_QUERY, _build_library
from bench.cpl_sync import _drop_database, _fresh_database
from bench.records import machine_record, write_record
from bench.wrk import WrkResult, run_wrk
from cfl_graph.demo.cpl_data import generate, write_csv

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
START_TIMEOUT = 90.0


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(env: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cfl_graph", "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


async def _ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    began = time.monotonic()
    async with httpx2.AsyncClient(base_url=base, timeout=5) as http:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited: {log.read_text()[-2000:]}")
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            if time.monotonic() - began > START_TIMEOUT:
                raise SystemExit("the server did not start in time")
            await asyncio.sleep(0.1)


async def _warm(base: str, token: str, body: str, asks: int) -> int:
    """Ask `asks` times over new connections (so every worker keeps the answer); the answer's length."""
    length = 0
    for _ in range(asks):
        async with httpx2.AsyncClient(base_url=base, timeout=60) as http:
            answer = await http.post(
                "/graphql",
                content=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
        if answer.status_code != 200 or "errors" in answer.json():
            raise SystemExit(f"the catalogue page failed: {answer.status_code} {answer.text[:300]}")
        length = len(answer.content)
    return length


def measure_mode(
    *,
    label: str,
    database_url: str,
    folder: Path,
    token: str,
    workers: int,
    connections: int,
    seconds: float,
    redis_url: str | None,
) -> WrkResult:
    port = _port()
    env = {
        **os.environ,
        "CFL_DATABASE_URL": database_url,
        "CFL_BLOB_DIR": str(folder / "blobs"),
        "CFL_WORK_DIR": str(folder / "work"),
        "CFL_RATE_LIMIT_PER_MINUTE": "0",
        "CFL_LOG_LEVEL": "WARNING",
    }
    prefix = f"cfl-bench-{secrets.token_hex(4)}:"
    if redis_url is not None:
        env |= {"CFL_REDIS_URL": redis_url, "CFL_REDIS_PREFIX": prefix}
    log = folder / f"serve-{label}.log"
    process = _serve(env, port, workers, log)
    base = f"http://127.0.0.1:{port}"
    body = json.dumps({"query": CATALOGUE_QUERY, "variables": {"after": None}})
    try:
        asyncio.run(_ready(base, process, log))
        length = asyncio.run(_warm(base, token, body, 4 * workers))
        result = run_wrk(
            f"{base}/graphql",
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            body,
            length,
            connections=connections,
            seconds=seconds,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        if redis_url is not None:
            _forget(redis_url, prefix)
    if result.failed:
        raise SystemExit(f"{label}: {result.failed} requests did not get the expected answer")
    return result


def _forget(redis_url: str, prefix: str) -> None:
    from redis import Redis

    client = Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="turns each mode takes, alternating")
    parser.add_argument("--database-url", default=POSTGRES)
    parser.add_argument("--redis-url", default=REDIS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cfl-bench-shared-") as tmp:
        folder = Path(tmp)
        cpl = folder / "cpl.csv"
        write_csv(cpl, generate(args.rows, seed=1))
        url = _fresh_database(args.database_url, folder)
        try:
            setup, token = asyncio.run(
                _build_library(url, cpl, folder / "work", folder / "blobs", args.rows, 400, 0.0)
            )
            # The modes take turns, round after round, so that what else the machine does falls on both.
            runs: dict[str, list[WrkResult]] = {"in-process": [], "redis": []}
            for number in range(args.rounds):
                modes = [("in-process", None), ("redis", args.redis_url)]
                for label, redis in modes if number % 2 == 0 else modes[::-1]:
                    runs[label].append(
                        measure_mode(
                            label=label,
                            database_url=url,
                            folder=folder,
                            token=token,
                            workers=args.workers,
                            connections=args.connections,
                            seconds=args.seconds,
                            redis_url=redis,
                        )
                    )
                    print(
                        f"round {number + 1} {label}: {runs[label][-1].requests_per_s:,.0f} req/s", flush=True
                    )
            # Each mode's best round: the one least disturbed by the rest of the machine.
            results = {label: max(done, key=lambda r: r.requests_per_s) for label, done in runs.items()}
        finally:
            _drop_database(args.database_url, url)
    load = os.getloadavg()[0]
    print(
        f"\ncatalogue page (100 models, {setup.device_models:,} in all, {args.rows:,} CPL rows), "
        f"{args.workers} workers, {args.connections} connections, {args.seconds:g} s each, load {load:.1f}"
    )
    print("best round of each:")
    print("| answers kept | req/s | p50 ms | p99 ms | failed |\n| --- | ---: | ---: | ---: | ---: |")
    for label, result in results.items():
        figures = (
            f"{result.requests_per_s:,.0f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} | {result.failed}"
        )
        print(f"| {label} | {figures} |")
    ratio = results["redis"].requests_per_s / results["in-process"].requests_per_s
    print(f"shared (Redis) / in-process: {ratio:.2f}")
    record = machine_record(
        "shared_cache",
        rows=args.rows,
        workers=args.workers,
        connections=args.connections,
        seconds=args.seconds,
        load=load,
        results={label: vars(result) for label, result in results.items()},
        rounds={label: [r.requests_per_s for r in done] for label, done in runs.items()},
        ratio=ratio,
    )
    write_record(record, "shared-cache")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

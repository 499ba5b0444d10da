"""The fixed cost of a request (issue 17): `/healthz` and a one-field authenticated GraphQL query served by
`cfl-graph serve`, against a bare Starlette app on uvicorn answering the same bytes.

    python -m bench.fixed_cost [--database-url URL] [--clients 20] [--seconds 10] [--rounds 3]

A small CPL (1,000 rows, written once to `--cache`) is synchronised into a fresh PostgreSQL database with
the demo library on top and a supplier's token (`bench.peer.library`, not measured). Then, each server in
a process of its own on loopback:

- ours: `cfl-graph serve`, one worker, as deployed otherwise (`bench.peer.OurServer`: its settings'
  defaults, the response cache on, the rate limiter running but set too high to refuse);
- the bare app: Starlette on `uvicorn.run` with uvicorn's defaults (httptools where installed), one
  route per question answering the bytes ours answered, with nothing else (no database, no token);
- the same bare app on uvicorn's h11 protocol, which `cfl-graph serve` uses (its guarded subclass adds
  header and body timeouts): how much of the gap is the HTTP parser, not the app.

The questions: `GET /healthz` (ours runs `SELECT 1` on its database) and `POST /graphql` of
`{ __typename }` with the supplier's bearer token (ours verifies the token, reads the catalogue's state
and applies the query limits; the answer may come from the response cache). The load is `bench.wrk`:
`--clients` keep-alive connections for `--seconds`, every answer checked (a 200 of the expected
length), the servers taking turns within each round; between runs the benchmark waits until the servers
and PostgreSQL are idle. Aim: ours at least half the bare app's requests a second.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from bench.growth import CACHE, cached_cpl
from bench.peer import (
    Library,
    OurServer,
    Question,
    Run,
    ServerProcess,
    Side,
    _free_port,
    add_database_argument,
    library,
    running,
    settle,
    timed_run,
)
from bench.records import machine_record, write_record
from bench.wrk import run_wrk

AIM_RATIO = 0.5  # ours / the bare app's requests per second, at least
ROWS = 1000
MAX_IMAGES = 20  # the demo library's images: the questions read none
ALONE_REQUESTS = 5
GRAPHQL_BODY = '{"query": "{ __typename }"}'

OURS = OurServer("ours (cfl-graph serve, 1 worker)")


# --- the bare app ----------------------------------------------------------------------------------------


def _serve_bare(port: int, http: str, healthz: bytes, graphql: bytes) -> None:
    """A bare Starlette app on uvicorn answering `healthz` and `graphql` as they are, and nothing else."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def health(request: Request) -> Response:
        return Response(healthz, media_type="application/json")

    async def graph(request: Request) -> Response:
        await request.body()
        return Response(graphql, media_type="application/json")

    app = Starlette(routes=[Route("/healthz", health), Route("/graphql", graph, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, http=http, log_level="warning", access_log=False)


def start_bare(label: str, http: str, answers: dict[str, bytes], log: Path) -> ServerProcess:
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.fixed_cost",
        "--serve-bare",
        str(port),
        http,
        answers["healthz"].hex(),
        answers["graphql"].hex(),
    ]
    return ServerProcess(label, argv, {}, port, Path.cwd(), log)


@contextlib.contextmanager
def served(
    server: OurServer, database_url: str, cache: Path
) -> Iterator[tuple[ServerProcess, Library, Path]]:
    """`server` running on a fresh database beside `database_url` with a small CPL (`ROWS`, generated once
    into `cache`), the demo library and a supplier's token: (the server, the library, a scratch folder)."""
    cpl, write_s = cached_cpl(cache, ROWS, 1, suffix="csv")
    with tempfile.TemporaryDirectory(prefix="cfl-bench-") as tmp:
        folder = Path(tmp)
        with library(database_url, folder, cpl, ROWS, MAX_IMAGES, write_s) as lib:
            process = server.start(lib.url, lib.blob_dir, lib.work_dir, folder / "ours.log")
            with running([process]):
                yield process, lib, folder


# --- measuring -----------------------------------------------------------------------------------------


def ask(server: ServerProcess, name: str, token: str | None) -> tuple[Question, bytes]:
    """The question `name` (`healthz` or `graphql`) put to `server`, timed alone; (it, the answer)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if name == "healthz":
        url, method, body = f"{server.url}/healthz", "GET", ""
    else:
        url, method, body = f"{server.url}/graphql", "POST", GRAPHQL_BODY
        headers["Content-Type"] = "application/json"
    latencies, answers = [], set()
    with httpx2.Client(timeout=60) as client:
        for _ in range(1 + ALONE_REQUESTS):
            began = time.perf_counter()
            response = client.request(method, url, content=body or None, headers=headers)
            latencies.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise SystemExit(
                    f"{server.name} answered {name} {response.status_code}: {response.text[:300]}"
                )
            answers.add(response.content)
    if len(answers) != 1:
        raise SystemExit(f"{server.name} gave {len(answers)} different answers to {name}")
    answer = answers.pop()
    alone = 1000 * statistics.median(latencies[1:])
    return Question(url, headers, body, len(answer), alone, method), answer


@dataclass(frozen=True)
class Comparison:
    question: str
    ours: Side
    bare: list[Side]  # uvicorn's defaults first

    def ratio(self, bare: Side) -> float:
        return self.ours.best.requests_per_s / bare.best.requests_per_s

    def round_ratios(self, bare: Side) -> list[float]:
        return [o.requests_per_s / b.requests_per_s for o, b in zip(self.ours.runs, bare.runs, strict=True)]


def compare(
    ours: ServerProcess,
    bares: Sequence[ServerProcess],
    token: str,
    database_url: str,
    args: argparse.Namespace,
) -> list[Comparison]:
    everyone = [ours, *bares]
    questions: dict[tuple[str, str], Question] = {}
    for name in ("healthz", "graphql"):
        questions[(ours.name, name)], expected = ask(ours, name, token if name == "graphql" else None)
        for bare in bares:
            questions[(bare.name, name)], answer = ask(bare, name, None)
            if answer != expected:
                raise SystemExit(f"{bare.name} answers {name} with {answer!r}, ours with {expected!r}")
    for (_, _), q in questions.items():
        run_wrk(
            q.url,
            q.headers,
            q.body,
            q.answer_bytes,
            connections=args.clients,
            seconds=args.warm_up,
            method=q.method,
        )
    for server in everyone:
        settle(server, database_url)
    runs: dict[tuple[str, str], list[Run]] = {key: [] for key in questions}
    for _ in range(args.rounds):
        for name in ("healthz", "graphql"):
            for server in everyone:
                key = (server.name, name)
                runs[key].append(timed_run(server, questions[key], database_url, args.clients, args.seconds))

    def side(server: ServerProcess, name: str) -> Side:
        question = questions[(server.name, name)]
        return Side(server.name, question.answer_bytes, question.alone_ms, runs[(server.name, name)])

    return [
        Comparison(name, side(ours, name), [side(bare, name) for bare in bares])
        for name in ("healthz", "graphql")
    ]


def print_comparisons(
    comparisons: list[Comparison], load: tuple[float, float], args: argparse.Namespace
) -> None:
    print(
        f"\nfixed cost: {args.clients} connections, wrk, {args.rounds} runs of {args.seconds:.0f} s per side "
        f"in turns (best counts); load average {load[0]:.1f} -> {load[1]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"  {'':<44} {'alone ms':>8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10} {'ratio':>7}"
    )
    for c in comparisons:
        print(f"  {c.question}")
        for s in [c.ours, *c.bare]:
            best = s.best
            ratio = "" if s is c.ours else f"{c.ratio(s):.2f}x"
            print(
                f"    {s.label:<42} {s.alone_ms:>8.2f} {best.requests_per_s:>8.1f} {best.wrk.p50_ms:>7.1f} "
                f"{best.wrk.p99_ms:>7.1f} {best.per_request_ms(best.server_cpu_s):>10.2f} {ratio:>7}"
            )
        rounds = ", ".join(f"{r:.2f}x" for r in c.round_ratios(c.bare[0]))
        print(f"    ours / {c.bare[0].label}, round by round: {rounds}")
    print(f"  (aim: ours / the bare app >= {AIM_RATIO}x requests per second)", flush=True)


def _side_record(s: Side) -> dict[str, Any]:
    return {
        "label": s.label,
        "alone_ms": round(s.alone_ms, 3),
        "best_requests_per_s": round(s.best.requests_per_s, 1),
        "runs": [
            {
                "requests_per_s": round(run.requests_per_s, 1),
                "p50_ms": run.wrk.p50_ms,
                "p99_ms": run.wrk.p99_ms,
                "server_cpu_ms_per_request": round(run.per_request_ms(run.server_cpu_s), 3),
                "database_cpu_ms_per_request": round(run.per_request_ms(run.database_cpu_s), 3),
                "server_cores": round(run.server_cores, 3),
                "failed": run.wrk.failed,
            }
            for run in s.runs
        ],
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--serve-bare":
        port, http, healthz, graphql = argv[1:]
        _serve_bare(int(port), http, bytes.fromhex(healthz), bytes.fromhex(graphql))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.fixed_cost", description=__doc__.splitlines()[0])
    add_database_argument(parser)
    parser.add_argument("--clients", type=int, default=20, help="concurrent keep-alive connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each timed wrk run")
    parser.add_argument("--warm-up", type=float, default=3.0, help="length of each side's warm-up run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed runs per side, in turns; the best counts"
    )
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the generated CSV is kept")
    args = parser.parse_args(argv)

    with served(OURS, args.database_url, args.cache) as (ours, lib, folder):
        # The bare apps answer what ours answers, byte for byte.
        answers = {name: ask(ours, name, lib.token)[1] for name in ("healthz", "graphql")}
        bares = [
            start_bare("bare Starlette, uvicorn's defaults", "auto", answers, folder / "bare.log"),
            start_bare("bare Starlette, uvicorn's h11", "h11", answers, folder / "bare-h11.log"),
        ]
        with running(bares):
            before = os.getloadavg()[0]
            comparisons = compare(ours, bares, lib.token, lib.url, args)
            load = (before, os.getloadavg()[0])
    print_comparisons(comparisons, load, args)
    record = machine_record(
        "fixed cost against a bare Starlette app",
        database="postgresql",
        aim_ratio_min=AIM_RATIO,
        clients=args.clients,
        seconds=args.seconds,
        rounds=args.rounds,
        load_average=load,
        results=[
            {
                "question": c.question,
                "ours": _side_record(c.ours),
                "bare": [_side_record(b) for b in c.bare],
                "ratios": {b.label: round(c.ratio(b), 3) for b in c.bare},
            }
            for c in comparisons
        ],
    )
    write_record(record, "fixed-cost-postgresql")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

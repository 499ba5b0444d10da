"""Benchmark P7: how P1 (sync), P2 (catalogue page under load, against PostGraphile) and P4 (coverage gaps)
grow from 1,000 to 1,000,000 CPL rows, on PostgreSQL.

    python -m bench.growth [--rows 1000 10000 100000] [--million] [--database-url URL] [--repeats 2]
    python -m bench.growth --replot bench/results/growth-….json [more.json ...]

For each row count, one XLSX from `cfl_graph.demo.cpl_data` (generated once, then reused from `--cache`,
keyed by rows and seed: a million rows take minutes to write):
- P1: `bench.cpl_sync`'s children, a bare python-calamine read of the file and the full sync into a fresh,
  migrated database (best of `--repeats`; one sync at a million rows), each in its own process;
- then the demo library is loaded into the last sync's database (not measured), and on it
- P2: `bench.peer`'s comparison, ours against PostGraphile 5 under `wrk`;
- P4: `bench.catalogue`'s coverage-gap measurement, GraphQL over HTTP against the hand-written anti-join.

Prints a markdown table, writes the JSON record to bench/results/ and the plot to docs/performance-growth.png.
`--replot` rebuilds the table and the plot from earlier records (the million-row run on its own, say).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import peer
from bench.catalogue import GapsMeasurement, GraphClient, app_pool_size, measure_gaps, open_hand_pool
from bench.cpl_sync import Measurement as SyncMeasurement
from bench.cpl_sync import _child, _drop_database, _fresh_database
from bench.cpl_sync import measurement as sync_measurement
from bench.records import machine_record, write_record
from cfl_graph.demo.cpl_data import generate, write_csv, write_xlsx

PLOT = Path(__file__).parent.parent / "docs" / "performance-growth.png"
CACHE = Path("var/bench")
MILLION = 1_000_000
GAPS_REQUESTS = 10


def cached_cpl(cache: Path, rows: int, seed: int, suffix: str = "xlsx") -> tuple[Path, float]:
    """The XLSX (or, `suffix="csv"`, the CSV) for (rows, seed), written on first use; (its path, seconds
    spent writing it now)."""
    path = cache / f"cpl-{rows}-seed{seed}.{suffix}"
    if path.exists():
        return path, 0.0
    cache.mkdir(parents=True, exist_ok=True)
    print(f"writing {path} (once; later runs reuse it)", flush=True)
    start = time.perf_counter()
    partial = path.with_suffix(f".{suffix}.partial")
    write = write_xlsx if suffix == "xlsx" else write_csv
    write(partial, generate(rows, seed=seed))
    partial.rename(path)
    return path, time.perf_counter() - start


def measure_sync(
    cpl: Path, rows: int, admin_url: str, folder: Path, repeats: int
) -> tuple[SyncMeasurement, str]:
    """P1 on PostgreSQL: (the best bare read and sync, the database the last sync filled, kept)."""
    bare = [_child(["bare", str(cpl)]) for _ in range(repeats)]
    syncs, kept = [], ""
    for attempt in range(repeats):
        work = folder / f"sync-{attempt}"
        work.mkdir()
        url = _fresh_database(admin_url, work)
        try:
            syncs.append(_child(["sync", str(cpl), url, str(work)]))
        except BaseException:
            _drop_database(admin_url, url)
            raise
        if kept:
            _drop_database(admin_url, kept)
        kept = url
    return sync_measurement(rows, cpl, bare, syncs), kept


async def _gaps(
    server: peer.ServerProcess, token: str, url: str, pool_size: tuple[int, int]
) -> GapsMeasurement:
    client = GraphClient(server, token, 1)
    pool = await open_hand_pool(url, pool_size)
    try:
        return await measure_gaps(client, pool, url, GAPS_REQUESTS)
    finally:
        await client.close()
        await pool.close()


GAPS_SERVER = peer.OurServer("ours, cache off", env={"CFL_RESPONSE_CACHE_MB": "0"})


@dataclass(frozen=True)
class Growth:
    rows: int
    device_models: int
    write_s: float  # generating the XLSX now (0: it came from the cache)
    sync: SyncMeasurement
    catalogue: peer.PeerMeasurement
    gaps: GapsMeasurement


def measure(rows: int, args: argparse.Namespace) -> Growth:
    cpl, write_s = cached_cpl(args.cache, rows, args.seed)
    repeats = 1 if rows >= MILLION else args.repeats
    with tempfile.TemporaryDirectory(prefix="cfl-bench-") as tmp:
        folder = Path(tmp)
        sync, synced_url = measure_sync(cpl, rows, args.database_url, folder, repeats)
        print(
            f"\n{rows:,} rows: P1 bare read {sync.bare_read_s:.2f} s, sync {sync.sync_s:.2f} s "
            f"({sync.ratio:.2f}x), peaks {sync.bare_peak_mb:.0f} / {sync.sync_peak_mb:.0f} MB",
            flush=True,
        )
        with peer.library(args.database_url, folder, cpl, rows, args.max_images, write_s, synced_url) as lib:
            catalogue = peer.measure_library(lib, args)
            peer.print_peer(catalogue)
            # P4 on ours alone (the peer is not part of it), the cache off: each request is executed.
            ours = GAPS_SERVER.start(lib.url, lib.blob_dir, lib.work_dir, folder / "gaps-server.log")
            with peer.running([ours]):
                gaps = asyncio.run(_gaps(ours, lib.token, lib.url, app_pool_size(lib.url)))
            print(
                f"P4 coverage gaps, first {gaps.rows} of {gaps.total:,}: "
                f"GraphQL {gaps.graphql.median_ms:.1f} ms, hand anti-join {gaps.hand.median_ms:.1f} ms "
                f"({gaps.graphql_ratio:.2f}x)",
                flush=True,
            )
            return Growth(rows, lib.setup.device_models, write_s, sync, catalogue, gaps)


# --- the table and the plot, from records -------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row count's figures as the table and the plot show them (read back from a JSON record)."""

    rows: int
    device_models: int
    bare_read_s: float
    sync_s: float
    ours_rps: float  # as deployed: the first of peer.OUR_SERVERS (two workers, the response cache on)
    ours_uncached_rps: float | None  # the same with the cache off: every request executed
    peer_rps: float
    gaps_graphql_ms: float
    gaps_hand_ms: float
    commit: str

    @property
    def sync_ratio(self) -> float:
        return self.sync_s / self.bare_read_s

    @property
    def catalogue_ratio(self) -> float:
        return self.ours_rps / self.peer_rps

    @property
    def gaps_ratio(self) -> float:
        return self.gaps_graphql_ms / self.gaps_hand_ms


def growth_record(g: Growth) -> dict[str, Any]:
    return {
        "rows": g.rows,
        "device_models": g.device_models,
        "write_s": round(g.write_s, 2),
        "sync": {**asdict(g.sync), "ratio": round(g.sync.ratio, 3)},
        "catalogue": peer.peer_record(g.catalogue),
        "gaps": {**asdict(g.gaps), "graphql_ratio": round(g.gaps.graphql_ratio, 3)},
    }


def _uncached_rps(sides: list[dict[str, Any]]) -> float | None:
    found = [side["best_requests_per_s"] for side in sides if "cache off" in side["label"]]
    return float(found[0]) if found else None


def rows_of(record: dict[str, Any]) -> list[Row]:
    return [
        Row(
            rows=r["rows"],
            device_models=r["device_models"],
            bare_read_s=r["sync"]["bare_read_s"],
            sync_s=r["sync"]["sync_s"],
            ours_rps=r["catalogue"]["ours"][0]["best_requests_per_s"],
            ours_uncached_rps=_uncached_rps(r["catalogue"]["ours"]),
            peer_rps=r["catalogue"]["peer"]["best_requests_per_s"],
            gaps_graphql_ms=r["gaps"]["graphql"]["median_ms"],
            gaps_hand_ms=r["gaps"]["hand"]["median_ms"],
            commit=record["commit"],
        )
        for r in record["results"]
    ]


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| CPL rows | device models | P1 bare read | P1 sync | P1 ratio (aim ≤ 2×) | P2 ours req/s "
        "| P2 ours, cache off | P2 PostGraphile req/s | P2 ratio (aim ≥ 1.0×) | P2 ratio, cache off "
        "| P4 GraphQL | P4 hand anti-join | P4 ratio (aim ≤ 1.5×) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(rows, key=lambda row: row.rows):
        uncached = "—" if r.ours_uncached_rps is None else f"{r.ours_uncached_rps:.1f}"
        uncached_ratio = "—" if r.ours_uncached_rps is None else f"{r.ours_uncached_rps / r.peer_rps:.2f}×"
        lines.append(
            f"| {r.rows:,} | {r.device_models:,} | {r.bare_read_s:.2f} s | {r.sync_s:.2f} s "
            f"| {r.sync_ratio:.2f}× | {r.ours_rps:.1f} | {uncached} | {r.peer_rps:.1f} "
            f"| {r.catalogue_ratio:.2f}× | {uncached_ratio} "
            f"| {r.gaps_graphql_ms:.1f} ms | {r.gaps_hand_ms:.1f} ms | {r.gaps_ratio:.2f}× |"
        )
    return "\n".join(lines)


def _short(count: int) -> str:
    return (
        f"{count // MILLION}M" if count >= MILLION else f"{count // 1000}k" if count >= 1000 else str(count)
    )


def _minor_label(value: float, _: object) -> str:
    """Label 2 and 5 between the powers of ten, leave the other minor ticks bare."""
    text = f"{value:g}"
    return text if text.lstrip("0.")[:1] in ("2", "5") else ""


def plot(rows: Sequence[Row], out: Path, title: str) -> None:
    """Three panels against CPL rows (log scales): P1 seconds, P2 requests per second, P4 milliseconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ordered = sorted(rows, key=lambda row: row.rows)
    x = [r.rows for r in ordered]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    panels = (
        (
            "P1 CPL sync (s, lower is better)",
            ("sync", [r.sync_s for r in ordered]),
            ("bare calamine read", [r.bare_read_s for r in ordered]),
        ),
        (
            "P2 catalogue page, 20 clients (req/s, higher is better)",
            ("ours (2 workers, cache on)", [r.ours_rps for r in ordered]),
            ("PostGraphile 5", [r.peer_rps for r in ordered]),
        ),
        (
            "P4 first 500 coverage gaps (ms, lower is better)",
            ("ours, GraphQL over HTTP", [r.gaps_graphql_ms for r in ordered]),
            ("hand-written anti-join", [r.gaps_hand_ms for r in ordered]),
        ),
    )
    uncached = [(r.rows, r.ours_uncached_rps) for r in ordered if r.ours_uncached_rps is not None]
    if uncached:
        axes[1].plot(
            [at for at, _ in uncached], [rps for _, rps in uncached], marker="^", label="ours, cache off"
        )
    for axis, (name, (ours_label, ours), (base_label, base)) in zip(axes, panels, strict=True):
        axis.plot(x, ours, marker="o", label=ours_label)
        axis.plot(x, base, marker="s", linestyle="--", label=base_label)
        for (at, found), (_, against) in zip(
            zip(x, ours, strict=True), zip(x, base, strict=True), strict=True
        ):
            axis.annotate(
                f"{found / against:.2f}×", (at, found), textcoords="offset points", xytext=(4, 6), fontsize=8
            )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.margins(x=0.15)  # room for the last point's label
        axis.set_xticks(x, labels=[_short(count) for count in x])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
        axis.set_xlabel("CPL rows (labels: ours / baseline)")
        axis.set_title(name, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=9)
    figure.suptitle(title, fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def report(records: Sequence[dict[str, Any]], out: Path) -> None:
    """Print the table of every row count in `records` (the latest record wins a row count) and plot it."""
    by_rows: dict[int, Row] = {}
    for record in sorted(records, key=lambda r: str(r["date"])):
        for row in rows_of(record):
            by_rows[row.rows] = row
    rows = list(by_rows.values())
    commits = sorted({row.commit for row in rows})
    print(f"\nP7 growth on PostgreSQL (commit {', '.join(commits)}):\n")
    print(markdown_table(rows))
    plot(
        rows,
        out,
        f"cfl-graph P7 growth on PostgreSQL, {records[-1]['cpus']} CPUs, commit {', '.join(commits)}",
    )
    print(f"\nplot written to {out}")


def main(argv: list[str] | None = None) -> int:
    from cfl_graph.demo import library as demo_library

    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--million", action="store_true", help=f"also {MILLION:,} rows (minutes more)")
    parser.add_argument("--database-url", default=peer.DEFAULT_DATABASE_URL, help="a PostgreSQL server")
    parser.add_argument("--repeats", type=int, default=2, help="P1: best of N for each side (1 at a million)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the generated XLSX files are kept")
    parser.add_argument(
        "--max-images", type=int, default=demo_library.MAX_IMAGES, help="the demo library's cap"
    )
    parser.add_argument("--seed", type=int, default=1, help="cfl_graph.demo.cpl_data's seed")
    parser.add_argument("--plot", type=Path, default=PLOT, help="where the PNG goes")
    parser.add_argument("--replot", type=Path, nargs="+", help="only rebuild the table and plot from records")
    peer.add_load_arguments(parser)
    args = parser.parse_args(argv)

    if args.replot:
        report([json.loads(path.read_text()) for path in args.replot], args.plot)
        return 0
    peer.ensure_peer_packages()
    counts = sorted({*args.rows, *([MILLION] if args.million else [])})
    record = machine_record(
        "P7 growth: P1, P2 against PostGraphile, P4",
        database="postgresql",
        output_data_as_string=not args.plain_output,
        seed=args.seed,
        max_images=args.max_images,
        results=[],
    )
    for rows in counts:
        record["results"].append(growth_record(measure(rows, args)))
        write_record(record, "growth-postgresql")  # after each row count: a long run keeps its part
    report([record], args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Issue 8's benchmarks in one run, and one table of P1 to P7 against their aims.

    python -m bench [--million] [--rows N ...] [--plans-rows N] [--database-url URL] [--only STEP ...]

Runs, each as its own child process on PostgreSQL (the production database), in this order:
- `bench.growth`: P1 (sync against a bare python-calamine read), P2 (the catalogue page under 20 wrk
  clients against PostGraphile 5), P4 (coverage gaps against a hand-written anti-join) at 1k, 10k and
  100k CPL rows, and 1M with `--million`; that is P7, with its table and plot;
- `bench.plans`: P3 (statements per catalogue request for pages of 10, 100 and 500, the cap) and the
  query plans of the hot paths, at `--plans-rows` rows (1M with `--million`, else 100k) with 3 earlier
  snapshots;
- `bench.images`: P5 (ingest of a 200 MB image against sha256sum + cp) and P6 (a 20 MB image to 50
  concurrent clients against Starlette's FileResponse).

Each step writes its own record to bench/results/; this one reads them back, prints the summary table and
writes it to bench/results/summary-<date>.json with the names of the records it came from. A missed aim
is reported, not an error; a step that fails makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import growth, peer
from bench.records import RESULTS, machine_record, write_record

STEPS = ("growth", "plans", "images")
ORDER = ("P1", "P2", "P3", "plans", "P4", "P5", "P6", "P7")


@dataclass(frozen=True)
class Figure:
    """One line of the summary: a benchmark's measured ratio (or count) against its aim."""

    id: str
    what: str
    measured: str
    ratio: float | None
    aim: str
    met: bool

    def cells(self) -> list[str]:
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}×"
        return [self.id, self.what, self.measured, ratio, self.aim, "met" if self.met else "**missed**"]


def _sync_figures(rows: Sequence[growth.Row]) -> list[Figure]:
    return [
        Figure(
            "P1",
            f"CPL sync, {r.rows:,} rows",
            f"{r.sync_s:.2f} s against a bare read of {r.bare_read_s:.2f} s",
            r.sync_ratio,
            "≤ 2×",
            r.sync_ratio <= 2.0,
        )
        for r in rows
        if r.rows >= 100_000
    ]


def _catalogue_figures(rows: Sequence[growth.Row]) -> list[Figure]:
    figures = []
    for r in rows:
        if r.rows != 100_000:
            continue
        figures.append(
            Figure(
                "P2",
                f"catalogue page, {r.rows:,} rows, 20 clients, as deployed (2 workers, response cache)",
                f"{r.ours_rps:.1f} req/s against PostGraphile's {r.peer_rps:.1f}",
                r.catalogue_ratio,
                "≥ 1.0×",
                r.catalogue_ratio >= 1.0,
            )
        )
        if r.ours_uncached_rps is not None:
            uncached = r.ours_uncached_rps / r.peer_rps
            figures.append(
                Figure(
                    "P2",
                    "the same, response cache off (every request executed)",
                    f"{r.ours_uncached_rps:.1f} req/s against PostGraphile's {r.peer_rps:.1f}",
                    uncached,
                    "≥ 1.0×",
                    uncached >= 1.0,
                )
            )
    return figures


def _gap_figures(rows: Sequence[growth.Row]) -> list[Figure]:
    return [
        Figure(
            "P4",
            f"coverage gaps over GraphQL, {r.rows:,} rows",
            f"{r.gaps_graphql_ms:.1f} ms against the anti-join's {r.gaps_hand_ms:.1f} ms",
            r.gaps_ratio,
            "≤ 1.5×",
            r.gaps_ratio <= 1.5,
        )
        for r in rows
        if r.rows >= 100_000
    ]


def growth_figures(record: dict[str, Any]) -> list[Figure]:
    """P1, P2, P4 at 100k rows and above, and P7's row, from one `bench.growth` record."""
    rows = sorted(growth.rows_of(record), key=lambda r: r.rows)
    sizes = ", ".join(f"{r.rows:,}" for r in rows)
    return [
        *_sync_figures(rows),
        *_catalogue_figures(rows),
        *_gap_figures(rows),
        Figure("P7", "growth of P1, P2, P4", f"measured at {sizes} rows", None, "table and plot", True),
    ]


def plans_figures(record: dict[str, Any]) -> list[Figure]:
    """P3 and the plan check, from one `bench.plans` record."""
    results = record["results"]
    pages = {r["name"]: r["statements"] for r in results if r["name"].startswith("catalogue page of")}
    counts = sorted(set(pages.values()))
    hot_scans = sorted(
        r["name"]
        for r in results
        if r["hot"] and any(s["node"] == "Seq Scan" for p in r["plans"] for s in p["cpl_scans"])
    )
    return [
        Figure(
            "P3",
            f"SQL statements per catalogue request, {record['rows']:,} rows",
            ", ".join(f"{name.rsplit(' ', 1)[1]}: {count}" for name, count in pages.items()),
            None,
            "constant in the page size (10 to the cap of 500)",
            len(counts) == 1,
        ),
        Figure(
            "plans",
            f"no sequential scan of a CPL table on a hot path, {record['rows']:,} rows",
            "none" if not hot_scans else "sequential scans in " + "; ".join(hot_scans),
            None,
            "none",
            not hot_scans,
        ),
    ]


def images_figures(record: dict[str, Any]) -> list[Figure]:
    """P5 and P6 from one `bench.images` record."""
    ingest, download = record["ingest"], record["download"]
    return [
        Figure(
            "P5",
            f"ingest of a {ingest['file_mb']:.0f} MB image",
            f"{ingest['ours_s']:.3f} s against sha256sum + cp {ingest['baseline_s']:.3f} s",
            ingest["ratio"],
            f"≤ {ingest['aim_ratio_max']}×",
            ingest["ratio"] <= ingest["aim_ratio_max"],
        ),
        Figure(
            "P6",
            f"downloads of a {download['file_mb']:.0f} MB image, {download['clients']} clients",
            f"{download['ours']['mb_per_s']:,.0f} MB/s against FileResponse's "
            f"{download['bare']['mb_per_s']:,.0f} MB/s",
            download["ratio"],
            f"≥ {download['aim_ratio_min']}×",
            download["ratio"] >= download["aim_ratio_min"],
        ),
    ]


def markdown(figures: Sequence[Figure]) -> str:
    lines = ["| id | what | measured | ratio | aim | |", "| --- | --- | --- | ---: | --- | --- |"]
    lines += ["| " + " | ".join(f.cells()) + " |" for f in figures]
    return "\n".join(lines)


FIGURES: dict[str, tuple[str, Callable[[dict[str, Any]], list[Figure]]]] = {
    "growth": ("growth-postgresql-", growth_figures),
    "plans": ("plans-", plans_figures),
    "images": ("images-postgresql-", images_figures),
}


def _step_argv(step: str, args: argparse.Namespace) -> list[str]:
    url = ["--database-url", args.database_url]
    if step == "growth":
        sizes = ["--rows", *map(str, args.rows)] if args.rows else []
        return ["bench.growth", *url, *sizes, *(["--million"] if args.million else [])]
    if step == "plans":
        rows = args.plans_rows or (1_000_000 if args.million else 100_000)
        return ["bench.plans", *url, "--rows", str(rows), "--history", "3"]
    return ["bench.images", *url]


def _newest(prefix: str, before: set[Path]) -> Path | None:
    made = sorted(p for p in RESULTS.glob(f"{prefix}*.json") if p not in before)
    return made[-1] if made else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", help="bench.growth's row counts (1k, 10k, 100k)")
    parser.add_argument("--million", action="store_true", help="also 1,000,000 rows (about 15 minutes more)")
    parser.add_argument("--database-url", default=peer.DEFAULT_DATABASE_URL, help="a PostgreSQL server")
    parser.add_argument("--plans-rows", type=int, help="bench.plans rows (100k; 1M with --million)")
    parser.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS), help="run these steps only")
    args = parser.parse_args(argv)

    figures: list[Figure] = []
    records: dict[str, str] = {}
    failed: list[str] = []
    for step in [s for s in STEPS if s in args.only]:
        prefix, read = FIGURES[step]
        before = set(RESULTS.glob(f"{prefix}*.json"))
        command = [sys.executable, "-m", *_step_argv(step, args)]
        print(f"\n=== {' '.join(command[2:])}", flush=True)
        status = subprocess.run(command, check=False).returncode
        out = _newest(prefix, before)
        # bench.plans exits 1 when a hot path scans a CPL table: its record says so and the table shows it.
        # Any other failure is one, even when the step kept a partial record (bench.growth writes its record
        # after each row count).
        if status != 0 and not (step == "plans" and status == 1 and out is not None):
            print(f"{step} failed (exit {status})", flush=True)
            failed.append(step)
        if out is not None:
            records[step] = out.name
            figures += read(json.loads(out.read_text()))

    figures.sort(key=lambda f: ORDER.index(f.id))  # stable: each id's lines stay in their order
    print("\nIssue 8's benchmarks, PostgreSQL, this machine:\n")
    print(markdown(figures))
    summary = machine_record(
        "summary of P1 to P7",
        database="postgresql",
        records=records,
        failed=failed,
        figures=[asdict(f) for f in figures],
    )
    print()
    write_record(summary, "summary")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

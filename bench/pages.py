"""Page latency on demo data (issue 7's quality bar: every page under 100 ms on this machine).

    python -m bench.pages [--rounds 20] [--database-url URL]

Builds the demo (3,000-row CPL, 400 signed images) in a temporary folder, then asks each main page
`--rounds` times through the app in-process (ASGI, no network: the server's own time) and prints the
median and 90th percentile per page, with the SQL statements each page issued.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import event, select

from bench.records import machine_record, write_record
from cfl_graph import migrate
from cfl_graph.blobs.local import LocalBlobStore
from cfl_graph.database import Database
from cfl_graph.demo import prepare_demo
from cfl_graph.doors.web.app import create_app
from cfl_graph.settings import Settings
from cfl_graph.tables import LibraryImage

AIM_MS = 100.0


async def measure(rounds: int, database_url: str | None) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        url = database_url or f"sqlite+aiosqlite:///{root}/cfl.sqlite3"
        settings = Settings(
            database_url=url,
            blob_dir=root / "blobs",
            work_dir=root / "work",
            rate_limit_per_minute=10_000_000,
        )
        db = Database.connect(url)
        await migrate.upgrade(db.engine)
        started = time.perf_counter()
        tokens_file = await prepare_demo(settings, db, LocalBlobStore(settings.blob_dir))
        print(f"demo data ready in {time.perf_counter() - started:.1f} s")
        lines = tokens_file.read_text().splitlines()
        tokens = {
            lines[i].split()[0]: lines[i + 1].strip()
            for i in range(len(lines) - 1)
            if lines[i + 1].startswith("  ")
        }
        async with db.sessions() as session:
            image = (await session.execute(select(LibraryImage).limit(1))).scalar_one()
        model = f"/models/{image.manufacturer_id}/{image.model_id}/{image.hardware_version}"
        pages = {
            "home": ("/", "supplier"),
            "models": ("/models", "supplier"),
            "models search": ("/models?search=meter&gap=yes", "supplier"),
            "device model": (model, "supplier"),
            "manufacturer": (f"/manufacturers/{image.manufacturer_id}", "supplier"),
            "image": (f"/images/{image.id}", "supplier"),
            "coverage": ("/coverage", "panel"),
            "consistency": (f"/manufacturers/{image.manufacturer_id}/consistency", "panel"),
            "cpl": ("/cpl", "supplier"),
            "upload": ("/upload", "manufacturer"),
            "audit": ("/audit", "panel"),
        }
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(db.engine.sync_engine, "before_cursor_execute", count)
        app = create_app(settings, db=db)
        results: dict[str, dict[str, float]] = {}
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://bench") as http:
            for name, (path, role) in pages.items():
                headers = {"Authorization": f"Bearer {tokens[role]}", "Accept": "text/html"}
                await http.get(path, headers=headers)  # warm up
                times = []
                for _ in range(rounds):
                    statements.clear()
                    began = time.perf_counter()
                    answer = await http.get(path, headers=headers)
                    times.append((time.perf_counter() - began) * 1000)
                    assert answer.status_code == 200, (path, answer.status_code)
                times.sort()
                results[name] = {
                    "median_ms": statistics.median(times),
                    "p90_ms": times[int(0.9 * (len(times) - 1))],
                    "statements": float(len(statements)),
                }
        await db.dispose()
        return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    results = asyncio.run(measure(args.rounds, args.database_url))
    print(f"{'page':<16} {'median ms':>10} {'p90 ms':>8} {'SQL':>5}")
    for name, r in results.items():
        flag = "" if r["p90_ms"] < AIM_MS else "  over the aim"
        print(f"{name:<16} {r['median_ms']:>10.1f} {r['p90_ms']:>8.1f} {int(r['statements']):>5}{flag}")
    write_record(machine_record("issue 7 pages", aim_ms=AIM_MS, pages=results), "pages", indent=1)


if __name__ == "__main__":
    main()

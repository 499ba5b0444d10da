"""Verifying the audit trail's chain and the images' bytes, and exporting the trail."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cfl_graph.audit import ChainReport, export_range, verify_chain
from cfl_graph.blobs import blob_store_for
from cfl_graph.database import Database
from cfl_graph.doors.cli.common import (
    EVENT_ID,
    EXIT_REJECTED,
    RichProgress,
    err,
    out,
    progress_bar,
    settings_from_env,
    with_db,
)
from cfl_graph.images.integrity import BlobReport, verify_blobs

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


def verify() -> None:
    """Walk the audit trail's chain and re-hash every image's bytes; exit 1 naming every break found."""
    settings = settings_from_env()

    async def work(db: Database) -> tuple[ChainReport, BlobReport]:
        async with db.sessions() as session:
            chain = await verify_chain(session)
        store = blob_store_for(settings)
        try:
            with progress_bar() as progress:
                report = RichProgress(progress)
                blobs = await verify_blobs(
                    db.sessions, store, lambda done, total: report("re-hashing image blobs", done, total)
                )
        finally:
            await store.close()
        return chain, blobs

    report, blobs = with_db(settings, work)
    if report.intact:
        out.print(f"audit trail intact: {report.events:,} events, head {report.head_id} {report.head_hash}")
    else:
        err.print(f"audit trail BROKEN: {len(report.problems)} problem(s) in {report.events:,} events")
        for problem in report.problems:
            err.print(f"  {problem}", markup=False, highlight=False)
    if blobs.intact:
        out.print(
            f"image bytes intact: {blobs.images:,} images, {blobs.blobs:,} blobs, "
            f"{blobs.bytes_hashed:,} bytes re-hashed"
        )
    else:
        err.print(f"image bytes BROKEN: {len(blobs.problems)} problem(s) in {blobs.images:,} images")
        for problem in blobs.problems:
            err.print(f"  {problem}", markup=False, highlight=False)
    if blobs.unreferenced:
        out.print(
            f"{len(blobs.unreferenced)} blob(s) no image refers to (left by an interrupted upload; "
            "harmless): " + ", ".join(blobs.unreferenced[:10]),
            markup=False,
            highlight=False,
        )
    if not (report.intact and blobs.intact):
        raise typer.Exit(EXIT_REJECTED)


@audit_app.command("export")
def audit_export(
    first: Annotated[int, typer.Option("--from", help="First event id.", parser=EVENT_ID)] = 1,
    last: Annotated[
        int | None, typer.Option("--to", help="Last event id (default: the newest).", parser=EVENT_ID)
    ] = None,
) -> None:
    """Write a range of the audit trail as JSON lines, ending with the chain head."""
    settings = settings_from_env()

    async def work(db: Database) -> list[dict[str, Any]]:
        async with db.sessions() as session:
            return [item async for item in export_range(session, first, last)]

    for item in with_db(settings, work):
        print(json.dumps(item, ensure_ascii=False))

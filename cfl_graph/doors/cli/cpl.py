"""Synchronising the CPL, and its snapshots, runs and differences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table

from cfl_graph.catalogue.snapshots import current_snapshot, recent_runs, recent_snapshots, snapshot, sync_run
from cfl_graph.cpl_sync.diff import SnapshotDiff, diff_snapshots
from cfl_graph.cpl_sync.lock import SyncLockBusy
from cfl_graph.cpl_sync.problems import Problem
from cfl_graph.cpl_sync.sync import SyncResult
from cfl_graph.database import Database
from cfl_graph.doors.cli.common import (
    EXIT_FAILED,
    EXIT_FETCH,
    EXIT_REJECTED,
    HOW_MANY,
    RUN_ID,
    SNAPSHOT_ID,
    RichProgress,
    err,
    out,
    progress_bar,
    settings_from_env,
    with_db,
)
from cfl_graph.scheduler import sync_library, sync_limits
from cfl_graph.tables import CplSnapshot, CplSyncRun, SyncOutcome

cpl_app = typer.Typer(help="The library's copy of the Certified Products List.", no_args_is_help=True)


def _followed(held: Sequence[int], released: Sequence[int]) -> str:
    parts = []
    for count, verb, ids in ((len(held), "held", held), (len(released), "released", released)):
        shown = ", ".join(map(str, ids[:20])) + (" …" if count > 20 else "")
        parts.append(f"{count:,} image(s) {verb}" + (f" ({shown})" if count else ""))
    return "; ".join(parts)


def _print_warnings(warnings: Sequence[Problem | str]) -> None:
    if warnings:
        out.print(f"{len(warnings):,} warning(s); the file was applied:")
    for warning in warnings:
        out.print(f"warning: {warning}", markup=False, highlight=False)


def _print_result(result: SyncResult) -> None:
    if result.outcome in (SyncOutcome.APPLIED, SyncOutcome.UNCHANGED, SyncOutcome.NOT_MODIFIED):
        out.print(f"{result.outcome.value}: snapshot {result.snapshot_id}", end="")
        if result.row_count is not None:
            out.print(
                f", {result.row_count:,} certified versions of {result.device_model_count:,} device models",
                end="",
            )
        out.print()
        if result.changes is not None:
            c = result.changes
            out.print(
                f"changes from the previous snapshot: {c.added:,} added, {c.removed:,} removed, "
                f"{c.changed:,} changed"
            )
        followed = result.followed
        if followed is not None and (followed.held or followed.released):
            out.print(f"library: {_followed(followed.held, followed.released)}", highlight=False)
        _print_warnings(result.warnings)
        return
    if result.outcome is SyncOutcome.REJECTED:
        err.print(f"rejected: {result.error_count:,} error(s); the current snapshot stays current")
        for problem in result.errors:
            err.print(str(problem), markup=False, highlight=False)
        if result.error_count > len(result.errors):
            err.print(f"... and {result.error_count - len(result.errors):,} more", highlight=False)
        return
    err.print(f"{result.outcome.value}: {result.message}", markup=False, highlight=False)


def sync_cpl_command(
    source: Annotated[str | None, typer.Argument(help="Path or http(s) URL; default CFL_CPL_SOURCE.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for another running sync.")] = 600.0,
) -> None:
    """Fetch, validate and store the CPL as a new snapshot if it changed."""
    settings = settings_from_env()
    chosen = source or settings.cpl_source
    if not chosen:
        err.print("no CPL source: give one or set CFL_CPL_SOURCE")
        raise typer.Exit(EXIT_FETCH)

    async def work(db: Database) -> SyncResult:
        with progress_bar() as progress:
            return await sync_library(
                db,
                chosen,
                work_dir=settings.work_dir,
                limits=sync_limits(settings, lock_wait=wait),
                trigger="cli",
                progress=RichProgress(progress),
            )

    try:
        result = with_db(settings, work)
    except SyncLockBusy as exc:
        err.print(str(exc))
        raise typer.Exit(EXIT_FETCH) from None
    except typer.Exit:
        raise
    except Exception as exc:
        err.print(f"failed: {type(exc).__name__}: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    _print_result(result)
    codes = {SyncOutcome.REJECTED: EXIT_REJECTED, SyncOutcome.FETCH_FAILED: EXIT_FETCH}
    raise typer.Exit(codes.get(result.outcome, 0))


@cpl_app.command("snapshots")
def cpl_snapshots(
    limit: Annotated[int, typer.Option(help="How many, newest first.", parser=HOW_MANY)] = 20,
) -> None:
    """List CPL snapshots, newest first, marking the current one."""
    settings = settings_from_env()

    async def work(db: Database) -> tuple[list[CplSnapshot], int | None]:
        async with db.sessions() as session:
            current = await current_snapshot(session)
            return await recent_snapshots(session, limit), current.id if current else None

    rows, current_id = with_db(settings, work)
    table = Table(
        "id", "current", "created (UTC)", "rows", "models", "+", "-", "~", "content SHA-256", "source"
    )
    for s in rows:
        table.add_row(
            str(s.id),
            "*" if s.id == current_id else "",
            s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{s.row_count:,}",
            f"{s.device_model_count:,}",
            f"{s.added_count:,}",
            f"{s.removed_count:,}",
            f"{s.changed_count:,}",
            s.content_sha256[:16] + "…",
            s.source,
        )
    out.print(table)


@cpl_app.command("runs")
def cpl_runs(
    limit: Annotated[int, typer.Option(help="How many, newest first.", parser=HOW_MANY)] = 20,
) -> None:
    """List sync runs with their outcomes, newest first."""
    settings = settings_from_env()

    async def work(db: Database) -> list[CplSyncRun]:
        async with db.sessions() as session:
            return await recent_runs(session, limit)

    table = Table(
        "run",
        "started (UTC)",
        "trigger",
        "outcome",
        "snapshot",
        "rows",
        "errors",
        "warnings",
        "held",
        "released",
        "message",
    )
    for r in with_db(settings, work):
        table.add_row(
            str(r.id),
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.trigger,
            r.outcome,
            str(r.snapshot_id or ""),
            "" if r.row_count is None else f"{r.row_count:,}",
            str(r.error_count),
            str(r.warning_count),
            str(r.images_held),
            str(r.images_released),
            r.message or "",
        )
    out.print(table)
    out.print("`cfl-graph cpl run ID` shows a run's errors and warnings, row by row.")


@cpl_app.command("run")
def cpl_run(
    run_id: Annotated[int, typer.Argument(help="The sync run's id (see `cpl runs`).", parser=RUN_ID)],
) -> None:
    """One sync run: its outcome, and every error and warning it kept, row by row."""
    settings = settings_from_env()

    async def work(db: Database) -> CplSyncRun | None:
        async with db.sessions() as session:
            return await sync_run(session, run_id)

    run = with_db(settings, work)
    if run is None:
        err.print(f"no sync run {run_id}")
        raise typer.Exit(EXIT_REJECTED)
    out.print(
        f"run {run.id}: {run.outcome}, {run.trigger}, started {run.started_at:%Y-%m-%d %H:%M:%S} UTC, "
        f"from {run.source}",
        markup=False,
        highlight=False,
    )
    if run.snapshot_id is not None:
        out.print(f"snapshot {run.snapshot_id}, {run.row_count or 0:,} rows", highlight=False)
    if run.message:
        out.print(run.message, markup=False, highlight=False)
    if run.images_held or run.images_released:
        out.print(f"library: {run.images_held:,} image(s) held, {run.images_released:,} released")
    shown = [p for p in run.problems if p.get("severity") == "error"]
    if run.error_count:
        out.print(f"{run.error_count:,} error(s) (the first {len(shown):,} kept):")
    for problem in shown:
        out.print(f"error: {_problem_text(problem)}", markup=False, highlight=False)
    _print_warnings([_problem_text(p) for p in run.problems if p.get("severity") == "warning"])


def _problem_text(problem: dict[str, Any]) -> str:
    where = []
    if problem.get("row") is not None:
        where.append(f"row {problem['row']}")
    if problem.get("column") is not None:
        letter = f" {problem['column_letter']}" if problem.get("column_letter") else ""
        where.append(f'column{letter} "{problem["column"]}"')
    return f"{', '.join(where)}: {problem['reason']}" if where else str(problem["reason"])


@cpl_app.command("diff")
def cpl_diff(
    old: Annotated[int, typer.Argument(help="Older snapshot id.", parser=SNAPSHOT_ID)],
    new: Annotated[int, typer.Argument(help="Newer snapshot id.", parser=SNAPSHOT_ID)],
    limit: Annotated[int, typer.Option(help="Rows shown per kind of change.", parser=HOW_MANY)] = 50,
) -> None:
    """Rows added, removed and changed between two snapshots."""
    settings = settings_from_env()

    async def work(db: Database) -> SnapshotDiff:
        async with db.sessions() as session:
            for snapshot_id in (old, new):
                if await snapshot(session, snapshot_id) is None:
                    err.print(f"no snapshot {snapshot_id}")
                    raise typer.Exit(EXIT_REJECTED)
            return await diff_snapshots(session, old, new, limit=limit)

    diff = with_db(settings, work)
    c = diff.counts
    out.print(f"snapshot {old} -> {new}: {c.added:,} added, {c.removed:,} removed, {c.changed:,} changed")
    for sign, rows in (("+", diff.added), ("-", diff.removed)):
        for row in rows:
            out.print(
                f"{sign} {'/'.join(row.key)} {row.model_name} {row.specification} hash {row.image_hash} "
                f"{row.status}",
                markup=False,
                highlight=False,
            )
    for change in diff.changed:
        fields = ", ".join(f"{f.field}: {f.old} -> {f.new}" for f in change.fields)
        out.print(f"~ {'/'.join(change.key)} {fields}", markup=False, highlight=False)
    if diff.truncated:
        out.print(f"(showing at most {limit} of each; use --limit for more)")

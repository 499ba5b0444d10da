"""Synchronising the CPL, and its snapshots, runs and differences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer

from cfl_graph.catalogue.snapshots import current_snapshot, recent_runs, recent_snapshots, snapshot, sync_run
from cfl_graph.database import Database
from cfl_graph.doors.cli.common import (
    EXIT_FAILED,
    EXIT_FETCH,
    EXIT_REJECTED,
    HOW_MANY,
    RUN_ID,
    SNAPSHOT_ID,
    Field,
    FormatOption,
    OutputFormat,
    RichProgress,
    emit,
    err,
    out,
    progress_bar,
    settings_from_env,
    with_db,
)
from cfl_graph.scheduler import sync_library, sync_limits
from cfl_graph.tables import CplSnapshot, CplSyncRun, SyncOutcome
from cpl_sync.diff import SnapshotDiff, diff_snapshots
from cpl_sync.lock import SyncLockBusy
from cpl_sync.problems import Problem
from cpl_sync.sync import SyncResult

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


SNAPSHOT_FIELDS = (
    Field("id", "id", numeric=True),
    Field("current", "current"),
    Field("created_at", "created (UTC)"),
    Field("row_count", "rows", numeric=True),
    Field("device_model_count", "models", numeric=True),
    Field("added", "+", numeric=True),
    Field("removed", "-", numeric=True),
    Field("changed", "~", numeric=True),
    Field("content_sha256", "content SHA-256"),
    Field("source", "source"),
)


@cpl_app.command("snapshots")
def cpl_snapshots(
    limit: Annotated[int, typer.Option(help="How many, newest first.", parser=HOW_MANY)] = 20,
    form: FormatOption = OutputFormat.TABLE,
) -> None:
    """List CPL snapshots, newest first, marking the current one."""
    settings = settings_from_env()

    async def work(db: Database) -> tuple[list[CplSnapshot], int | None]:
        async with db.sessions() as session:
            current = await current_snapshot(session)
            return await recent_snapshots(session, limit), current.id if current else None

    rows, current_id = with_db(settings, work)
    emit(
        SNAPSHOT_FIELDS,
        (
            {
                "id": s.id,
                "current": s.id == current_id,
                "created_at": s.created_at,
                "row_count": s.row_count,
                "device_model_count": s.device_model_count,
                "added": s.added_count,
                "removed": s.removed_count,
                "changed": s.changed_count,
                "content_sha256": s.content_sha256,
                "source": s.source,
            }
            for s in rows
        ),
        form,
    )


RUN_FIELDS = (
    Field("id", "run", numeric=True),
    Field("started_at", "started (UTC)"),
    Field("trigger", "trigger"),
    Field("outcome", "outcome"),
    Field("snapshot_id", "snapshot", numeric=True),
    Field("row_count", "rows", numeric=True),
    Field("errors", "errors", numeric=True),
    Field("warnings", "warnings", numeric=True),
    Field("images_held", "held", numeric=True),
    Field("images_released", "released", numeric=True),
    Field("message", "message"),
)


@cpl_app.command("runs")
def cpl_runs(
    limit: Annotated[int, typer.Option(help="How many, newest first.", parser=HOW_MANY)] = 20,
    form: FormatOption = OutputFormat.TABLE,
) -> None:
    """List sync runs with their outcomes, newest first."""
    settings = settings_from_env()

    async def work(db: Database) -> list[CplSyncRun]:
        async with db.sessions() as session:
            return await recent_runs(session, limit)

    emit(
        RUN_FIELDS,
        (
            {
                "id": r.id,
                "started_at": r.started_at,
                "trigger": r.trigger,
                "outcome": r.outcome,
                "snapshot_id": r.snapshot_id,
                "row_count": r.row_count,
                "errors": r.error_count,
                "warnings": r.warning_count,
                "images_held": r.images_held,
                "images_released": r.images_released,
                "message": r.message,
            }
            for r in with_db(settings, work)
        ),
        form,
    )
    if form is OutputFormat.TABLE:
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


DIFF_FIELDS = (
    Field("change", "change"),
    Field("key", "key"),
    Field("model_name", "model"),
    Field("specification", "specification"),
    Field("image_hash", "image hash"),
    Field("status", "status"),
    Field("fields", "fields changed"),
)


@cpl_app.command("diff")
def cpl_diff(
    old: Annotated[int, typer.Argument(help="Older snapshot id.", parser=SNAPSHOT_ID)],
    new: Annotated[int, typer.Argument(help="Newer snapshot id.", parser=SNAPSHOT_ID)],
    limit: Annotated[int, typer.Option(help="Rows shown per kind of change.", parser=HOW_MANY)] = 50,
    form: FormatOption = OutputFormat.TABLE,
) -> None:
    """Rows added, removed and changed between two snapshots (`--format json|csv`: one item per row)."""
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
    if form is not OutputFormat.TABLE:
        # One item per row added, removed or changed (a change lists its fields), for scripts.
        items: list[dict[str, Any]] = []
        for change_kind, rows in (("added", diff.added), ("removed", diff.removed)):
            items.extend(
                {
                    "change": change_kind,
                    "key": "/".join(row.key),
                    "model_name": row.model_name,
                    "specification": row.specification,
                    "image_hash": row.image_hash,
                    "status": row.status,
                    "fields": None,
                }
                for row in rows
            )
        items.extend(
            {
                "change": "changed",
                "key": "/".join(change.key),
                "fields": "; ".join(f"{f.field}: {f.old} -> {f.new}" for f in change.fields)
                if form is OutputFormat.CSV
                else [{"field": f.field, "old": f.old, "new": f.new} for f in change.fields],
            }
            for change in diff.changed
        )
        emit(DIFF_FIELDS, items, form)
        if diff.truncated:
            err.print(f"(at most {limit} of each kind of change; use --limit for more)")
        return
    out.print(f"snapshot {old} -> {new}: {c.added:,} added, {c.removed:,} removed, {c.changed:,} changed")
    for sign, rows in (("+", diff.added), ("-", diff.removed)):
        for row in rows:
            out.print(
                f"{sign} {'/'.join(row.key)} {row.model_name} {row.specification} hash {row.image_hash} "
                f"{row.status}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    for change in diff.changed:
        fields = ", ".join(f"{f.field}: {f.old} -> {f.new}" for f in change.fields)
        out.print(f"~ {'/'.join(change.key)} {fields}", markup=False, highlight=False, soft_wrap=True)
    if diff.truncated:
        out.print(f"(showing at most {limit} of each; use --limit for more)")

"""The `cfl-graph` command: serve; migrate; synchronise and inspect the CPL copy; register parties,
tokens and manufacturer keys; verify and export the audit trail. Each command is a thin door onto the
same services the HTTP side uses.

Exit codes of `sync-cpl`: 0 applied, unchanged or not modified; 1 rejected (each problem printed as
`row N, column C: reason`); 2 could not fetch, or another sync holds the lock; 3 internal failure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from cfl_graph import migrate
from cfl_graph.access.keys import KeyRejected, add_key_for_party, revoke_key
from cfl_graph.access.parties import (
    PartyError,
    add_party,
    as_principal,
    find_party,
    manufacturer_ids_of,
    operator_acting_for,
)
from cfl_graph.access.policy import AccessDenied, Action, allowed
from cfl_graph.access.tokens import IssuedToken, issue_token, revoke_token
from cfl_graph.audit import Actor, ChainReport, export_range, verify_chain
from cfl_graph.blobs import BlobStoreFailed, blob_store_for
from cfl_graph.database import Database
from cfl_graph.identifiers import InvalidValue
from cfl_graph.images.errors import LibraryError
from cfl_graph.images.integrity import BlobReport, verify_blobs
from cfl_graph.images.library import ImageLibrary, UploadFields
from cfl_graph.row_ids import MAX_ROW_ID, row_id
from cfl_graph.scheduler import sync_library, sync_limits
from cfl_graph.settings import Settings, SettingsError, from_env
from cfl_graph.tables import (
    ApiToken,
    CplSnapshot,
    CplSyncRun,
    LibraryImage,
    ManufacturerKey,
    Party,
    Role,
    SyncOutcome,
)
from cfl_graph.tables.base import utc_now
from cfl_graph.unavailable import database_unavailable
from cpl_sync.diff import SnapshotDiff, diff_snapshots
from cpl_sync.lock import SyncLockBusy
from cpl_sync.problems import Problem
from cpl_sync.snapshot import current_snapshot, recent_runs, recent_snapshots
from cpl_sync.sync import SyncResult

app = typer.Typer(
    help="cfl-graph: the Centralised Firmware Library for GB smart meters.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
cpl_app = typer.Typer(help="The library's copy of the Certified Products List.", no_args_is_help=True)
party_app = typer.Typer(help="Parties (organisations) and their roles.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens: shown once, stored hashed.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
key_app = typer.Typer(help="Manufacturer public keys that sign firmware images.", no_args_is_help=True)
image_app = typer.Typer(help="Firmware images in the library.", no_args_is_help=True)
schema_app = typer.Typer(help="The GraphQL schemas' SDL.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(cpl_app, name="cpl")
app.add_typer(party_app, name="party")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")
app.add_typer(key_app, name="key")
app.add_typer(image_app, name="image")
app.add_typer(schema_app, name="schema")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

EXIT_REJECTED = 1
EXIT_FETCH = 2
EXIT_FAILED = 3


def _settings(default_log_level: str = "WARNING") -> Settings:
    try:
        settings = from_env()
    except SettingsError as exc:
        err.print(f"configuration error: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    logging.basicConfig(
        level=settings.log_level or default_log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return settings


class SchemaMissing(Exception):
    """The database lacks migrations a command needs; the message says what to run."""


def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]], *, needs_schema: bool = True) -> T:
    """Run `work` on the database; first, unless it is `db upgrade`, make sure the schema is current, so
    that an un-migrated database is told as such (exit 3) and not as the first query's failure."""

    async def run() -> T:
        db = Database.connect(settings.database_url)
        try:
            if needs_schema:
                await _require_schema(db)
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except SchemaMissing as exc:
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None


async def _require_schema(db: Database) -> None:
    try:
        pending = await migrate.pending(db.engine)
    except Exception as exc:
        if database_unavailable(exc):
            raise SchemaMissing(
                f"cannot reach the database ({type(exc).__name__}); check CFL_DATABASE_URL and that it runs"
            ) from None
        raise
    if pending:
        raise SchemaMissing(
            f"the database lacks migrations {', '.join(pending)}; run `cfl-graph db upgrade` first"
        )


def _number(what: str, *, minimum: int = 1, maximum: int = MAX_ROW_ID) -> Callable[[str], int]:
    """A parser for a numeric argument: ASCII digits within the bounds (`cfl_graph.row_ids`), so that
    '٣' is not read as 3 nor a number past the id columns sent to the database."""

    def parse(raw: str | int) -> int:
        try:
            return row_id(raw, what, minimum=minimum, maximum=maximum)
        except InvalidValue as exc:
            raise typer.BadParameter(exc.reason) from None

    return parse


SNAPSHOT_ID = _number("a snapshot id")
EVENT_ID = _number("an event id")
RUN_ID = _number("a sync run's id")
HOW_MANY = _number("a count", maximum=100_000)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Apply migrations and load demo data first.")] = False,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes sharing the address (share nothing else).")
    ] = 1,
) -> None:
    """Serve the catalogue (and sync the CPL every CFL_CPL_SYNC_INTERVAL seconds when a source is set)."""
    from cfl_graph import serving
    from cfl_graph.app import create_app, tune_collector

    settings = _settings(default_log_level="INFO")
    log_level = (settings.log_level or "INFO").lower()
    if demo:
        out.print(f"demo: database {settings.database_url}, blobs in {settings.blob_dir}")
        _with_db(settings, lambda db: _prepare_demo(settings, db), needs_schema=False)
    else:
        _with_db(settings, _require_schema, needs_schema=False)
    out.print(f"serving on http://{host}:{port}/ (GraphQL at /graphql) with {workers} worker(s)")
    # Each of several workers builds its own app from the same environment (cfl_graph.app:from_environment).
    app: Any = "cfl_graph.app:from_environment"
    if workers == 1:
        tune_collector()
        app = create_app(settings)
    if not serving.serve(app, settings, host=host, port=port, workers=workers, log_level=log_level):
        raise typer.Exit(EXIT_FAILED)


async def _prepare_demo(settings: Settings, db: Database) -> None:
    """Migrate and load the demo once, before any worker starts."""
    from cfl_graph.demo import prepare_demo

    await migrate.upgrade(db.engine)
    store = blob_store_for(settings)
    try:
        await prepare_demo(settings, db, store)
    finally:
        await store.close()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = _settings()

    async def work(db: Database) -> list[str]:
        pending = await migrate.pending(db.engine)
        await migrate.upgrade(db.engine)
        return pending

    applied = _with_db(settings, work, needs_schema=False)
    out.print(f"applied {', '.join(applied)}" if applied else "database is up to date")


def _progress_bar() -> Progress:
    """A bar on stderr when it is a terminal; silent in scripts and tests."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=err, transient=True, disable=not err.is_terminal)


class _RichProgress:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


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


@app.command("sync-cpl")
def sync_cpl_command(
    source: Annotated[str | None, typer.Argument(help="Path or http(s) URL; default CFL_CPL_SOURCE.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for another running sync.")] = 600.0,
) -> None:
    """Fetch, validate and store the CPL as a new snapshot if it changed."""
    settings = _settings()
    chosen = source or settings.cpl_source
    if not chosen:
        err.print("no CPL source: give one or set CFL_CPL_SOURCE")
        raise typer.Exit(EXIT_FETCH)

    async def work(db: Database) -> SyncResult:
        with _progress_bar() as progress:
            return await sync_library(
                db,
                chosen,
                work_dir=settings.work_dir,
                limits=sync_limits(settings, lock_wait=wait),
                trigger="cli",
                progress=_RichProgress(progress),
            )

    try:
        result = _with_db(settings, work)
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
    settings = _settings()

    async def work(db: Database) -> tuple[list[CplSnapshot], int | None]:
        async with db.sessions() as session:
            current = await current_snapshot(session)
            return await recent_snapshots(session, limit), current.id if current else None

    rows, current_id = _with_db(settings, work)
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
    settings = _settings()

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
    for r in _with_db(settings, work):
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
    settings = _settings()

    async def work(db: Database) -> CplSyncRun | None:
        async with db.sessions() as session:
            return await session.get(CplSyncRun, run_id)

    run = _with_db(settings, work)
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
    settings = _settings()

    async def work(db: Database) -> SnapshotDiff:
        async with db.sessions() as session:
            for snapshot_id in (old, new):
                if await session.get(CplSnapshot, snapshot_id) is None:
                    err.print(f"no snapshot {snapshot_id}")
                    raise typer.Exit(EXIT_REJECTED)
            return await diff_snapshots(session, old, new, limit=limit)

    diff = _with_db(settings, work)
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


@party_app.command("add")
def party_add(
    name: Annotated[str, typer.Argument(help="The organisation's name, unique.")],
    role: Annotated[Role, typer.Option(help="supplier, manufacturer, panel or admin.")],
    manufacturer_id: Annotated[
        list[str] | None, typer.Option(help="A manufacturer id (4 hex) it writes for; repeatable.")
    ] = None,
    grant_downloads: Annotated[bool, typer.Option(help="Let a panel party download image bytes.")] = False,
    require_approval: Annotated[
        bool, typer.Option(help="Manufacturers: publish only drafts a second token approved (four-eyes).")
    ] = False,
) -> None:
    """Register a party."""
    settings = _settings()

    async def work(db: Database) -> list[str]:
        async with db.writes.begin() as session:
            party = await add_party(
                session,
                name,
                role,
                actor=Actor.cli(),
                manufacturer_ids=manufacturer_id or (),
                download_granted=grant_downloads,
                requires_approval=require_approval,
            )
            return await manufacturer_ids_of(session, party)

    try:
        ids = _with_db(settings, work)
    except (PartyError, InvalidValue) as exc:
        err.print(f"party not added: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_REJECTED) from None
    suffix = f" for manufacturer ids {', '.join(ids)}" if ids else ""
    out.print(f"added {role.value} party {name}{suffix}", markup=False, highlight=False)


@party_app.command("list")
def party_list() -> None:
    """List parties with their roles and manufacturer ids."""
    settings = _settings()

    async def work(db: Database) -> list[tuple[Party, list[str]]]:
        async with db.sessions() as session:
            parties = (await session.execute(select(Party).order_by(Party.name))).scalars()
            return [(p, await manufacturer_ids_of(session, p)) for p in parties]

    table = Table("party", "role", "manufacturer ids", "downloads", "created (UTC)", "disabled")
    for party, ids in _with_db(settings, work):
        # What the policy grants, asked as every door asks it: admins, say, have no downloads.
        may_download = party.disabled_at is None and allowed(as_principal(party, ids), Action.DOWNLOAD_IMAGE)
        downloads = "yes" if may_download else "no"
        table.add_row(
            party.name,
            party.role,
            ", ".join(ids),
            downloads,
            party.created_at.strftime("%Y-%m-%d"),
            "yes" if party.disabled_at else "",
        )
    out.print(table)


@token_app.command("create")
def token_create(
    party: Annotated[str, typer.Argument(help="The party's name.")],
    expires_in: Annotated[
        int,
        typer.Option(help="Days until the token expires (1-366).", parser=_number("--expires-in", minimum=0)),
    ] = 90,
    read_only: Annotated[bool, typer.Option(help="Refuse every write with this token.")] = False,
    description: Annotated[str | None, typer.Option(help="What the token is for.")] = None,
) -> None:
    """Create a token and print it once; only its hash is kept."""
    settings = _settings()

    async def work(db: Database) -> IssuedToken:
        async with db.writes.begin() as session:
            found = await find_party(session, party)
            return await issue_token(
                session,
                found,
                actor=Actor.cli(),
                lifetime=dt.timedelta(days=expires_in),
                read_only=read_only,
                description=description,
            )

    if not 1 <= expires_in <= 366:
        err.print("--expires-in must be between 1 and 366 days")
        raise typer.Exit(EXIT_REJECTED)
    try:
        issued = _with_db(settings, work)
    except PartyError as exc:
        err.print(f"no token created: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_REJECTED) from None
    err.print(
        f"token {issued.public_id} for {party}, expires {issued.expires_at:%Y-%m-%d %H:%M} UTC"
        f"{', read-only' if read_only else ''}. It is shown once; store it now:",
        markup=False,
        highlight=False,
    )
    print(issued.text)


@token_app.command("revoke")
def token_revoke(
    public_id: Annotated[str, typer.Argument(help="The token's public id (after cflg_).")],
) -> None:
    """Revoke a token at once."""
    settings = _settings()

    async def work(db: Database) -> bool:
        async with db.writes.begin() as session:
            return await revoke_token(session, public_id, actor=Actor.cli()) is not None

    if not _with_db(settings, work):
        err.print(f"no token {public_id}")
        raise typer.Exit(EXIT_REJECTED)
    out.print(f"revoked token {public_id}")


@token_app.command("list")
def token_list() -> None:
    """List tokens (public ids only) with their parties and states."""
    settings = _settings()

    async def work(db: Database) -> list[tuple[ApiToken, str]]:
        async with db.sessions() as session:
            query = (
                select(ApiToken, Party.name).join(Party, Party.id == ApiToken.party_id).order_by(ApiToken.id)
            )
            return [(t, n) for t, n in (await session.execute(query)).all()]

    now = utc_now()
    table = Table("token", "party", "scope", "created (UTC)", "expires (UTC)", "state", "description")
    for token, party_name in _with_db(settings, work):
        state = "revoked" if token.revoked_at else "expired" if token.expires_at <= now else "active"
        table.add_row(
            token.public_id,
            party_name,
            "read-only" if token.read_only else "read-write",
            token.created_at.strftime("%Y-%m-%d"),
            token.expires_at.strftime("%Y-%m-%d"),
            state,
            token.description or "",
        )
    out.print(table)


@key_app.command("add")
def key_add(
    party: Annotated[str, typer.Argument(help="The manufacturer party's name.")],
    pem_file: Annotated[Path, typer.Argument(help="The P-256 public key, PEM.")],
    manufacturer_id: Annotated[
        list[str] | None, typer.Option(help="Only for this manufacturer id (default: all of the party's).")
    ] = None,
) -> None:
    """Register a manufacturer's public key for its manufacturer ids."""
    settings = _settings()

    async def work(db: Database) -> list[ManufacturerKey]:
        async with db.writes.begin() as session:
            found = await find_party(session, party)
            return await add_key_for_party(
                session,
                found,
                pem_file.read_bytes(),
                actor=Actor.cli(),
                manufacturer_ids=manufacturer_id or (),
            )

    try:
        added = _with_db(settings, work)
    except (PartyError, KeyRejected, InvalidValue, OSError) as exc:
        err.print(f"key not added: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_REJECTED) from None
    for row in added:
        out.print(f"added key {row.key_id[:16]} for manufacturer id {row.manufacturer_id}")


@key_app.command("revoke")
def key_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id, or its first 16+ hex digits.")],
) -> None:
    """Stop accepting signatures by a key."""
    settings = _settings()

    async def work(db: Database) -> list[ManufacturerKey]:
        async with db.writes.begin() as session:
            return await revoke_key(session, key_id, actor=Actor.cli())

    try:
        rows = _with_db(settings, work)
    except KeyRejected as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(EXIT_REJECTED) from None
    if not rows:
        err.print(f"no key {key_id}")
        raise typer.Exit(EXIT_REJECTED)
    for row in rows:
        out.print(f"revoked key {row.key_id[:16]} for manufacturer id {row.manufacturer_id}")


@key_app.command("list")
def key_list() -> None:
    """List registered keys by manufacturer id."""
    settings = _settings()

    async def work(db: Database) -> list[ManufacturerKey]:
        async with db.sessions() as session:
            query = select(ManufacturerKey).order_by(ManufacturerKey.manufacturer_id, ManufacturerKey.id)
            return list((await session.execute(query)).scalars())

    table = Table("manufacturer id", "key id", "added (UTC)", "state")
    for row in _with_db(settings, work):
        table.add_row(
            row.manufacturer_id,
            row.key_id,
            row.added_at.strftime("%Y-%m-%d"),
            "revoked" if row.revoked_at else "active",
        )
    out.print(table)


@app.command()
def verify() -> None:
    """Walk the audit trail's chain and re-hash every image's bytes; exit 1 naming every break found."""
    settings = _settings()

    async def work(db: Database) -> tuple[ChainReport, BlobReport]:
        async with db.sessions() as session:
            chain = await verify_chain(session)
        store = blob_store_for(settings)
        try:
            with _progress_bar() as progress:
                report = _RichProgress(progress)
                blobs = await verify_blobs(
                    db.sessions, store, lambda done, total: report("re-hashing image blobs", done, total)
                )
        finally:
            await store.close()
        return chain, blobs

    report, blobs = _with_db(settings, work)
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


@image_app.command("import")
def image_import(
    file: Annotated[Path, typer.Argument(help="The GBCS OTA image file.", exists=True, dir_okay=False)],
    party: Annotated[str, typer.Option(help="The manufacturer party the image is for.")],
    notes: Annotated[
        Path | None, typer.Option(help="Release notes (Markdown).", exists=True, dir_okay=False)
    ] = None,
    model_id: Annotated[str | None, typer.Option(help="Device model id, if the CPL cannot tell.")] = None,
    hardware_version: Annotated[str | None, typer.Option(help="Hardware version, with --model-id.")] = None,
    publish: Annotated[bool, typer.Option(help="Publish at once if it has no problems.")] = False,
) -> None:
    """Import an image for a manufacturer party, with the same checks as an upload; print its problems."""
    settings = _settings()
    notes_text = None if notes is None else notes.read_text(encoding="utf-8")

    async def work(db: Database) -> tuple[LibraryImage, LibraryError | None]:
        store = blob_store_for(settings)
        library = ImageLibrary(db.sessions, store, max_image_bytes=settings.max_image_bytes)
        try:
            async with db.sessions() as session:
                found = await find_party(session, party)
                principal = await operator_acting_for(session, found)
            if publish and found.requires_approval:
                # Refused before anything is kept: the draft would wait for an approval all the same.
                raise LibraryError(
                    f"{found.name} publishes only images a second token approved: import it without "
                    "--publish, then approve and publish it"
                )
            actor = Actor(f"{Actor.cli().name} for {principal.party_name}", principal.party_id)
            receiver = library.receiver(principal)
            try:
                with file.open("rb") as handle:
                    while chunk := handle.read(1024 * 1024):
                        await receiver.write(chunk)
                received = await receiver.finish()
            except BaseException:
                receiver.abandon()
                raise
            fields = UploadFields(
                model_id=model_id, hardware_version=hardware_version, release_notes=notes_text
            )
            image = await library.accept(principal, received, fields, actor=actor)
            if publish and not image.problems:
                try:
                    image = await library.publish(principal, image.id, actor=actor)
                except LibraryError as exc:
                    return image, exc  # kept as a draft: said so below, not "not imported"
            return image, None
        finally:
            await store.close()

    try:
        image, unpublished = _with_db(settings, work)
    except (LibraryError, PartyError, AccessDenied, BlobStoreFailed) as exc:
        err.print(f"image not imported: {exc}", markup=False, highlight=False)
        for problem in getattr(exc, "problems", []):
            err.print(f"  {problem.code}: {problem.detail}", markup=False, highlight=False)
        raise typer.Exit(EXIT_REJECTED) from None
    out.print(
        f"image {image.id} ({image.dcc_file_name}) {image.state}: model {image.model_id} hardware "
        f"{image.hardware_version}, file SHA-256 {image.file_sha256}",
        markup=False,
        highlight=False,
    )
    for problem in image.problems:
        out.print(f"  {problem['problem']}: {problem['detail']}", markup=False, highlight=False)
    if unpublished is not None:
        err.print(f"kept as a draft, not published: {unpublished}", markup=False, highlight=False)
    if image.problems or unpublished is not None:
        raise typer.Exit(EXIT_REJECTED)


@image_app.command("list")
def image_list(
    state: Annotated[str | None, typer.Option(help="draft, published, held or withdrawn.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", parser=HOW_MANY)] = 50,
) -> None:
    """List images with their state and problems (operators see every image, drafts included)."""
    settings = _settings()

    async def work(db: Database) -> list[LibraryImage]:
        async with db.sessions() as session:
            query = select(LibraryImage).order_by(LibraryImage.id.desc()).limit(limit)
            if state is not None:
                query = query.where(LibraryImage.state == state)
            return list((await session.execute(query)).scalars())

    table = Table("id", "file", "model", "hw", "state", "uploaded (UTC)", "problems")
    for image in _with_db(settings, work):
        table.add_row(
            str(image.id),
            image.dcc_file_name,
            image.model_id,
            image.hardware_version,
            image.state,
            image.uploaded_at.strftime("%Y-%m-%d %H:%M"),
            ", ".join(p["problem"] for p in image.problems),
        )
    out.print(table)


@audit_app.command("export")
def audit_export(
    first: Annotated[int, typer.Option("--from", help="First event id.", parser=EVENT_ID)] = 1,
    last: Annotated[
        int | None, typer.Option("--to", help="Last event id (default: the newest).", parser=EVENT_ID)
    ] = None,
) -> None:
    """Write a range of the audit trail as JSON lines, ending with the chain head."""
    settings = _settings()

    async def work(db: Database) -> list[dict[str, Any]]:
        async with db.sessions() as session:
            return [item async for item in export_range(session, first, last)]

    for item in _with_db(settings, work):
        print(json.dumps(item, ensure_ascii=False))


@schema_app.command("print")
def schema_print(
    graph: Annotated[str, typer.Argument(help="combined, cpl or cfl.")] = "combined",
) -> None:
    """Print a schema's SDL (the subgraphs' with their federation directives)."""
    from schema import Graph, build_schema

    try:
        chosen = Graph(graph)
    except ValueError:
        err.print(f"no graph {graph!r}: choose combined, cpl or cfl")
        raise typer.Exit(EXIT_REJECTED) from None
    print(build_schema(graph=chosen).as_str())


@schema_app.command("write")
def schema_write() -> None:
    """Rewrite schema/sdl/*.graphql from the code (a test fails while they differ)."""
    from schema.sdl import write_sdl_files

    for path in write_sdl_files():
        out.print(f"wrote {path}", markup=False, highlight=False)


@schema_app.command("check")
def schema_check(
    old: Annotated[
        Path, typer.Argument(help="An older client SDL, such as schema/sdl/baseline/client.graphql.")
    ],
) -> None:
    """List breaking and dangerous changes from OLD to today's client graph; exit 1 on a breaking one."""
    from schema.compat import SdlUnreadable, check_against

    try:
        comparison = check_against(old)
    except SdlUnreadable as exc:
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FETCH) from None  # 2, as for a CPL source that cannot be read
    print("\n".join(comparison.lines()))
    if not comparison.ok:
        raise typer.Exit(EXIT_REJECTED)


def main() -> None:
    app()

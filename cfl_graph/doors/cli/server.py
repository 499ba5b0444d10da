"""Serving the catalogue, and the database's migrations."""

from __future__ import annotations

import logging
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfl_graph import migrate
from cfl_graph.blobs import blob_store_for
from cfl_graph.database import Database
from cfl_graph.demo.load import LISTS_STAGE
from cfl_graph.doors.cli.common import (
    EXIT_FAILED,
    RichProgress,
    err,
    out,
    progress_bar,
    require_schema,
    settings_from_env,
    with_db,
)
from cfl_graph.settings import Settings

if TYPE_CHECKING:
    from cfl_graph.demo.load import DemoFigures

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Apply migrations and load demo data first.")] = False,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes sharing the address (share nothing else).")
    ] = 1,
) -> None:
    """Serve the catalogue (and sync the CPL every CFL_CPL_SYNC_INTERVAL seconds when a source is set)."""
    from cfl_graph.doors.web import serving
    from cfl_graph.doors.web.app import create_app, tune_collector

    settings = settings_from_env(default_log_level="INFO")
    log_level = (settings.log_level or "INFO").lower()
    if demo:
        out.print(
            f"demo: database {settings.database_url}, blobs in {settings.blob_dir}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        tokens, figures = with_db(settings, lambda db: _prepare_demo(settings, db), needs_schema=False)
        _print_demo(figures, tokens, host, port)
    else:
        with_db(settings, require_schema, needs_schema=False)
    metrics_settings = serving.prepare_metrics(settings, workers)
    made_metrics_dir = settings.metrics_dir is None and metrics_settings.metrics_dir is not None
    settings = metrics_settings
    out.print(f"serving on http://{host}:{port}/ (GraphQL at /graphql) with {workers} worker(s)")
    # Each of several workers builds its own app from the same environment
    # (cfl_graph.doors.web.app:from_environment).
    app: Any = "cfl_graph.doors.web.app:from_environment"
    if workers == 1:
        tune_collector()
        app = create_app(settings)
    try:
        started = serving.serve(app, settings, host=host, port=port, workers=workers, log_level=log_level)
    finally:
        if made_metrics_dir and settings.metrics_dir is not None:
            shutil.rmtree(settings.metrics_dir, ignore_errors=True)
    if not started:
        raise typer.Exit(EXIT_FAILED)


async def _prepare_demo(settings: Settings, db: Database) -> tuple[Path, DemoFigures]:
    """Migrate and load the demo once, before any worker starts: a bar on a terminal, not a log line per
    upload (the service's own INFO lines are held back meanwhile; warnings still show)."""
    from cfl_graph.demo import prepare_demo
    from cfl_graph.demo.load import demo_figures

    store = blob_store_for(settings)
    quiet = [logging.getLogger(name) for name in ("cfl_graph", "cpl_sync", "loaders", "alembic")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        await migrate.upgrade(db.engine)
        with progress_bar() as bar:
            shown = RichProgress(bar) if err.is_terminal else _count_lists
            tokens = await prepare_demo(settings, db, store, shown)
        return tokens, await demo_figures(db)
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
        await store.close()


def _count_lists(stage: str, done: int, total: int | None) -> None:
    """Without a terminal, one line per CPL list instead of a bar."""
    if stage == LISTS_STAGE:
        err.print(f"demo: CPL list {done} of {total} synchronised", markup=False, highlight=False)


def _print_demo(figures: DemoFigures, tokens: Path, host: str, port: int) -> None:
    """What the demo holds, where the tokens are, and a request to paste, on the port in use."""
    images = ", ".join(f"{count:,} {state}" for state, count in sorted(figures.images.items()))
    median = "—" if figures.median_days is None else f"{figures.median_days:g} days"
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    for line in (
        f"demo: {figures.snapshots} CPL snapshots, {figures.rows:,} rows in the current one",
        f"demo: images {images}",
        f"demo: {figures.available:,} of {figures.due:,} due versions have a published image "
        f"({figures.share:.0%}); median {median} from listing to publication, {figures.late} late",
        f"demo: sign in at {url}/ with a token from {tokens}",
        "demo: or ask the graph:",
    ):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    role = "supplier"
    print(f"  TOKEN=$(awk '/^{role}/{{getline; print $1}}' {shlex.quote(str(tokens))})")
    print(
        "  curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
        '-d \'{"query":"{ cplSnapshot { id rowCount deviceModelCount } }"}\' '
        f"{url}/graphql"
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = settings_from_env()

    async def work(db: Database) -> list[str]:
        pending = await migrate.pending(db.engine)
        await migrate.upgrade(db.engine)
        return pending

    applied = with_db(settings, work, needs_schema=False)
    out.print(f"applied {', '.join(applied)}" if applied else "database is up to date")

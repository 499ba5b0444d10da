"""Serving the catalogue, and the database's migrations."""

from __future__ import annotations

import shutil
from typing import Annotated, Any

import typer

from cfl_graph import migrate
from cfl_graph.blobs import blob_store_for
from cfl_graph.database import Database
from cfl_graph.doors.cli.common import EXIT_FAILED, out, require_schema, settings_from_env, with_db
from cfl_graph.settings import Settings

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
        out.print(f"demo: database {settings.database_url}, blobs in {settings.blob_dir}")
        with_db(settings, lambda db: _prepare_demo(settings, db), needs_schema=False)
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
    settings = settings_from_env()

    async def work(db: Database) -> list[str]:
        pending = await migrate.pending(db.engine)
        await migrate.upgrade(db.engine)
        return pending

    applied = with_db(settings, work, needs_schema=False)
    out.print(f"applied {', '.join(applied)}" if applied else "database is up to date")

"""The composition root: settings -> database -> schema -> routes. Nothing else builds engines."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cfl_graph import migrate
from cfl_graph.blobs import BlobStore, blob_store_for
from cfl_graph.database import Database
from cfl_graph.doors.graph import Graph
from cfl_graph.doors.graph.protection import QueryLimits
from cfl_graph.doors.web import audit, catalogue, feeds, images, pages
from cfl_graph.doors.web.catalogue import SignedCatalogue
from cfl_graph.doors.web.cors import CorsMiddleware
from cfl_graph.doors.web.graphql import GraphQLView
from cfl_graph.doors.web.graphql_http import CLIENT_PATH, subgraph_path
from cfl_graph.doors.web.limits import BodySizeLimitMiddleware, ClientGoneMiddleware, RateLimitMiddleware
from cfl_graph.doors.web.middleware import AuthenticationMiddleware, SecurityHeadersMiddleware
from cfl_graph.doors.web.pages.render import unknown_path
from cfl_graph.doors.web.reports import report_routes
from cfl_graph.doors.web.response_cache import PersistedQueries, ResponseCache
from cfl_graph.doors.web.services import Services
from cfl_graph.doors.web.unavailable import DatabaseUnavailableMiddleware
from cfl_graph.images.library import ImageLibrary
from cfl_graph.scheduler import run_scheduled_sync
from cfl_graph.settings import Settings, from_env

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
MIB = 1024 * 1024
PERSISTED_QUERIES_MB = 16
# One address may carry many clients (a supplier's office behind one NAT): its limit is looser.
ADDRESS_FACTOR = 10


class SchemaNotCurrent(RuntimeError):
    def __init__(self, pending: list[str]) -> None:
        super().__init__(
            f"the database lacks migrations {', '.join(pending)}; run `cfl-graph db upgrade` first"
        )
        self.pending = pending


# GraphQL requests executed at once by one worker; more wait their turn (answers kept by the response
# cache do not). Executing is CPU work on one event loop, so more at once add no throughput: they only
# share the database pool, where a wait past its timeout would fail a request that was merely queued.
GRAPHQL_CONCURRENCY = 8


# Room for the multipart envelope and release notes around an image of the largest size.
UPLOAD_ENVELOPE_BYTES = 1024 * 1024


def create_app(
    settings: Settings, *, db: Database | None = None, store: BlobStore | None = None
) -> Starlette:
    database = db or Database.connect(settings.database_url)
    blobs = store or blob_store_for(settings)
    library = ImageLibrary(database.sessions, blobs, max_image_bytes=settings.max_image_bytes)
    # One memory of answers and of persisted queries for the three graphs (their keys name the graph).
    cache = ResponseCache(settings.response_cache_mb * MIB) if settings.response_cache_mb else None
    persisted = PersistedQueries(PERSISTED_QUERIES_MB * MIB)

    async def healthz(request: Request) -> Response:
        try:
            async with database.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check: database unavailable: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if pending := await migrate.pending(database.engine):
            raise SchemaNotCurrent(pending)
        settings.blob_dir.mkdir(parents=True, exist_ok=True)
        if abandoned := blobs.staging.clean_abandoned():
            log.warning("removed %d upload(s) a stopped worker left unfinished", len(abandoned))
        scheduler: asyncio.Task[None] | None = None
        if settings.cpl_source and settings.cpl_sync_interval > 0:
            scheduler = asyncio.create_task(run_scheduled_sync(settings, database), name="cpl-sync")
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scheduler
            if store is None:
                await blobs.close()
            if db is None:
                await database.dispose()

    admission = asyncio.Semaphore(GRAPHQL_CONCURRENCY)
    limits = QueryLimits(introspection=settings.graphql_introspection)
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        *(
            # Every method reaches the view, which answers those it does not take as GraphQL refusals.
            Route(
                CLIENT_PATH if graph is Graph.COMBINED else subgraph_path(graph.value),
                GraphQLView(
                    database,
                    library,
                    limits,
                    graph,
                    cache=cache,
                    persisted=persisted,
                    admission=admission,
                ),
            )
            for graph in Graph
        ),
        *audit.routes,
        *images.routes,
        *feeds.routes,
        *report_routes(database.sessions),
        *catalogue.routes,
        *pages.routes,
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    # Outermost first: headers on every answer; CORS for the origins listed (preflights answered before
    # sign-in, every answer below them readable by a listed origin); a client gone mid-request ends it
    # quietly; a database outage anywhere below is a 503; a loose per-address rate before any database
    # work; the body limit before anything reads a body; who is asking; then how often that token may ask.
    cors = [Middleware(CorsMiddleware, origins=settings.cors_origins)] if settings.cors_origins else []
    middleware = [
        Middleware(SecurityHeadersMiddleware),
        *cors,
        Middleware(ClientGoneMiddleware),
        Middleware(DatabaseUnavailableMiddleware),
        Middleware(
            RateLimitMiddleware, per_minute=settings.rate_limit_per_minute * ADDRESS_FACTOR, by_address=True
        ),
        Middleware(
            BodySizeLimitMiddleware,
            max_bytes=settings.max_request_bytes,
            per_path={
                ("POST", "/api/v1/images"): settings.max_image_bytes + UPLOAD_ENVELOPE_BYTES,
                ("POST", "/upload"): settings.max_image_bytes + UPLOAD_ENVELOPE_BYTES,  # the web form
            },
        ),
        Middleware(AuthenticationMiddleware, sessions=database.sessions),
        Middleware(RateLimitMiddleware, per_minute=settings.rate_limit_per_minute),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={404: unknown_path},
    )
    app.state.services = Services(
        sessions=database.sessions,
        library=library,
        catalogue=SignedCatalogue(database.sessions, settings.signing_key_file),
        public_base_url=settings.public_base_url or "",
    )
    app.state.response_cache = cache
    app.state.persisted_queries = persisted
    return app


def tune_collector() -> None:
    """A server's long-lived objects (app, schema, pools) are frozen out of the collector's view, and
    young-generation collections come less often: a GraphQL page allocates tens of thousands of
    short-lived objects, and the default thresholds spent a third of its CPU collecting them."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def from_environment() -> Starlette:
    """The app of one of several workers (`cfl-graph serve --workers N`), built from the environment
    the command was given; nothing but the database and the blob store is shared between workers."""
    settings = from_env()
    logging.basicConfig(
        level=settings.log_level or "INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    application = create_app(settings)
    tune_collector()
    return application

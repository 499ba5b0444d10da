"""The composition root: settings -> database -> schema -> routes. Nothing else builds engines."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cfl_graph import metrics, migrate
from cfl_graph.blobs import BlobStore, blob_store_for
from cfl_graph.database import Database
from cfl_graph.doors.graph import Graph
from cfl_graph.doors.graph.plans import PlanMode
from cfl_graph.doors.graph.protection import QueryLimits
from cfl_graph.doors.web import audit, catalogue, feeds, images, pages
from cfl_graph.doors.web.catalogue import SignedCatalogue
from cfl_graph.doors.web.cors import CorsMiddleware
from cfl_graph.doors.web.graphql import GraphQLView
from cfl_graph.doors.web.graphql_http import CLIENT_PATH, subgraph_path
from cfl_graph.doors.web.limits import BodySizeLimitMiddleware, RateLimitMiddleware
from cfl_graph.doors.web.middleware import AuthenticationMiddleware
from cfl_graph.doors.web.observation import MetricsEndpoint, ObservationMiddleware
from cfl_graph.doors.web.pages.render import unknown_path
from cfl_graph.doors.web.reports import report_routes
from cfl_graph.doors.web.response_cache import PersistedQueries, ResponseCache
from cfl_graph.doors.web.services import Services
from cfl_graph.doors.web.unavailable import FailuresMiddleware
from cfl_graph.identifiers import Sha256Hex
from cfl_graph.images.library import ImageLibrary
from cfl_graph.observability import count_statements
from cfl_graph.scheduler import run_scheduled_sync
from cfl_graph.settings import Settings, from_env
from cfl_graph.shared_state import SharedState, shared_state_for

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


# A digest no blob has: asking the store for its size proves the store answers (readiness).
NO_BLOB = Sha256Hex("0" * 64)


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    store: BlobStore | None = None,
    shared: SharedState | None = None,
) -> Starlette:
    database = db or Database.connect(settings.database_url)
    count_statements(database.engine)
    blobs = store or blob_store_for(settings)
    library = ImageLibrary(database.sessions, blobs, max_image_bytes=settings.max_image_bytes)
    # Several nodes share rate limits, answers and persisted queries through Redis when one is set.
    redis = shared or shared_state_for(settings.redis_url, settings.redis_prefix, settings.redis_timeout)
    # One memory of answers and of persisted queries for the three graphs (their keys name the graph).
    cache = (
        ResponseCache(settings.response_cache_mb * MIB, shared=redis) if settings.response_cache_mb else None
    )
    persisted = PersistedQueries(PERSISTED_QUERIES_MB * MIB, shared=redis)

    async def healthz(request: Request) -> Response:
        try:
            await database.ping()
        except Exception as exc:
            log.warning("health check: database unavailable: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    async def readyz(request: Request) -> Response:
        """Whether this node can serve: its database and blob store answer. Redis, when set, is
        reported, but its absence does not take the node out of service: it serves without it."""
        report: dict[str, str] = {}
        try:
            await database.ping()
            report["database"] = "ok"
        except Exception as exc:
            log.warning("readiness: database unavailable: %s", type(exc).__name__)
            report["database"] = "unreachable"
        try:
            await asyncio.wait_for(blobs.size(NO_BLOB), timeout=5)
            report["blobs"] = "ok"
        except Exception as exc:
            log.warning("readiness: blob store unavailable: %s", type(exc).__name__)
            report["blobs"] = "unreachable"
        if redis is not None:
            report["redis"] = "ok" if await redis.ping() else "unreachable"
        ready = report["database"] == "ok" and report["blobs"] == "ok"
        status = (
            "ready" if ready and report.get("redis", "ok") == "ok" else "degraded" if ready else "unavailable"
        )
        return JSONResponse({"status": status, **report}, status_code=200 if ready else 503)

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
            if redis is not None and shared is None:
                await redis.close()
            if db is None:
                await database.dispose()
            metrics.worker_stopped(settings.metrics_dir)

    admission = asyncio.Semaphore(GRAPHQL_CONCURRENCY)
    limits = QueryLimits(introspection=settings.graphql_introspection)
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
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
                    plans=PlanMode(settings.graphql_plans),
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
    # Outermost first: the request's id, log line and metrics, and the security headers on every answer;
    # CORS for the origins listed (preflights answered before sign-in, every answer below them readable by
    # a listed origin); a client gone mid-request ends it quietly; a database outage anywhere below is a
    # 503; a loose per-address rate before any database work; the body limit before anything reads a
    # body; who is asking; then how often that token may ask.
    cors = [Middleware(CorsMiddleware, origins=settings.cors_origins)] if settings.cors_origins else []
    # Every request is observed (its id, its log line, its metrics); /metrics is answered before sign-in.
    middleware = [
        Middleware(ObservationMiddleware, routes=routes),  # and the security headers, on every answer
        Middleware(
            MetricsEndpoint, token=settings.metrics_token, database=database, metrics_dir=settings.metrics_dir
        ),
        *cors,
        Middleware(FailuresMiddleware),
        Middleware(
            RateLimitMiddleware,
            per_minute=settings.rate_limit_per_minute * ADDRESS_FACTOR,
            by_address=True,
            shared=redis,
        ),
        Middleware(
            BodySizeLimitMiddleware,
            max_bytes=settings.max_request_bytes,
            per_path={
                ("POST", "/api/v1/images"): settings.max_image_bytes + UPLOAD_ENVELOPE_BYTES,
                ("POST", "/upload"): settings.max_image_bytes + UPLOAD_ENVELOPE_BYTES,  # the web form
            },
        ),
        Middleware(AuthenticationMiddleware, sessions=database.sessions, database=database),
        Middleware(RateLimitMiddleware, per_minute=settings.rate_limit_per_minute, shared=redis),
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
    app.state.shared_state = redis
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
    # uvicorn has configured logging in the worker already (cfl_graph.doors.web.serving.logging_config).
    application = create_app(settings)
    tune_collector()
    return application

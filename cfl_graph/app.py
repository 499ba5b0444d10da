"""The composition root: settings -> database -> schema -> routes. Nothing else builds engines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cross_web import HTTPException
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL

from cfl_graph import migrate
from cfl_graph.access.middleware import AuthenticationMiddleware, SecurityHeadersMiddleware, principal_of
from cfl_graph.blobs import BlobStore, blob_store_for
from cfl_graph.database import Database
from cfl_graph.images.library import ImageLibrary
from cfl_graph.limits import BodySizeLimitMiddleware, RateLimitMiddleware
from cfl_graph.scheduler import run_scheduled_sync
from cfl_graph.settings import Settings
from cfl_graph.unavailable import DatabaseUnavailableMiddleware
from cfl_graph.views.audit import audit_events
from cfl_graph.views.catalogue import SignedCatalogue, catalogue_routes
from cfl_graph.views.feeds import feed_routes
from cfl_graph.views.images import image_routes
from cfl_graph.views.pages import page_routes
from cfl_graph.views.reports import report_routes
from cfl_graph.views.site import site_routes
from loaders import Loaders
from schema import Graph, build_schema
from schema.context import Context
from schema.protection import QueryLimits

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
# One address may carry many clients (a supplier's office behind one NAT): its limit is looser.
ADDRESS_FACTOR = 10


class SchemaNotCurrent(RuntimeError):
    def __init__(self, pending: list[str]) -> None:
        super().__init__(
            f"the database lacks migrations {', '.join(pending)}; run `cfl-graph db upgrade` first"
        )
        self.pending = pending


# GraphQL requests answered at once by one worker; more wait their turn at the door. Answering is CPU
# work on one event loop, so more at once add no throughput: they only share the database pool, where a
# wait past its timeout would fail a request that was merely queued.
GRAPHQL_CONCURRENCY = 8


class _GraphQL(GraphQL[Context, None]):
    def __init__(
        self,
        db: Database,
        library: ImageLibrary,
        limits: QueryLimits,
        graph: Graph,
        admission: asyncio.Semaphore,
    ) -> None:
        # No GraphiQL: it loads its scripts from a CDN and runs inline script, both barred by the CSP.
        super().__init__(build_schema(limits, graph), graphql_ide=None)
        self._db = db
        self._library = library
        self._admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        async with self._admission:
            await super().__call__(scope, receive, send)

    def parse_json(self, data: str | bytes) -> Any:
        """The request body: a JSON object (or a list, which is refused as a batch), else a clear 400."""
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, nesting past the parser
            raise HTTPException(400, "the request body is not valid JSON (UTF-8)") from exc
        if not isinstance(parsed, dict | list):
            raise HTTPException(
                400, 'the request body must be a JSON object: {"query": "...", "variables": {...}}'
            )
        return parsed

    async def get_context(self, request: Any, response: Any) -> Context:
        principal = principal_of(request.scope)
        return Context(
            principal=principal,
            loaders=Loaders.for_request(self._db.sessions, principal),
            library=self._library,
            sessions=self._db.sessions,
        )


# Room for the multipart envelope and release notes around an image of the largest size.
UPLOAD_ENVELOPE_BYTES = 1024 * 1024


def create_app(
    settings: Settings, *, demo: bool = False, db: Database | None = None, store: BlobStore | None = None
) -> Starlette:
    database = db or Database.connect(settings.database_url)
    blobs = store or blob_store_for(settings)
    library = ImageLibrary(database.sessions, blobs, max_image_bytes=settings.max_image_bytes)

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
        if demo:
            from cfl_graph.demo import prepare_demo

            await migrate.upgrade(database.engine)
            await prepare_demo(settings, database, blobs)
        elif pending := await migrate.pending(database.engine):
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
            Route(
                "/graphql" if graph is Graph.COMBINED else f"/subgraphs/{graph.value}/graphql",
                _GraphQL(database, library, limits, graph, admission),
                methods=["GET", "POST"],
            )
            for graph in Graph
        ),
        Route("/api/v1/audit/events", audit_events(database.sessions), methods=["GET"]),
        *image_routes(library),
        *feed_routes(database.sessions),
        *report_routes(database.sessions),
        *catalogue_routes(SignedCatalogue(database.sessions, settings.signing_key_file)),
        *page_routes(database.sessions),
        *site_routes(database.sessions, library),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    # Outermost first: headers on every answer; a database outage anywhere below is a 503; a loose
    # per-address rate before any database work; the body limit before anything reads a body; who is
    # asking; then how often that token may ask.
    middleware = [
        Middleware(SecurityHeadersMiddleware),
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
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.library = library
    return app

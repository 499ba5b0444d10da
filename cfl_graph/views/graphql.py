"""The GraphQL door: strawberry's ASGI view, with automatic persisted queries, the response cache and
ETags on GET.

For a query whose answer can be shared (`schema.reads`), the request reads the catalogue's state once
(`cfl_graph.revisions`), pins its loaders to that snapshot, and looks for the answer under its
`AnswerKey`: a GET whose `If-None-Match` names the key's ETag is answered 304 without executing; a
kept answer is sent as it is; otherwise one request per key executes and the others wait for its
answer. Only answers without errors are kept or given an ETag. Mutations, failing requests and
anything not a plain JSON request go through strawberry as before.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, cast

from cross_web import HTTPException
from graphql import GraphQLError
from graphql import parse as parse_document
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from cfl_graph.access.middleware import principal_of
from cfl_graph.access.policy import reader_view
from cfl_graph.access.principal import Principal
from cfl_graph.database import Database
from cfl_graph.images import lifecycle
from cfl_graph.images.library import ImageLibrary
from cfl_graph.response_cache import AnswerKey, PersistedQueries, ResponseCache
from cfl_graph.revisions import Revisions, read_revisions
from loaders import UNKNOWN, Loaders, Unknown
from schema import Graph, build_schema
from schema.context import Context
from schema.protection import QueryLimits
from schema.reads import Reads, query_reads

NO_STATE = Revisions(snapshot_id=None, served=0, records=0)  # stands in where nothing is read
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
READS_MEMO_ENTRIES = 2_000  # documents whose reads are remembered, per graph
# What a shared answer tells HTTP caches between us and the client: keep it for this asker only, and
# ask us again every time (a 304 when nothing changed).
SHARED_ANSWER_HEADERS = {"Cache-Control": "private, no-cache", "Vary": "Authorization, Cookie"}


class PersistedQueryProblem(Exception):
    """An automatic-persisted-query request we cannot answer, in the shape Apollo clients expect."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def response(self) -> Response:
        body = {"errors": [{"message": str(self), "extensions": {"code": self.code}}]}
        return JSONResponse(body, status_code=self.status, headers={"Cache-Control": "private, no-cache"})


@dataclass
class _Answer:
    body: bytes
    status: int | None
    headers: list[tuple[bytes, bytes]]
    shareable: bool  # no errors, nothing set by a resolver on the response
    valid: bool  # the document parsed and validated (so its text may be persisted)


class GraphQLView(GraphQL[Context, None]):
    def __init__(
        self,
        db: Database,
        library: ImageLibrary,
        limits: QueryLimits,
        graph: Graph,
        *,
        cache: ResponseCache | None,
        persisted: PersistedQueries,
        admission: asyncio.Semaphore,
    ) -> None:
        # No GraphiQL: it loads its scripts from a CDN and runs inline script, both barred by the CSP.
        schema = build_schema(limits, graph)
        super().__init__(schema, graphql_ide=None)
        self._core_schema = schema._schema
        self._db = db
        self._library = library
        self._limits = limits
        self._cache = cache
        self._persisted = persisted
        self._admission = admission  # how many requests this worker executes at once (the rest wait)
        sdl = str(self.schema).encode()
        self._schema_tag = f"{graph.value}:{hashlib.sha256(sdl).hexdigest()[:16]}"
        self._reads_memo: OrderedDict[tuple[str, str | None], Reads | None] = OrderedDict()

    # --- strawberry's hooks --------------------------------------------------------------------------

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

    def should_render_graphql_ide(self, request: Any) -> bool:
        """Never for a GET that carries a persisted query's hash instead of its text."""
        return "extensions" not in request.query_params and bool(super().should_render_graphql_ide(request))

    async def get_context(self, request: Any, response: Any) -> Context:
        return self._context(request, UNKNOWN)

    def _context(self, request: Request | WebSocket, current_snapshot: int | Unknown | None) -> Context:
        principal = principal_of(request.scope)
        return Context(
            principal=principal,
            loaders=Loaders.for_request(self._db.sessions, principal, current_snapshot=current_snapshot),
            library=self._library,
            sessions=self._db.sessions,
        )

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        adapter = self.request_adapter_class(request) if isinstance(request, Request) else None
        if (
            adapter is None
            or not self.is_request_allowed(adapter)
            or self.should_render_graphql_ide(adapter)
            or self._get_stream_transport_from_headers(adapter.headers) is not None
        ):
            return await super().run(request, context, root_value)  # refusals and streams: strawberry's
        assert isinstance(request, Request)
        try:
            data = await self.parse_http_body(adapter)
        except ClientDisconnect:
            # The client went away before its body arrived (a load tool past its deadline): nobody is
            # left to answer, and it is no fault of ours to log.
            return Response(status_code=400)
        if isinstance(data, list):  # refused already unless batching is on; never shared
            return await super().run(request, context, root_value)
        try:
            register = self._resolve_persisted(data, principal_of(request.scope))
        except PersistedQueryProblem as problem:
            return problem.response()
        key = await self._answer_key(request, data)
        if key is None:
            answer = await self._execute(request, adapter, data, UNKNOWN)
        else:
            shared = await self._shared_answer(request, adapter, data, key)
            if isinstance(shared, Response):
                return shared
            answer = shared
        if register is not None and answer.valid:
            self._persisted.put(register, data.query or "")
        kept = key is not None and answer.shareable
        return self._response(answer, _shared_headers(request, key, "fwd=miss") if kept else {})

    # --- persisted queries ---------------------------------------------------------------------------

    def _resolve_persisted(self, data: GraphQLRequestData, principal: Principal | None) -> str | None:
        """Fill in the text of a persisted query, or check a text sent with its hash; the key to
        remember the text under once it has proved valid, if any.

        Texts are kept per party (docs/decisions.md): a hash one party registered is unknown to another,
        so no party can learn, by sending hashes of texts it guesses, what another has asked (a search
        string, a manufacturer id written into the query)."""
        extensions = data.extensions or {}
        if "persistedQuery" not in extensions:
            return None
        persisted = extensions["persistedQuery"]
        if not isinstance(persisted, dict):
            raise PersistedQueryProblem(400, "`extensions.persistedQuery` must be an object", "BAD_REQUEST")
        if persisted.get("version") != 1:
            raise PersistedQueryProblem(400, "Unsupported persisted query version", "BAD_REQUEST")
        sha256 = persisted.get("sha256Hash")
        if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
            raise PersistedQueryProblem(
                400, "`persistedQuery.sha256Hash` must be 64 lower-case hex digits", "BAD_REQUEST"
            )
        key = f"{principal.party_id if principal is not None else '-'}:{sha256}"
        if data.query is None:
            known = self._persisted.get(key)
            if known is None:
                # Apollo's code and status: the client sends the query's text with its hash again.
                raise PersistedQueryProblem(200, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
            data.query = known
            return None
        if hashlib.sha256(data.query.encode()).hexdigest() != sha256:
            raise PersistedQueryProblem(400, "provided sha does not match query", "BAD_REQUEST")
        return key

    # --- shared answers ------------------------------------------------------------------------------

    def _reads(self, query: str, operation_name: str | None) -> Reads | None:
        memo_key = (hashlib.sha256(query.encode()).hexdigest(), operation_name)
        if memo_key in self._reads_memo:
            self._reads_memo.move_to_end(memo_key)
            return self._reads_memo[memo_key]
        try:
            document = parse_document(query, max_tokens=self._limits.max_tokens)
        except (GraphQLError, RecursionError):
            reads = None  # execution reports it
        else:
            reads = query_reads(self._core_schema, document, operation_name)
        self._reads_memo[memo_key] = reads
        while len(self._reads_memo) > READS_MEMO_ENTRIES:
            self._reads_memo.popitem(last=False)
        return reads

    async def _answer_key(self, request: Request, data: GraphQLRequestData) -> AnswerKey | None:
        principal = principal_of(request.scope)
        if self._cache is None or principal is None or not isinstance(data.query, str):
            return None
        operation_name: object = data.operation_name  # from the client's JSON: anything
        if not isinstance(operation_name, str | None):
            return None
        reads = self._reads(data.query, data.operation_name)
        if reads is None:
            return None
        today = dt.datetime.now(dt.UTC).date()
        if not reads:  # `__typename`, `_service { sdl }`: the schema alone answers
            return self._key(data, reads, principal, NO_STATE, today)
        async with self._db.sessions() as session:
            now = await read_revisions(session)
        self._cache.observe(now, today)
        return self._key(data, reads, principal, now, today)

    def _key(
        self, data: GraphQLRequestData, reads: Reads, principal: Principal, now: Revisions, today: dt.date
    ) -> AnswerKey:
        """The key of the answer; only the parts of `now` that the document reads go into it."""
        library = Reads.LIBRARY in reads
        sees_drafts = lifecycle.sees_drafts(principal)
        return AnswerKey(
            schema=self._schema_tag,
            document_sha256=hashlib.sha256((data.query or "").encode()).hexdigest(),
            operation_name=data.operation_name,
            variables=json.dumps(data.variables or {}, sort_keys=True, separators=(",", ":")),
            view=reader_view(principal),
            snapshot_id=now.snapshot_id if Reads.CPL in reads else None,
            reads_cpl=Reads.CPL in reads,
            served=now.served if library and not sees_drafts else None,
            records=now.records if library and sees_drafts else None,
            day=today if library else None,
        )

    async def _shared_answer(
        self, request: Request, adapter: Any, data: GraphQLRequestData, key: AnswerKey
    ) -> _Answer | Response:
        assert self._cache is not None
        if request.method == "GET" and key.etag() in _etags(request.headers.get("if-none-match", "")):
            return Response(
                status_code=304, headers=_shared_headers(request, key, "hit; detail=not-modified")
            )
        if (body := self._cache.get(key)) is not None:
            return Response(body, media_type="application/json", headers=_shared_headers(request, key, "hit"))

        async def compute() -> _Answer:
            snapshot = key.snapshot_id if key.reads_cpl else UNKNOWN
            answer = await self._execute(request, adapter, data, snapshot)
            if answer.shareable:
                assert self._cache is not None
                self._cache.put(key, answer.body)
            return answer

        return await self._cache.once(key, compute)

    # --- execution -----------------------------------------------------------------------------------

    async def _execute(
        self, request: Request, adapter: Any, data: GraphQLRequestData, current_snapshot: int | Unknown | None
    ) -> _Answer:
        sub_response = await self.get_sub_response(request)
        async with self._admission:
            result = await self.execute_operation(
                request=request,
                request_adapter=adapter,
                request_data=data,
                context=self._context(request, current_snapshot),
                root_value=None,
                sub_response=sub_response,
            )
        if not isinstance(result, ExecutionResult):
            raise HTTPException(400, "streamed and incremental answers are not served here")
        response_data = await self.process_result(request=request, result=result)
        if result.errors:
            self._handle_errors(result.errors, response_data)
        encoded = self.encode_json(response_data)
        status = cast(int | None, sub_response.status_code)  # strawberry leaves it None unless set
        return _Answer(
            body=encoded if isinstance(encoded, bytes) else encoded.encode(),
            status=status,
            headers=list(sub_response.headers.raw),
            shareable=not result.errors and status is None and not sub_response.headers,
            valid=result.data is not None,
        )

    def _response(self, answer: _Answer, headers: dict[str, str]) -> Response:
        response = Response(
            answer.body, status_code=answer.status or 200, media_type="application/json", headers=headers
        )
        response.headers.raw.extend(answer.headers)
        return response


def _shared_headers(request: Request, key: AnswerKey | None, status: str) -> dict[str, str]:
    """Headers of an answer kept under `key`: how the cache served it, and on GET its validator."""
    assert key is not None
    headers = {"Cache-Status": f"cfl-graph; {status}"}
    if request.method == "GET":
        headers |= {**SHARED_ANSWER_HEADERS, "ETag": key.etag()}
    return headers


def _etags(header: str) -> set[str]:
    """The entity tags an If-None-Match header names (weak ones compared by their opaque part)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}

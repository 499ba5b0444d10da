"""The GraphQL door: strawberry's ASGI view, speaking GraphQL over HTTP, with automatic persisted
queries, the response cache and ETags on GET.

The request is read here, not by strawberry, so that every refusal is a GraphQL response with a code
(`GraphQLRefusal`): a method other than GET or POST (405), an Accept header that takes neither JSON
media type (406), a body that is not `application/json` (415) or not a JSON object (400: a JSON array
is a batch, which is not served), parameters of the wrong type (400), a mutation over GET (405 with
`Allow: POST`), an operation name the document does not hold (400). An answer is written in
`application/graphql-response+json` when the client asks for it: a request the document or its
variables fail before execution is then a 400 without `data`; `application/json` keeps its legacy
status, 200 (`cfl_graph.doors.web.graphql_http`).

For a query whose answer can be shared (`cfl_graph.doors.graph.reads`), the request reads the catalogue's
state once
(`cfl_graph.revisions`), pins its loaders to that snapshot, and looks for the answer under its
`AnswerKey`: a GET whose `If-None-Match` names the key's ETag is answered 304 without executing; a
kept answer is sent as it is; otherwise one request per key executes and the others wait for its
answer. Only answers without errors are kept or given an ETag. A persisted query's text sent with its
hash is registered whichever of these answers it, once the document is known to parse and validate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

import orjson
from cross_web import HTTPException
from graphql import GraphQLError, OperationType, get_operation_ast
from graphql import parse as parse_document
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.parse_content_type import parse_content_type
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from cfl_graph import metrics
from cfl_graph.access.policy import reader_view
from cfl_graph.access.principal import Principal
from cfl_graph.bounded import Bounded
from cfl_graph.database import Database
from cfl_graph.doors.graph import Graph, build_schema
from cfl_graph.doors.graph.context import Context
from cfl_graph.doors.graph.plans import PlanMode
from cfl_graph.doors.graph.protection import QueryLimits
from cfl_graph.doors.graph.reads import Reads, query_reads
from cfl_graph.doors.web.graphql_http import (
    GRAPHQL_RESPONSE,
    JSON,
    content_type,
    errors_body,
    response_media_type,
)
from cfl_graph.doors.web.middleware import header_value, principal_of
from cfl_graph.doors.web.response_cache import AnswerKey, PersistedQueries, ResponseCache
from cfl_graph.images import lifecycle
from cfl_graph.images.library import ImageLibrary
from cfl_graph.revisions import Revisions, read_revisions
from loaders import UNKNOWN, Loaders, Unknown

NO_STATE = Revisions(snapshot_id=None, served=0, records=0)  # stands in where nothing is read
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
FACTS_MEMO_ENTRIES = 2_000  # documents whose facts are remembered, per graph
# What a shared answer tells HTTP caches between us and the client: keep it for this asker only, and
# ask us again every time (a 304 when nothing changed).
SHARED_ANSWER_HEADERS = {"Cache-Control": "private, no-cache", "Vary": "Accept, Authorization, Cookie"}
PARAMETERS = {"query": str, "variables": dict, "operationName": str, "extensions": dict}
# The Content-Types clients send, as the general parser reads them, read once (it builds an email message).
_KNOWN_CONTENT_TYPES: dict[str, tuple[str, Mapping[str, str]]] = {
    sent: (media, MappingProxyType(parameters))
    for sent in ("application/json", "application/json; charset=utf-8", "application/json;charset=utf-8")
    for media, parameters in [parse_content_type(sent)]
}
# The status of an answer that failed before execution, in application/graphql-response+json.
REQUEST_ERROR_STATUS = {"INTERNAL_ERROR": 500, "SERVICE_UNAVAILABLE": 503}


class GraphQLRefusal(Exception):
    """A request refused before it executes, answered as a GraphQL response: its message, its code."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}

    def response(self, media_type: str) -> Response:
        return Response(
            errors_body(str(self), self.code),
            status_code=self.status,
            headers={**self.headers, "Content-Type": content_type(media_type)},
        )


class PersistedQueryProblem(GraphQLRefusal):
    """An automatic-persisted-query request we cannot answer, in the shape Apollo clients expect."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(status, message, code, {"Cache-Control": "private, no-cache"})


def _bad_request(message: str) -> GraphQLRefusal:
    return GraphQLRefusal(400, message, "BAD_REQUEST")


@dataclass(frozen=True)
class _Facts:
    """What the view needs to know of a document that parses, before it executes."""

    operation: OperationType | None  # of the operation the request runs; None if it names none there
    reads: Reads | None  # what its answer reads, or None if it cannot be shared


@dataclass
class _Answer:
    response: GraphQLHTTPResponse  # as strawberry processed the result
    body: bytes  # that, as JSON
    status: int | None
    headers: list[tuple[bytes, bytes]]
    shareable: bool  # no errors, nothing set by a resolver on the response
    # Refused before execution (the document does not parse or validate, a variable does not fit its
    # type), with the status that says so; there is no data. Otherwise (None) the text is a valid
    # document, and may be persisted.
    request_error: int | None


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
        plans: PlanMode = PlanMode.ON,
    ) -> None:
        # No GraphiQL: it loads its scripts from a CDN and runs inline script, both barred by the CSP.
        schema = build_schema(limits, graph, plans)
        super().__init__(schema, graphql_ide=None)
        self._core_schema = schema._schema
        self._db = db
        self._library = library
        self._limits = limits
        self._cache = cache
        self._persisted = persisted
        self._admission = admission  # how many requests this worker executes at once (the rest wait)
        self._graph = graph
        sdl = str(self.schema).encode()
        self._schema_tag = f"{graph.value}:{hashlib.sha256(sdl).hexdigest()[:16]}"
        # Each document's facts (None: it does not parse) by its digest and operation name.
        self._facts_memo = Bounded[tuple[str, str | None], tuple[_Facts | None]](FACTS_MEMO_ENTRIES)

    # --- strawberry's hooks --------------------------------------------------------------------------

    async def get_context(self, request: Any, response: Any) -> Context:
        return self._context(request, UNKNOWN)

    def _context(self, request: Request | WebSocket, current_snapshot: int | Unknown | None) -> Context:
        principal = principal_of(request.scope)
        return Context(
            principal=principal,
            loaders=Loaders.for_request(self._db.reads, principal, current_snapshot=current_snapshot),
            library=self._library,
            sessions=self._db.sessions,
            reads=self._db.reads,
        )

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if not isinstance(request, Request):  # no WebSocket route leads here; strawberry's, if one did
            return await super().run(request, context, root_value)
        media_type = response_media_type(header_value(request.scope, b"accept"))
        try:
            if media_type is None:
                raise GraphQLRefusal(
                    406, f"this endpoint answers in {JSON} or {GRAPHQL_RESPONSE}: accept one", "BAD_REQUEST"
                )
            return await self._answer(request, media_type)
        except GraphQLRefusal as refused:
            operation = (request.scope.get("state") or {}).get("graphql_operation")
            self._count(operation if isinstance(operation, str) else None, "refused")
            return refused.response(media_type or JSON)
        except HTTPException as exc:  # strawberry's refusals from within execution
            return GraphQLRefusal(exc.status_code, exc.reason, "BAD_REQUEST").response(media_type or JSON)
        except ClientDisconnect:
            # The client went away before its body arrived (a load tool past its deadline): nobody is
            # left to answer, and it is no fault of ours to log.
            return Response(status_code=400)

    async def _answer(self, request: Request, media_type: str) -> Response:
        if request.method not in ("GET", "POST"):
            raise GraphQLRefusal(405, "ask with GET (queries) or POST", "BAD_REQUEST", {"Allow": "GET, POST"})
        data = await self._request_data(request)
        request.scope.setdefault("state", {})["graphql_operation"] = data.operation_name
        register = await self._resolve_persisted(data, principal_of(request.scope))
        if data.query is None:
            raise _bad_request("the request holds no `query`: send the GraphQL document as `query`")
        # The document's digest, once: it names the document's facts and its kept answers.
        digest = hashlib.sha256(data.query.encode()).hexdigest()
        facts = self._facts(data.query, data.operation_name, digest)
        self._check_operation(request, data, facts)
        key = await self._answer_key(request, data, facts, digest)
        if key is None:
            answer = await self._execute(request, data, UNKNOWN)
        else:
            shared = await self._shared_answer(request, data, key, media_type)
            if isinstance(shared, Response):  # a kept answer, or its 304: the document proved valid
                await self._register(register, data)
                self._count(data.operation_name, "cached")
                return shared
            answer = shared
        if answer.request_error is None:
            await self._register(register, data)
        self._count(data.operation_name, "errors" if answer.response.get("errors") else "ok")
        kept = key is not None and answer.shareable
        return self._response(
            answer, media_type, _shared_headers(request, key, media_type, "fwd=miss") if kept else {}
        )

    # --- the request -----------------------------------------------------------------------------------

    async def _request_data(self, request: Request) -> GraphQLRequestData:
        """The request's parameters, from the query string of a GET or the JSON body of a POST, each of
        the type GraphQL over HTTP gives it."""
        raw: dict[str, object]
        if request.method == "GET":
            raw = {name: request.query_params[name] for name in PARAMETERS if name in request.query_params}
            for name in ("variables", "extensions"):
                value = raw.get(name)
                if isinstance(value, str):
                    raw[name] = (
                        _json(value, f"`{name}` is not JSON: send it URL-encoded JSON") if value else None
                    )
        else:
            sent_type = header_value(request.scope, b"content-type") or ""
            media, parameters = _KNOWN_CONTENT_TYPES.get(sent_type) or parse_content_type(sent_type)
            charset = parameters.get("charset", "utf-8").lower()
            if media != JSON or charset not in ("utf-8", "utf8"):
                sent = sent_type[:100] or "a body of no type"
                raise GraphQLRefusal(415, f"send the request as {JSON} (UTF-8), not {sent}", "BAD_REQUEST")
            body = await _body(request)
            if not body.strip():
                raise _bad_request('the request body is empty: send {"query": "...", "variables": {...}}')
            parsed = _json(body, "the request body is not valid JSON (UTF-8)")
            if isinstance(parsed, list):
                raise _bad_request(
                    "batched requests (a JSON array) are not accepted: send one operation each"
                )
            if not isinstance(parsed, dict):
                raise _bad_request(
                    'the request body must be a JSON object: {"query": "...", "variables": {...}}'
                )
            raw = parsed
        for name, kind in PARAMETERS.items():
            if raw.get(name) is not None and not isinstance(raw[name], kind):
                expected = "a string" if kind is str else "an object"
                raise _bad_request(f"`{name}` must be {expected} (or null), not {_json_kind(raw[name])}")
        return GraphQLRequestData(
            query=cast(str | None, raw.get("query")),
            variables=cast(dict[str, Any] | None, raw.get("variables")),
            operation_name=cast(str | None, raw.get("operationName")),
            extensions=cast(dict[str, Any] | None, raw.get("extensions")),
            protocol="http",
        )

    def _check_operation(self, request: Request, data: GraphQLRequestData, facts: _Facts | None) -> None:
        """A named operation must be in the document, and a mutation comes by POST (405 otherwise, as
        GraphQL over HTTP says: a GET must be safe to repeat and to prefetch)."""
        if facts is None:
            return  # the document does not parse: execution says why
        if data.operation_name is not None and facts.operation is None:
            raise GraphQLRefusal(
                400,
                f"the document holds no operation named {data.operation_name[:100]!r}",
                "OPERATION_RESOLUTION_FAILURE",
            )
        if request.method == "GET" and facts.operation is OperationType.MUTATION:
            raise GraphQLRefusal(
                405, "a mutation is sent with POST, never GET", "BAD_REQUEST", {"Allow": "POST"}
            )

    async def _register(self, key: str | None, data: GraphQLRequestData) -> None:
        if key is not None:
            await self._persisted.keep(key, data.query or "")

    def _count(self, operation_name: str | None, outcome: str) -> None:
        # The operation's label is bounded (`operation_label`), and so are the series.
        metrics.count(
            metrics.GRAPHQL_OPERATIONS, self._graph.value, metrics.operation_label(operation_name), outcome
        )

    # --- persisted queries ---------------------------------------------------------------------------

    async def _resolve_persisted(self, data: GraphQLRequestData, principal: Principal | None) -> str | None:
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
            known = await self._persisted.lookup(key)
            if known is None:
                # Apollo's code and status: the client sends the query's text with its hash again.
                raise PersistedQueryProblem(200, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
            data.query = known
            return None
        if hashlib.sha256(data.query.encode()).hexdigest() != sha256:
            raise PersistedQueryProblem(400, "provided sha does not match query", "BAD_REQUEST")
        return key

    # --- shared answers ------------------------------------------------------------------------------

    def _facts(self, query: str, operation_name: str | None, digest: str) -> _Facts | None:
        """The document's operation and what its answer reads, or None if it does not parse (execution
        says why); remembered per document and operation name."""
        memo_key = (digest, operation_name)
        if (known := self._facts_memo.get(memo_key)) is not None:
            return known[0]
        try:
            document = parse_document(query, max_tokens=self._limits.max_tokens)
        except (GraphQLError, RecursionError):
            facts = None
        else:
            operation = get_operation_ast(document, operation_name)
            facts = _Facts(
                operation=operation.operation if operation is not None else None,
                reads=query_reads(self._core_schema, document, operation_name),
            )
        self._facts_memo.put(memo_key, (facts,))
        return facts

    async def _answer_key(
        self, request: Request, data: GraphQLRequestData, facts: _Facts | None, digest: str
    ) -> AnswerKey | None:
        principal = principal_of(request.scope)
        if self._cache is None or principal is None or data.query is None:
            return None
        reads = facts.reads if facts is not None else None
        if reads is None:
            return None
        today = dt.datetime.now(dt.UTC).date()
        if not reads:  # `__typename`, `_service { sdl }`: the schema alone answers
            return self._key(data, digest, reads, principal, NO_STATE, today)
        async with self._db.reads() as session:  # one statement
            now = await read_revisions(session)
        self._cache.observe(now, today)
        return self._key(data, digest, reads, principal, now, today)

    def _key(
        self,
        data: GraphQLRequestData,
        digest: str,
        reads: Reads,
        principal: Principal,
        now: Revisions,
        today: dt.date,
    ) -> AnswerKey:
        """The key of the answer; only the parts of `now` that the document reads go into it."""
        library = Reads.LIBRARY in reads
        view, sees_drafts = _reader(principal)
        return AnswerKey(
            schema=self._schema_tag,
            document_sha256=digest,
            operation_name=data.operation_name,
            variables=json.dumps(data.variables, sort_keys=True, separators=(",", ":"))
            if data.variables
            else "{}",
            view=view,
            snapshot_id=now.snapshot_id if Reads.CPL in reads else None,
            reads_cpl=Reads.CPL in reads,
            served=now.served if library and not sees_drafts else None,
            records=now.records if library and sees_drafts else None,
            day=today if library else None,
        )

    async def _shared_answer(
        self, request: Request, data: GraphQLRequestData, key: AnswerKey, media_type: str
    ) -> _Answer | Response:
        assert self._cache is not None
        if request.method == "GET" and _etag(key, media_type) in _etags(
            request.headers.get("if-none-match", "")
        ):
            return Response(
                status_code=304, headers=_shared_headers(request, key, media_type, "hit; detail=not-modified")
            )
        if (body := await self._cache.lookup(key)) is not None:
            headers = _shared_headers(request, key, media_type, "hit")
            return Response(body, headers={**headers, "Content-Type": content_type(media_type)})

        async def compute() -> _Answer:
            snapshot = key.snapshot_id if key.reads_cpl else UNKNOWN
            answer = await self._execute(request, data, snapshot)
            if answer.shareable:
                assert self._cache is not None
                await self._cache.keep(key, answer.body)
            return answer

        return await self._cache.once(key, compute)

    # --- execution -----------------------------------------------------------------------------------

    async def _execute(
        self, request: Request, data: GraphQLRequestData, current_snapshot: int | Unknown | None
    ) -> _Answer:
        sub_response = await self.get_sub_response(request)
        context = self._context(request, current_snapshot)
        async with self._admission:
            result = await self.execute_operation(
                request=request,
                request_adapter=self.request_adapter_class(request),
                request_data=data,
                context=context,
                root_value=None,
                sub_response=sub_response,
            )
        context.release()
        if not isinstance(result, ExecutionResult):
            raise HTTPException(400, "streamed and incremental answers are not served here")
        response_data = await self.process_result(request=request, result=result)
        if result.errors:
            self._handle_errors(result.errors, response_data)
        status = cast(int | None, sub_response.status_code)  # strawberry leaves it None unless set
        return _Answer(
            response=response_data,
            body=self._encoded(response_data),
            status=status,
            headers=list(sub_response.headers.raw),
            shareable=not result.errors and status is None and not sub_response.headers,
            request_error=_request_error_status(result),
        )

    def encode_json(self, data: object) -> bytes:
        """An answer as UTF-8 JSON, written by orjson: the JSON the standard library writes, in a tenth
        of its time for a page of a few hundred kilobytes (compact; non-ASCII text as UTF-8, unescaped)."""
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)

    def _encoded(self, response_data: GraphQLHTTPResponse) -> bytes:
        return self.encode_json(response_data)

    def _response(self, answer: _Answer, media_type: str, headers: dict[str, str]) -> Response:
        """The answer in the media type asked for. In application/graphql-response+json a request that
        failed before execution has no `data` and a 4xx (5xx if the failure was ours); application/json
        keeps strawberry's legacy answer, 200 with `"data": null`."""
        body, status = answer.body, answer.status or 200
        if answer.request_error is not None and media_type == GRAPHQL_RESPONSE:
            without_data = {name: value for name, value in answer.response.items() if name != "data"}
            body = self._encoded(cast(GraphQLHTTPResponse, without_data))
            status = answer.status or answer.request_error
        response = Response(
            body, status_code=status, headers={**headers, "Content-Type": content_type(media_type)}
        )
        response.headers.raw.extend(answer.headers)
        return response


@functools.lru_cache(maxsize=1024)
def _reader(principal: Principal) -> tuple[tuple[str, ...], bool]:
    """What the principal's answers depend on (`reader_view`), and whether it sees drafts: the same for
    a principal each time, and asked by every request that may be answered from the cache."""
    return reader_view(principal), lifecycle.sees_drafts(principal)


def _request_error_status(result: ExecutionResult) -> int | None:
    """The status of a result that failed before execution (no data, no error at a field's path): 400,
    or the 5xx of a failure of ours; None for an executed result."""
    if result.data is not None or not result.errors or any(e.path is not None for e in result.errors):
        return None
    codes = [str((error.extensions or {}).get("code")) for error in result.errors]
    return max(REQUEST_ERROR_STATUS.get(code, 400) for code in codes)


async def _body(request: Request) -> bytes:
    """The request's body, read as Starlette's `Request.body` reads it (a client gone first raises
    `ClientDisconnect`), without its stream's async generator, which cost more than the read: a GraphQL
    request's body is one message."""
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _json(text: str | bytes, problem: str) -> object:
    """JSON from a request, UTF-8 only; `problem` is the refusal when it is not."""
    try:
        return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, nesting past the parser
        raise _bad_request(problem) from None


def _json_kind(value: object) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return next((name for kind, name in kinds.items() if isinstance(value, kind)), "an object")


def _etag(key: AnswerKey, media_type: str) -> str:
    """The key's validator, told apart per media type: the two representations differ in their type."""
    tag = key.etag()
    return tag if media_type == JSON else f'{tag[:-1]}-gr"'


def _shared_headers(request: Request, key: AnswerKey | None, media_type: str, status: str) -> dict[str, str]:
    """Headers of an answer kept under `key`: how the cache served it, and on GET its validator."""
    assert key is not None
    headers = {"Cache-Status": f"cfl-graph; {status}"}
    if request.method == "GET":
        headers |= {**SHARED_ANSWER_HEADERS, "ETag": _etag(key, media_type)}
    return headers


def _etags(header: str) -> set[str]:
    """The entity tags an If-None-Match header names (weak ones compared by their opaque part)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}

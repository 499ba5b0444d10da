"""GraphQL over HTTP at the doors (https://graphql.github.io/graphql-over-http/draft/): which paths
speak GraphQL, which media type an answer is written in, and a refusal as a GraphQL response.

Every refusal on a GraphQL path, whoever makes it (sign-in, CSRF, body size, rate, database outage, the
GraphQL view itself), is `{"errors": [{"message": ..., "extensions": {"code": ...}}]}` in the media type
the client asked for, so a GraphQL client reads every answer the same way; other paths keep the
service's JSON shape (`{"error": ...}`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import Scope

CLIENT_PATH = "/graphql"
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
SUBGRAPH_PATH = "/subgraphs/{name}/graphql"
_GRAPHQL_PATH = re.compile(r"/graphql|/subgraphs/[a-z]+/graphql")


def subgraph_path(name: str) -> str:
    return SUBGRAPH_PATH.format(name=name)


def is_graphql_path(path: str) -> bool:
    """`/graphql` and every subgraph's endpoint: a federation router is a GraphQL client too."""
    return _GRAPHQL_PATH.fullmatch(path) is not None


def _ranges(accept: str) -> list[tuple[str, float]]:
    """The media ranges of an Accept header with their weights; a range with a weight that is not a
    number in 0-1 counts as not given (RFC 9110 12.4.2)."""
    ranges = []
    for part in accept.split(","):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        if not media:
            continue
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = -1.0
        if 0.0 <= weight <= 1.0:
            ranges.append((media.lower(), weight))
    return ranges


def _weight(ranges: list[tuple[str, float]], media_type: str) -> tuple[float, int]:
    """How much the client wants `media_type`, by the most specific range that names it, and how
    specific that range is (2 the type itself, 1 `application/*`, 0 `*/*`, -1 none)."""
    found = (0.0, -1)
    for media, weight in ranges:
        specificity = {media_type: 2, "application/*": 1, "*/*": 0}.get(media, -1)
        if specificity > found[1]:
            found = (weight, specificity)
    return found


# Clients send a few Accept headers again and again; each is read once (its parse was 4 % of a cached
# answer's CPU). The memo is bounded: a client sending a new header each time only misses.
@functools.lru_cache(maxsize=256)
def response_media_type(accept: str | None) -> str | None:
    """The media type to answer in, or None when the client accepts neither (406).

    No Accept header, or one that names neither type by itself (`*/*`, `application/*`), is answered
    with `application/json`, as the specification says until its watershed; otherwise the type with the
    greater weight, `application/graphql-response+json` when both are named with the same weight."""
    if accept is None or not accept.strip():
        return JSON
    ranges = _ranges(accept)
    chosen = max(
        (
            (*_weight(ranges, media_type), media_type == GRAPHQL_RESPONSE, media_type)
            for media_type in (JSON, GRAPHQL_RESPONSE)
        ),
        key=lambda found: (found[0], found[1], found[2] if found[1] == 2 else not found[2]),
    )
    weight, specificity, _, media_type = chosen
    return media_type if weight > 0 and specificity >= 0 else None


def content_type(media_type: str) -> str:
    """The Content-Type of a GraphQL answer: always UTF-8, and said so."""
    return f"{media_type}; charset=utf-8"


def errors_body(message: str, code: str, **extensions: object) -> bytes:
    """A GraphQL response that holds only a refusal: what was refused, and its code."""
    error = {"message": message, "extensions": {"code": code, **extensions}}
    return json.dumps({"errors": [error]}, ensure_ascii=False, separators=(",", ":")).encode()


def refusal(
    scope: Scope, message: str, code: str, service_body: Mapping[str, object], **extensions: object
) -> tuple[bytes, str]:
    """The body and Content-Type of a refusal at an HTTP door: a GraphQL response on a GraphQL path
    (in the media type the request accepts, `application/json` if it accepts neither), else
    `service_body`, the JSON shape the service's other doors answer with."""
    if not is_graphql_path(scope["path"]):
        return json.dumps(dict(service_body)).encode(), JSON
    media_type = response_media_type(Headers(scope=scope).get("accept")) or JSON
    return errors_body(message, code, **extensions), content_type(media_type)

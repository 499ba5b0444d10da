"""What GraphQL clients see of a failure: our deliberate refusals as they are, anything else masked.

An unexpected exception reaches the client only as "Internal server error (reference …)"; the log
gets the same reference with the whole exception, so support can find it without leaking SQL, paths
or stack traces to the caller.
"""

from __future__ import annotations

import logging
import uuid

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from cfl_graph.access.policy import AccessDenied

log = logging.getLogger("schema.errors")


def _should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    # No original error: a syntax or validation error about the query itself, safe and useful to show.
    return original is not None and not isinstance(original, AccessDenied)


class MaskUnexpectedErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(should_mask_error=_should_mask)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        reference = uuid.uuid4().hex
        log.error(
            "GraphQL request failed at %s (reference %s)",
            error.path,
            reference,
            exc_info=error.original_error,
        )
        return GraphQLError(
            message=f"Internal server error (reference {reference})",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_ERROR", "reference": reference},
        )

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = super()._process_errors(errors)
        return [_with_code(error) for error in processed]


def _with_code(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, AccessDenied) and not (error.extensions or {}).get("code"):
        error.extensions = {**(error.extensions or {}), "code": original.code}
    return error

"""Global ids and the `Node` interface every entity implements, so `node(id:)` can fetch any of them."""

from __future__ import annotations

import base64
import binascii

import strawberry

from cfl_graph.images.errors import InvalidInput

# Which subgraph owns a field (see schema/__init__.py): the CPL's facts, the library's, entity keys and
# ids in both, or only the single-node combined graph.
CPL = {"subgraph": "cpl"}
CFL = {"subgraph": "cfl"}
BOTH = {"subgraph": "both"}
COMBINED = {"subgraph": "combined"}
# A CPL field whose answer also depends on the library (`deviceModels(filter: {hasCoverageGap})`): what
# the response cache keys it on (schema/reads.py).
CPL_FILTERED_BY_LIBRARY = {"subgraph": "cpl", "reads": ("cpl", "cfl")}
# A CPL field that reads what neither the snapshot nor the library's counters name (sync runs): never
# kept by the response cache.
CPL_UNCACHED = {"subgraph": "cpl", "cacheable": False}


def global_id(kind: str, *parts: object) -> strawberry.ID:
    return strawberry.ID(base64.urlsafe_b64encode(":".join([kind, *map(str, parts)]).encode()).decode())


def parse_global_id(raw: str) -> tuple[str, list[str]]:
    try:
        kind, *parts = base64.urlsafe_b64decode(raw.encode()).decode().split(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(f"{raw[:60]!r} is not an id this graph issued") from None
    return kind, parts


@strawberry.interface(description="Anything with a global id that `node(id:)` can fetch again.")
class Node:
    # Not @shareable here: federation allows it on object types' fields only (each entity's `id` has it).
    @strawberry.field(metadata=BOTH, description="Global, opaque, stable id.")
    def id(self) -> strawberry.ID:
        raise NotImplementedError

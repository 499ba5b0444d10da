"""Global ids and the `Node` interface every entity implements, so `node(id:)` can fetch any of them."""

from __future__ import annotations

import base64
import binascii
import re

import strawberry

from cfl_graph.errors import InvalidInput
from cfl_graph.identifiers import InvalidValue
from cfl_graph.row_ids import is_ascii_number, row_id

# Which subgraph owns a field (see cfl_graph/doors/graph/__init__.py): the CPL's facts, the library's, entity
# keys and
# ids in both, or only the single-node combined graph.
CPL = {"subgraph": "cpl"}
CFL = {"subgraph": "cfl"}
BOTH = {"subgraph": "both"}
COMBINED = {"subgraph": "combined"}
# A CPL field whose answer also depends on the library (`deviceModels(filter: {hasCoverageGap})`): what
# the response cache keys it on (cfl_graph/doors/graph/reads.py).
CPL_FILTERED_BY_LIBRARY = {"subgraph": "cpl", "reads": ("cpl", "cfl")}
# A CPL field that reads what neither the snapshot nor the library's counters name (sync runs): never
# kept by the response cache.
CPL_UNCACHED = {"subgraph": "cpl", "cacheable": False}


def global_id(kind: str, *parts: object) -> strawberry.ID:
    return strawberry.ID(base64.urlsafe_b64encode(":".join([kind, *map(str, parts)]).encode()).decode())


# Kinds keyed by a row's number, and what the number is called: it must be one the id columns hold.
NUMBERED_KINDS = {"LibraryImage": "image id", "CplSnapshot": "snapshot id"}
# Far longer than any id this graph issues (a certified version's is 52 characters).
MAX_GLOBAL_ID_LENGTH = 256
_ID_TEXT = re.compile(r"[A-Za-z0-9_=-]+")


def id_problem(value: object) -> str | None:
    """Why a value given for an `ID` argument can name nothing this graph issued, or None: checked at
    the door (`cfl_graph.doors.graph.protection.ArgumentChecks`), so no resolver reads '٣' or '²' as a number
    or sends
    a number past the id columns to the database. This graph's ids are a row's number in the digits 0-9,
    or URL-safe base64."""
    if not isinstance(value, str):
        return None  # an Int literal for an ID: graphql-core reads it as the same digits
    expected = "ids are whole numbers in the digits 0-9 or global ids this graph issued"
    if len(value) > MAX_GLOBAL_ID_LENGTH:
        return f"{expected}, at most {MAX_GLOBAL_ID_LENGTH} characters; this one has {len(value):,}"
    if not _ID_TEXT.fullmatch(value):
        return f"{expected} (letters, digits, -, _ and =); {value[:40]!r} is neither"
    if is_ascii_number(value):
        try:
            row_id(value)
        except InvalidValue as exc:
            return exc.reason
    return None


def parse_global_id(raw: str) -> tuple[str, list[str]]:
    """An id's kind and key parts; `InvalidInput` unless it is one this graph could have issued (a
    numbered kind's number is checked here, so no door reads '²' or an overflowing number as one)."""
    refusal = f"{raw[:60]!r} is not an id this graph issued"
    if len(raw) > MAX_GLOBAL_ID_LENGTH or not raw.isascii():
        raise InvalidInput(refusal)
    try:
        kind, *parts = base64.urlsafe_b64decode(raw.encode()).decode().split(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(refusal) from None
    if kind in NUMBERED_KINDS and len(parts) == 1:
        try:
            row_id(parts[0], NUMBERED_KINDS[kind])
        except InvalidValue as exc:
            raise InvalidInput(f"{refusal}: {exc.reason}") from None
    return kind, parts


@strawberry.interface(description="Anything with a global id that `node(id:)` can fetch again.")
class Node:
    # Not @shareable here: federation allows it on object types' fields only (each entity's `id` has it).
    @strawberry.field(metadata=BOTH, description="Global, opaque, stable id.")
    def id(self) -> strawberry.ID:
        raise NotImplementedError

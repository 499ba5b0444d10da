"""Page cursors: opaque to clients (base64 of a JSON list: the list's kind, then the sort key of the last
row seen), checked whole when they come back.

A cursor comes back from a client, so it may be anything: not base64, not UTF-8, not JSON, another
list's cursor, the right list with values of the wrong type (a number where a manufacturer id belongs,
which PostgreSQL refuses in the middle of the query), or megabytes long. Each is refused with
`InvalidInput` saying what a cursor is, never with the decoder's own words.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cfl_graph.errors import InvalidInput, Problem
from cfl_graph.identifiers import iso_day
from cfl_graph.images.errors import LibraryProblem

# Far longer than any cursor we issue (a coverage gap's is about 90 characters).
MAX_CURSOR_LENGTH = 512
_URLSAFE_BASE64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_HEX4 = re.compile(r"[0-9A-F]{4}")
_HEX8 = re.compile(r"[0-9A-F]{8}")


def _hex4(value: object) -> bool:
    return isinstance(value, str) and _HEX4.fullmatch(value) is not None


def _hex8(value: object) -> bool:
    return isinstance(value, str) and _HEX8.fullmatch(value) is not None


def _rank(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000


def _finding_kind(value: object) -> bool:
    return isinstance(value, str) and value in _FINDING_KINDS


# The consistency report's kinds (`catalogue.reports.FindingKind`), named here so that the core's lowest
# layer does not import the reports.
_FINDING_KINDS = frozenset(
    {"MISSING_IMAGE", "HASH_MISMATCH", "DELISTED_FROM_CPL", "NOT_ON_CPL", "LATE_PUBLICATION"}
)


def _iso_date(value: object) -> bool:
    return iso_day(value) is not None


# What each list's sort key holds, value by value, exactly as the list writes it into its cursors.
SORT_KEYS: Mapping[str, Sequence[Callable[[object], bool]]] = {
    "DeviceModel": (_hex4, _hex4, _hex4),  # manufacturer id, model id, hardware version
    "Gap": (_iso_date, _hex4, _hex4, _hex4, _hex8),  # listed on, the model's key, firmware version
    "Finding": (_hex4, _hex4, _hex8, _finding_kind),  # model id, hardware and firmware version, kind
    "RankedModel": (_rank, _hex4, _hex4, _hex4),  # a search's rank, then the device model's key
}


def encode_cursor(kind: str, values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([kind, *values]).encode()).decode()


def cursor_problem(cursor: object, kind: str | None = None, width: int | None = None) -> str | None:
    """Why `cursor` is not a cursor (of the list `kind`, whose key has `width` values), or None.

    Without `kind`, any list's cursor will do: what a door that does not know the list can check."""
    if not isinstance(cursor, str):
        return "a cursor is text"
    if len(cursor) > MAX_CURSOR_LENGTH:
        return f"a cursor is at most {MAX_CURSOR_LENGTH} characters; this one has {len(cursor):,}"
    if not _URLSAFE_BASE64.fullmatch(cursor):
        return "a cursor is URL-safe base64 (A-Z, a-z, 0-9, - and _); this one holds other characters"
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8"))
    except (ValueError, binascii.Error, RecursionError):
        return "this text is not one this graph wrote as a cursor"
    if not (isinstance(decoded, list) and decoded and isinstance(decoded[0], str)):
        return "this text is not one this graph wrote as a cursor"
    found, values = decoded[0], decoded[1:]
    if kind is not None and found != kind:
        return "this cursor belongs to another list"
    checks = SORT_KEYS.get(found)
    if checks is None:
        return "this text is not one this graph wrote as a cursor"
    if (width is not None and len(values) != width) or len(values) != len(checks):
        return "this cursor does not hold a position in this list"
    if not all(check(value) for check, value in zip(checks, values, strict=True)):
        return "this cursor does not hold a position in this list"
    return None


def after_problem(value: object) -> str | None:
    """`cursor_problem` for an `after` argument of any list, worded as the lists word their refusal."""
    problem = cursor_problem(value)
    if problem is None:
        return None
    return f"not a cursor of this list ({problem}); pass an `endCursor` or `cursor` it returned"


def decode_cursor(kind: str, cursor: str, width: int) -> list[Any]:
    """The sort key a cursor of the list `kind` holds, each value as the list wrote it; a drop-in for
    `cfl_graph.catalogue.decode_cursor` that refuses every malformed cursor with `InvalidInput`."""
    problem = cursor_problem(cursor, kind, width)
    if problem is not None:
        raise InvalidInput(
            "`after` is not a cursor of this list; pass an `endCursor` or `cursor` it returned",
            [Problem(LibraryProblem.BAD_FIELD, f"after: {problem}")],
        )
    values: list[Any] = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))[1:]
    return values

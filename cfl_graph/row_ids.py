"""Numbers that name a row (an image, a CPL snapshot, an audit event) as they arrive at a door: a URL
path, a query string, a GraphQL argument, a global id, a command-line option.

One reading everywhere: ASCII digits only, and no larger than the id columns hold. `str.isdigit` and
`int()` are not that reading: `isdigit` accepts superscripts ('²') that `int()` then refuses, and
`int()` accepts the digits of other scripts ('٣' is 3) and any length, which PostgreSQL's INTEGER
columns then refuse in the middle of a query.
"""

from __future__ import annotations

from cfl_graph.identifiers import InvalidValue

# The id columns are INTEGER: 32 bits signed on PostgreSQL (SQLite's would hold 64).
MAX_ROW_ID = 2**31 - 1
_ASCII_DIGITS = frozenset("0123456789")


def is_ascii_number(text: str) -> bool:
    """Only the digits 0-9, at least one of them: what a number in a URL or an argument may be."""
    return bool(text) and _ASCII_DIGITS.issuperset(text)


def row_id(raw: object, what: str = "id", *, minimum: int = 1, maximum: int = MAX_ROW_ID) -> int:
    """`raw` as a row id in `minimum`..`maximum`, or `InvalidValue` saying what was expected.

    `what` names the value for the reason ("image id", "`to`"); the reason never repeats more than 40
    characters of the input."""
    expected = f"{what} must be a whole number from {minimum:,} to {maximum:,} in the digits 0-9"
    if isinstance(raw, int) and not isinstance(raw, bool):
        if minimum <= raw <= maximum:
            return raw
        raise InvalidValue(f"{expected}; it is out of range")
    shown = repr(str(raw)[:40])
    if not isinstance(raw, str) or not is_ascii_number(raw):
        raise InvalidValue(f"{expected}, not {shown}")
    # Leading zeros are harmless; more significant digits than the bound has are over it, and are
    # never handed to int() (which refuses past 4,300 digits).
    if len(raw.lstrip("0")) > len(str(maximum)) or not minimum <= int(raw) <= maximum:
        raise InvalidValue(f"{expected}; {shown} is out of range")
    return int(raw)

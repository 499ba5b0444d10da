"""Rows as the read path sees them: the columns of a table, read, never written.

The catalogue's loaders read the current CPL and the library with plain column reads (SQLAlchemy Core,
each row then made a named tuple by `plain_rows`) rather than ORM instances, which cost several times
more to build and are of no use to a request that only reads (no identity map, no change tracking, no
session to expire them in). An ORM instance of the same table has the same attributes, so the code that
reads rows (the graph's types, the pages, the upgrade planner) takes either: these protocols name what
both have. `tests/test_rows.py` holds each protocol to its table's columns.
"""

from __future__ import annotations

import datetime as dt
from collections import namedtuple
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from sqlalchemy import CursorResult, Result, Select
from sqlalchemy.engine.cursor import _DEFAULT_FETCH

from cfl_graph.keys import HasModelKey, HasVersionKey
from cfl_graph.tables.images import ImageState


class ModelRow(HasModelKey, Protocol):
    """A row of `cpl_device_models`."""

    @property
    def snapshot_id(self) -> int: ...
    @property
    def manufacturer_name(self) -> str: ...
    @property
    def model_name(self) -> str: ...
    @property
    def device_type(self) -> str: ...
    @property
    def smets_version(self) -> str: ...
    @property
    def smets_versions(self) -> str: ...
    @property
    def firmware_count(self) -> int: ...


class CertifiedRow(HasVersionKey, Protocol):
    """A row of `cpl_certified_firmware`."""

    @property
    def snapshot_id(self) -> int: ...
    @property
    def image_hash(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def smets_version(self) -> str: ...
    @property
    def technical_specification(self) -> str: ...
    @property
    def specification_version(self) -> str | None: ...
    @property
    def gbcs_version(self) -> str | None: ...
    @property
    def cpa_reference(self) -> str | None: ...
    @property
    def cpa_expiry(self) -> dt.date | None: ...
    @property
    def date_added(self) -> dt.date: ...
    @property
    def sheet_row(self) -> int: ...


class ImageRow(HasVersionKey, Protocol):
    """A row of `library_images`."""

    @property
    def id(self) -> int: ...
    @property
    def state(self) -> ImageState: ...
    @property
    def size(self) -> int: ...
    @property
    def file_sha256(self) -> str: ...
    @property
    def manufacturer_image_sha256(self) -> str: ...
    @property
    def signed_sha256(self) -> str: ...
    @property
    def signature(self) -> str: ...
    @property
    def manufacturer_image_offset(self) -> int: ...
    @property
    def manufacturer_image_length(self) -> int: ...
    @property
    def image_type(self) -> int: ...
    @property
    def dcc_file_name(self) -> str: ...
    @property
    def header(self) -> dict[str, Any]: ...
    @property
    def problems(self) -> list[dict[str, str]]: ...
    @property
    def checked_at(self) -> dt.datetime: ...
    @property
    def checked_snapshot_id(self) -> int | None: ...
    @property
    def signature_key_id(self) -> str | None: ...
    @property
    def release_notes_markdown(self) -> str | None: ...
    @property
    def release_notes_html(self) -> str | None: ...
    @property
    def release_notes_text(self) -> str | None: ...
    @property
    def uploaded_at(self) -> dt.datetime: ...
    @property
    def uploaded_by_party_id(self) -> int: ...
    @property
    def uploaded_by_token(self) -> str | None: ...
    @property
    def approved_at(self) -> dt.datetime | None: ...
    @property
    def approved_by_token(self) -> str | None: ...
    @property
    def approved_notes_sha256(self) -> str | None: ...
    @property
    def published_at(self) -> dt.datetime | None: ...
    @property
    def published_by(self) -> str | None: ...
    @property
    def withdrawn_at(self) -> dt.datetime | None: ...
    @property
    def withdrawn_by(self) -> str | None: ...
    @property
    def withdrawal_reason(self) -> str | None: ...
    @property
    def hold_problem(self) -> str | None: ...
    @property
    def hold_detail(self) -> str | None: ...
    @property
    def held_at(self) -> dt.datetime | None: ...
    @property
    def held_snapshot_id(self) -> int | None: ...
    @property
    def released_at(self) -> dt.datetime | None: ...
    @property
    def state_changed_at(self) -> dt.datetime: ...


class DeclarationRow(HasVersionKey, Protocol):
    """A row of `commercial_declarations`."""

    @property
    def reason(self) -> str: ...
    @property
    def declared_at(self) -> dt.datetime: ...
    @property
    def declared_by(self) -> str: ...
    @property
    def declared_by_party_id(self) -> int: ...


# A named tuple type per list of column names read (a fixed set: the statements are the code's own).
_ROW_TYPES: dict[tuple[str, ...], Any] = {}


def row_type(names: tuple[str, ...]) -> Any:
    made = _ROW_TYPES.get(names)
    if made is None:
        made = _ROW_TYPES[names] = namedtuple("PlainRow", names)
    return made


def plain_rows(result: Result[Any]) -> list[Any]:
    """A Core result's rows as named tuples of its columns, with the same values, attributes and order.
    A named tuple's attribute is read in about 30 ns, SQLAlchemy's `Row`'s in about 600 (a failed
    attribute lookup, then its key map); a page of the catalogue reads some ten thousand such facts. The
    rows are fetched at once (iterating fetches them one by one, three calls a row) and each is made a
    named tuple by `tuple.__new__` (`_make` is a Python function that checks a length the result's own
    keys already fix). The reference for `read_rows`."""
    return list(map(partial(tuple.__new__, row_type(tuple(result.keys()))), result.fetchall()))


def read_rows(result: CursorResult[Any], statement: Select[Any]) -> list[Any]:
    """`plain_rows` of the result of executing `statement`, made from the driver's own rows: the values
    SQLAlchemy's `Row`s would hold, each column's result processor applied as SQLAlchemy applies it (on
    asyncpg only an image's state has one among a page's columns), without building a `Row` per row and
    a tuple from it (about half of a page's reading, after the driver's decoding). Where SQLAlchemy has
    read ahead of the driver's cursor (a buffered or streamed fetch), the rows are `plain_rows`' own.

    It reads the cursor SQLAlchemy's result holds (`CursorResult.cursor`, public) and the processors
    SQLAlchemy computes for each column (`TypeEngine._cached_result_processor`, given the column's type
    code from the cursor's description, as `CursorResultMetaData` calls it): `tests/test_rows.py` holds
    both ways to the same rows on both databases, so a SQLAlchemy that changes either fails there."""
    if result.cursor_strategy is not _DEFAULT_FETCH or result.cursor is None:
        return plain_rows(result)
    cursor = result.cursor
    dialect = result.context.dialect
    columns = statement.selected_columns
    description = cursor.description
    if len(columns) != len(description):
        raise ValueError(f"{len(description)} columns read for a statement of {len(columns)}")
    processors = [
        (index, processor)
        for index, (column, entry) in enumerate(zip(columns, description, strict=True))
        if (processor := column.type._cached_result_processor(dialect, entry[1])) is not None
    ]
    records = cursor.fetchall()
    result.fetchall()  # nothing is left: SQLAlchemy closes its cursor as after its own last row
    return list(map(row_maker(tuple(result.keys()), processors), records))


def row_maker(
    names: tuple[str, ...], processors: Sequence[tuple[int, Callable[[Any], Any]]]
) -> Callable[[Sequence[Any]], Any]:
    """What makes a driver's record the named tuple of `names`, each (index, result processor) applied."""
    make = partial(tuple.__new__, row_type(names))
    if not processors:
        return make

    def processed(record: Sequence[Any]) -> Any:
        values = list(record)
        for index, processor in processors:
            values[index] = processor(values[index])
        return make(values)

    return processed

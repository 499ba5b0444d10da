"""Searching the catalogue: device models of the current CPL snapshot, filtered and paged.

Pages are keyset pages: the cursor is opaque (base64 of the sort key) and stable while rows are added.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from cfl_graph import identifiers as ids
from cfl_graph.catalogue.coverage import version_is_gap
from cfl_graph.cursors import decode_cursor, encode_cursor
from cfl_graph.errors import InvalidInput, Problem
from cfl_graph.images.errors import LibraryProblem
from cfl_graph.keys import ModelKey
from cfl_graph.tables import CplCertifiedFirmware, CplDeviceModel
from cfl_graph.tables.rows import ModelRow, read_rows

T = TypeVar("T")
MAX_PAGE = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its rows in the list's order, and each row's cursor worked out when asked
    (`cursor_of`): a page of 100 device models spent 0.2 ms writing the cursors of edges whose cursor
    nobody asked for."""

    rows: list[T]
    cursor_of: Callable[[T], str]  # the cursor that asks for the rows after this one
    total: int
    has_next: bool
    has_previous: bool

    @property
    def end_cursor(self) -> str | None:
        return self.cursor_of(self.rows[-1]) if self.rows else None


def check_first(first: int) -> int:
    if not 0 <= first <= MAX_PAGE:
        raise InvalidInput(f"`first` must be between 0 and {MAX_PAGE}, not {first}")
    return first


@dataclass(frozen=True)
class DeviceModelFilter:
    manufacturer_id: str | None = None
    device_type: str | None = None
    smets_version: str | None = None
    has_coverage_gap: bool | None = None
    search: str | None = None

    def normalised(self) -> DeviceModelFilter:
        try:
            return DeviceModelFilter(
                manufacturer_id=None
                if self.manufacturer_id is None
                else ids.manufacturer_id(self.manufacturer_id),
                device_type=None if self.device_type is None else ids.device_type(self.device_type).value,
                smets_version=None
                if self.smets_version is None
                else ids.smets_version(self.smets_version).value,
                has_coverage_gap=self.has_coverage_gap,
                search=None if self.search is None else _search_text(self.search),
            )
        except ids.InvalidValue as exc:
            raise InvalidInput(f"filter: {exc}", [Problem(LibraryProblem.BAD_FIELD, str(exc))]) from None

    def conditions(self, versions: type[CplCertifiedFirmware] | None = None) -> list[ColumnElement[bool]]:
        """The filter over device models, or, given the certified-firmware table, over its versions."""
        found: list[ColumnElement[bool]] = []
        if self.manufacturer_id is not None:
            found.append(CplDeviceModel.manufacturer_id == self.manufacturer_id)
        if self.device_type is not None:
            found.append(CplDeviceModel.device_type == self.device_type)
        if self.smets_version is not None:
            # A model matches when any of its versions was certified against that generation; a list of
            # versions (the gaps) narrows to the versions themselves.
            if versions is None:
                found.append(CplDeviceModel.smets_versions.contains(self.smets_version))
            else:
                found.append(versions.smets_version == self.smets_version)
        if self.search:
            # Every word must be found, in the manufacturer's name, the model's name or as an id, so
            # that words spanning both names ("Lindum LM-E926", "Lindum Twin") find the models they name.
            found.extend(or_(*_word_matches(word)) for word in search_words(self.search))
        if self.has_coverage_gap is not None:
            # The model's own versions, under an alias: a list of versions (the gaps) already reads the
            # certified-firmware table, and the subquery must not be correlated to that row.
            own = aliased(CplCertifiedFirmware)
            gap = (
                select(own.firmware_version)
                .where(
                    own.snapshot_id == CplDeviceModel.snapshot_id,
                    own.manufacturer_id == CplDeviceModel.manufacturer_id,
                    own.model_id == CplDeviceModel.model_id,
                    own.hardware_version == CplDeviceModel.hardware_version,
                    version_is_gap(own),
                )
                .correlate(CplDeviceModel)
                .exists()
            )
            found.append(gap if self.has_coverage_gap else ~gap)
        return found


def _search_text(text: str) -> str:
    clean = " ".join(text.split())
    if len(clean) > 100:
        raise ids.InvalidValue("search text is at most 100 characters")
    # A NUL would reach PostgreSQL, which cannot hold one in text; no name holds any control character.
    if found := ids.control_character(clean):
        raise ids.InvalidValue(f"search text contains the control character {found}")
    return clean


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


MAX_SEARCH_WORDS = 8


def search_words(text: str) -> list[str]:
    """The words of a search, lower-case, each once (the text is already `_search_text`'s)."""
    words = list(dict.fromkeys(text.lower().split()))
    if len(words) > MAX_SEARCH_WORDS:
        raise InvalidInput(
            f"search takes at most {MAX_SEARCH_WORDS} words, not {len(words)}",
            [Problem(LibraryProblem.BAD_FIELD, f"search: {len(words)} words")],
        )
    return words


def _word_matches(word: str) -> list[ColumnElement[bool]]:
    anywhere = f"%{_escape_like(word)}%"
    return [
        func.lower(CplDeviceModel.model_name).like(anywhere, escape="\\"),
        func.lower(CplDeviceModel.manufacturer_name).like(anywhere, escape="\\"),
        CplDeviceModel.model_id == word.upper(),
        CplDeviceModel.manufacturer_id == word.upper(),
    ]


def search_rank(text: str) -> ColumnElement[int]:
    """How well a device model answers a search, higher first, the same on SQLite and PostgreSQL: per
    word, an id it equals (4), the start of a word of the model's name (3) or the manufacturer's (2), or
    anywhere in either name (1); and the whole text in the model's name (5)."""
    name, maker = func.lower(CplDeviceModel.model_name), func.lower(CplDeviceModel.manufacturer_name)
    score: ColumnElement[int] = literal(0)
    for word in search_words(text):
        start, inner = f"{_escape_like(word)}%", f"% {_escape_like(word)}%"
        anywhere = f"%{_escape_like(word)}%"
        score = score + case(
            (or_(CplDeviceModel.model_id == word.upper(), CplDeviceModel.manufacturer_id == word.upper()), 4),
            (or_(name.like(start, escape="\\"), name.like(inner, escape="\\")), 3),
            (or_(maker.like(start, escape="\\"), maker.like(inner, escape="\\")), 2),
            (or_(name.like(anywhere, escape="\\"), maker.like(anywhere, escape="\\")), 1),
            else_=0,
        )
    phrase = f"%{_escape_like(text.lower())}%"
    return score + case((name.like(phrase, escape="\\"), 5), else_=0)


async def device_models(
    session: AsyncSession,
    snapshot_id: int,
    where: DeviceModelFilter,
    first: int,
    after: str | None,
    *,
    count: bool = True,
) -> Page[ModelRow]:
    """A page of the current snapshot's device models, with the filter's total (-1 when `count` is
    false: not counted): in key order, or, for a search, best answer first (`search_rank`), then in key
    order."""
    check_first(first)
    where = where.normalised()
    conditions = [CplDeviceModel.snapshot_id == snapshot_id, *where.conditions()]
    key = tuple_(CplDeviceModel.manufacturer_id, CplDeviceModel.model_id, CplDeviceModel.hardware_version)
    total = -1
    if count:
        total = int(
            await session.scalar(select(func.count()).select_from(CplDeviceModel).where(*conditions)) or 0
        )
    order = (CplDeviceModel.manufacturer_id, CplDeviceModel.model_id, CplDeviceModel.hardware_version)
    # Plain rows (cfl_graph/tables/rows.py), read on the session's connection: a page only reads.
    connection = await session.connection()
    columns = CplDeviceModel.__table__.columns
    if where.search:
        rank = search_rank(where.search).label("search_rank")
        query = select(*columns, rank).where(*conditions)
        if after is not None:
            score, *position = decode_cursor("RankedModel", after, 4)
            query = query.where(or_(rank < score, and_(rank == score, key > tuple_(*position))))
        query = query.order_by(rank.desc(), *order).limit(first + 1)
        rows = read_rows(await connection.execute(query), query)
        return Page(
            rows[:first], _ranked_cursor, total, has_next=len(rows) > first, has_previous=after is not None
        )
    plain = select(*columns).where(*conditions)
    if after is not None:
        plain = plain.where(key > tuple_(*decode_cursor("DeviceModel", after, 3)))
    plain = plain.order_by(*order).limit(first + 1)
    models: list[ModelRow] = read_rows(await connection.execute(plain), plain)
    return Page(
        models[:first], _model_cursor, total, has_next=len(models) > first, has_previous=after is not None
    )


def _model_cursor(row: ModelRow) -> str:
    return encode_cursor("DeviceModel", [row.manufacturer_id, row.model_id, row.hardware_version])


def _ranked_cursor(row: Any) -> str:
    """A search's row: its rank (`search_rank`, read beside the model's columns), then its key."""
    return encode_cursor(
        "RankedModel", [int(row.search_rank), row.manufacturer_id, row.model_id, row.hardware_version]
    )


async def model_names(
    session: AsyncSession, snapshot_id: int | None, keys: Iterable[ModelKey]
) -> dict[ModelKey, CplDeviceModel]:
    """The snapshot's device models for `keys` (one statement), so pages show names beside hex ids; a
    key the snapshot does not list is absent."""
    wanted = list(dict.fromkeys(keys))
    if snapshot_id is None:
        return {}
    # Asked even for no keys, so that a page costs the same statements whatever it shows.
    rows = (
        await session.execute(
            select(CplDeviceModel).where(
                CplDeviceModel.snapshot_id == snapshot_id,
                tuple_(
                    CplDeviceModel.manufacturer_id, CplDeviceModel.model_id, CplDeviceModel.hardware_version
                ).in_(wanted),
            )
        )
    ).scalars()
    return {ModelKey.of(row): row for row in rows}

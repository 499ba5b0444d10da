"""Batched reads for the catalogue graph: device models, certified firmware, images and declarations.

Every loader answers for the current CPL snapshot (read once per request) and costs one statement per
request however many objects ask: a page of 100 device models with their certified versions, images
and declarations is six statements, as is a page of 10. They read plain rows (`cfl_graph/tables/rows.py`),
not ORM instances: a request only reads.
"""

from __future__ import annotations

import functools
from collections import defaultdict, namedtuple
from collections.abc import Awaitable, Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ARRAY,
    BindParameter,
    ColumnElement,
    FromClause,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    func,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.dataloader import DataLoader

from cfl_graph.access.principal import Principal
from cfl_graph.images import lifecycle
from cfl_graph.keys import ModelKey, VersionKey
from cfl_graph.tables import (
    CommercialDeclaration,
    CplCertifiedFirmware,
    CplDeviceModel,
    LibraryImage,
    UpgradePathway,
)
from cfl_graph.tables.base import Base
from cfl_graph.tables.rows import CertifiedRow, DeclarationRow, ImageRow, ModelRow, read_rows
from loaders.weak import weak_loader

T = TypeVar("T")
R = TypeVar("R")


# A certified version with what the library holds for it: its image the caller may see, its declaration.
VersionFacts = tuple[CertifiedRow, ImageRow | None, DeclarationRow | None]


def _columns(table: type[Base]) -> Select[Any]:
    """A Core read of every column of the table: rows with the ORM instance's attributes, built for a
    fraction of an instance's cost (cfl_graph/tables/rows.py)."""
    return select(*table.__table__.columns)


# The device models a read is of, bound at execution: on PostgreSQL three arrays of their key's parts,
# elsewhere the keys as rows.
_MODEL_KEY_PARTS = ("manufacturer_id", "model_id", "hardware_version")
_MODEL_KEY_ARRAYS = tuple(bindparam(f"model_{part}s", type_=ARRAY(String)) for part in _MODEL_KEY_PARTS)
_MODEL_KEYS = "model_keys"
_SNAPSHOT: BindParameter[int] = bindparam("snapshot_id", type_=Integer)


def _of_models(
    statement: Select[Any],
    table: type[CplCertifiedFirmware | LibraryImage | CommercialDeclaration | CplDeviceModel],
    dialect: str,
) -> Select[Any]:
    """The statement's rows of the device models `_model_keys` binds. On PostgreSQL the keys are joined
    as three arrays: one statement text and three parameters however many keys (an `IN` of row values is a
    text of its own per number of keys, expanded and bound value by value); elsewhere an `IN` of row
    values."""
    columns = tuple(getattr(table, part) for part in _MODEL_KEY_PARTS)
    if dialect != "postgresql":
        return statement.where(tuple_(*columns).in_(bindparam(_MODEL_KEYS, expanding=True)))
    wanted = (
        func.unnest(*_MODEL_KEY_ARRAYS).table_valued(*_MODEL_KEY_PARTS).render_derived(name="wanted_models")
    )
    return statement.join(wanted, and_(*(column == wanted.c[column.key] for column in columns)))


def _model_keys(keys: Sequence[ModelKey], dialect: str) -> dict[str, Any]:
    """The parameters of `_of_models` for these models."""
    if dialect != "postgresql":
        return {_MODEL_KEYS: [tuple(key) for key in keys]}
    return {array.key: [key[part] for key in keys] for part, array in enumerate(_MODEL_KEY_ARRAYS)}


async def _read(session: AsyncSession, statement: Select[Any], parameters: dict[str, Any]) -> Iterable[Any]:
    """A Core read on the session's connection: no ORM execution around it (the rows are plain)."""
    connection = await session.connection()
    return read_rows(await connection.execute(statement, parameters), statement)


def _dialect(session: AsyncSession) -> str:
    assert session.bind is not None
    return session.bind.dialect.name


def _same_version(table: FromClause) -> ColumnElement[bool]:
    certified = CplCertifiedFirmware.__table__
    return and_(
        *(
            table.c[name] == certified.c[name]
            for name in ("manufacturer_id", "model_id", "hardware_version", "firmware_version")
        )
    )


_DECLARATIONS = CommercialDeclaration.__table__
# What names a certified version, and so is always read with it.
VERSION_KEY_COLUMNS = ("manufacturer_id", "model_id", "hardware_version", "firmware_version")


# A declaration's columns as a plain row with its table's names (cfl_graph/tables/rows.py).
_DeclarationColumns: Any = namedtuple("_DeclarationColumns", _DECLARATIONS.columns.keys())  # type: ignore[misc]
_declaration_of = cast(Callable[[tuple[Any, ...]], DeclarationRow], _DeclarationColumns._make)

# A row's device model as a plain tuple: equal to, and hashed as, its `ModelKey`, at a fraction of the cost.
_model_of = attrgetter("manufacturer_id", "model_id", "hardware_version")


def _grouped(rows: Iterable[T]) -> defaultdict[tuple[str, str, str], list[T]]:
    grouped: defaultdict[tuple[str, str, str], list[T]] = defaultdict(list)
    for row in rows:
        grouped[_model_of(row)].append(row)
    return grouped


class _Reads:
    """The loaders' statements for one dialect, built once (composing them cost about as much CPU as
    running them), their snapshot and models bound at execution."""

    def __init__(self, dialect: str) -> None:
        self.models = _of_models(
            _columns(CplDeviceModel).where(CplDeviceModel.snapshot_id == _SNAPSHOT), CplDeviceModel, dialect
        )
        self.certified = _of_models(
            _columns(CplCertifiedFirmware).where(CplCertifiedFirmware.snapshot_id == _SNAPSHOT),
            CplCertifiedFirmware,
            dialect,
        ).order_by(CplCertifiedFirmware.firmware_version)
        # Which images the caller may see is added per request (`lifecycle.visible_to`).
        self.images = _of_models(_columns(LibraryImage), LibraryImage, dialect).order_by(
            LibraryImage.firmware_version
        )
        self.declarations = _of_models(_columns(CommercialDeclaration), CommercialDeclaration, dialect)


@functools.cache
def _reads(dialect: str) -> _Reads:
    return _Reads(dialect)


@functools.lru_cache(maxsize=64)
def _versions_reading(dialect: str, columns: frozenset[str] | None) -> tuple[Select[Any], int]:
    """The statement of `_version_facts`, built once per set of columns (a few sets, as many as the kinds
    of pages clients ask for), and where its declarations' columns begin. Certified versions, each with its
    key and `columns` (all its columns with None) in the table's order, then its declaration (under a
    prefix, null where there is none). Not its image: an image's many columns, null for most versions,
    cost more to read beside every version than a statement of their own costs."""
    chosen = [
        column
        for column in CplCertifiedFirmware.__table__.columns
        if columns is None or column.key in VERSION_KEY_COLUMNS or column.key in columns
    ]
    statement = select(
        *chosen, *(column.label(f"declaration_{column.key}") for column in _DECLARATIONS.columns)
    ).select_from(CplCertifiedFirmware.__table__.outerjoin(_DECLARATIONS, _same_version(_DECLARATIONS)))
    versions = _of_models(
        statement.where(CplCertifiedFirmware.snapshot_id == _SNAPSHOT), CplCertifiedFirmware, dialect
    ).order_by(CplCertifiedFirmware.firmware_version)
    return versions, len(chosen)


@functools.lru_cache(maxsize=1024)
def _images_in_sight(dialect: str, sight: tuple[str, ...] | None) -> Select[Any]:
    """The images' statement for readers of one `lifecycle.sight`, built once: composing it for every
    request, and SQLAlchemy's cache key of it (which it keeps on a statement it has seen), cost 1.6 % of
    the instructions of a page of 100 models."""
    return _reads(dialect).images.where(lifecycle.visible_in(sight))


class CatalogueLoaders:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        principal: Principal | None,
        snapshot_id: Callable[[], Awaitable[int | None]],
    ) -> None:
        self._sessions = sessions
        self._principal = principal
        # The request's current snapshot id, read once and shared with the CPL loaders.
        self.snapshot_id = snapshot_id
        # The models' certified versions and images, as far as a page read them with their facts.
        self._read_versions: dict[tuple[str, str, str], list[VersionFacts]] = {}
        self._read_certified: dict[tuple[str, str, str], list[CertifiedRow]] = {}
        self._read_images: dict[tuple[str, str, str], list[ImageRow]] = {}
        # Device models read by pages (`prime_models`), and by their keys once `device_model` is asked.
        self._primed_models: list[Sequence[ModelRow]] = []
        self._known_models: dict[tuple[str, str, str], ModelRow] = {}

    # Each loader is made when first asked for: a request asks for few of them, and every GraphQL
    # request makes a request's loaders twice (`Context.release`), which cost 15 µs with all seven.

    @functools.cached_property
    def device_model(self) -> DataLoader[ModelKey, ModelRow | None]:
        return weak_loader(self._load_models)

    @functools.cached_property
    def certified_by_model(self) -> DataLoader[ModelKey, list[CertifiedRow]]:
        return weak_loader(self._load_certified)

    @functools.cached_property
    def certified(self) -> DataLoader[VersionKey, CertifiedRow | None]:
        return weak_loader(self._load_certified_versions)

    @functools.cached_property
    def images_by_model(self) -> DataLoader[ModelKey, list[ImageRow]]:
        return weak_loader(self._load_images)

    @functools.cached_property
    def declarations_by_model(self) -> DataLoader[ModelKey, list[DeclarationRow]]:
        return weak_loader(self._load_declarations)

    @functools.cached_property
    def versions_by_model(self) -> DataLoader[ModelKey, list[VersionFacts]]:
        return weak_loader(self._load_versions)

    @functools.cached_property
    def pathways_by_model(self) -> DataLoader[ModelKey, list[UpgradePathway]]:
        return weak_loader(self._load_pathways)

    def afresh(self, snapshot_id: Callable[[], Awaitable[int | None]]) -> CatalogueLoaders:
        """The same caller's loaders, having read nothing."""
        return CatalogueLoaders(self._sessions, self._principal, snapshot_id)

    def prime_models(self, rows: Sequence[ModelRow]) -> None:
        """Models a page has read: `device_model` answers for them without reading them again. Kept as
        the page's rows and looked through only if the loader is asked (a page's models seldom ask it
        for themselves: priming each cost a future per model)."""
        self._primed_models.append(rows)

    async def _load_models(self, keys: Sequence[ModelKey]) -> list[ModelRow | None]:
        known = self._known_models
        for page in self._primed_models:
            known.update((_model_of(row), row) for row in page)
        self._primed_models.clear()
        missing = [key for key in keys if key not in known]
        snapshot = await self.snapshot_id() if missing else None
        if snapshot is not None:
            async with self._sessions() as session:
                dialect = _dialect(session)
                rows: Iterable[ModelRow] = await _read(
                    session,
                    _reads(dialect).models,
                    {_SNAPSHOT.key: snapshot, **_model_keys(missing, dialect)},
                )
                known.update((_model_of(row), row) for row in rows)
        return [known.get(key) for key in keys]

    async def _certified_rows(
        self, session: AsyncSession, keys: Sequence[ModelKey]
    ) -> defaultdict[tuple[str, str, str], list[CertifiedRow]]:
        """The models' certified versions on the current snapshot, oldest first."""
        snapshot = await self.snapshot_id()
        if snapshot is None:
            return defaultdict(list)
        dialect = _dialect(session)
        rows: Iterable[CertifiedRow] = await _read(
            session, _reads(dialect).certified, {_SNAPSHOT.key: snapshot, **_model_keys(keys, dialect)}
        )
        return _grouped(rows)

    async def _version_facts(
        self,
        session: AsyncSession,
        keys: Sequence[ModelKey],
        images: dict[tuple[str, str, str], list[ImageRow]],
        columns: frozenset[str] | None = None,
    ) -> defaultdict[tuple[str, str, str], list[VersionFacts]]:
        """The models' certified versions on the current snapshot, oldest first, each with its image
        among `images` and its declaration: one statement, the versions' facts made as they are read.
        Each version's row holds its key and `columns` (every column with None)."""
        snapshot = await self.snapshot_id()
        if snapshot is None:
            return defaultdict(list)
        dialect = _dialect(session)
        statement, declaration_at = _versions_reading(dialect, columns)
        rows = await _read(session, statement, {_SNAPSHOT.key: snapshot, **_model_keys(keys, dialect)})
        # A model's versions are matched to its images by their firmware version alone (the rest is the
        # model's); most models of the CPL have no image.
        image_of = {
            model: {image.firmware_version: image for image in model_images}
            for model, model_images in images.items()
        }
        grouped: defaultdict[tuple[str, str, str], list[VersionFacts]] = defaultdict(list)
        for row in rows:
            # The row is the version's (its first columns, by their own names); the declaration's follow.
            declared = None if row.declaration_reason is None else _declaration_of(row[declaration_at:])
            model = _model_of(row)
            model_images = image_of.get(model)
            image = None if model_images is None else model_images.get(row.firmware_version)
            grouped[model].append((row, image, declared))
        return grouped

    async def _image_rows(
        self, session: AsyncSession, keys: Sequence[ModelKey]
    ) -> defaultdict[tuple[str, str, str], list[ImageRow]]:
        """The models' images the caller may see (`lifecycle.visible_to`: drafts only of its own
        manufacturer ids)."""
        dialect = _dialect(session)
        statement = _images_in_sight(dialect, lifecycle.sight(self._principal))
        rows: Iterable[ImageRow] = await _read(session, statement, _model_keys(keys, dialect))
        return _grouped(rows)

    async def _declaration_rows(
        self, session: AsyncSession, keys: Sequence[ModelKey]
    ) -> defaultdict[tuple[str, str, str], list[DeclarationRow]]:
        dialect = _dialect(session)
        rows: Iterable[DeclarationRow] = await _read(
            session, _reads(dialect).declarations, _model_keys(keys, dialect)
        )
        return _grouped(rows)

    async def _batch(
        self,
        keys: Sequence[ModelKey],
        known: dict[tuple[str, str, str], list[R]],
        read: Callable[
            [AsyncSession, Sequence[ModelKey]], Awaitable[defaultdict[tuple[str, str, str], list[R]]]
        ],
    ) -> list[list[R]]:
        """One kind's rows for these models: those a page's read left in `known`, the rest read now."""
        missing = [key for key in keys if key not in known]
        if missing:
            async with self._sessions() as session:
                found = await read(session, missing)
            for key in missing:
                known[key] = found.get(key, [])
        return [known[key] for key in keys]

    async def _load_certified(self, keys: Sequence[ModelKey]) -> list[list[CertifiedRow]]:
        # Not primed into `certified`: a single version asked for later is found through this loader's
        # cache (`_load_certified_versions`), without a future made for every row of every page.
        for key in keys:  # a page's versions, read with their facts
            if key not in self._read_certified and (facts := self._read_versions.get(key)) is not None:
                self._read_certified[key] = [row for row, _, _ in facts]
        return await self._batch(keys, self._read_certified, self._certified_rows)

    async def _load_certified_versions(self, keys: Sequence[VersionKey]) -> list[CertifiedRow | None]:
        # Asked for single versions (entity references): load their models' lists, one statement.
        models = await self.certified_by_model.load_many(list(dict.fromkeys(k.model for k in keys)))
        found = {VersionKey.of(row): row for rows in models for row in rows}
        return [found.get(key) for key in keys]

    async def _load_images(self, keys: Sequence[ModelKey]) -> list[list[ImageRow]]:
        return await self._batch(keys, self._read_images, self._image_rows)

    async def _load_declarations(self, keys: Sequence[ModelKey]) -> list[list[DeclarationRow]]:
        async with self._sessions() as session:
            grouped = await self._declaration_rows(session, keys)
        return [grouped.get(key, []) for key in keys]

    async def _versions_and_images(
        self, keys: Sequence[ModelKey], columns: frozenset[str] | None
    ) -> defaultdict[tuple[str, str, str], list[VersionFacts]]:
        """The models' certified versions, each with its image and declaration, each version's row holding
        its key and `columns` (all with None): two statements for the whole page, one after the other on
        one connection. The images read are kept for `images_by_model`."""
        async with self._sessions() as session:
            images = await self._image_rows(session, keys)
            versions = await self._version_facts(session, keys, images, columns)
        for key in keys:
            self._read_images[key] = images.get(key, [])
        return versions

    async def _load_versions(self, keys: Sequence[ModelKey]) -> list[list[VersionFacts]]:
        """`_versions_and_images` of whole rows, the versions kept for `certified_by_model` too, so another
        field of the same models reads them no more."""
        versions = await self._versions_and_images(keys, None)
        for key in keys:
            self._read_versions[key] = versions.get(key, [])
        return [self._read_versions[key] for key in keys]

    async def page_versions(
        self, keys: Sequence[ModelKey], columns: frozenset[str]
    ) -> list[list[VersionFacts]]:
        """As `versions_by_model` answers, each version's row holding only its key and `columns`: for a
        page whose fields read no others (a version's row is two dozen columns, and decoding them was a
        sixth of a page). The versions are not kept for any loader, which answer with whole rows."""
        versions = await self._versions_and_images(keys, columns)
        return [versions.get(key, []) for key in keys]

    async def _load_pathways(self, keys: Sequence[ModelKey]) -> list[list[UpgradePathway]]:
        grouped: dict[ModelKey, list[UpgradePathway]] = defaultdict(list)
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(UpgradePathway)
                    .where(
                        tuple_(
                            UpgradePathway.manufacturer_id,
                            UpgradePathway.model_id,
                            UpgradePathway.hardware_version,
                        ).in_(list(keys))
                    )
                    .order_by(UpgradePathway.from_version, UpgradePathway.to_version)
                )
            ).scalars()
            for row in rows:
                grouped[ModelKey.of(row)].append(row)
        return [grouped.get(key, []) for key in keys]

    async def image_for(self, key: VersionKey) -> ImageRow | None:
        """The version's image the caller may see (published or withdrawn; a draft only to its owner)."""
        for image in await self.images_by_model.load(key.model):
            if VersionKey.of(image) == key:
                return image
        return None

    async def declaration_for(self, key: VersionKey) -> DeclarationRow | None:
        for declaration in await self.declarations_by_model.load(key.model):
            if VersionKey.of(declaration) == key:
                return declaration
        return None

"""The read path's rows (cfl_graph/tables/rows.py): plain rows from the loaders carry exactly what an ORM
instance of the same table carries, on both databases."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Select, func, null, select

from cfl_graph.database import Database
from cfl_graph.images import lifecycle
from cfl_graph.keys import ModelKey, VersionKey
from cfl_graph.tables import CommercialDeclaration, CplCertifiedFirmware, CplDeviceModel, LibraryImage
from cfl_graph.tables.images import ImageState
from cfl_graph.tables.rows import CertifiedRow, DeclarationRow, ImageRow, ModelRow, plain_rows, read_rows
from loaders import Loaders
from loaders import catalogue as catalogue_loaders
from tests.fixtures.library import OWN_A1, OWN_A2, World, make_world
from tests.fixtures.sql import counting

pytestmark = pytest.mark.postgres

PROTOCOLS: list[tuple[type[Any], type[Any]]] = [
    (ModelRow, CplDeviceModel),
    (CertifiedRow, CplCertifiedFirmware),
    (ImageRow, LibraryImage),
    (DeclarationRow, CommercialDeclaration),
]


def _members(protocol: type[Any]) -> set[str]:
    """The protocol's properties, its bases' (the key's columns) included."""
    return {
        name for kind in protocol.__mro__ for name, value in vars(kind).items() if isinstance(value, property)
    }


@pytest.mark.parametrize(("protocol", "table"), PROTOCOLS, ids=lambda p: p.__name__)
def test_each_row_protocol_names_exactly_its_tables_columns(protocol: type[Any], table: type[Any]) -> None:
    """A column added to a table is added to its protocol (the loaders read every column), and a protocol
    names nothing a Core row of the table would lack."""
    assert _members(protocol) == set(table.__table__.columns.keys())


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


def _values(row: Any, protocol: type[Any]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in sorted(_members(protocol))}


async def test_the_loaders_plain_rows_equal_the_orm_instances_of_the_same_rows(world: World) -> None:
    image = await world.upload(world.image(OWN_A1))
    await world.publish(image.id)
    manufacturer = await world.principal(world.tokens.manufacturer)
    key = VersionKey(
        OWN_A2.manufacturer_id, OWN_A2.model_id, OWN_A2.hardware_version, OWN_A2.firmware_version
    )
    await world.library.declare_commercial(manufacturer, key, "built for one supplier under contract")
    model = ModelKey(OWN_A1.manufacturer_id, OWN_A1.model_id, OWN_A1.hardware_version)

    loaders = Loaders.for_request(world.db.sessions, manufacturer).catalogue
    (versions,) = await loaders.versions_by_model.load_many([model])
    plain_model = await loaders.device_model.load(model)
    assert plain_model is not None
    snapshot = plain_model.snapshot_id
    async with world.db.sessions() as session:
        orm_model = await session.get(CplDeviceModel, (snapshot, *model))
        orm_versions = (
            await session.scalars(
                select(CplCertifiedFirmware)
                .where(
                    CplCertifiedFirmware.snapshot_id == snapshot,
                    CplCertifiedFirmware.manufacturer_id == model.manufacturer_id,
                    CplCertifiedFirmware.model_id == model.model_id,
                    CplCertifiedFirmware.hardware_version == model.hardware_version,
                )
                .order_by(CplCertifiedFirmware.firmware_version)
            )
        ).all()
        orm_image = await session.get(LibraryImage, image.id)
        orm_declaration = await session.get(CommercialDeclaration, tuple(key))

    assert orm_model is not None
    assert _values(plain_model, ModelRow) == _values(orm_model, ModelRow)
    assert [_values(row, CertifiedRow) for row, _, _ in versions] == [
        _values(row, CertifiedRow) for row in orm_versions
    ]
    with_image = [image for _, image, _ in versions if image is not None]
    with_declaration = [declaration for _, _, declaration in versions if declaration is not None]
    assert orm_image is not None and orm_declaration is not None
    assert [_values(row, ImageRow) for row in with_image] == [_values(orm_image, ImageRow)]
    assert [_values(row, DeclarationRow) for row in with_declaration] == [
        _values(orm_declaration, DeclarationRow)
    ]
    # Each fact sits beside its own version.
    assert [row.firmware_version for row, image, _ in versions if image is not None] == [
        OWN_A1.firmware_version
    ]
    assert [row.firmware_version for row, _, declared in versions if declared is not None] == [
        OWN_A2.firmware_version
    ]
    # The page's read of versions and images is kept for their own loaders: asked again, they read
    # nothing more (a declaration came joined to its version, so its own loader reads the table).
    with counting(world.db) as statements:
        assert [row.firmware_version for row in await loaders.certified_by_model.load(model)] == [
            row.firmware_version for row in orm_versions
        ]
        assert await loaders.images_by_model.load(model) == with_image
    assert statements == []
    declared = await loaders.declarations_by_model.load(model)
    assert [_values(row, DeclarationRow) for row in declared] == [_values(orm_declaration, DeclarationRow)]


_KEY = (
    CplCertifiedFirmware.manufacturer_id,
    CplCertifiedFirmware.model_id,
    CplCertifiedFirmware.hardware_version,
    CplCertifiedFirmware.firmware_version,
)


async def test_plain_rows_are_sqlalchemys_rows_as_named_tuples(world: World) -> None:
    # Every column of a table, a label and a null: the same values in the same order, read by the same
    # names, and one named tuple type for each list of columns.
    columns = CplCertifiedFirmware.__table__.columns
    statement = select(
        *columns, CplCertifiedFirmware.firmware_version.label("also"), null().label("absent")
    ).order_by(CplCertifiedFirmware.snapshot_id, *_KEY)
    async with world.db.sessions() as session:
        connection = await session.connection()
        reference = (await connection.execute(statement)).all()
        plain = plain_rows(await connection.execute(statement))
        again = plain_rows(await connection.execute(statement.limit(1)))
    assert len(reference) > 1
    assert [tuple(row) for row in plain] == [tuple(row) for row in reference]
    names = [*columns.keys(), "also", "absent"]
    assert [[getattr(row, name) for name in names] for row in plain] == [
        [getattr(row, name) for name in names] for row in reference
    ]
    assert all(row.absent is None for row in plain)
    assert type(again[0]) is type(plain[0])


async def test_rows_read_from_the_driver_equal_sqlalchemys_for_every_read_of_the_catalogue(
    world: World,
) -> None:
    """`read_rows` (the driver's rows, each column's processor applied) against `plain_rows` of
    SQLAlchemy's own `Row`s, the reference: every statement the loaders and the page of models run, with
    images in several states (their JSON, their timestamps, their state's enum), a declaration and a
    version without either, on both databases. On SQLite dates, timestamps, JSON and enums all go
    through processors; on asyncpg only the image's state does."""
    draft = await world.upload(world.image(OWN_A2))
    published = await world.upload(world.image(OWN_A1))
    await world.publish(published.id)
    manufacturer = await world.principal(world.tokens.manufacturer)
    supplier = await world.principal(world.tokens.supplier)
    key = VersionKey(
        OWN_A2.manufacturer_id, OWN_A2.model_id, OWN_A2.hardware_version, OWN_A2.firmware_version
    )
    await world.library.declare_commercial(manufacturer, key, "built for one supplier under contract")
    async with world.db.sessions() as session:
        connection = await session.connection()
        dialect = connection.dialect.name
        snapshot = (await connection.execute(select(func.max(CplDeviceModel.snapshot_id)))).scalar_one()
        models = [
            ModelKey(*row)
            for row in await connection.execute(
                select(
                    CplDeviceModel.manufacturer_id, CplDeviceModel.model_id, CplDeviceModel.hardware_version
                )
            )
        ]
        reads = catalogue_loaders._reads(dialect)
        keys = catalogue_loaders._model_keys(models, dialect)
        at = {"snapshot_id": snapshot}
        statements: list[tuple[Select[Any], dict[str, Any]]] = [
            (reads.models, {**at, **keys}),
            (reads.certified, {**at, **keys}),
            (catalogue_loaders._versions_reading(dialect, None)[0], {**at, **keys}),
            (catalogue_loaders._versions_reading(dialect, frozenset({"status"}))[0], {**at, **keys}),
            (reads.images.where(lifecycle.visible_to(manufacturer)), keys),
            (reads.images.where(lifecycle.visible_to(supplier)), keys),
            (reads.declarations, keys),
            (
                select(*CplCertifiedFirmware.__table__.columns, null().label("absent")).order_by(
                    CplCertifiedFirmware.snapshot_id, *_KEY
                ),
                {},
            ),
        ]
        read: list[list[Any]] = []
        for statement, parameters in statements:
            reference = plain_rows(await connection.execute(statement, parameters))
            driver = read_rows(await connection.execute(statement, parameters), statement)
            assert driver == reference
            assert [row._fields for row in driver] == [row._fields for row in reference]
            assert [[type(value) for value in row] for row in driver] == [
                [type(value) for value in row] for row in reference
            ]
            read.append(driver)
    models_read, certified, versions, narrow, own_images, public_images, declarations, _ = read
    assert len(models_read) == len(models) and len(versions) == len(certified) > 2
    # A narrow read holds each version's key and the columns asked for, then its declaration's.
    assert narrow[0]._fields[:5] == (*catalogue_loaders.VERSION_KEY_COLUMNS, "status")
    assert [row[:5] for row in narrow] == [
        (row.manufacturer_id, row.model_id, row.hardware_version, row.firmware_version, row.status)
        for row in versions
    ]
    assert [row[5:] for row in narrow] == [row[len(certified[0]) :] for row in versions]
    # The rows hold what the processors make: the image's state as its enum, its timestamps in UTC.
    assert {(row.id, row.state) for row in own_images} == {
        (draft.id, ImageState.DRAFT),
        (published.id, ImageState.PUBLISHED),
    }
    assert [row.id for row in public_images] == [published.id]
    assert all(row.uploaded_at.tzinfo is dt.UTC for row in own_images)
    assert [row.declaration_reason for row in versions if row.declaration_reason is not None] == [
        "built for one supplier under contract"
    ]
    assert declarations[0].declared_at.tzinfo is dt.UTC

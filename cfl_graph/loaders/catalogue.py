"""Batched reads for the catalogue graph: device models, certified firmware, images and declarations.

Every loader answers for the current CPL snapshot (read once per request) and costs one statement per
request however many objects ask: a page of 100 device models with their certified versions, images
and declarations is six statements, as is a page of 10.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import select, tuple_
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
        self.device_model = DataLoader[ModelKey, CplDeviceModel | None](self._load_models)
        self.certified_by_model = DataLoader[ModelKey, list[CplCertifiedFirmware]](self._load_certified)
        self.certified = DataLoader[VersionKey, CplCertifiedFirmware | None](self._load_certified_versions)
        self.images_by_model = DataLoader[ModelKey, list[LibraryImage]](self._load_images)
        self.declarations_by_model = DataLoader[ModelKey, list[CommercialDeclaration]](
            self._load_declarations
        )
        self.pathways_by_model = DataLoader[ModelKey, list[UpgradePathway]](self._load_pathways)

    def prime_models(self, rows: Sequence[CplDeviceModel]) -> None:
        for row in rows:
            self.device_model.prime(ModelKey.of(row), row)

    async def _load_models(self, keys: Sequence[ModelKey]) -> list[CplDeviceModel | None]:
        snapshot = await self.snapshot_id()
        if snapshot is None:
            return [None for _ in keys]
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(CplDeviceModel).where(
                        CplDeviceModel.snapshot_id == snapshot,
                        tuple_(
                            CplDeviceModel.manufacturer_id,
                            CplDeviceModel.model_id,
                            CplDeviceModel.hardware_version,
                        ).in_(list(keys)),
                    )
                )
            ).scalars()
            found = {ModelKey.of(row): row for row in rows}
        return [found.get(key) for key in keys]

    async def _load_certified(self, keys: Sequence[ModelKey]) -> list[list[CplCertifiedFirmware]]:
        snapshot = await self.snapshot_id()
        grouped: dict[ModelKey, list[CplCertifiedFirmware]] = defaultdict(list)
        if snapshot is not None:
            async with self._sessions() as session:
                rows = (
                    await session.execute(
                        select(CplCertifiedFirmware)
                        .where(
                            CplCertifiedFirmware.snapshot_id == snapshot,
                            tuple_(
                                CplCertifiedFirmware.manufacturer_id,
                                CplCertifiedFirmware.model_id,
                                CplCertifiedFirmware.hardware_version,
                            ).in_(list(keys)),
                        )
                        .order_by(CplCertifiedFirmware.firmware_version)
                    )
                ).scalars()
                for row in rows:
                    grouped[ModelKey.of(row)].append(row)
        # Not primed into `certified`: a single version asked for later is found through this loader's
        # cache (`_load_certified_versions`), without a future made for every row of every page.
        return [grouped.get(key, []) for key in keys]

    async def _load_certified_versions(self, keys: Sequence[VersionKey]) -> list[CplCertifiedFirmware | None]:
        # Asked for single versions (entity references): load their models' lists, one statement.
        models = await self.certified_by_model.load_many(list(dict.fromkeys(k.model for k in keys)))
        found = {VersionKey.of(row): row for rows in models for row in rows}
        return [found.get(key) for key in keys]

    async def _load_images(self, keys: Sequence[ModelKey]) -> list[list[LibraryImage]]:
        """The images the caller may see (`lifecycle.visible_to`: drafts only of its own manufacturer ids)."""
        visible = lifecycle.visible_to(self._principal)
        grouped: dict[ModelKey, list[LibraryImage]] = defaultdict(list)
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(LibraryImage)
                    .where(
                        tuple_(
                            LibraryImage.manufacturer_id, LibraryImage.model_id, LibraryImage.hardware_version
                        ).in_(list(keys)),
                        visible,
                    )
                    .order_by(LibraryImage.firmware_version)
                )
            ).scalars()
            for row in rows:
                grouped[ModelKey.of(row)].append(row)
        return [grouped.get(key, []) for key in keys]

    async def _load_declarations(self, keys: Sequence[ModelKey]) -> list[list[CommercialDeclaration]]:
        grouped: dict[ModelKey, list[CommercialDeclaration]] = defaultdict(list)
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(CommercialDeclaration).where(
                        tuple_(
                            CommercialDeclaration.manufacturer_id,
                            CommercialDeclaration.model_id,
                            CommercialDeclaration.hardware_version,
                        ).in_(list(keys))
                    )
                )
            ).scalars()
            for row in rows:
                grouped[ModelKey.of(row)].append(row)
        return [grouped.get(key, []) for key in keys]

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

    async def image_for(self, key: VersionKey) -> LibraryImage | None:
        """The version's image the caller may see (published or withdrawn; a draft only to its owner)."""
        for image in await self.images_by_model.load(key.model):
            if VersionKey.of(image) == key:
                return image
        return None

    async def declaration_for(self, key: VersionKey) -> CommercialDeclaration | None:
        for declaration in await self.declarations_by_model.load(key.model):
            if VersionKey.of(declaration) == key:
                return declaration
        return None

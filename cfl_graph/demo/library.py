"""The demo's library: real signed images for part of the demo CPL, so coverage has both covered and
missing versions, plus a few commercial declarations and a withdrawn image.

Everything goes through the same service as an upload (`ImageLibrary`), with keys registered as an
operator would, so the demo shows the checks and the audit trail exactly as production would. The choices
are deterministic: the same demo CPL always gives the same library.
"""

from __future__ import annotations

import hashlib
import logging

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import (
    SECP256R1,
    EllipticCurvePrivateKey,
    derive_private_key,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph.access.keys import add_key
from cfl_graph.access.parties import UnknownParty, add_party, find_party, operator_acting_for
from cfl_graph.access.principal import Principal
from cfl_graph.audit import Actor
from cfl_graph.blobs import BlobStore
from cfl_graph.database import Database
from cfl_graph.demo.cpl_data import manufacturer_image_for_key
from cfl_graph.demo.ota_images import P256_ORDER, build_image
from cfl_graph.identifiers import LIBRARY_DEVICE_TYPES, CplStatus
from cfl_graph.images.library import ImageLibrary, UploadFields
from cfl_graph.keys import VersionKey
from cfl_graph.tables import CplCertifiedFirmware, CplCurrent, CplDeviceModel, LibraryImage, Role

log = logging.getLogger(__name__)

DEMO = Actor("demo")
# Of the in-scope, active versions: up to 60 % get an image (at most MAX_IMAGES, to start in seconds),
# 5 % are declared commercial (at most MAX_DECLARATIONS: each is a transaction of its own, and a
# million-row benchmark CPL would otherwise spend twenty minutes on 37,000 of them).
COVERED_PER_TEN = 6
COMMERCIAL_PER_HUNDRED = 5
MAX_IMAGES = 400
MAX_DECLARATIONS = 2000
WITHDRAWN = 2


def demo_party_name(manufacturer_name: str) -> str:
    return f"{manufacturer_name} (demo)"


async def largest_manufacturer(session: AsyncSession) -> tuple[str, str]:
    """(manufacturer id, name) with the most device models in the current CPL snapshot, ties by id."""
    found = (
        await session.execute(
            select(CplDeviceModel.manufacturer_id, CplDeviceModel.manufacturer_name)
            .join(CplCurrent, CplCurrent.snapshot_id == CplDeviceModel.snapshot_id)
            .group_by(CplDeviceModel.manufacturer_id, CplDeviceModel.manufacturer_name)
            .order_by(func.count().desc(), CplDeviceModel.manufacturer_id)
            .limit(1)
        )
    ).one()
    return str(found[0]), str(found[1])


def _share(key: VersionKey, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100


def demo_signing_key(manufacturer_id: str) -> EllipticCurvePrivateKey:
    """The demo manufacturer's signing key, derived from its id (a demo needs no secrets)."""
    seed = int.from_bytes(hashlib.sha256(f"cfl-graph demo key {manufacturer_id}".encode()).digest(), "big")
    return derive_private_key(seed % (P256_ORDER - 1) + 1, SECP256R1())


def _notes(key: VersionKey, model_name: str) -> str:
    return (
        f"## {model_name} firmware {key.firmware_version}\n\n"
        f"- Fixed the tariff switch-over at midnight on the last day of the month.\n"
        f"- Improved HAN join reliability when the Comms Hub restarts.\n"
        f"- Certified for hardware version {key.hardware_version}; see the CPL for its status.\n"
    )


async def load_demo_library(db: Database, store: BlobStore, *, max_images: int = MAX_IMAGES) -> int:
    """Register the demo manufacturers and their keys, then upload and publish the demo images (once);
    `max_images` caps them (the load test wants a library in seconds)."""
    async with db.sessions() as session:
        if await session.scalar(select(func.count()).select_from(LibraryImage)):
            return 0
        rows = (
            await session.execute(
                select(CplCertifiedFirmware, CplDeviceModel.model_name, CplDeviceModel.manufacturer_name)
                .join(CplCurrent, CplCurrent.snapshot_id == CplCertifiedFirmware.snapshot_id)
                .join(
                    CplDeviceModel,
                    (CplDeviceModel.snapshot_id == CplCertifiedFirmware.snapshot_id)
                    & (CplDeviceModel.manufacturer_id == CplCertifiedFirmware.manufacturer_id)
                    & (CplDeviceModel.model_id == CplCertifiedFirmware.model_id)
                    & (CplDeviceModel.hardware_version == CplCertifiedFirmware.hardware_version),
                )
                .where(
                    CplCertifiedFirmware.status == CplStatus.ACTIVE.value,
                    CplDeviceModel.device_type.in_([t.value for t in LIBRARY_DEVICE_TYPES]),
                )
                .order_by(
                    CplCertifiedFirmware.manufacturer_id,
                    CplCertifiedFirmware.model_id,
                    CplCertifiedFirmware.hardware_version,
                    CplCertifiedFirmware.firmware_version,
                )
            )
        ).all()
    names = {row.manufacturer_id: manufacturer for row, _, manufacturer in rows}
    await register_manufacturers(db, names)
    library = ImageLibrary(db.sessions, store, max_image_bytes=16 * 1024 * 1024)
    principals = {}
    async with db.sessions() as session:
        for manufacturer_id, name in names.items():
            principals[manufacturer_id] = await operator_acting_for(
                session, await find_party(session, demo_party_name(name))
            )
    published: list[tuple[int, str]] = []
    declared = 0
    # In a shuffled (but fixed) order, so the cap spreads images over every manufacturer.
    for row, model_name, _ in sorted(rows, key=lambda r: _share(VersionKey.of(r[0]), "order")):
        key = VersionKey.of(row)
        principal = principals[key.manufacturer_id]
        share = _share(key, "library")
        if share < COMMERCIAL_PER_HUNDRED:
            if declared < MAX_DECLARATIONS:
                await library.declare_commercial(principal, key, "developed for one supplier under contract")
                declared += 1
        elif share < COVERED_PER_TEN * 10 and len(published) < max_images:
            image = await upload_demo_image(library, principal, key, model_name)
            if image.problems:
                log.warning("demo image %s has problems: %s", image.dcc_file_name, image.problems)
                continue
            await library.publish(principal, image.id, actor=DEMO)
            published.append((image.id, key.manufacturer_id))
    for image_id, manufacturer_id in published[:: max(len(published) // WITHDRAWN, 1)][:WITHDRAWN]:
        reason = "meters lose their tariff after a Comms Hub restart"
        await library.withdraw(principals[manufacturer_id], image_id, reason)
    log.info("demo library: %d images published, %d withdrawn", len(published), WITHDRAWN)
    return len(published)


async def upload_demo_image(
    library: ImageLibrary, principal: Principal, key: VersionKey, model_name: str
) -> LibraryImage:
    """Build the version's signed image as its manufacturer would and upload it with release notes."""
    data = build_image(
        manufacturer_image_for_key(
            key.manufacturer_id, key.model_id, key.hardware_version, key.firmware_version
        ),
        manufacturer_code=key.manufacturer_id,
        file_version=key.firmware_version,
        private_key=demo_signing_key(key.manufacturer_id),
        header_string=model_name[:32],
    )
    receiver = library.receiver(principal)
    await receiver.write(data)
    fields = UploadFields(key.model_id, key.hardware_version, _notes(key, model_name))
    return await library.accept(principal, await receiver.finish(), fields, actor=DEMO)


async def register_manufacturers(db: Database, names: dict[str, str]) -> None:
    """A manufacturer party per demo manufacturer id, with its signing key registered."""
    async with db.writes.begin() as session:
        for manufacturer_id, name in sorted(names.items()):
            try:
                await find_party(session, demo_party_name(name))
            except UnknownParty:
                await add_party(
                    session,
                    demo_party_name(name),
                    Role.MANUFACTURER,
                    actor=DEMO,
                    manufacturer_ids=[manufacturer_id],
                )
            pem = (
                demo_signing_key(manufacturer_id)
                .public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            )
            await add_key(session, [manufacturer_id], pem, actor=DEMO)

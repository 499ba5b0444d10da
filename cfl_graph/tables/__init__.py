"""The database tables, one module per domain; `Base.metadata` is what Alembic compares against."""

from cfl_graph.tables.access import ApiToken, ManufacturerKey, Party, PartyManufacturer, Role, WebSession
from cfl_graph.tables.audit import GENESIS_HASH, AuditEvent, AuditHead
from cfl_graph.tables.base import Base
from cfl_graph.tables.cpl import (
    CplCertifiedFirmware,
    CplCurrent,
    CplDeviceModel,
    CplSnapshot,
    CplSyncRun,
    SyncOutcome,
)
from cfl_graph.tables.images import (
    BlobClaim,
    BlobClaimKind,
    CatalogueRevision,
    CommercialDeclaration,
    ImageState,
    LibraryImage,
    UpgradePathway,
)

__all__ = [
    "GENESIS_HASH",
    "ApiToken",
    "AuditEvent",
    "AuditHead",
    "Base",
    "BlobClaim",
    "BlobClaimKind",
    "CatalogueRevision",
    "CommercialDeclaration",
    "CplCertifiedFirmware",
    "CplCurrent",
    "CplDeviceModel",
    "CplSnapshot",
    "CplSyncRun",
    "ImageState",
    "LibraryImage",
    "ManufacturerKey",
    "Party",
    "PartyManufacturer",
    "Role",
    "SyncOutcome",
    "UpgradePathway",
    "WebSession",
]

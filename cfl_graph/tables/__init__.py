"""The database tables, one module per domain; `Base.metadata` is what Alembic compares against."""

from cfl_graph.tables.base import Base
from cfl_graph.tables.cpl import (
    CplCertifiedFirmware,
    CplCurrent,
    CplDeviceModel,
    CplSnapshot,
    CplSyncRun,
    SyncOutcome,
)

__all__ = [
    "Base",
    "CplCertifiedFirmware",
    "CplCurrent",
    "CplDeviceModel",
    "CplSnapshot",
    "CplSyncRun",
    "SyncOutcome",
]

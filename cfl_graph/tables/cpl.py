"""The library's own copy of the CPL: immutable snapshots, the `current` pointer, and sync runs.

A snapshot is written whole in one transaction and never changed afterwards; rows are keyed by
(snapshot, manufacturer id, model id, hardware version[, firmware version]) so that two snapshots
compare by key without surrogate ids.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cfl_graph.tables.base import Base, EnumText, UtcDateTime, utc_now


class SyncOutcome(StrEnum):
    RUNNING = "running"
    APPLIED = "applied"  # a new snapshot became current
    UNCHANGED = "unchanged"  # same content as the current snapshot; nothing written
    NOT_MODIFIED = "not_modified"  # the source answered 304
    REJECTED = "rejected"  # the file had errors; the current snapshot stays current
    FETCH_FAILED = "fetch_failed"  # the source could not be read
    FAILED = "failed"  # the service failed (database, disk); logged with context


HEX4 = String(4)
HEX8 = String(8)
SHA256 = String(64)


class CplSyncRun(Base):
    __tablename__ = "cpl_sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    trigger: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text)
    outcome: Mapped[SyncOutcome] = mapped_column(EnumText(SyncOutcome), default=SyncOutcome.RUNNING)
    content_sha256: Mapped[str | None] = mapped_column(SHA256)
    content_size: Mapped[int | None] = mapped_column(Integer)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("cpl_snapshots.id"))
    row_count: Mapped[int | None] = mapped_column(Integer)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    warning_count: Mapped[int] = mapped_column(Integer, default=0)
    # What the library did as the CPL moved: published images held, held images released.
    images_held: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    images_released: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The first problems found (each {"row", "column", "reason", "severity"}), capped; counts are exact.
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    message: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_cpl_sync_runs_source_outcome", "source", "outcome"),
        CheckConstraint(
            "outcome IN (" + ", ".join(f"'{o.value}'" for o in SyncOutcome) + ")", name="outcome"
        ),
    )


class CplSnapshot(Base):
    __tablename__ = "cpl_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    source: Mapped[str] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(SHA256)
    # SHA-256 over the normalised rows in key order: a re-saved file with the same rows is unchanged.
    rows_sha256: Mapped[str] = mapped_column(SHA256)
    row_count: Mapped[int] = mapped_column(Integer)
    device_model_count: Mapped[int] = mapped_column(Integer)
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("cpl_snapshots.id"))
    added_count: Mapped[int] = mapped_column(Integer, default=0)
    removed_count: Mapped[int] = mapped_column(Integer, default=0)
    changed_count: Mapped[int] = mapped_column(Integer, default=0)


class CplCurrent(Base):
    """The single row naming the current snapshot; moved in the transaction that writes a snapshot."""

    __tablename__ = "cpl_current"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("cpl_snapshots.id"))
    since: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class CplDeviceModel(Base):
    __tablename__ = "cpl_device_models"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("cpl_snapshots.id"), primary_key=True)
    manufacturer_id: Mapped[str] = mapped_column(HEX4, primary_key=True)
    model_id: Mapped[str] = mapped_column(HEX4, primary_key=True)
    hardware_version: Mapped[str] = mapped_column(HEX4, primary_key=True)
    manufacturer_name: Mapped[str] = mapped_column(Text)
    model_name: Mapped[str] = mapped_column(Text)
    device_type: Mapped[str] = mapped_column(String(8))
    # The SMETS generation of its most recently listed version, and every generation its versions have
    # (`SMETS1,SMETS2`): the CPL certifies each firmware version against a specification of its own.
    smets_version: Mapped[str] = mapped_column(String(8))
    smets_versions: Mapped[str] = mapped_column(String(16))
    firmware_count: Mapped[int] = mapped_column(Integer)

    # The catalogue's filters by device type (and SMETS version) within the current snapshot: without it,
    # a count of one type's models read every snapshot's rows (bench.plans at 1,000,000 rows).
    __table_args__ = (
        Index("ix_cpl_device_models_snapshot_type", "snapshot_id", "device_type", "smets_version"),
    )


class CplCertifiedFirmware(Base):
    __tablename__ = "cpl_certified_firmware"

    snapshot_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    manufacturer_id: Mapped[str] = mapped_column(HEX4, primary_key=True)
    model_id: Mapped[str] = mapped_column(HEX4, primary_key=True)
    hardware_version: Mapped[str] = mapped_column(HEX4, primary_key=True)
    firmware_version: Mapped[str] = mapped_column(HEX8, primary_key=True)
    image_hash: Mapped[str] = mapped_column(SHA256)
    status: Mapped[str] = mapped_column(String(16))
    # What the version was certified against: its SMETS generation, the specification (SMETS1, SMETS2 or
    # CHTS) and that specification's version (`4.1`; None where the CPL names none).
    smets_version: Mapped[str] = mapped_column(String(8))
    technical_specification: Mapped[str] = mapped_column(String(8))
    specification_version: Mapped[str | None] = mapped_column(String(16))
    gbcs_version: Mapped[str | None] = mapped_column(String(16))
    cpa_reference: Mapped[str | None] = mapped_column(Text)
    cpa_expiry: Mapped[dt.date | None] = mapped_column(Date)
    date_added: Mapped[dt.date] = mapped_column(Date)
    # The row as the user sees it in the source sheet, so a later finding can point at it.
    sheet_row: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        ForeignKeyConstraint(
            ["snapshot_id", "manufacturer_id", "model_id", "hardware_version"],
            [
                "cpl_device_models.snapshot_id",
                "cpl_device_models.manufacturer_id",
                "cpl_device_models.model_id",
                "cpl_device_models.hardware_version",
            ],
            name="fk_cpl_certified_firmware_device_model",
        ),
    )

"""The library's own records: firmware images, commercial declarations, and the catalogue's revision.

One image per (device model, firmware version), ever: the unique key holds drafts too, so a second
upload for a version waits until its draft is published or discarded. A published image's row is never
deleted and its bytes never change; withdrawal only adds when, by whom and why.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cfl_graph.tables.base import Base, EnumText, UtcDateTime, utc_now
from cfl_graph.tables.cpl import HEX4, HEX8, SHA256


class ImageState(StrEnum):
    """Where an image is in its life; `cfl_graph.images.lifecycle` holds the transitions and who sees what."""

    DRAFT = "draft"  # uploaded; seen by its manufacturer only
    PUBLISHED = "published"  # served to every party that may download
    HELD = "held"  # published, but the current CPL no longer certifies it as it is: listed, not served
    WITHDRAWN = "withdrawn"  # still listed, with the reason; no longer served


class LibraryImage(Base):
    __tablename__ = "library_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    manufacturer_id: Mapped[str] = mapped_column(HEX4)
    model_id: Mapped[str] = mapped_column(HEX4)
    hardware_version: Mapped[str] = mapped_column(HEX4)
    firmware_version: Mapped[str] = mapped_column(HEX8)
    state: Mapped[ImageState] = mapped_column(EnumText(ImageState), default=ImageState.DRAFT)

    # What the bytes are (docs/firmware-image-format.md says which bytes each digest covers).
    size: Mapped[int] = mapped_column(BigInteger)
    file_sha256: Mapped[str] = mapped_column(SHA256, index=True)
    manufacturer_image_sha256: Mapped[str] = mapped_column(SHA256)
    signed_sha256: Mapped[str] = mapped_column(SHA256)
    signature: Mapped[str] = mapped_column(String(128))  # raw r‖s, hex: re-checked when keys change
    manufacturer_image_offset: Mapped[int] = mapped_column(Integer)
    manufacturer_image_length: Mapped[int] = mapped_column(BigInteger)
    image_type: Mapped[int] = mapped_column(Integer)
    dcc_file_name: Mapped[str] = mapped_column(String(18))
    header: Mapped[dict[str, Any]] = mapped_column(JSON)

    # The last check against the current CPL, the key registry and the declarations.
    problems: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    checked_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    checked_snapshot_id: Mapped[int | None] = mapped_column(Integer)
    signature_key_id: Mapped[str | None] = mapped_column(String(64))

    release_notes_markdown: Mapped[str | None] = mapped_column(Text)
    release_notes_html: Mapped[str | None] = mapped_column(Text)
    release_notes_text: Mapped[str | None] = mapped_column(Text)

    uploaded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    uploaded_by_party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    uploaded_by_token: Mapped[str | None] = mapped_column(String(16))
    approved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    approved_by_token: Mapped[str | None] = mapped_column(String(16))
    # What was approved: the release notes' SHA-256 (the bytes of a record never change). Any change to
    # the notes voids the approval.
    approved_notes_sha256: Mapped[str | None] = mapped_column(SHA256)
    published_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    published_by: Mapped[str | None] = mapped_column(Text)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    withdrawn_by: Mapped[str | None] = mapped_column(Text)
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)
    # While held: why (a LibraryProblem code and its detail), since when, and the snapshot that caused it.
    hold_problem: Mapped[str | None] = mapped_column(String(32))
    hold_detail: Mapped[str | None] = mapped_column(Text)
    held_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    held_snapshot_id: Mapped[int | None] = mapped_column(Integer)
    released_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # the last release from a hold
    # The last change of state (upload, publication, hold, release, withdrawal): what feeds order by.
    state_changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        UniqueConstraint(
            "manufacturer_id",
            "model_id",
            "hardware_version",
            "firmware_version",
            name="uq_library_images_version",
        ),
        Index("ix_library_images_state_published_at", "state", "published_at"),
        Index("ix_library_images_manufacturer_state", "manufacturer_id", "state"),
        Index("ix_library_images_state_changed_at", "state_changed_at"),
        CheckConstraint("state IN (" + ", ".join(f"'{s.value}'" for s in ImageState) + ")", name="state"),
        CheckConstraint("(state = 'draft') = (published_at IS NULL)", name="published_at_unless_draft"),
        CheckConstraint(
            "(state = 'withdrawn') = (withdrawn_at IS NOT NULL AND withdrawal_reason IS NOT NULL)",
            name="withdrawal_complete",
        ),
        CheckConstraint(
            "(state = 'held') = "
            "(held_at IS NOT NULL AND hold_problem IS NOT NULL AND hold_detail IS NOT NULL)",
            name="hold_complete",
        ),
        # An id names one image forever (audit events, receipts, links): SQLite must not reuse a
        # discarded draft's id, which it does for the highest rowid without AUTOINCREMENT.
        {"sqlite_autoincrement": True},
    )


class BlobClaimKind(StrEnum):
    UPLOAD = "upload"  # an upload is putting these bytes in the store and will record them
    DELETE = "delete"  # a collector found nothing refers to them and is removing them from the store


class BlobClaim(Base):
    """Who is using a blob's bytes besides the library's records, so that a blob is deleted only when
    no record and no upload in progress refers to it: an upload claims the bytes before it puts them in
    the store and gives the claim up with the transaction that records them; a collector claims them
    for deletion only when, under the blob's lock, no record and no claim refers to them, and an upload
    that finds a deletion under way waits for it (`cfl_graph.images.blobs_in_use`)."""

    __tablename__ = "blob_claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_sha256: Mapped[str] = mapped_column(SHA256, index=True)
    kind: Mapped[str] = mapped_column(String(8))
    claimed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    holder: Mapped[str] = mapped_column(String(200))  # the process, for an operator reading a stale claim

    __table_args__ = (
        CheckConstraint("kind IN (" + ", ".join(f"'{k.value}'" for k in BlobClaimKind) + ")", name="kind"),
        {"sqlite_autoincrement": True},
    )


class CommercialDeclaration(Base):
    """A certified version its manufacturer declares commercial (R2): listed as such, never served."""

    __tablename__ = "commercial_declarations"

    manufacturer_id: Mapped[str] = mapped_column(HEX4, primary_key=True)
    model_id: Mapped[str] = mapped_column(HEX4, primary_key=True)
    hardware_version: Mapped[str] = mapped_column(HEX4, primary_key=True)
    firmware_version: Mapped[str] = mapped_column(HEX8, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    declared_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    declared_by: Mapped[str] = mapped_column(Text)
    declared_by_party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))


class CatalogueRevision(Base):
    """One row counting changes to the library (see `cfl_graph.revisions`).

    `revision` counts changes to what every user sees (publish, withdraw, declare, record a pathway):
    it is the signed catalogue's version. `record_revision` counts every change to the library's
    records, drafts included. The response cache keys on them."""

    __tablename__ = "catalogue_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    record_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class UpgradePathway(Base):
    """A manufacturer's statement that a device on `from_version` may upgrade straight to `to_version`."""

    __tablename__ = "upgrade_pathways"

    manufacturer_id: Mapped[str] = mapped_column(HEX4, primary_key=True)
    model_id: Mapped[str] = mapped_column(HEX4, primary_key=True)
    hardware_version: Mapped[str] = mapped_column(HEX4, primary_key=True)
    from_version: Mapped[str] = mapped_column(HEX8, primary_key=True)
    to_version: Mapped[str] = mapped_column(HEX8, primary_key=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    recorded_by: Mapped[str] = mapped_column(Text)
    recorded_by_party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))

    __table_args__ = (CheckConstraint("from_version <> to_version", name="distinct_versions"),)

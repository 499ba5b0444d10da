"""Who may use the library: parties (organisations) with a role, their manufacturer ids, and API tokens.

A token is stored only as the SHA-256 of its secret; its public id (in the token's text too) finds the
row, so that checking a token costs one indexed lookup and one constant-time comparison.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cfl_graph.tables.base import Base, EnumText, UtcDateTime, utc_now


class Role(StrEnum):
    SUPPLIER = "supplier"  # read the catalogue and release notes, download images
    MANUFACTURER = "manufacturer"  # read; write only for its own manufacturer ids
    PANEL = "panel"  # read metadata, reports and the audit trail; images only if granted
    ADMIN = "admin"  # parties, keys, tokens, CPL sync


class Party(Base):
    __tablename__ = "parties"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[Role] = mapped_column(EnumText(Role))
    # Panel parties see image bytes only when granted; other roles ignore this.
    download_granted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Manufacturers only: a draft needs a second token's approval before it can be published.
    requires_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        CheckConstraint("role IN (" + ", ".join(f"'{r.value}'" for r in Role) + ")", name="role"),
    )


class PartyManufacturer(Base):
    """A manufacturer id a manufacturer party may write for; each id belongs to at most one party."""

    __tablename__ = "party_manufacturers"

    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), primary_key=True)
    manufacturer_id: Mapped[str] = mapped_column(String(4), primary_key=True, unique=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class ManufacturerKey(Base):
    """A public key (P-256) whose signatures prove a firmware image came from that manufacturer id."""

    __tablename__ = "manufacturer_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    manufacturer_id: Mapped[str] = mapped_column(String(4), index=True)
    # SHA-256 of the key's DER SubjectPublicKeyInfo: names the key in lists, logs and audit events.
    key_id: Mapped[str] = mapped_column(String(64))
    public_key_pem: Mapped[str] = mapped_column(Text)
    added_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("manufacturer_id", "key_id", name="uq_manufacturer_keys_manufacturer_key"),
    )


class WebSession(Base):
    """A browser session opened with an API token; the cookie holds a random id whose hash is kept.

    It ends at `expires_at`, at sign-out, or as soon as its token is revoked or expires."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utc_now)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

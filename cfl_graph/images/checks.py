"""The library's checks on an image: the CPL, the key registry, declarations and one-image-per-version.

The format itself is `ota.py`'s business. What is here can change after upload (a new CPL snapshot, a key
registered or revoked, a declaration), so drafts are checked again before they are published.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph.access.keys import active_keys_with_ids
from cfl_graph.catalogue.snapshots import current_snapshot
from cfl_graph.errors import Problem
from cfl_graph.identifiers import CplStatus
from cfl_graph.images.errors import LibraryProblem
from cfl_graph.images.ota import verify_raw_signature
from cfl_graph.keys import VersionKey
from cfl_graph.tables import CommercialDeclaration, CplCertifiedFirmware


@dataclass(frozen=True)
class ImageFacts:
    """What the checks need to know about an image's bytes (from the parser or from its record)."""

    manufacturer_image_sha256: str
    signed_sha256: str
    signature: bytes
    minimum_hardware_version: str | None
    maximum_hardware_version: str | None


@dataclass(frozen=True)
class CheckResult:
    problems: list[Problem]
    snapshot_id: int | None
    signature_key_id: str | None


async def _certified(session: AsyncSession, snapshot_id: int, key: VersionKey) -> CplCertifiedFirmware | None:
    return (
        await session.execute(
            select(CplCertifiedFirmware).where(
                CplCertifiedFirmware.snapshot_id == snapshot_id,
                CplCertifiedFirmware.manufacturer_id == key.manufacturer_id,
                CplCertifiedFirmware.model_id == key.model_id,
                CplCertifiedFirmware.hardware_version == key.hardware_version,
                CplCertifiedFirmware.firmware_version == key.firmware_version,
            )
        )
    ).scalar_one_or_none()


async def certified_version(session: AsyncSession, key: VersionKey) -> CplCertifiedFirmware | None:
    """The current CPL's row for `key`, or None (also when there is no snapshot yet); the pointer is
    held until the caller's write commits."""
    snapshot = await current_snapshot(session, lock=True)
    return None if snapshot is None else await _certified(session, snapshot.id, key)


async def check_image(
    session: AsyncSession, key: VersionKey, facts: ImageFacts, *, has_release_notes: bool
) -> CheckResult:
    """Every library problem of an image for `key` as things stand now; an empty list may be published.
    The current snapshot is held until the caller's transaction ends: a publication decided by one
    snapshot commits before the next one is applied (and followed), never across it."""
    problems: list[Problem] = []
    snapshot = await current_snapshot(session, lock=True)
    if snapshot is None:
        problems.append(Problem(LibraryProblem.NOT_ON_CPL, "the library holds no CPL snapshot yet"))
    else:
        certified = await _certified(session, snapshot.id, key)
        if certified is None:
            problems.append(
                Problem(
                    LibraryProblem.NOT_ON_CPL,
                    f"{key} is not on the current CPL (snapshot {snapshot.id})",
                )
            )
        else:
            if certified.status != CplStatus.ACTIVE.value:
                problems.append(
                    Problem(
                        LibraryProblem.NOT_ACTIVE_ON_CPL,
                        f"the current CPL lists {key} as {certified.status}, not active "
                        f"(sheet row {certified.sheet_row})",
                    )
                )
            if certified.image_hash != facts.manufacturer_image_sha256:
                problems.append(
                    Problem(
                        LibraryProblem.HASH_MISMATCH,
                        f"the Manufacturer Image's SHA-256 is {facts.manufacturer_image_sha256}; the CPL "
                        f"lists {certified.image_hash} for this version (sheet row {certified.sheet_row})",
                    )
                )
    low, high = facts.minimum_hardware_version, facts.maximum_hardware_version
    if low is not None and high is not None and not low <= key.hardware_version <= high:
        problems.append(
            Problem(
                LibraryProblem.HARDWARE_VERSION_OUTSIDE_RANGE,
                f"the OTA header limits the image to hardware versions {low}–{high}; the device model's "
                f"hardware version is {key.hardware_version}",
            )
        )
    keys = await active_keys_with_ids(session, key.manufacturer_id)
    index = verify_raw_signature(facts.signature, facts.signed_sha256, [public for _, public in keys])
    if index is None:
        detail = (
            f"the signature verifies with none of the {len(keys)} public key(s) registered for manufacturer "
            f"{key.manufacturer_id}"
            if keys
            else f"no public key is registered for manufacturer {key.manufacturer_id}, so the signature "
            "cannot verify; an operator registers one with `cfl-graph key add`"
        )
        problems.append(Problem(LibraryProblem.SIGNATURE_INVALID, detail))
    declaration = await session.get(
        CommercialDeclaration,
        (key.manufacturer_id, key.model_id, key.hardware_version, key.firmware_version),
    )
    if declaration is not None:
        problems.append(
            Problem(
                LibraryProblem.DECLARED_COMMERCIAL,
                f"{key} was declared commercial on {declaration.declared_at:%Y-%m-%d} "
                f"({declaration.reason}); commercial versions are listed, never distributed",
            )
        )
    if not has_release_notes:
        problems.append(
            Problem(
                LibraryProblem.RELEASE_NOTES_MISSING,
                "the image has no release notes; add them before publishing (updateReleaseNotes)",
            )
        )
    return CheckResult(
        problems=problems,
        snapshot_id=None if snapshot is None else snapshot.id,
        signature_key_id=None if index is None else keys[index][0],
    )


async def candidate_models(
    session: AsyncSession, manufacturer_id: str, firmware_version: str, manufacturer_image_sha256: str
) -> list[tuple[str, str]]:
    """The device models (model id, hardware version) the current CPL certifies this version for.

    Models listing this very hash come first and alone when there are any: the hash names the image."""
    snapshot = await current_snapshot(session)
    if snapshot is None:
        return []
    rows = (
        await session.execute(
            select(
                CplCertifiedFirmware.model_id,
                CplCertifiedFirmware.hardware_version,
                CplCertifiedFirmware.image_hash,
            )
            .where(
                CplCertifiedFirmware.snapshot_id == snapshot.id,
                CplCertifiedFirmware.manufacturer_id == manufacturer_id,
                CplCertifiedFirmware.firmware_version == firmware_version,
            )
            .order_by(CplCertifiedFirmware.model_id, CplCertifiedFirmware.hardware_version)
        )
    ).all()
    matching = [(model, hardware) for model, hardware, digest in rows if digest == manufacturer_image_sha256]
    return matching or [(model, hardware) for model, hardware, _ in rows]

"""The image lifecycle: accept an upload, approve, publish, withdraw, declare commercial, edit notes, discard.

Every door (the HTTP endpoints, GraphQL mutations, the CLI, the web pages) calls these methods; each one
asks the policy, checks its input, changes state in one transaction with its audit event, and on any
refusal raises a `LibraryError` having changed nothing.

Order of an upload, so that a crash at any point loses nothing and leaves nothing half-made: the bytes are
staged and hashed; cheap refusals come first; the blob is put in place whole; then one transaction writes
the record and its audit event. A crash before that commit leaves at most an unreferenced blob, which
`cfl-graph verify` lists, never a record without its bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cfl_graph import identifiers as ids
from cfl_graph import revisions
from cfl_graph.access.policy import ANY_OWN, Action, authorise
from cfl_graph.access.principal import Principal
from cfl_graph.audit import Actor, record
from cfl_graph.blobs import BlobStore
from cfl_graph.database import lock_key, writer_of
from cfl_graph.errors import InvalidInput, Problem
from cfl_graph.images import lifecycle
from cfl_graph.images.blob_claims import BlobClaims
from cfl_graph.images.checks import (
    CheckResult,
    ImageFacts,
    candidate_models,
    certified_version,
    check_image,
)
from cfl_graph.images.errors import (
    ImageNotFound,
    LibraryError,
    LibraryProblem,
    PathwayNotFound,
    UploadRefused,
)
from cfl_graph.images.lifecycle import Step
from cfl_graph.images.notes import ReleaseNotes, ReleaseNotesRejected, render_release_notes
from cfl_graph.images.ota import OtaHeader, ParsedImage
from cfl_graph.images.receive import Received, Receiver
from cfl_graph.keys import VersionKey
from cfl_graph.tables import (
    AuditEvent,
    CommercialDeclaration,
    ImageState,
    LibraryImage,
    Party,
    UpgradePathway,
)
from cfl_graph.tables.base import utc_now
from cfl_graph.tables.rows import ImageRow

log = logging.getLogger(__name__)

MIN_REASON_CHARACTERS = 10
MAX_REASON_CHARACTERS = 2000


@dataclass(frozen=True)
class Download:
    """A response that carries bytes: the whole file (`byte_range` None) or [start, end)."""

    byte_range: tuple[int, int] | None


D = TypeVar("D")


@dataclass(frozen=True)
class UploadFields:
    """What an uploader may say beside the bytes; the device model is found from the CPL if not given."""

    model_id: str | None = None
    hardware_version: str | None = None
    release_notes: str | None = None


def header_json(header: OtaHeader) -> dict[str, Any]:
    return {
        "headerVersion": f"{header.header_version:04X}",
        "headerLength": header.header_length,
        "fieldControl": f"{header.field_control:04X}",
        "manufacturerCode": header.manufacturer_code,
        "imageType": f"{header.image_type:04X}",
        "fileVersion": header.file_version,
        "zigbeeStackVersion": f"{header.zigbee_stack_version:04X}",
        "headerString": header.header_string,
        "totalImageSize": header.total_image_size,
        "securityCredentialVersion": header.security_credential_version,
        "upgradeFileDestination": header.upgrade_file_destination_eui64,
        "minimumHardwareVersion": header.minimum_hardware_version,
        "maximumHardwareVersion": header.maximum_hardware_version,
    }


def download_name(image: ImageRow) -> str:
    """`MMMM-TTTT-VVVVVVVV-<sha256>.zigbee`: the DCC's name for the image, made unique by its digest."""
    return f"{image.dcc_file_name}-{image.file_sha256}.zigbee"


def _facts(image: LibraryImage) -> ImageFacts:
    return ImageFacts(
        manufacturer_image_sha256=image.manufacturer_image_sha256,
        signed_sha256=image.signed_sha256,
        signature=bytes.fromhex(image.signature),
        minimum_hardware_version=image.header.get("minimumHardwareVersion"),
        maximum_hardware_version=image.header.get("maximumHardwareVersion"),
    )


def _parsed_facts(parsed: ParsedImage) -> ImageFacts:
    return ImageFacts(
        manufacturer_image_sha256=parsed.manufacturer_image_sha256,
        signed_sha256=parsed.signed_sha256,
        signature=parsed.signature,
        minimum_hardware_version=parsed.header.minimum_hardware_version,
        maximum_hardware_version=parsed.header.maximum_hardware_version,
    )


def _apply_check(image: LibraryImage, result: CheckResult) -> None:
    image.problems = [p.as_json() for p in result.problems]
    image.checked_at = utc_now()
    image.checked_snapshot_id = result.snapshot_id
    image.signature_key_id = result.signature_key_id


def _notes(markdown: str) -> ReleaseNotes:
    try:
        return render_release_notes(markdown)
    except ReleaseNotesRejected as rejected:
        problems = [Problem(LibraryProblem.RELEASE_NOTES_INVALID, reason) for reason in rejected.problems]
        raise InvalidInput(f"the release notes were not accepted: {rejected}", problems) from rejected


def _reason(text: str, what: str) -> str:
    reason = " ".join(text.split())
    # What a reader sees counts: ten zero-width spaces are no reason.
    visible = ids.visible_length(reason)
    if visible < MIN_REASON_CHARACTERS or len(reason) > MAX_REASON_CHARACTERS:
        raise InvalidInput(
            f"the {what} must be {MIN_REASON_CHARACTERS}–{MAX_REASON_CHARACTERS} characters; "
            f"it has {visible} that can be seen",
            [Problem(LibraryProblem.BAD_FIELD, f"{what}: {visible} visible characters")],
        )
    # Whitespace is folded above; what is left of the control range (a NUL, a bell) is no one's reason,
    # and PostgreSQL could not even store a NUL.
    if found := ids.control_character(reason):
        raise InvalidInput(
            f"the {what} contains the control character {found}",
            [Problem(LibraryProblem.BAD_FIELD, f"{what}: control character {found}")],
        )
    return reason


def _hex_field(value: str | None, normalise: Any, field: str) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return str(normalise(value.strip()))
    except ids.InvalidValue as exc:
        raise UploadRefused([Problem(LibraryProblem.BAD_FIELD, f"{field}: {exc}")]) from exc


def _pathway_ends(model: VersionKey, from_version: str, to_version: str) -> tuple[VersionKey, VersionKey]:
    """The two versions of a pathway of `model`, as the CPL writes them (or `InvalidInput`)."""
    start = VersionKey(
        model.manufacturer_id, model.model_id, model.hardware_version, from_version
    ).normalised()
    end = VersionKey(start.manufacturer_id, start.model_id, start.hardware_version, to_version).normalised()
    return start, end


def _subject(image: LibraryImage) -> str:
    return f"image {image.id} ({image.dcc_file_name}, {VersionKey.of(image)})"


class ImageLibrary:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], store: BlobStore, *, max_image_bytes: int):
        self.sessions = sessions
        # Every state change reads what it decides by inside the transaction that acts on it.
        self.writes = writer_of(sessions)
        self.claims = BlobClaims(self.writes, store)
        self.store = store
        self.max_image_bytes = max_image_bytes

    # --- reading -------------------------------------------------------------------------------

    async def _visible(
        self, session: AsyncSession, principal: Principal | None, image_id: int
    ) -> LibraryImage:
        authorise(principal, Action.READ_CATALOGUE)
        image = await session.get(LibraryImage, image_id, with_for_update=True)
        if image is None or not lifecycle.may_see(principal, image):
            raise ImageNotFound(image_id)
        return image

    async def get(self, principal: Principal | None, image_id: int) -> LibraryImage:
        async with self.sessions() as session:
            authorise(principal, Action.READ_CATALOGUE)
            image = await session.get(LibraryImage, image_id)
            if image is None or not lifecycle.may_see(principal, image):
                raise ImageNotFound(image_id)
            return image

    # --- upload --------------------------------------------------------------------------------

    def receiver(self, principal: Principal | None) -> Receiver:
        """Ask before any byte is read whether this caller may upload at all."""
        authorise(principal, Action.UPLOAD_IMAGE, manufacturer_id=ANY_OWN)
        return Receiver(self.store.staging, self.max_image_bytes)

    async def accept(
        self,
        principal: Principal | None,
        received: Received,
        fields: UploadFields,
        *,
        actor: Actor | None = None,
    ) -> LibraryImage:
        """Check a received upload and keep it as a draft (with any problems still to fix), or refuse it.

        `actor` names who did it in the audit trail when that is not the principal (an operator's import)."""
        try:
            return await self._accept(principal, received, fields, actor)
        finally:
            received.discard()

    async def _accept(
        self, principal: Principal | None, received: Received, fields: UploadFields, actor: Actor | None
    ) -> LibraryImage:
        parsed = received.parsed
        header = parsed.header
        manufacturer = header.manufacturer_code
        principal = authorise(principal, Action.UPLOAD_IMAGE, manufacturer_id=ANY_OWN)
        if manufacturer not in principal.manufacturer_ids:
            own = ", ".join(sorted(principal.manufacturer_ids))
            raise UploadRefused(
                [
                    Problem(
                        LibraryProblem.MANUFACTURER_NOT_YOURS,
                        f"the OTA header's manufacturer code is {manufacturer}; "
                        f"{principal.party_name} uploads for {own} only",
                    )
                ],
                code="FORBIDDEN",
            )
        authorise(principal, Action.UPLOAD_IMAGE, manufacturer_id=manufacturer)
        model_id = _hex_field(fields.model_id, ids.model_id, "modelId")
        hardware_version = _hex_field(fields.hardware_version, ids.hardware_version, "hardwareVersion")
        if (model_id is None) != (hardware_version is None):
            raise UploadRefused(
                [Problem(LibraryProblem.BAD_FIELD, "give both modelId and hardwareVersion, or neither")],
            )
        notes = None
        if fields.release_notes is not None and fields.release_notes.strip():
            try:
                notes = render_release_notes(fields.release_notes)
            except ReleaseNotesRejected as rejected:
                raise UploadRefused(
                    [Problem(LibraryProblem.RELEASE_NOTES_INVALID, r) for r in rejected.problems]
                ) from rejected

        async with self.sessions() as session:
            key = await self._version_key(session, parsed, model_id, hardware_version)
            await self._refuse_duplicate(session, key)

        # The bytes are claimed before they go into the store, so no collection can take them away
        # between the put and the record (`blob_claims`).
        claim = await self.claims.claim_upload(parsed.file_sha256)
        try:
            await self.store.put(received.path, parsed.file_sha256, parsed.total_length)
            async with self.writes.begin() as session:
                result = await check_image(
                    session, key, _parsed_facts(parsed), has_release_notes=notes is not None
                )
                image = LibraryImage(
                    manufacturer_id=key.manufacturer_id,
                    model_id=key.model_id,
                    hardware_version=key.hardware_version,
                    firmware_version=key.firmware_version,
                    state=ImageState.DRAFT,
                    size=parsed.total_length,
                    file_sha256=parsed.file_sha256,
                    manufacturer_image_sha256=parsed.manufacturer_image_sha256,
                    signed_sha256=parsed.signed_sha256,
                    signature=parsed.signature.hex(),
                    manufacturer_image_offset=parsed.manufacturer_image_offset,
                    manufacturer_image_length=parsed.manufacturer_image_length,
                    image_type=header.image_type,
                    dcc_file_name=header.dcc_file_name,
                    header=header_json(header),
                    release_notes_markdown=None if notes is None else notes.markdown,
                    release_notes_html=None if notes is None else notes.html,
                    release_notes_text=None if notes is None else notes.text,
                    uploaded_at=(now := utc_now()),
                    state_changed_at=now,
                    uploaded_by_party_id=principal.party_id,
                    uploaded_by_token=principal.token_public_id,
                )
                _apply_check(image, result)
                session.add(image)
                await session.flush()
                await revisions.bump(session, served=False)
                await record(
                    session,
                    actor or Actor.of(principal),
                    "image.uploaded",
                    _subject(image),
                    {
                        "image_id": image.id,
                        "file_sha256": image.file_sha256,
                        "manufacturer_image_sha256": image.manufacturer_image_sha256,
                        "size": image.size,
                        "problems": [p["problem"] for p in image.problems],
                    },
                )
                await self.claims.release_in(session, claim)
        except IntegrityError as exc:
            await self._give_up(claim, parsed.file_sha256)
            raise UploadRefused(
                [Problem(LibraryProblem.ALREADY_IN_LIBRARY, f"an image for {key} was stored a moment ago")],
                code="CONFLICT",
            ) from exc
        except BaseException:
            await self._give_up(claim, parsed.file_sha256)
            raise
        log.info("image %s uploaded by %s: %s", image.id, principal.party_name, image.dcc_file_name)
        return image

    async def _version_key(
        self, session: AsyncSession, parsed: ParsedImage, model_id: str | None, hardware_version: str | None
    ) -> VersionKey:
        header = parsed.header
        if model_id is not None and hardware_version is not None:
            return VersionKey(header.manufacturer_code, model_id, hardware_version, header.file_version)
        candidates = await candidate_models(
            session, header.manufacturer_code, header.file_version, parsed.manufacturer_image_sha256
        )
        if not candidates:
            raise UploadRefused(
                [
                    Problem(
                        LibraryProblem.MODEL_UNKNOWN,
                        f"the current CPL certifies firmware {header.file_version} for no device model of "
                        f"manufacturer {header.manufacturer_code}; say which model it is for with modelId "
                        "and hardwareVersion",
                    )
                ],
            )
        if len(candidates) > 1:
            listed = ", ".join(f"model {m} hardware {h}" for m, h in candidates)
            raise UploadRefused(
                [
                    Problem(
                        LibraryProblem.MODEL_AMBIGUOUS,
                        f"the current CPL certifies firmware {header.file_version} for {listed}; say which "
                        "with modelId and hardwareVersion",
                    )
                ],
            )
        (model, hardware) = candidates[0]
        return VersionKey(header.manufacturer_code, model, hardware, header.file_version)

    @staticmethod
    async def _refuse_duplicate(session: AsyncSession, key: VersionKey) -> None:
        existing = (
            await session.execute(
                select(LibraryImage.id, LibraryImage.state).where(
                    LibraryImage.manufacturer_id == key.manufacturer_id,
                    LibraryImage.model_id == key.model_id,
                    LibraryImage.hardware_version == key.hardware_version,
                    LibraryImage.firmware_version == key.firmware_version,
                )
            )
        ).first()
        if existing is not None:
            image_id, state = existing
            advice = "discard the draft first" if state == ImageState.DRAFT else "one image per version, ever"
            raise UploadRefused(
                [
                    Problem(
                        LibraryProblem.ALREADY_IN_LIBRARY,
                        f"the library already holds image {image_id} ({state}) for {key}; {advice}",
                    )
                ],
                code="CONFLICT",
            )

    async def _give_up(self, claim: int, sha256: str) -> None:
        """After a failed upload: give the claim up, and the bytes too if nothing else refers to them."""
        await self.claims.release(claim)
        await self.claims.collect(sha256)

    # --- state changes -------------------------------------------------------------------------

    async def recheck(self, principal: Principal | None, image_id: int) -> LibraryImage:
        """Check a draft again (after a CPL sync, a key registration or new notes) and keep the result.

        Keeping the result changes the draft, so it is the uploader's write, refused to read-only tokens."""
        async with self.writes.begin() as session:
            image = await self._visible(session, principal, image_id)
            principal = authorise(principal, Action.UPLOAD_IMAGE, manufacturer_id=image.manufacturer_id)
            lifecycle.require(image, Step.RECHECK)
            _apply_check(image, await self._check(session, image))
            await revisions.bump(session, served=False)
            return image

    async def approve(self, principal: Principal | None, image_id: int) -> LibraryImage:
        async with self.writes.begin() as session:
            image = await self._visible(session, principal, image_id)
            principal = authorise(principal, Action.APPROVE_IMAGE, manufacturer_id=image.manufacturer_id)
            lifecycle.require(image, Step.APPROVE)
            if image.approved_at is not None:
                raise LibraryError(
                    f"image {image.id} was already approved on {image.approved_at:%Y-%m-%d %H:%M}"
                )
            if principal.token_public_id is not None and principal.token_public_id == image.uploaded_by_token:
                raise LibraryError(
                    f"image {image.id} was uploaded with this token; a second person approves it with "
                    "another token of the same manufacturer (four-eyes)"
                )
            await self._require_no_problems(session, image, "approved")
            image.approved_at = utc_now()
            image.approved_by_token = principal.token_public_id
            # The approval covers these bytes and these notes; a change to the notes voids it.
            image.approved_notes_sha256 = lifecycle.notes_sha256(image)
            await revisions.bump(session, served=False)
            await record(
                session,
                Actor.of(principal),
                "image.approved",
                _subject(image),
                {
                    "image_id": image.id,
                    "file_sha256": image.file_sha256,
                    "notes_sha256": image.approved_notes_sha256,
                },
            )
            return image

    async def publish(
        self, principal: Principal | None, image_id: int, *, actor: Actor | None = None
    ) -> LibraryImage:
        async with self.writes.begin() as session:
            image = await self._visible(session, principal, image_id)
            principal = authorise(principal, Action.PUBLISH_IMAGE, manufacturer_id=image.manufacturer_id)
            lifecycle.require(image, Step.PUBLISH)
            # Publication and a commercial declaration of the same version decide by each other's rows.
            await lock_key(session, "version", *VersionKey.of(image).parts)
            await self._require_no_problems(session, image, "published")
            uploader = await session.get(Party, image.uploaded_by_party_id)
            refusal = lifecycle.approval_refusal(
                image, required=uploader is not None and uploader.requires_approval
            )
            if refusal is not None:
                raise refusal
            image.state = ImageState.PUBLISHED
            image.published_at = image.state_changed_at = utc_now()
            image.published_by = principal.party_name
            await revisions.bump(session, served=True)
            await record(
                session,
                actor or Actor.of(principal),
                "image.published",
                _subject(image),
                {
                    "image_id": image.id,
                    "file_sha256": image.file_sha256,
                    "signature_key_id": image.signature_key_id,
                },
            )
            return image

    async def withdraw(self, principal: Principal | None, image_id: int, reason: str) -> LibraryImage:
        async with self.writes.begin() as session:
            image = await self._visible(session, principal, image_id)
            principal = authorise(principal, Action.WITHDRAW_IMAGE, manufacturer_id=image.manufacturer_id)
            lifecycle.require(image, Step.WITHDRAW)
            image.withdrawal_reason = _reason(reason, "withdrawal reason")
            was_held = image.state == ImageState.HELD
            image.state = ImageState.WITHDRAWN
            image.withdrawn_at = image.state_changed_at = utc_now()
            image.withdrawn_by = principal.party_name
            # A withdrawal ends a hold for good; the audit trail keeps why it was held.
            image.hold_problem = image.hold_detail = None
            image.held_at = image.held_snapshot_id = None
            await revisions.bump(session, served=True)
            await record(
                session,
                Actor.of(principal),
                "image.withdrawn",
                _subject(image),
                {"image_id": image.id, "reason": image.withdrawal_reason, "was_held": was_held},
            )
            return image

    async def update_release_notes(
        self, principal: Principal | None, image_id: int, markdown: str
    ) -> LibraryImage:
        async with self.writes.begin() as session:
            image = await self._visible(session, principal, image_id)
            principal = authorise(principal, Action.EDIT_RELEASE_NOTES, manufacturer_id=image.manufacturer_id)
            lifecycle.require(image, Step.EDIT_NOTES)
            notes = _notes(markdown)  # who may, and whether the state allows it, are said first
            voided = image.approved_at is not None and image.release_notes_markdown != notes.markdown
            image.release_notes_markdown = notes.markdown
            image.release_notes_html = notes.html
            image.release_notes_text = notes.text
            _apply_check(image, await self._check(session, image))
            await revisions.bump(session, served=False)
            await record(
                session,
                Actor.of(principal),
                "image.notes_updated",
                _subject(image),
                {"image_id": image.id, "notes_sha256": hashlib.sha256(notes.markdown.encode()).hexdigest()},
            )
            if voided:
                # An approval binds to exactly what was approved: new notes need a new approval.
                approved_by = image.approved_by_token
                image.approved_at = image.approved_by_token = image.approved_notes_sha256 = None
                await record(
                    session,
                    Actor.of(principal),
                    "image.approval_voided",
                    _subject(image),
                    {"image_id": image.id, "approved_by_token": approved_by, "why": "release notes changed"},
                )
            return image

    async def discard(self, principal: Principal | None, image_id: int) -> None:
        """Delete a draft (a published image never is); its bytes go unless another record has them."""
        async with self.writes.begin() as session:
            image = await self._visible(session, principal, image_id)
            principal = authorise(principal, Action.UPLOAD_IMAGE, manufacturer_id=image.manufacturer_id)
            lifecycle.require(image, Step.DISCARD)
            sha256 = image.file_sha256
            subject = _subject(image)
            await session.delete(image)
            await revisions.bump(session, served=False)
            await record(
                session,
                Actor.of(principal),
                "image.discarded",
                subject,
                {"image_id": image_id, "file_sha256": sha256},
            )
        await self.claims.collect(sha256)

    async def declare_commercial(
        self, principal: Principal | None, key: VersionKey, reason: str
    ) -> CommercialDeclaration:
        key = key.normalised()
        principal = authorise(principal, Action.DECLARE_COMMERCIAL, manufacturer_id=key.manufacturer_id)
        why = _reason(reason, "reason")
        async with self.writes.begin() as session:
            await lock_key(session, "version", *key.parts)
            if await certified_version(session, key) is None:
                raise InvalidInput(
                    f"{key} is not on the current CPL; only certified versions can be declared commercial",
                    [Problem(LibraryProblem.NOT_ON_CPL, str(key))],
                )
            pk = (key.manufacturer_id, key.model_id, key.hardware_version, key.firmware_version)
            if await session.get(CommercialDeclaration, pk) is not None:
                raise LibraryError(f"{key} is already declared commercial")
            image = (
                await session.execute(
                    select(LibraryImage).where(
                        LibraryImage.manufacturer_id == key.manufacturer_id,
                        LibraryImage.model_id == key.model_id,
                        LibraryImage.hardware_version == key.hardware_version,
                        LibraryImage.firmware_version == key.firmware_version,
                        # A held image would be served again once the CPL lists it again.
                        LibraryImage.state.in_([ImageState.PUBLISHED, ImageState.HELD]),
                    )
                )
            ).scalar_one_or_none()
            if image is not None:
                raise LibraryError(
                    f"image {image.id} is {image.state} for {key}; withdraw it before declaring the "
                    "version commercial"
                )
            declaration = CommercialDeclaration(
                manufacturer_id=key.manufacturer_id,
                model_id=key.model_id,
                hardware_version=key.hardware_version,
                firmware_version=key.firmware_version,
                reason=why,
                declared_at=utc_now(),
                declared_by=principal.party_name,
                declared_by_party_id=principal.party_id,
            )
            session.add(declaration)
            await revisions.bump(session, served=True)
            await record(
                session,
                Actor.of(principal),
                "version.declared_commercial",
                str(key),
                {**key._asdict(), "reason": why},
            )
            return declaration

    async def record_upgrade_pathway(
        self, principal: Principal | None, model: VersionKey, from_version: str, to_version: str
    ) -> UpgradePathway:
        """Record that devices of `model` on `from_version` may upgrade to `to_version` (both certified)."""
        start, end = _pathway_ends(model, from_version, to_version)
        principal = authorise(principal, Action.RECORD_UPGRADE_PATHWAY, manufacturer_id=start.manufacturer_id)
        if start == end:
            raise InvalidInput("an upgrade pathway goes from one version to another, not to itself")
        # ZigBee OTA orders file versions as unsigned numbers and a device takes only a higher one; that
        # every pathway goes up is also what keeps pathways free of cycles.
        if int(end.firmware_version, 16) < int(start.firmware_version, 16):
            raise InvalidInput(
                f"an upgrade pathway goes to a higher firmware version: {end.firmware_version} is lower than "
                f"{start.firmware_version} (ZigBee OTA compares versions as numbers), so devices would not "
                "take it",
                [Problem(LibraryProblem.BAD_FIELD, f"toVersion: {end.firmware_version} is a downgrade")],
            )
        async with self.writes.begin() as session:
            for key in (start, end):
                if await certified_version(session, key) is None:
                    raise InvalidInput(
                        f"{key} is not on the current CPL; pathways join certified versions",
                        [Problem(LibraryProblem.NOT_ON_CPL, str(key))],
                    )
            pk = (*start.parts, end.firmware_version)
            if await session.get(UpgradePathway, pk) is not None:
                raise LibraryError(
                    f"the pathway {start.firmware_version} → {end.firmware_version} is already recorded"
                )
            pathway = UpgradePathway(
                manufacturer_id=start.manufacturer_id,
                model_id=start.model_id,
                hardware_version=start.hardware_version,
                from_version=start.firmware_version,
                to_version=end.firmware_version,
                recorded_at=utc_now(),
                recorded_by=principal.party_name,
                recorded_by_party_id=principal.party_id,
            )
            session.add(pathway)
            await revisions.bump(session, served=True)
            await record(
                session,
                Actor.of(principal),
                "pathway.recorded",
                f"{start} → {end.firmware_version}",
                {**start._asdict(), "to_version": end.firmware_version},
            )
            return pathway

    async def remove_upgrade_pathway(
        self, principal: Principal | None, model: VersionKey, from_version: str, to_version: str
    ) -> UpgradePathway:
        """Remove a recorded pathway (its versions need not be on the CPL any more); the audit trail
        keeps that it was there."""
        start, end = _pathway_ends(model, from_version, to_version)
        principal = authorise(principal, Action.RECORD_UPGRADE_PATHWAY, manufacturer_id=start.manufacturer_id)
        async with self.writes.begin() as session:
            pathway = await session.get(
                UpgradePathway, (*start.parts, end.firmware_version), with_for_update=True
            )
            if pathway is None:
                raise PathwayNotFound(
                    f"no pathway {start.firmware_version} → {end.firmware_version} is recorded for "
                    f"manufacturer {start.manufacturer_id} model {start.model_id} hardware "
                    f"{start.hardware_version}"
                )
            await session.delete(pathway)
            await revisions.bump(session, served=True)
            await record(
                session,
                Actor.of(principal),
                "pathway.removed",
                f"{start} → {end.firmware_version}",
                {**start._asdict(), "to_version": end.firmware_version},
            )
            return pathway

    # --- downloads -----------------------------------------------------------------------------

    async def for_download(self, principal: Principal | None, image_id: int) -> LibraryImage:
        """The image if this caller may take its bytes (`lifecycle.download_refusal` says whose)."""
        async with self.sessions() as session:
            return await self._downloadable(session, principal, image_id)

    async def _downloadable(
        self, session: AsyncSession, principal: Principal | None, image_id: int
    ) -> LibraryImage:
        authorise(principal, Action.READ_CATALOGUE)
        image = await session.get(LibraryImage, image_id)
        if image is None or not lifecycle.may_see(principal, image):
            raise ImageNotFound(image_id)
        if (refusal := lifecycle.download_refusal(principal, image)) is not None:
            raise refusal
        authorise(principal, Action.DOWNLOAD_IMAGE)
        return image

    async def take(
        self,
        principal: Principal | None,
        image_id: int,
        decide: Callable[[LibraryImage], D],
        *,
        record_bytes: bool = True,
    ) -> tuple[LibraryImage, D]:
        """Look the image up, let `decide` say what the response will be, and record a download event in
        the same transaction when bytes will go out (`decide` gave a `Download` and `record_bytes`, false
        for HEAD): one transaction per download, which matters when many clients download at once."""
        async with self.writes.begin() as session:
            image = await self._downloadable(session, principal, image_id)
            decision = decide(image)
            if record_bytes and isinstance(decision, Download):
                assert principal is not None
                await self._record_download(session, principal, image, decision.byte_range)
            return image, decision

    @staticmethod
    async def _record_download(
        session: AsyncSession, principal: Principal, image: LibraryImage, byte_range: tuple[int, int] | None
    ) -> None:
        await record(
            session,
            Actor.of(principal),
            "image.downloaded",
            _subject(image),
            {
                "image_id": image.id,
                "file_sha256": image.file_sha256,
                "file_name": download_name(image),
                "range": None if byte_range is None else f"{byte_range[0]}-{byte_range[1] - 1}",
            },
        )

    # --- helpers -------------------------------------------------------------------------------

    @staticmethod
    async def _check(session: AsyncSession, image: LibraryImage) -> CheckResult:
        return await check_image(
            session,
            VersionKey.of(image),
            _facts(image),
            has_release_notes=image.release_notes_markdown is not None,
        )

    async def _require_no_problems(self, session: AsyncSession, image: LibraryImage, verb: str) -> None:
        result = await self._check(session, image)
        if result.problems:
            raise LibraryError(
                f"image {image.id} cannot be {verb}: "
                + "; ".join(f"{p.code}: {p.detail}" for p in result.problems),
                result.problems,
            )
        _apply_check(image, result)


async def download_receipts(
    sessions: async_sessionmaker[AsyncSession], principal: Principal, *, limit: int = 1000
) -> list[dict[str, Any]]:
    """The caller's own downloads, newest first: what it took, when."""
    async with sessions() as session:
        events = (
            await session.execute(
                select(AuditEvent)
                .where(
                    AuditEvent.actor_party_id == principal.party_id, AuditEvent.action == "image.downloaded"
                )
                .order_by(AuditEvent.id.desc())
                .limit(limit)
            )
        ).scalars()
        return [
            {
                "eventId": event.id,
                "at": event.occurred_at.astimezone(dt.UTC).isoformat(),
                "imageId": event.details.get("image_id"),
                "fileName": event.details.get("file_name"),
                "fileSha256": event.details.get("file_sha256"),
                "range": event.details.get("range"),
            }
            for event in events
        ]

"""The library side's images: the record type, one query and the lifecycle mutations.

Resolvers stay thin: each mutation is one call into `ImageLibrary`, which asks the policy, checks the
input and records the audit event; its refusals reach the client as errors with a `code` and, where an
image has them, its named `problems`.
"""

from __future__ import annotations

import datetime as dt
import functools

import strawberry

from cfl_graph.doors.graph.context import Info
from cfl_graph.doors.graph.node import BOTH, CFL, Node, global_id, parse_global_id
from cfl_graph.errors import InvalidInput
from cfl_graph.identifiers import InvalidValue
from cfl_graph.images.errors import ImageNotFound
from cfl_graph.images.library import download_name
from cfl_graph.keys import VersionKey
from cfl_graph.row_ids import is_ascii_number, row_id
from cfl_graph.tables import ImageState
from cfl_graph.tables import UpgradePathway as PathwayRow
from cfl_graph.tables.rows import DeclarationRow, ImageRow

strawberry.enum(
    ImageState,
    description="Where an image is in its life: drafts are seen by their manufacturer only; only published "
    "images are served. A held image is one the current CPL no longer certifies as it is.",
)


@strawberry.type(description="A named reason an image cannot be published yet, as the uploader is shown it.")
class ImageProblem:
    problem: str
    detail: str


@strawberry.type(description="The image's OTA header fields (hex values upper-case, as the DCC writes them).")
class OtaHeader:
    header_version: str
    header_length: int
    field_control: str
    manufacturer_code: str
    image_type: str
    file_version: str
    zigbee_stack_version: str
    header_string: str
    total_image_size: int
    security_credential_version: int | None
    upgrade_file_destination: str | None
    minimum_hardware_version: str | None
    maximum_hardware_version: str | None


@strawberry.type(
    description="Why a published image is held: the current CPL no longer lists its version, lists it as "
    "not active, or lists another hash. Released when a later snapshot lists it again as it is."
)
class ImageHold:
    problem: str = strawberry.field(description="not-on-cpl, not-active-on-cpl or hash-mismatch.")
    detail: str
    since: dt.datetime
    cpl_snapshot_id: int = strawberry.field(description="The snapshot that caused the hold.")


@strawberry.type(description="Release notes: the Markdown as uploaded, and sanitised HTML and plain text.")
class ReleaseNotes:
    markdown: str
    html: str
    text: str


@strawberry.type(
    description="A firmware image held by the library, for one certified version of a device model."
)
class LibraryImage(Node):
    image_id: int = strawberry.field(description="The image's number, as in /api/v1/images/{imageId}.")
    state: ImageState
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str
    dcc_file_name: str = strawberry.field(
        description="`MMMM-TTTT-VVVVVVVV`: manufacturer, image type, version."
    )
    file_name: str = strawberry.field(description="The download's file name, with the file's SHA-256.")
    size: int
    file_sha256: str = strawberry.field(description="SHA-256 of every byte of the file.")
    manufacturer_image_sha256: str = strawberry.field(
        description="SHA-256 of the Manufacturer Image alone: the value the CPL lists."
    )
    signed_sha256: str = strawberry.field(description="SHA-256 of the bytes the signature covers.")
    signature_key_id: str | None = strawberry.field(
        description="Fingerprint of the registered key the signature verified with at the last check."
    )
    header: OtaHeader
    problems: list[ImageProblem]
    checked_at: dt.datetime
    release_notes: ReleaseNotes | None
    uploaded_at: dt.datetime
    approved_at: dt.datetime | None
    published_at: dt.datetime | None
    withdrawn_at: dt.datetime | None
    withdrawal_reason: str | None
    hold: ImageHold | None = strawberry.field(description="Set while the image is held.")
    released_at: dt.datetime | None = strawberry.field(description="When it was last released from a hold.")
    download_url: str

    @strawberry.federation.field(shareable=True, metadata=BOTH)
    def id(self) -> strawberry.ID:
        return global_id("LibraryImage", self.image_id)

    @classmethod
    def from_row(cls, row: ImageRow) -> LibraryImage:
        notes = None
        if row.release_notes_markdown is not None:
            notes = ReleaseNotes(
                markdown=row.release_notes_markdown,
                html=row.release_notes_html or "",
                text=row.release_notes_text or "",
            )
        return cls(
            image_id=row.id,
            state=row.state,
            manufacturer_id=row.manufacturer_id,
            model_id=row.model_id,
            hardware_version=row.hardware_version,
            firmware_version=row.firmware_version,
            dcc_file_name=row.dcc_file_name,
            file_name=download_name(row),
            size=row.size,
            file_sha256=row.file_sha256,
            manufacturer_image_sha256=row.manufacturer_image_sha256,
            signed_sha256=row.signed_sha256,
            signature_key_id=row.signature_key_id,
            header=OtaHeader(**{_snake(k): v for k, v in row.header.items()}),
            problems=[ImageProblem(problem=p["problem"], detail=p["detail"]) for p in row.problems],
            checked_at=row.checked_at,
            release_notes=notes,
            uploaded_at=row.uploaded_at,
            approved_at=row.approved_at,
            published_at=row.published_at,
            withdrawn_at=row.withdrawn_at,
            withdrawal_reason=row.withdrawal_reason,
            hold=None
            if row.state != ImageState.HELD or row.held_at is None
            else ImageHold(
                problem=row.hold_problem or "",
                detail=row.hold_detail or "",
                since=row.held_at,
                cpl_snapshot_id=row.held_snapshot_id or 0,
            ),
            released_at=row.released_at,
            download_url=f"/api/v1/images/{row.id}/file",
        )


@strawberry.type(
    description="A certified version its manufacturer declared commercial: listed, never served."
)
class CommercialDeclaration:
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str
    reason: str
    declared_at: dt.datetime
    declared_by: str

    @classmethod
    def from_row(cls, row: DeclarationRow) -> CommercialDeclaration:
        return cls(
            manufacturer_id=row.manufacturer_id,
            model_id=row.model_id,
            hardware_version=row.hardware_version,
            firmware_version=row.firmware_version,
            reason=row.reason,
            declared_at=row.declared_at,
            declared_by=row.declared_by,
        )


@strawberry.type(
    description="Devices of a model on `fromVersion` may upgrade straight to `toVersion` (always a higher "
    "version, as ZigBee OTA orders them)."
)
class UpgradePathway:
    manufacturer_id: str
    model_id: str
    hardware_version: str
    from_version: str
    to_version: str
    recorded_at: dt.datetime
    recorded_by: str

    @classmethod
    def from_row(cls, row: PathwayRow) -> UpgradePathway:
        return cls(
            manufacturer_id=row.manufacturer_id,
            model_id=row.model_id,
            hardware_version=row.hardware_version,
            from_version=row.from_version,
            to_version=row.to_version,
            recorded_at=row.recorded_at,
            recorded_by=row.recorded_by,
        )


@functools.cache
def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def image_id(raw: strawberry.ID) -> int:
    """An image's number, or its global id; `InvalidInput` naming the argument otherwise."""
    text = str(raw)
    expected = "id: image ids are whole numbers or LibraryImage global ids"
    if not is_ascii_number(text):
        try:
            kind, parts = parse_global_id(text)
        except InvalidInput:
            kind, parts = "", []
        if kind != "LibraryImage" or len(parts) != 1:
            raise InvalidInput(f"{expected}, not {text[:40]!r}")
        text = parts[0]
    try:
        return row_id(text, "id: an image's number")
    except InvalidValue as exc:
        raise InvalidInput(exc.reason) from None


@strawberry.type
class ImageQuery:
    @strawberry.field(
        metadata=CFL, description="An image by id, if you may see it (drafts: their manufacturer only)."
    )
    async def library_image(self, info: Info, id: strawberry.ID) -> LibraryImage | None:
        try:
            row = await info.context.library.get(info.context.principal, image_id(id))
        except ImageNotFound:
            return None
        return LibraryImage.from_row(row)


@strawberry.type
class ImageMutation:
    @strawberry.mutation(metadata=CFL, description="Publish a draft with no problems; it is then immutable.")
    async def publish_image(self, info: Info, id: strawberry.ID) -> LibraryImage:
        return LibraryImage.from_row(await info.context.library.publish(info.context.principal, image_id(id)))

    @strawberry.mutation(
        metadata=CFL, description="Approve a draft uploaded with another token (four-eyes manufacturers)."
    )
    async def approve_image(self, info: Info, id: strawberry.ID) -> LibraryImage:
        return LibraryImage.from_row(await info.context.library.approve(info.context.principal, image_id(id)))

    @strawberry.mutation(
        metadata=CFL,
        description="Withdraw a published image: still listed with the reason, no longer served.",
    )
    async def withdraw_image(self, info: Info, id: strawberry.ID, reason: str) -> LibraryImage:
        row = await info.context.library.withdraw(info.context.principal, image_id(id), reason)
        return LibraryImage.from_row(row)

    @strawberry.mutation(metadata=CFL, description="Replace a draft's release notes (Markdown).")
    async def update_release_notes(self, info: Info, id: strawberry.ID, markdown: str) -> LibraryImage:
        row = await info.context.library.update_release_notes(info.context.principal, image_id(id), markdown)
        return LibraryImage.from_row(row)

    @strawberry.mutation(
        metadata=CFL, description="Check a draft again against the current CPL, keys and declarations."
    )
    async def recheck_image(self, info: Info, id: strawberry.ID) -> LibraryImage:
        return LibraryImage.from_row(await info.context.library.recheck(info.context.principal, image_id(id)))

    @strawberry.mutation(metadata=CFL, description="Delete a draft and free its version for another upload.")
    async def discard_image(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        await info.context.library.discard(info.context.principal, image_id(id))
        return id

    @strawberry.mutation(
        metadata=CFL, description="Declare a certified version commercial: listed as such, never distributed."
    )
    async def declare_commercial(
        self,
        info: Info,
        manufacturer_id: str,
        model_id: str,
        hardware_version: str,
        firmware_version: str,
        reason: str,
    ) -> CommercialDeclaration:
        key = VersionKey(manufacturer_id, model_id, hardware_version, firmware_version)
        row = await info.context.library.declare_commercial(info.context.principal, key, reason)
        return CommercialDeclaration.from_row(row)

    @strawberry.mutation(
        metadata=CFL,
        description="Record that devices of a model on one certified version may upgrade to another.",
    )
    async def record_upgrade_pathway(
        self,
        info: Info,
        manufacturer_id: str,
        model_id: str,
        hardware_version: str,
        from_version: str,
        to_version: str,
    ) -> UpgradePathway:
        model = VersionKey(manufacturer_id, model_id, hardware_version, from_version)
        row = await info.context.library.record_upgrade_pathway(
            info.context.principal, model, from_version, to_version
        )
        return UpgradePathway.from_row(row)

    @strawberry.mutation(
        metadata=CFL, description="Remove a recorded upgrade pathway (the audit trail keeps the record)."
    )
    async def remove_upgrade_pathway(
        self,
        info: Info,
        manufacturer_id: str,
        model_id: str,
        hardware_version: str,
        from_version: str,
        to_version: str,
    ) -> UpgradePathway:
        model = VersionKey(manufacturer_id, model_id, hardware_version, from_version)
        row = await info.context.library.remove_upgrade_pathway(
            info.context.principal, model, from_version, to_version
        )
        return UpgradePathway.from_row(row)

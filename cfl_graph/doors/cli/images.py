"""Importing firmware images and listing the library's images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cfl_graph.access.parties import PartyError, find_party, operator_acting_for
from cfl_graph.access.policy import AccessDenied
from cfl_graph.audit import Actor
from cfl_graph.blobs import BlobStoreFailed, blob_store_for
from cfl_graph.database import Database
from cfl_graph.doors.cli.common import (
    EXIT_REJECTED,
    HOW_MANY,
    Field,
    FormatOption,
    OutputFormat,
    emit,
    err,
    out,
    settings_from_env,
    with_db,
)
from cfl_graph.errors import Refusal
from cfl_graph.images.errors import LibraryError
from cfl_graph.images.library import ImageLibrary, UploadFields
from cfl_graph.images.listing import recent_images
from cfl_graph.tables import ImageState, LibraryImage

image_app = typer.Typer(help="Firmware images in the library.", no_args_is_help=True)


@image_app.command("import")
def image_import(
    file: Annotated[Path, typer.Argument(help="The GBCS OTA image file.", exists=True, dir_okay=False)],
    party: Annotated[str, typer.Option(help="The manufacturer party the image is for.")],
    notes: Annotated[
        Path | None, typer.Option(help="Release notes (Markdown).", exists=True, dir_okay=False)
    ] = None,
    model_id: Annotated[str | None, typer.Option(help="Device model id, if the CPL cannot tell.")] = None,
    hardware_version: Annotated[str | None, typer.Option(help="Hardware version, with --model-id.")] = None,
    publish: Annotated[bool, typer.Option(help="Publish at once if it has no problems.")] = False,
) -> None:
    """Import an image for a manufacturer party, with the same checks as an upload; print its problems."""
    settings = settings_from_env()
    notes_text = None if notes is None else notes.read_text(encoding="utf-8")

    async def work(db: Database) -> tuple[LibraryImage, Refusal | None]:
        store = blob_store_for(settings)
        library = ImageLibrary(db.sessions, store, max_image_bytes=settings.max_image_bytes)
        try:
            async with db.sessions() as session:
                found = await find_party(session, party)
                principal = await operator_acting_for(session, found)
            if publish and found.requires_approval:
                # Refused before anything is kept: the draft would wait for an approval all the same.
                raise LibraryError(
                    f"{found.name} publishes only images a second token approved: import it without "
                    "--publish, then approve and publish it"
                )
            actor = Actor(f"{Actor.cli().name} for {principal.party_name}", principal.party_id)
            receiver = library.receiver(principal)
            try:
                with file.open("rb") as handle:
                    while chunk := handle.read(1024 * 1024):
                        await receiver.write(chunk)
                received = await receiver.finish()
            except BaseException:
                receiver.abandon()
                raise
            fields = UploadFields(
                model_id=model_id, hardware_version=hardware_version, release_notes=notes_text
            )
            image = await library.accept(principal, received, fields, actor=actor)
            if publish and not image.problems:
                try:
                    image = await library.publish(principal, image.id, actor=actor)
                except Refusal as exc:
                    return image, exc  # kept as a draft: said so below, not "not imported"
            return image, None
        finally:
            await store.close()

    try:
        image, unpublished = with_db(settings, work)
    except (Refusal, PartyError, AccessDenied, BlobStoreFailed) as exc:
        err.print(f"image not imported: {exc}", markup=False, highlight=False)
        for problem in getattr(exc, "problems", []):
            err.print(f"  {problem.code}: {problem.detail}", markup=False, highlight=False)
        raise typer.Exit(EXIT_REJECTED) from None
    out.print(
        f"image {image.id} ({image.dcc_file_name}) {image.state}: model {image.model_id} hardware "
        f"{image.hardware_version}, file SHA-256 {image.file_sha256}",
        markup=False,
        highlight=False,
    )
    for problem in image.problems:
        out.print(f"  {problem['problem']}: {problem['detail']}", markup=False, highlight=False)
    if unpublished is not None:
        err.print(f"kept as a draft, not published: {unpublished}", markup=False, highlight=False)
    if image.problems or unpublished is not None:
        raise typer.Exit(EXIT_REJECTED)


IMAGE_FIELDS = (
    Field("id", "id", numeric=True),
    Field("file", "file"),
    Field("manufacturer_id", "manufacturer"),
    Field("model_id", "model"),
    Field("hardware_version", "hw"),
    Field("firmware_version", "firmware"),
    Field("state", "state"),
    Field("uploaded_at", "uploaded (UTC)"),
    Field("published_at", "published (UTC)"),
    Field("file_sha256", "file SHA-256"),
    Field("problems", "problems"),
)


@image_app.command("list")
def image_list(
    state: Annotated[ImageState | None, typer.Option(help="Only images in this state.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", parser=HOW_MANY)] = 50,
    form: FormatOption = OutputFormat.TABLE,
) -> None:
    """List images with their state and problems (operators see every image, drafts included)."""
    settings = settings_from_env()

    async def work(db: Database) -> list[LibraryImage]:
        async with db.sessions() as session:
            return await recent_images(session, state, limit)

    emit(
        IMAGE_FIELDS,
        (
            {
                "id": image.id,
                "file": image.dcc_file_name,
                "manufacturer_id": image.manufacturer_id,
                "model_id": image.model_id,
                "hardware_version": image.hardware_version,
                "firmware_version": image.firmware_version,
                "state": image.state,
                "uploaded_at": image.uploaded_at,
                "published_at": image.published_at,
                "file_sha256": image.file_sha256,
                "problems": [p["problem"] for p in image.problems],
            }
            for image in with_db(settings, work)
        ),
        form,
    )

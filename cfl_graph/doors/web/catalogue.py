"""`GET /api/v1/catalogue.json`: every published, held and withdrawn image, signed with the library's Ed25519
key; only `published` entries are served (a held one carries why it is held).

The document's `version` is the catalogue revision (bumped by every publication, withdrawal and
declaration), so it only grows; it expires `CATALOGUE_LIFETIME` after it was signed, so a client that
stops receiving fresh documents notices (a freeze). One signed copy per revision is kept in memory and
re-signed when it is half-way to expiry. `GET /api/v1/catalogue.pub` serves the public key (PEM) for
clients to pin; pin it out of band where you can, as with any trust-on-first-use key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cfl_graph.access.policy import AccessDenied, Action, authorise
from cfl_graph.catalogue_signing import key_id, load_or_create_key, public_pem, sign_catalogue
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.refusals import refusal_response
from cfl_graph.doors.web.services import services
from cfl_graph.images.library import download_name
from cfl_graph.images.listing import listed_images
from cfl_graph.revisions import read_revisions
from cfl_graph.tables import ImageState, LibraryImage
from cfl_graph.tables.base import utc_now

log = logging.getLogger(__name__)

CATALOGUE_LIFETIME = dt.timedelta(days=7)


def _entry(image: LibraryImage) -> dict[str, Any]:
    return {
        "id": image.id,
        "manufacturer_id": image.manufacturer_id,
        "model_id": image.model_id,
        "hardware_version": image.hardware_version,
        "firmware_version": image.firmware_version,
        "state": image.state,
        "file_name": download_name(image),
        "length": image.size,
        "file_sha256": image.file_sha256,
        "manufacturer_image_sha256": image.manufacturer_image_sha256,
        "url": f"/api/v1/images/{image.id}/file",
        "published_at": None if image.published_at is None else image.published_at.isoformat(),
        "withdrawn_at": None if image.withdrawn_at is None else image.withdrawn_at.isoformat(),
        "withdrawal_reason": image.withdrawal_reason,
        # Held: listed, not served, because the current CPL no longer certifies it as it is.
        "hold": None
        if image.state != ImageState.HELD or image.held_at is None
        else {
            "problem": image.hold_problem,
            "detail": image.hold_detail,
            "since": image.held_at.isoformat(),
            "cpl_snapshot_id": image.held_snapshot_id,
        },
    }


class SignedCatalogue:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], key_file: Path) -> None:
        self.sessions = sessions
        self.key_file = key_file
        self._key: Ed25519PrivateKey | None = None
        self._cached: tuple[int, dt.datetime, bytes] | None = None
        self._lock = asyncio.Lock()

    @property
    def key(self) -> Ed25519PrivateKey:
        if self._key is None:
            try:
                self._key = load_or_create_key(self.key_file)
            except FileExistsError:  # another worker created it a moment ago
                self._key = load_or_create_key(self.key_file)
            log.info("catalogue signing key %s", key_id(self._key.public_key())[:16])
        return self._key

    async def document(self) -> bytes:
        async with self._lock:
            async with self.sessions() as session:
                revision = (await read_revisions(session)).served
                now = utc_now()
                if self._cached is not None:
                    cached_revision, signed_at, body = self._cached
                    if cached_revision == revision and now - signed_at < CATALOGUE_LIFETIME / 2:
                        return body
                entries = [_entry(image) for image in await listed_images(session)]
            body = sign_catalogue(
                self.key, version=revision, issued_at=now, expires_at=now + CATALOGUE_LIFETIME, images=entries
            )
            self._cached = (revision, now, body)
            return body


async def document(request: Request) -> Response:
    try:
        authorise(principal_of(request.scope), Action.READ_CATALOGUE)
    except AccessDenied as exc:
        return refusal_response(exc)
    return Response(
        await services(request).catalogue.document(),
        media_type="application/json",
        headers={"Cache-Control": "private, no-cache"},
    )


async def public_key(request: Request) -> Response:
    try:
        authorise(principal_of(request.scope), Action.READ_CATALOGUE)
    except AccessDenied as exc:
        return refusal_response(exc)
    return Response(public_pem(services(request).catalogue.key), media_type="application/x-pem-file")


routes = [
    Route("/api/v1/catalogue.json", document, methods=["GET"]),
    Route("/api/v1/catalogue.pub", public_key, methods=["GET"]),
]

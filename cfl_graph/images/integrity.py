"""`cfl-graph verify`'s second half: every image record's bytes re-hashed from the blob store.

A record whose blob is missing, has another length, or hashes to another SHA-256 is a failure, named by
image id. A blob no record refers to (left by a crash between storing bytes and writing the record) is
reported but is not a failure: nothing was promised about it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cfl_graph.blobs import BlobMissing, BlobStore
from cfl_graph.identifiers import Sha256Hex
from cfl_graph.tables import LibraryImage


@dataclass
class BlobReport:
    images: int = 0
    blobs: int = 0
    bytes_hashed: int = 0
    problems: list[str] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


async def _rehash(store: BlobStore, sha256: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    async for chunk in store.read(Sha256Hex(sha256)):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


async def verify_blobs(
    sessions: async_sessionmaker[AsyncSession],
    store: BlobStore,
    progress: Callable[[int, int], None] | None = None,
) -> BlobReport:
    """Re-hash each distinct blob the records name (once, however many records share it)."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(LibraryImage.id, LibraryImage.file_sha256, LibraryImage.size).order_by(LibraryImage.id)
            )
        ).all()
    report = BlobReport(images=len(rows))
    by_blob: dict[str, list[tuple[int, int]]] = {}
    for image_id, sha256, size in rows:
        by_blob.setdefault(sha256, []).append((image_id, size))
    for done, (sha256, users) in enumerate(sorted(by_blob.items()), start=1):
        names = ", ".join(f"image {image_id}" for image_id, _ in users)
        try:
            actual, size = await _rehash(store, sha256)
        except BlobMissing:
            report.problems.append(f"{names}: blob {sha256} is missing from the store")
            continue
        report.blobs += 1
        report.bytes_hashed += size
        if actual != sha256:
            report.problems.append(f"{names}: blob {sha256} now hashes to {actual} (its bytes changed)")
        for image_id, recorded in users:
            if size != recorded:
                report.problems.append(
                    f"image {image_id}: blob {sha256} is {size} bytes, the record says {recorded}"
                )
        if progress is not None:
            progress(done, len(by_blob))
    async for blob in store.list():
        if blob.sha256 not in by_blob:
            report.unreferenced.append(blob.sha256)
    return report

"""When a blob's bytes may leave the store: only when no record and no upload in progress refers to them.

Counting the records that refer to a blob and then deleting it lets an upload of the same bytes slip in
between (it finds the blob there, records it, and then its bytes vanish). So uses of a blob other than
the records are claims (`blob_claims`), and every decision about a blob is taken under its lock
(`database.lock_key`, in a writer's transaction):

- an upload claims the bytes *before* it puts them in the store, and gives the claim up in the
  transaction that records them (or after it fails, and then offers the blob for collection);
- a collection (a discarded draft's bytes, a failed upload's) claims the bytes for deletion only if,
  under the lock, no record and no claim refers to them; it deletes them outside any transaction, then
  gives its claim up;
- an upload that finds a deletion claim waits for it to end, and then puts the bytes again.

A claim a killed process left behind only keeps bytes (an upload's) or makes an upload wait until it is
old enough to be taken for dead (a deletion's, after `STALE_DELETION`); neither loses a byte.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cfl_graph.blobs import BlobStore
from cfl_graph.database import lock_key
from cfl_graph.identifiers import Sha256Hex
from cfl_graph.tables import BlobClaim, BlobClaimKind, LibraryImage
from cfl_graph.tables.base import utc_now

log = logging.getLogger(__name__)

# A deletion claim older than this belongs to a collector that died between its claim and its release.
STALE_DELETION = dt.timedelta(seconds=60)
WAIT_STEP = 0.05


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class BlobClaims:
    def __init__(self, writes: async_sessionmaker[AsyncSession], store: BlobStore) -> None:
        self.writes = writes
        self.store = store

    async def claim_upload(self, sha256: str) -> int:
        """Claim the bytes for an upload that is about to put them in the store; waits while they are
        being deleted. Returns the claim, to give up with `release`."""
        while True:
            async with self.writes.begin() as session:
                await lock_key(session, "blob", sha256)
                deleting = (
                    await session.execute(
                        select(BlobClaim).where(
                            BlobClaim.file_sha256 == sha256, BlobClaim.kind == BlobClaimKind.DELETE.value
                        )
                    )
                ).scalar_one_or_none()
                if deleting is None:
                    claim = BlobClaim(
                        file_sha256=sha256,
                        kind=BlobClaimKind.UPLOAD.value,
                        claimed_at=utc_now(),
                        holder=_holder(),
                    )
                    session.add(claim)
                    await session.flush()
                    return claim.id
                if utc_now() - deleting.claimed_at > STALE_DELETION:
                    # Its collector died before it gave the claim up; our put restores the bytes.
                    log.warning("dropping a stale deletion claim of blob %s by %s", sha256, deleting.holder)
                    await session.delete(deleting)
                    continue
            await asyncio.sleep(WAIT_STEP)

    @staticmethod
    async def release_in(session: AsyncSession, claim_id: int) -> None:
        """Give a claim up in the caller's transaction (the one that records the bytes)."""
        await session.execute(delete(BlobClaim).where(BlobClaim.id == claim_id))

    async def release(self, claim_id: int) -> None:
        async with self.writes.begin() as session:
            await self.release_in(session, claim_id)

    async def collect(self, sha256: str) -> bool:
        """Delete the bytes if nothing refers to them: no record and no claim. True if deleted."""
        async with self.writes.begin() as session:
            await lock_key(session, "blob", sha256)
            referred = await session.scalar(
                select(
                    exists().where(LibraryImage.file_sha256 == sha256)
                    | exists().where(BlobClaim.file_sha256 == sha256)
                )
            )
            if referred:
                return False
            claim = BlobClaim(
                file_sha256=sha256, kind=BlobClaimKind.DELETE.value, claimed_at=utc_now(), holder=_holder()
            )
            session.add(claim)
            await session.flush()
            claim_id = claim.id
        try:
            await self.store.delete(Sha256Hex(sha256))
        finally:
            await self.release(claim_id)
        return True

"""Where image bytes live: one interface, a content-addressed local folder by default, S3 at scale.

A blob is named by the SHA-256 of its bytes. Bytes reach a store only whole and already hashed: an
upload is first written to a staged file (`Staging`), and `put` moves or copies it into place under its
digest, never overwriting a blob that is already there. So a reader either finds every byte of a blob or
finds no blob at all.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cfl_graph.identifiers import Sha256Hex
from cfl_graph.leftovers import new_name, remove_abandoned
from cfl_graph.settings import Settings

DEFAULT_CHUNK = 1024 * 1024
STAGED_SUFFIX = ".part"
HEX_DIGITS = frozenset("0123456789abcdef")


def checked_digest(sha256: str) -> str:
    """A blob's name, refused unless it is a lower-case SHA-256 hex digest (no path tricks reach a store)."""
    if len(sha256) != 64 or not set(sha256) <= HEX_DIGITS:
        raise ValueError(f"not a lower-case SHA-256 hex digest: {sha256[:80]!r}")
    return sha256


class BlobMissing(LookupError):
    def __init__(self, sha256: str) -> None:
        super().__init__(f"blob {sha256} is not in the store")
        self.sha256 = sha256


class BlobStoreFailed(RuntimeError):
    """The store could not take or give bytes (disk full, S3 unreachable); the message is safe to show.

    `insufficient_storage`: there is no room for the bytes (a full disk or quota, a file size limit),
    which HTTP calls 507 Insufficient Storage; any other failure is 503, try again later."""

    def __init__(self, message: str, *, insufficient_storage: bool = False) -> None:
        super().__init__(message)
        self.insufficient_storage = insufficient_storage

    @property
    def status(self) -> int:
        return 507 if self.insufficient_storage else 503

    @property
    def code(self) -> str:
        return "INSUFFICIENT_STORAGE" if self.insufficient_storage else "UNAVAILABLE"


_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def storage_failed(exc: OSError, where: str) -> BlobStoreFailed:
    """A local file operation's failure as the uploader may be told it (no paths, no internals)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = f"{where}'s disk is full"
    elif exc.errno == errno.EFBIG:
        reason = f"{where} cannot hold a file this large (EFBIG)"
    elif exc.errno in _NOT_WRITABLE:
        reason = f"{where} cannot be written"
    else:
        reason = f"{where} failed ({errno.errorcode.get(exc.errno or 0, 'error')})"
    return BlobStoreFailed(reason, insufficient_storage=exc.errno in _NO_ROOM)


@dataclass(frozen=True)
class BlobInfo:
    sha256: Sha256Hex
    size: int


class BlobStore(Protocol):
    """The blob store's contract; `LocalBlobStore` and `S3BlobStore` implement it."""

    @property
    def description(self) -> str:
        """Where the blobs are, for logs and the CLI (no secrets)."""

    @property
    def staging(self) -> Staging:
        """Where uploads are written before they are whole and hashed."""

    async def put(self, staged: Path, sha256: Sha256Hex, size: int) -> bool:
        """Store the staged file's bytes under `sha256`; True if new, False if that blob was already there.

        The caller has hashed the file; the store trusts the digest. The staged file is consumed
        (moved or deleted) either way. An existing blob is never overwritten."""

    async def size(self, sha256: Sha256Hex) -> int | None:
        """The blob's length, or None when it is not in the store."""

    def read(self, sha256: Sha256Hex, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes [start, end) of a blob (end None: to its end), in chunks; BlobMissing if absent."""

    def local_path(self, sha256: Sha256Hex) -> Path | None:
        """A file holding the blob when the store is a local folder (served with sendfile), else None."""

    async def delete(self, sha256: Sha256Hex) -> None:
        """Remove a blob no record refers to (a discarded draft's); absent blobs are not an error."""

    def list(self) -> AsyncIterator[BlobInfo]:
        """Every blob in the store, for `cfl-graph verify`."""

    async def close(self) -> None: ...


class Staging:
    """A folder of uploads in progress: `{pid}-{random}.part` files, one per upload.

    The process id in the name lets start-up clean what a killed worker left behind without touching the
    files of workers still running beside it on the same host."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def new_path(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / new_name("", STAGED_SUFFIX)

    def clean_abandoned(self) -> list[Path]:
        """Delete staged files whose writing process is gone; return what was deleted."""
        return remove_abandoned(self.folder, "", STAGED_SUFFIX)


def open_blob_store(
    *, blob_dir: Path, blob_store: str | None, s3_endpoint_url: str | None, work_dir: Path
) -> BlobStore:
    """The store the settings name: the local folder, or an S3 bucket (uploads staged under work_dir)."""
    if blob_store is None:
        from cfl_graph.blobs.local import LocalBlobStore

        return LocalBlobStore(blob_dir)
    from cfl_graph.blobs.s3 import S3BlobStore

    bucket, _, prefix = blob_store.removeprefix("s3://").partition("/")
    return S3BlobStore(
        bucket=bucket, prefix=prefix, endpoint_url=s3_endpoint_url, staging=Staging(work_dir / "incoming")
    )


def blob_store_for(settings: Settings) -> BlobStore:
    return open_blob_store(
        blob_dir=settings.blob_dir,
        blob_store=settings.blob_store,
        s3_endpoint_url=settings.s3_endpoint_url,
        work_dir=settings.work_dir,
    )

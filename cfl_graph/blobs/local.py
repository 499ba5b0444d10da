"""The default blob store: a local folder, `sha256/ab/cd/<digest>`, files read-only once in place."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from cfl_graph.blobs import (
    DEFAULT_CHUNK,
    HEX_DIGITS,
    BlobInfo,
    BlobMissing,
    BlobStoreFailed,
    Staging,
    checked_digest,
    storage_failed,
)
from cfl_graph.identifiers import Sha256Hex


class LocalBlobStore:
    def __init__(self, root: Path, *, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.root = root
        self.chunk_size = chunk_size
        # Staged files sit beside the blobs so that putting one in place is a rename on one filesystem.
        self._staging = Staging(root / ".incoming")

    @property
    def description(self) -> str:
        return f"local folder {self.root}"

    @property
    def staging(self) -> Staging:
        return self._staging

    def path_of(self, sha256: str) -> Path:
        digest = checked_digest(sha256)
        return self.root / "sha256" / digest[:2] / digest[2:4] / digest

    async def put(self, staged: Path, sha256: Sha256Hex, size: int) -> bool:
        return await anyio.to_thread.run_sync(self._put, staged, sha256, size)

    def _put(self, staged: Path, sha256: Sha256Hex, size: int) -> bool:
        target = self.path_of(sha256)
        try:
            if staged.stat().st_size != size:
                raise BlobStoreFailed(f"the staged upload is {staged.stat().st_size} bytes, not {size}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with staged.open("rb") as handle:
                os.fsync(handle.fileno())
            staged.chmod(0o444)
            try:
                # A hard link fails if the name exists: a blob already in place is never replaced.
                os.link(staged, target)
            except FileExistsError:
                return False
            _fsync_dir(target.parent)
            return True
        except OSError as exc:
            raise storage_failed(exc, "the blob store") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()

    async def size(self, sha256: Sha256Hex) -> int | None:
        try:
            return self.path_of(sha256).stat().st_size
        except FileNotFoundError:
            return None

    async def read(self, sha256: Sha256Hex, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self.path_of(sha256)
        try:
            handle = await anyio.open_file(path, "rb")
        except FileNotFoundError:
            raise BlobMissing(sha256) from None
        async with handle:
            await handle.seek(start)
            remaining = None if end is None else max(end - start, 0)
            while remaining is None or remaining > 0:
                want = self.chunk_size if remaining is None else min(self.chunk_size, remaining)
                chunk = await handle.read(want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def local_path(self, sha256: Sha256Hex) -> Path | None:
        return self.path_of(sha256)

    async def delete(self, sha256: Sha256Hex) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_of(sha256).unlink()

    async def list(self) -> AsyncIterator[BlobInfo]:
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for path in sorted(base.glob("??/??/*")):
            if len(path.name) == 64 and set(path.name) <= HEX_DIGITS:
                yield BlobInfo(Sha256Hex(path.name), path.stat().st_size)

    async def close(self) -> None:
        return None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

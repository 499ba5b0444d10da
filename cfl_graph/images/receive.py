"""Taking an upload's bytes: written to a staged file in chunks while the OTA parser hashes them.

Nothing is held in memory beyond one chunk and the header. The work per chunk (a write and three SHA-256
updates) runs in a worker thread, so a 200 MB upload does not stall other requests.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread

from cfl_graph.blobs import Staging, storage_failed
from cfl_graph.errors import Problem
from cfl_graph.images.errors import LibraryProblem, UploadRefused
from cfl_graph.images.ota import ImageRejected, OtaStreamParser, ParsedImage

__all__ = ["Received", "Receiver", "UploadRefused"]


class Received:
    """A complete, parsed upload waiting in the staging folder; `discard()` if it is not stored."""

    def __init__(self, path: Path, parsed: ParsedImage) -> None:
        self.path = path
        self.parsed = parsed

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


STAGING = "the upload's staging folder"


class Receiver:
    """Feed it the image's bytes in order with `write`, then `finish`; `abandon` on any failure.

    A staged file that cannot be written (a full disk, a read-only folder) is `BlobStoreFailed`, with
    the staged file gone."""

    def __init__(self, staging: Staging, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        try:
            self.path = staging.new_path()
            self._file: BinaryIO | None = self.path.open("xb")
        except OSError as exc:
            raise storage_failed(exc, STAGING) from exc
        self._parser = OtaStreamParser()
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        if chunk:
            await anyio.to_thread.run_sync(self._write, chunk)

    def _write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.abandon()
            raise UploadRefused(
                [
                    Problem(
                        LibraryProblem.TOO_LARGE,
                        f"the image is larger than the {self.max_bytes:,}-byte limit (CFL_MAX_IMAGE_BYTES)",
                    )
                ],
                code="TOO_LARGE",
            )
        assert self._file is not None, "write after finish or abandon"
        try:
            self._file.write(chunk)
        except OSError as exc:
            self.abandon()
            raise storage_failed(exc, STAGING) from exc
        self._parser.feed(chunk)

    async def finish(self) -> Received:
        """Flush the staged file and parse what came; `UploadRefused` (422) names every format problem."""
        try:
            return await anyio.to_thread.run_sync(self._finish)
        except BaseException:
            self.abandon()
            raise

    def _finish(self) -> Received:
        assert self._file is not None, "finish after finish or abandon"
        try:
            self._file.flush()
            self._file.close()
        except OSError as exc:
            raise storage_failed(exc, STAGING) from exc
        self._file = None
        if self.size == 0:
            raise UploadRefused([Problem(LibraryProblem.NO_FILE, "the upload holds no image bytes")])
        try:
            parsed = self._parser.finish()
        except ImageRejected as rejected:
            raise UploadRefused([Problem(f.problem.value, f.detail) for f in rejected.findings]) from rejected
        return Received(self.path, parsed)

    def abandon(self) -> None:
        if self._file is not None:
            # Closing flushes what is buffered, which fails again on a full disk: the file goes anyway.
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

"""Tests of the blob stores; the helpers here write staged uploads and read blobs back whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cfl_graph.blobs import BlobStore
from cfl_graph.identifiers import Sha256Hex


def digest_of(data: bytes) -> Sha256Hex:
    return Sha256Hex(hashlib.sha256(data).hexdigest())


def stage(store: BlobStore, data: bytes) -> Path:
    """A staged upload holding `data`, as the upload handler leaves it before `put`."""
    path = store.staging.new_path()
    path.write_bytes(data)
    return path


async def put_bytes(store: BlobStore, data: bytes) -> Sha256Hex:
    digest = digest_of(data)
    assert await store.put(stage(store, data), digest, len(data)) is True
    return digest


async def read_all(store: BlobStore, sha256: Sha256Hex, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(sha256, start, end)])

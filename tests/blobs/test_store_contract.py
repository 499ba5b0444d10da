"""What every blob store promises, proved on the local folder and on S3 (moto) alike."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfl_graph.blobs import DEFAULT_CHUNK, BlobInfo, BlobMissing, BlobStore, BlobStoreFailed, Staging
from cfl_graph.blobs.s3 import PART_SIZE
from cfl_graph.identifiers import Sha256Hex
from tests.blobs import digest_of, put_bytes, read_all, stage

DATA = bytes(range(256)) * 40 + b"tail"  # 10,244 bytes, every byte value, no repeating period at the end
ABSENT = digest_of(b"never stored")


async def test_put_then_read_gives_the_same_bytes_and_size(blob_store: BlobStore) -> None:
    digest = await put_bytes(blob_store, DATA)

    assert await read_all(blob_store, digest) == DATA
    assert await blob_store.size(digest) == len(DATA)


async def test_an_empty_blob_is_stored_and_read(blob_store: BlobStore) -> None:
    digest = await put_bytes(blob_store, b"")

    assert await blob_store.size(digest) == 0
    assert await read_all(blob_store, digest) == b""


async def test_put_of_an_existing_digest_returns_false_and_never_overwrites(blob_store: BlobStore) -> None:
    digest = await put_bytes(blob_store, DATA)
    # Different bytes claiming the same digest: the store trusts the digest, but never replaces a blob.
    impostor = b"X" * len(DATA)
    staged = stage(blob_store, impostor)

    assert await blob_store.put(staged, digest, len(impostor)) is False

    assert not staged.exists()
    assert await read_all(blob_store, digest) == DATA


async def test_the_staged_file_is_gone_after_a_put(blob_store: BlobStore) -> None:
    staged = stage(blob_store, DATA)

    await blob_store.put(staged, digest_of(DATA), len(DATA))

    assert not staged.exists()
    assert list(blob_store.staging.folder.iterdir()) == []


async def test_a_staged_size_mismatch_fails_stores_nothing_and_consumes_the_file(
    blob_store: BlobStore,
) -> None:
    staged = stage(blob_store, DATA)
    digest = digest_of(DATA)

    with pytest.raises(BlobStoreFailed, match=f"{len(DATA)} bytes, not {len(DATA) + 1}"):
        await blob_store.put(staged, digest, len(DATA) + 1)

    assert not staged.exists()
    assert await blob_store.size(digest) is None
    assert [info async for info in blob_store.list()] == []


async def test_a_missing_staged_file_fails(blob_store: BlobStore) -> None:
    staged = blob_store.staging.new_path()

    with pytest.raises(BlobStoreFailed):
        await blob_store.put(staged, digest_of(DATA), len(DATA))


LAST = len(DATA) - 1


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(0, None, id="whole"),
        pytest.param(100, None, id="from-100-to-the-end"),
        pytest.param(0, 1, id="first-byte"),
        pytest.param(100, 3000, id="middle"),
        pytest.param(LAST, None, id="last-byte-to-the-end"),
        pytest.param(LAST, LAST + 1, id="last-byte-exactly"),
        pytest.param(0, len(DATA) + 500, id="end-past-the-end"),
        pytest.param(50, 50, id="empty"),
        pytest.param(60, 50, id="end-before-start"),
        pytest.param(len(DATA), None, id="start-at-the-end"),
        pytest.param(len(DATA) + 10, None, id="start-past-the-end"),
    ],
)
async def test_a_range_read_gives_bytes_start_to_end(
    blob_store: BlobStore, start: int, end: int | None
) -> None:
    digest = await put_bytes(blob_store, DATA)

    assert await read_all(blob_store, digest, start, end) == DATA[start:end]


@pytest.mark.parametrize(("start", "end"), [(0, None), (5, 10), (5, 5)])
async def test_reading_a_missing_blob_raises_blob_missing(
    blob_store: BlobStore, start: int, end: int | None
) -> None:
    with pytest.raises(BlobMissing) as raised:
        await read_all(blob_store, ABSENT, start, end)

    assert raised.value.sha256 == ABSENT


async def test_the_size_of_a_missing_blob_is_none(blob_store: BlobStore) -> None:
    assert await blob_store.size(ABSENT) is None


async def test_a_deleted_blob_is_gone_and_deleting_it_again_is_fine(blob_store: BlobStore) -> None:
    digest = await put_bytes(blob_store, DATA)

    await blob_store.delete(digest)
    await blob_store.delete(digest)
    await blob_store.delete(ABSENT)

    assert await blob_store.size(digest) is None
    with pytest.raises(BlobMissing):
        await read_all(blob_store, digest)


async def test_a_deleted_blob_can_be_stored_again(blob_store: BlobStore) -> None:
    digest = await put_bytes(blob_store, DATA)
    await blob_store.delete(digest)

    assert await put_bytes(blob_store, DATA) == digest
    assert await read_all(blob_store, digest) == DATA


async def test_list_yields_exactly_the_stored_blobs(blob_store: BlobStore) -> None:
    assert [info async for info in blob_store.list()] == []
    blobs = [DATA, b"", b"second", b"third" * 1000]
    digests = [await put_bytes(blob_store, data) for data in blobs]
    await blob_store.delete(digests[2])

    listed = [info async for info in blob_store.list()]

    expected = [BlobInfo(digest, len(data)) for digest, data in zip(digests, blobs, strict=True)]
    del expected[2]
    assert sorted(listed, key=lambda info: info.sha256) == sorted(expected, key=lambda info: info.sha256)


async def test_a_local_path_when_given_holds_the_blob(blob_store: BlobStore) -> None:
    digest = await put_bytes(blob_store, DATA)

    path = blob_store.local_path(digest)

    assert path is None or path.read_bytes() == DATA


def _write_pattern(path: Path, size: int) -> str:
    """Write `size` bytes that differ from part to part, a chunk at a time; return their SHA-256."""
    hasher = hashlib.sha256()
    written = 0
    with path.open("wb") as handle:
        while written < size:
            want = min(DEFAULT_CHUNK, size - written)
            chunk = (hashlib.sha256(str(written).encode()).digest() * (want // 32 + 1))[:want]
            handle.write(chunk)
            hasher.update(chunk)
            written += len(chunk)
    return hasher.hexdigest()


async def test_a_blob_larger_than_an_upload_part_round_trips(blob_store: BlobStore) -> None:
    size = 2 * PART_SIZE + 4 * 1024 * 1024 + 3  # three parts, the last one short and odd
    staged = blob_store.staging.new_path()
    digest = Sha256Hex(_write_pattern(staged, size))

    assert await blob_store.put(staged, digest, size) is True

    hasher = hashlib.sha256()
    read = 0
    async for chunk in blob_store.read(digest):
        assert 0 < len(chunk) <= DEFAULT_CHUNK
        hasher.update(chunk)
        read += len(chunk)
    assert (read, hasher.hexdigest()) == (size, digest)
    assert await blob_store.size(digest) == size
    tail = await read_all(blob_store, digest, size - 10)
    assert len(tail) == 10


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of another process that is running (as a neighbouring worker would be)."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        yield sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()


def _dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def test_cleaning_staging_removes_only_the_files_of_gone_processes(
    blob_store: BlobStore, live_pid: int
) -> None:
    staging = blob_store.staging
    staging.folder.mkdir(parents=True, exist_ok=True)
    dead = staging.folder / f"{_dead_pid()}-0123456789abcdef.part"
    live = staging.folder / f"{live_pid}-0123456789abcdef.part"
    # Start-up cleaning: a file under this process's own pid was left by an earlier process given the same pid.
    own = staging.folder / f"{os.getpid()}-0123456789abcdef.part"
    nameless = staging.folder / "garbage.part"
    not_staged = staging.folder / f"{_dead_pid()}-notes.txt"
    for path in (dead, live, own, nameless, not_staged):
        path.write_bytes(b"partial upload")

    removed = staging.clean_abandoned()

    assert sorted(removed) == sorted([dead, own, nameless])
    assert sorted(staging.folder.iterdir()) == sorted([live, not_staged])


def test_cleaning_a_staging_folder_that_does_not_exist_removes_nothing(tmp_path: Path) -> None:
    assert Staging(tmp_path / "never-made").clean_abandoned() == []

"""What only the S3 store has to get right: its keys, its conditional multipart writes, and failing safely."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest
from moto.s3.models import s3_backends

from cfl_graph.blobs import BlobStoreFailed, Staging, open_blob_store
from cfl_graph.blobs.s3 import PART_SIZE, S3BlobStore
from tests.blobs import digest_of, put_bytes, read_all, stage
from tests.fixtures.s3_server import (
    ACCESS_KEY_ID,
    BUCKET,
    SECRET_ACCESS_KEY,
    BrokenS3,
    s3_client,
    serve_broken_s3,
)

BIG = bytes(range(256)) * (PART_SIZE // 256) + b"just over one part"


async def _keys(endpoint: str) -> list[str]:
    async with s3_client(endpoint) as s3:
        listed = await s3.list_objects_v2(Bucket=BUCKET)
    return sorted(str(entry["Key"]) for entry in listed.get("Contents", []))


async def _unfinished_uploads(endpoint: str) -> list[str]:
    async with s3_client(endpoint) as s3:
        listed = await s3.list_multipart_uploads(Bucket=BUCKET)
    return [str(upload["Key"]) for upload in listed.get("Uploads", [])]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _assert_safe(message: str) -> None:
    assert ACCESS_KEY_ID not in message
    assert SECRET_ACCESS_KEY not in message
    assert "http" not in message


async def test_blobs_are_keyed_by_digest_under_the_prefix(s3_store: S3BlobStore, s3_endpoint: str) -> None:
    digest = await put_bytes(s3_store, b"firmware")

    assert await _keys(s3_endpoint) == [f"images/sha256/{digest}"]


async def test_without_a_prefix_keys_start_at_the_bucket_root(
    s3_store: S3BlobStore, s3_endpoint: str, tmp_path: Path
) -> None:
    store = S3BlobStore(bucket=BUCKET, endpoint_url=s3_endpoint, staging=Staging(tmp_path / "root"))
    try:
        digest = await put_bytes(store, b"firmware")
    finally:
        await store.close()

    assert await _keys(s3_endpoint) == [f"sha256/{digest}"]


async def test_open_blob_store_reads_bucket_and_prefix_from_the_url(s3_endpoint: str, tmp_path: Path) -> None:
    store = open_blob_store(
        blob_dir=tmp_path / "unused",
        blob_store="s3://firmware-bucket/cfl/images/",
        s3_endpoint_url=s3_endpoint,
        work_dir=tmp_path,
    )

    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == ("firmware-bucket", "cfl/images")
    assert store.staging.folder == tmp_path / "incoming"
    assert store.description == f"S3 bucket firmware-bucket/cfl/images at {s3_endpoint}"


def test_the_description_names_bucket_and_endpoint_but_no_secret(tmp_path: Path) -> None:
    staging = Staging(tmp_path)
    with_secret = S3BlobStore(
        bucket="b", endpoint_url="https://user:pa55@s3.example.net:9000/?X-Amz-Signature=abc", staging=staging
    )
    on_aws = S3BlobStore(bucket="b", prefix="/p/", staging=staging)

    assert with_secret.description == "S3 bucket b at https://s3.example.net:9000/"
    assert on_aws.description == "S3 bucket b/p at AWS"
    assert on_aws.local_path(digest_of(b"x")) is None


async def test_list_ignores_keys_that_are_not_blobs_of_this_store(
    s3_store: S3BlobStore, s3_endpoint: str
) -> None:
    digest = await put_bytes(s3_store, b"firmware")
    async with s3_client(s3_endpoint) as s3:
        for key in (
            f"sha256/{digest}",  # outside the prefix
            f"images/other/{digest}",
            f"images/sha256/{digest.upper()}",
            "images/sha256/not-a-digest",
            f"images/sha256/{digest}/nested",
            f"images/sha256/{digest}.part",
        ):
            await s3.put_object(Bucket=BUCKET, Key=key, Body=b"stray")

    assert [info.sha256 async for info in s3_store.list()] == [digest]


async def test_list_pages_through_many_blobs(s3_store: S3BlobStore) -> None:
    # S3 (and moto) answer list_objects_v2 in pages of 1,000 keys. A thousand PUTs take seconds, so the keys
    # go straight into the in-process moto server's memory.
    digests = {digest_of(str(n).encode()) for n in range(1005)}
    partition, account = s3_backends.bucket_accounts[BUCKET]
    for digest in digests:
        s3_backends[account][partition].put_object(BUCKET, s3_store.key_of(digest), b"")

    assert {info.sha256 async for info in s3_store.list()} == digests


async def test_a_refused_multipart_put_keeps_the_blob_and_leaves_no_parts(
    s3_store: S3BlobStore, s3_endpoint: str
) -> None:
    digest = await put_bytes(s3_store, BIG)
    staged = stage(s3_store, BIG[::-1])

    assert await s3_store.put(staged, digest, len(BIG)) is False

    assert not staged.exists()
    assert await read_all(s3_store, digest, len(BIG) - 18) == b"just over one part"
    assert await _unfinished_uploads(s3_endpoint) == []


async def test_a_closed_client_opens_again_when_used(s3_store: S3BlobStore) -> None:
    digest = await put_bytes(s3_store, b"firmware")
    await s3_store.close()

    assert await s3_store.size(digest) == len(b"firmware")


async def test_a_missing_bucket_fails_the_put(
    s3_store: S3BlobStore, s3_endpoint: str, tmp_path: Path
) -> None:
    store = S3BlobStore(bucket="no-such-bucket", endpoint_url=s3_endpoint, staging=Staging(tmp_path / "x"))
    staged = stage(store, b"firmware")
    try:
        with pytest.raises(BlobStoreFailed, match="no such bucket"):
            await store.put(staged, digest_of(b"firmware"), len(b"firmware"))
    finally:
        await store.close()

    assert not staged.exists()


@pytest.mark.usefixtures("aws_environment")
@pytest.mark.parametrize("data", [b"small", BIG], ids=["single-put", "multipart"])
async def test_an_unreachable_store_fails_quickly_and_safely(tmp_path: Path, data: bytes) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = S3BlobStore(
        bucket=BUCKET, endpoint_url=endpoint, staging=Staging(tmp_path), connect_timeout=1, max_attempts=1
    )
    staged = stage(store, data)
    digest = digest_of(data)
    try:
        with anyio.fail_after(5):
            with pytest.raises(BlobStoreFailed) as put_failed:
                await store.put(staged, digest, len(data))
            with pytest.raises(BlobStoreFailed) as size_failed:
                await store.size(digest)
            with pytest.raises(BlobStoreFailed) as read_failed:
                await read_all(store, digest)
            with pytest.raises(BlobStoreFailed):
                await store.delete(digest)
            with pytest.raises(BlobStoreFailed):
                _ = [info async for info in store.list()]
    finally:
        await store.close()

    assert str(put_failed.value) == "the S3 store could not be reached (EndpointConnectionError)"
    for failed in (put_failed, size_failed, read_failed):
        _assert_safe(str(failed.value))
    assert not staged.exists()


@pytest.mark.usefixtures("aws_environment")
async def test_a_failed_part_aborts_the_multipart_upload(tmp_path: Path) -> None:
    broken = BrokenS3(status=500, code="InternalError")
    async with serve_broken_s3(broken) as endpoint:
        store = S3BlobStore(bucket=BUCKET, endpoint_url=endpoint, staging=Staging(tmp_path), max_attempts=1)
        staged = stage(store, BIG)
        try:
            with pytest.raises(BlobStoreFailed) as failed:
                await store.put(staged, digest_of(BIG), len(BIG))
        finally:
            await store.close()

    assert str(failed.value) == "the S3 store answered HTTP 500 (InternalError)"
    assert broken.aborted_uploads == 1
    assert [request.split("?")[0] for request in broken.requests] == [
        f"POST /{BUCKET}/sha256/{digest_of(BIG)}",
        f"PUT /{BUCKET}/sha256/{digest_of(BIG)}",
        f"PUT /{BUCKET}/sha256/{digest_of(BIG)}",
        f"DELETE /{BUCKET}/sha256/{digest_of(BIG)}",
    ]
    assert not staged.exists()


@pytest.mark.usefixtures("aws_environment")
async def test_access_denied_fails_with_a_reason_and_no_secret(tmp_path: Path) -> None:
    broken = BrokenS3(status=403, code="AccessDenied")
    async with serve_broken_s3(broken) as endpoint:
        store = S3BlobStore(bucket=BUCKET, endpoint_url=endpoint, staging=Staging(tmp_path), max_attempts=1)
        staged = stage(store, b"firmware")
        try:
            with pytest.raises(BlobStoreFailed) as put_failed:
                await store.put(staged, digest_of(b"firmware"), len(b"firmware"))
            with pytest.raises(BlobStoreFailed) as read_failed:
                await read_all(store, digest_of(b"firmware"))
            with pytest.raises(BlobStoreFailed) as size_failed:
                await store.size(digest_of(b"firmware"))
        finally:
            await store.close()

    assert str(put_failed.value) == (
        "the S3 store refused the request (AccessDenied); check the credentials and bucket policy"
    )
    assert str(size_failed.value).startswith("the S3 store refused the request (403)")
    for failed in (put_failed, read_failed, size_failed):
        _assert_safe(str(failed.value))
    assert not staged.exists()

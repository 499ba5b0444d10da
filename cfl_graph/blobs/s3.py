"""Blobs in an S3-compatible bucket, `{prefix}/sha256/<digest>`, written once with `If-None-Match: *`.

Uploads stream from the staged file one part at a time; the final write (a single PUT, or the completion
of a multipart upload) is conditional, so a blob already in the bucket is never replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aioboto3
import anyio
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as NetworkFailure

from cfl_graph.blobs import DEFAULT_CHUNK, BlobInfo, BlobMissing, BlobStoreFailed, Staging, checked_digest
from cfl_graph.identifiers import Sha256Hex

log = logging.getLogger(__name__)

# S3 takes parts of 5 MiB to 5 GiB; 8 MiB keeps one part in memory per upload and 10,000 parts reach 78 GiB.
PART_SIZE = 8 * 1024 * 1024
DEFAULT_REGION = "us-east-1"
# A conditional write racing another one on the same key may be answered 409; S3 asks for a retry.
_CONFLICT_RETRIES = 3
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_ALREADY_THERE = frozenset({"412", "PreconditionFailed"})
_ABORT_SECONDS = 30


class S3BlobStore:
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        staging: Staging,
        chunk_size: int = DEFAULT_CHUNK,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        max_attempts: int = 3,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 blob store needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.chunk_size = chunk_size
        self._staging = staging
        self._session: Any = aioboto3.Session()
        self._config: Any = Config(
            s3={"addressing_style": "path"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            # Only the checksums S3 demands: many S3-compatible servers reject the newer trailing checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._exits = contextlib.AsyncExitStack()

    @property
    def description(self) -> str:
        where = _safe_url(self.endpoint_url) if self.endpoint_url else "AWS"
        folder = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return f"S3 bucket {folder} at {where}"

    @property
    def staging(self) -> Staging:
        return self._staging

    def key_of(self, sha256: str) -> str:
        return f"{self._base}{checked_digest(sha256)}"

    @property
    def _base(self) -> str:
        return f"{self.prefix}/sha256/" if self.prefix else "sha256/"

    async def _s3(self) -> Any:
        async with self._client_lock:
            if self._client is None:
                region = self._session.region_name or DEFAULT_REGION
                self._client = await self._exits.enter_async_context(
                    self._session.client(
                        "s3", endpoint_url=self.endpoint_url, region_name=region, config=self._config
                    )
                )
            return self._client

    async def put(self, staged: Path, sha256: Sha256Hex, size: int) -> bool:
        try:
            key = self.key_of(sha256)
            staged_size = staged.stat().st_size
            if staged_size != size:
                raise BlobStoreFailed(f"the staged upload is {staged_size} bytes, not {size}")
            s3 = await self._s3()
            if size <= PART_SIZE:
                body = await anyio.Path(staged).read_bytes()
                return await self._write_once(s3.put_object, Bucket=self.bucket, Key=key, Body=body)
            return await self._put_in_parts(s3, staged, key)
        except (ClientError, BotoCoreError, OSError) as exc:
            log.warning("storing blob %s in %s failed: %r", sha256, self.description, exc)
            raise BlobStoreFailed(_reason(exc)) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()

    async def _put_in_parts(self, s3: Any, staged: Path, key: str) -> bool:
        upload = await s3.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id: str = upload["UploadId"]
        completed = False
        try:
            parts: list[dict[str, Any]] = []
            async with await anyio.open_file(staged, "rb") as handle:
                while part := await handle.read(PART_SIZE):
                    number = len(parts) + 1
                    sent = await s3.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part
                    )
                    parts.append({"PartNumber": number, "ETag": sent["ETag"]})
                    del part  # before the next read: one part in memory, not two
            stored = await self._write_once(
                s3.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            completed = stored
            return stored
        finally:
            if not completed:
                await self._abort(s3, key, upload_id)

    async def _write_once(self, write: Any, **request: Any) -> bool:
        """Make the final write unless the key exists: True when written, False when it was already there."""
        attempt = 1
        while True:
            try:
                await write(IfNoneMatch="*", **request)
            except ClientError as exc:
                code = _error_code(exc)
                if code in _ALREADY_THERE:
                    return False
                if code != "ConditionalRequestConflict" or attempt >= _CONFLICT_RETRIES:
                    raise
                attempt += 1
            else:
                return True

    async def _abort(self, s3: Any, key: str, upload_id: str) -> None:
        # Shielded: a cancelled upload must still not leave parts in the bucket, billed and unseen.
        with anyio.move_on_after(_ABORT_SECONDS, shield=True):
            try:
                await s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError) as exc:
                log.warning("abandoned multipart upload %s of %s: %r", upload_id, key, exc)

    async def size(self, sha256: Sha256Hex) -> int | None:
        key = self.key_of(sha256)
        try:
            s3 = await self._s3()
            head = await s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                return None
            raise self._failed("looking up", sha256, exc) from exc
        except BotoCoreError as exc:
            raise self._failed("looking up", sha256, exc) from exc
        return int(head["ContentLength"])

    async def read(self, sha256: Sha256Hex, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        key = self.key_of(sha256)
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if end is not None and end <= start:
            # HTTP has no empty range (S3 ignores `bytes=5-4` and sends everything): just check it exists.
            if await self.size(sha256) is None:
                raise BlobMissing(sha256)
            return
        if start > 0 or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            s3 = await self._s3()
            response = await s3.get_object(**request)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND:
                raise BlobMissing(sha256) from None
            if code in ("416", "InvalidRange"):  # start at or past the end: no bytes, as from a file
                return
            raise self._failed("reading", sha256, exc) from exc
        except BotoCoreError as exc:
            raise self._failed("reading", sha256, exc) from exc
        body = response["Body"]
        try:
            while chunk := await self._next_chunk(body):
                yield chunk
        except BotoCoreError as exc:
            raise self._failed("reading", sha256, exc) from exc
        finally:
            body.close()

    async def _next_chunk(self, body: Any) -> bytes:
        """Up to `chunk_size` bytes: the network hands over what has arrived, often far less."""
        chunk = bytearray()
        while len(chunk) < self.chunk_size:
            piece: bytes = await body.read(self.chunk_size - len(chunk))
            if not piece:
                break
            chunk += piece
        return bytes(chunk)

    def local_path(self, sha256: Sha256Hex) -> Path | None:
        return None

    async def delete(self, sha256: Sha256Hex) -> None:
        key = self.key_of(sha256)
        try:
            s3 = await self._s3()
            await s3.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                return
            raise self._failed("deleting", sha256, exc) from exc
        except BotoCoreError as exc:
            raise self._failed("deleting", sha256, exc) from exc

    async def list(self) -> AsyncIterator[BlobInfo]:
        base = self._base
        try:
            s3 = await self._s3()
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
            async for page in pages:
                for entry in page.get("Contents", []):
                    digest = str(entry["Key"])[len(base) :]
                    with contextlib.suppress(ValueError):
                        yield BlobInfo(Sha256Hex(checked_digest(digest)), int(entry["Size"]))
        except (ClientError, BotoCoreError) as exc:
            raise self._failed("listing", "blobs", exc) from exc

    async def close(self) -> None:
        async with self._client_lock:
            self._client = None
            await self._exits.aclose()

    def _failed(self, doing: str, what: str, exc: Exception) -> BlobStoreFailed:
        log.warning("%s %s in %s failed: %r", doing, what, self.description, exc)
        return BlobStoreFailed(_reason(exc))


def _error_code(exc: ClientError) -> str:
    error: dict[str, Any] = exc.response.get("Error", {})
    return str(error.get("Code", ""))


def _reason(exc: BaseException) -> str:
    """What went wrong, in words safe to show: an S3 error code or a failure's kind, never a URL or a key."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = re.sub(r"[^A-Za-z0-9]", "", _error_code(exc))[:40] or "no error code"
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            return f"the S3 store refused the request ({code}); check the credentials and bucket policy"
        if code == "NoSuchBucket":
            return "the S3 store has no such bucket"
        if code == str(status):  # a HEAD answer has no body to name the error
            return f"the S3 store answered HTTP {status}"
        return f"the S3 store answered HTTP {status} ({code})"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials were found for the S3 store"
    if isinstance(exc, NetworkFailure):
        return f"the S3 store could not be reached ({type(exc).__name__})"
    if isinstance(exc, BotoCoreError):
        return f"the S3 store failed ({type(exc).__name__})"
    return "the staged upload could not be read"


def _safe_url(url: str) -> str:
    """The endpoint without user, password or query, which could carry secrets."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))

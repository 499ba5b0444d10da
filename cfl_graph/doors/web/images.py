"""The image endpoints: upload (streamed), metadata, download (Range, ETag, Repr-Digest), receipts.

    POST /api/v1/images             multipart (`file`, `releaseNotes`, optional `modelId`, `hardwareVersion`)
                                    or a raw `application/octet-stream` body (`?modelId=&hardwareVersion=`)
    GET  /api/v1/images/{id}        the image's record as JSON
    GET  /api/v1/images/{id}/file   the bytes
    GET  /api/v1/downloads          the caller's own download receipts

Every refusal is JSON `{"error", "code", "problems": [{"problem", "detail"}]}` with a fitting status.
"""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from cfl_graph.access.policy import AccessDenied, Action, authorise
from cfl_graph.blobs import BlobStoreFailed
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.refusals import http_status, refusal_response
from cfl_graph.doors.web.services import services
from cfl_graph.errors import Problem, Refusal
from cfl_graph.identifiers import InvalidValue, Sha256Hex
from cfl_graph.images.errors import LibraryProblem, UploadRefused
from cfl_graph.images.library import (
    Download,
    ImageLibrary,
    UploadFields,
    download_name,
    download_receipts,
)
from cfl_graph.images.receive import Receiver
from cfl_graph.row_ids import row_id
from cfl_graph.tables import LibraryImage

log = logging.getLogger(__name__)

TEXT_FIELDS = {"releaseNotes": 200_000, "modelId": 64, "hardwareVersion": 64}
FILE_FIELD = "file"


class _ImageFile(FileResponse):
    """The local file, sent as `byte_range` decided: Starlette's FileResponse parses `Range` itself, by
    rules of its own, so the request's `Range` and `If-Range` are replaced by the one range decided (or
    removed) before it looks. Firmware files are megabytes: 1 MiB reads instead of 64 KiB cut the
    per-chunk work sixteenfold."""

    chunk_size = 1024 * 1024

    def __init__(self, path: Path, byte_range: tuple[int, int] | None, headers: dict[str, str]) -> None:
        super().__init__(path, headers=headers, media_type="application/octet-stream")
        self.byte_range = byte_range

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(name, value) for name, value in scope["headers"] if name not in (b"range", b"if-range")]
        if self.byte_range is not None:
            start, end = self.byte_range
            headers.append((b"range", f"bytes={start}-{end - 1}".encode()))
        await super().__call__({**scope, "headers": headers}, receive, send)


def _refusal(exc: Exception) -> JSONResponse:
    if isinstance(exc, Refusal | AccessDenied):
        return refusal_response(exc)
    if isinstance(exc, BlobStoreFailed):
        log.error("blob store failed during an upload: %s", exc)
        return JSONResponse(
            {
                "error": f"the image could not be stored: {exc}; nothing was kept",
                "code": exc.code,
                "problems": [],
            },
            status_code=http_status(exc),
        )
    raise exc


def image_json(image: LibraryImage) -> dict[str, Any]:
    return {
        "id": image.id,
        "state": image.state,
        "deviceModel": {
            "manufacturerId": image.manufacturer_id,
            "modelId": image.model_id,
            "hardwareVersion": image.hardware_version,
        },
        "firmwareVersion": image.firmware_version,
        "dccFileName": image.dcc_file_name,
        "fileName": download_name(image),
        "size": image.size,
        "fileSha256": image.file_sha256,
        "manufacturerImageSha256": image.manufacturer_image_sha256,
        "signedSha256": image.signed_sha256,
        "manufacturerImageOffset": image.manufacturer_image_offset,
        "manufacturerImageLength": image.manufacturer_image_length,
        "signatureKeyId": image.signature_key_id,
        "header": image.header,
        "problems": image.problems,
        "checkedAt": image.checked_at.isoformat(),
        "releaseNotes": None
        if image.release_notes_markdown is None
        else {"markdown": image.release_notes_markdown, "html": image.release_notes_html},
        "uploadedAt": image.uploaded_at.isoformat(),
        "approvedAt": None if image.approved_at is None else image.approved_at.isoformat(),
        "publishedAt": None if image.published_at is None else image.published_at.isoformat(),
        "withdrawnAt": None if image.withdrawn_at is None else image.withdrawn_at.isoformat(),
        "withdrawalReason": image.withdrawal_reason,
        "links": {"self": f"/api/v1/images/{image.id}", "file": f"/api/v1/images/{image.id}/file"},
    }


class _MultipartUpload:
    """Streams a multipart body: the `file` part goes to the receiver chunk by chunk, text fields are kept."""

    def __init__(self, receiver: Receiver, boundary: bytes) -> None:
        self.receiver = receiver
        self.fields: dict[str, str] = {}
        self._text: dict[str, bytearray] = {}
        self._pending: list[bytes] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._name: str | None = None
        self._files = 0
        self._ended = False  # the closing boundary was read
        self.problem: Problem | None = None
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
                "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_end": self._end,
            },
        )

    def _end(self) -> None:
        self._ended = True

    def _part_begin(self) -> None:
        self._headers = {}
        self._name = None

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = self._header_value.decode("latin-1")
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == FILE_FIELD:
            self._files += 1
            if self._files > 1:
                self._fail("send one `file` part per upload")
        elif name not in TEXT_FIELDS:
            allowed = ", ".join([FILE_FIELD, *TEXT_FIELDS])
            self._fail(f"unknown form field {name[:40]!r}; the fields are {allowed}")
        elif name in self._text:
            # Which of two values was meant cannot be told; keeping the last would drop one silently.
            self._fail(f"the form field {name} came more than once; send each field once")
        else:
            self._text[name] = bytearray()
        self._name = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.problem is not None or self._name is None:
            return
        if self._name == FILE_FIELD:
            self._pending.append(data[start:end])
            return
        buffer = self._text[self._name]
        buffer.extend(data[start:end])
        if len(buffer) > TEXT_FIELDS[self._name]:
            self._fail(f"the form field {self._name} is longer than {TEXT_FIELDS[self._name]:,} bytes")

    def _fail(self, detail: str) -> None:
        if self.problem is None:
            self.problem = Problem(LibraryProblem.BAD_FIELD, detail)

    async def feed(self, chunk: bytes) -> None:
        self.parser.write(chunk)
        if self.problem is not None:
            raise UploadRefused([self.problem])
        if self._pending:
            data, self._pending = b"".join(self._pending), []
            await self.receiver.write(data)

    def finish(self) -> UploadFields:
        self.parser.finalize()
        if not self._ended:
            # python-multipart's finalize() does not check this: without the closing boundary the body
            # was cut short, and the last part (release notes, say) may be missing its end.
            raise UploadRefused(
                [
                    Problem(
                        LibraryProblem.BAD_FIELD,
                        "the multipart body ends without its closing boundary: it was cut short; "
                        "nothing was kept",
                    )
                ],
            )
        if self._files == 0:
            raise UploadRefused(
                [Problem(LibraryProblem.NO_FILE, "the form has no `file` part holding the image")]
            )
        texts = {}
        for name, raw in self._text.items():
            try:
                texts[name] = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UploadRefused(
                    [Problem(LibraryProblem.BAD_FIELD, f"the form field {name} is not UTF-8 text")]
                ) from exc
        return UploadFields(
            model_id=texts.get("modelId"),
            hardware_version=texts.get("hardwareVersion"),
            release_notes=texts.get("releaseNotes"),
        )


async def take_upload(library: ImageLibrary, request: Request) -> LibraryImage:
    """Receive an upload from the request (multipart or raw) and hand it to the library; the API and the
    web upload form both come here. Raises `AccessDenied`, `LibraryError` or `BlobStoreFailed` having
    kept nothing, or `ClientDisconnect` when the client went away."""
    principal = principal_of(request.scope)
    receiver = library.receiver(principal)
    try:
        fields = await _receive(request, receiver)
        received = await receiver.finish()
    except BaseException:
        receiver.abandon()
        raise
    return await library.accept(principal, received, fields)


async def upload(request: Request) -> Response:
    try:
        image = await take_upload(services(request).library, request)
    except (Refusal, AccessDenied, BlobStoreFailed) as exc:
        return _refusal(exc)
    except ClientDisconnect:
        log.info("upload abandoned: the client went away")
        return Response(status_code=400)
    return JSONResponse(
        image_json(image), status_code=201, headers={"Location": f"/api/v1/images/{image.id}"}
    )


async def _receive(request: Request, receiver: Receiver) -> UploadFields:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise UploadRefused([Problem(LibraryProblem.BAD_FIELD, "the multipart body names no boundary")])
        form = _MultipartUpload(receiver, boundary)
        try:
            async for chunk in request.stream():
                await form.feed(chunk)
            return form.finish()
        except MultipartParseError as exc:
            raise UploadRefused(
                [Problem(LibraryProblem.BAD_FIELD, f"the multipart body is malformed: {exc}")]
            ) from exc
    if content_type == b"application/octet-stream":
        async for chunk in request.stream():
            await receiver.write(chunk)
        return UploadFields(
            model_id=request.query_params.get("modelId"),
            hardware_version=request.query_params.get("hardwareVersion"),
        )
    raise UploadRefused(
        [
            Problem(
                LibraryProblem.BAD_FIELD,
                "send the image as multipart/form-data (fields file, releaseNotes) or as "
                "application/octet-stream",
            )
        ],
    )


def _image_id(request: Request) -> int | JSONResponse:
    """The path's image id, or the 404 that says what an image id is."""
    try:
        return row_id(request.path_params["image_id"], "an image id")
    except InvalidValue as exc:
        return JSONResponse({"error": exc.reason, "code": "NOT_FOUND", "problems": []}, 404)


async def metadata(request: Request) -> Response:
    image_id = _image_id(request)
    if isinstance(image_id, Response):
        return image_id
    try:
        image = await services(request).library.get(principal_of(request.scope), image_id)
    except (Refusal, AccessDenied) as exc:
        return _refusal(exc)
    return JSONResponse(image_json(image))


# What a byte range is (RFC 9110 14.1.1): `bytes=` and a list of first-last, first- or -suffix, in the
# digits 0-9 with no space inside; spaces and tabs are allowed only around the list's commas.
_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_OWS = " \t"
UNSATISFIABLE = "unsatisfiable"
# Digits past this are more than any file holds: compared as text, never handed to int().
_MAX_POSITION_DIGITS = 18


def _position(digits: str) -> int | None:
    """A byte position, or None when it is past any file's end."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _MAX_POSITION_DIGITS else None


def byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The one decision on a `Range` header: (start, end) of the bytes to send with 206, None to send
    the whole file with 200, or `UNSATISFIABLE` for 416. The response sends exactly this, and the
    download's receipt records it.

    - No header, an empty file, a unit other than `bytes`, or a header that is not a valid ranges
      specifier (a space inside a range, digits of another script, `last` before `first`, an empty
      list): ignored, the whole file (RFC 9110 14.2 lets a server ignore Range).
    - Several ranges (`bytes=0-5,2000-3000`): the whole file, 200. Multipart byteranges are not sent.
    - One range: `first-last` (last clamped to the end), `first-` (to the end), `-suffix` (the last
      bytes); unsatisfiable when `first` is at or past the end, or the suffix is 0.
    Empty list elements (`bytes=0-5,`) are ignored, as RFC 9110 5.6.1.2 asks of recipients.
    """
    if header is None or size == 0:
        return None
    unit, equals, range_set = header.partition("=")
    if not equals or unit.lower() != "bytes":
        return None
    specs = [element.strip(_OWS) for element in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    matches = [_RANGE_SPEC.fullmatch(spec) for spec in specs]
    if not specs or any(m is None or m.group(1) == m.group(2) == "" for m in matches):
        return None
    if len(specs) > 1:
        return None
    match = matches[0]
    assert match is not None
    first, last = match.group(1), match.group(2)
    if not first:
        suffix = _position(last)
        if suffix == 0:
            return UNSATISFIABLE
        return (0 if suffix is None else max(size - suffix, 0)), size
    start, stop = _position(first), None if not last else _position(last)
    if last and start is not None and stop is not None and stop < start:
        return None  # an invalid range-spec: the header is ignored
    if last and start is None and stop is not None:
        return None  # last before an enormous first: invalid too
    if start is None or start >= size:
        return UNSATISFIABLE
    end = size if stop is None else min(stop + 1, size)
    return start, end


def _entity_tags(header: str) -> tuple[bool, set[str]]:
    """`If-None-Match`: whether it is `*`, and the opaque parts of its entity tags, weak or strong
    alike (RFC 9110 13.1.2 compares If-None-Match weakly)."""
    if header.strip() == "*":
        return True, set()
    return False, {match.group(1) for match in _ENTITY_TAG.finditer(header)}


_ENTITY_TAG = re.compile(r'(?:W/)?"([^"]*)"')


class _Refusal:
    """A download answer that carries no bytes (304 or 416): no download event."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _headers_for(image: LibraryImage) -> dict[str, str]:
    digest = base64.b64encode(bytes.fromhex(image.file_sha256)).decode()
    return {
        "ETag": f'"{image.file_sha256}"',
        "Repr-Digest": f"sha-256=:{digest}:",
        "Digest": f"SHA-256={digest}",
        "Content-Disposition": f'attachment; filename="{download_name(image)}"',
        "Cache-Control": "private, max-age=86400, no-transform",
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
    }


def _decision(request: Request, image: LibraryImage, headers: dict[str, str]) -> Download | _Refusal:
    """What a GET or HEAD of the image answers: 304, 416, or the bytes (all, or one range)."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        any_tag, tags = _entity_tags(if_none_match)
        if any_tag or image.file_sha256 in tags:
            return _Refusal(
                Response(status_code=304, headers={k: headers[k] for k in ("ETag", "Cache-Control")})
            )
    # If-Range compares strongly: only our exact ETag lets the range through; anything else (a weak tag,
    # a date) sends the whole file.
    if_range = request.headers.get("if-range")
    wanted = request.headers.get("range") if if_range in (None, headers["ETag"]) else None
    decided = byte_range(wanted, image.size)
    if decided == UNSATISFIABLE:
        return _Refusal(
            Response(status_code=416, headers={"Content-Range": f"bytes */{image.size}", **headers})
        )
    assert not isinstance(decided, str)
    return Download(decided)


async def download(request: Request) -> Response:
    library = services(request).library
    image_id = _image_id(request)
    if isinstance(image_id, Response):
        return image_id
    headers: dict[str, str] = {}

    def decide(image: LibraryImage) -> Download | _Refusal:
        headers.update(_headers_for(image))
        return _decision(request, image, headers)

    try:
        image, decision = await library.take(
            principal_of(request.scope), image_id, decide, record_bytes=request.method == "GET"
        )
    except (Refusal, AccessDenied) as exc:
        return _refusal(exc)
    if isinstance(decision, _Refusal):
        return decision.response
    return await _bytes_response(library, image, decision.byte_range, headers, request.method == "HEAD")


async def _bytes_response(
    library: ImageLibrary,
    image: LibraryImage,
    byte_range: tuple[int, int] | None,
    headers: dict[str, str],
    head_only: bool,
) -> Response:
    local = library.store.local_path(Sha256Hex(image.file_sha256))
    if local is not None:
        return _ImageFile(local, byte_range, headers)
    status = 200
    if byte_range is not None:
        start, end = byte_range
        headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{image.size}"}
        status = 206
    length = image.size if byte_range is None else byte_range[1] - byte_range[0]
    headers = {**headers, "Content-Length": str(length)}
    if head_only:
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    chunks = (
        library.store.read(Sha256Hex(image.file_sha256))
        if byte_range is None
        else library.store.read(Sha256Hex(image.file_sha256), *byte_range)
    )
    return StreamingResponse(
        chunks,
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


async def receipts(request: Request) -> Response:
    try:
        principal = authorise(principal_of(request.scope), Action.DOWNLOAD_IMAGE)
    except AccessDenied as exc:
        return _refusal(exc)
    return JSONResponse({"downloads": await download_receipts(services(request).sessions, principal)})


routes = [
    Route("/api/v1/images", upload, methods=["POST"]),
    Route("/api/v1/images/{image_id}", metadata, methods=["GET"]),
    Route("/api/v1/images/{image_id}/file", download, methods=["GET", "HEAD"]),
    Route("/api/v1/downloads", receipts, methods=["GET"]),
]

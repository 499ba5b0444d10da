"""Fetch the CPL from a local path or an http(s) URL into a temporary file, hashing as it streams.

Every failure is a `FetchError` that names the source, and no partial download outlives the call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import importlib.metadata
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import urlsplit
from urllib.request import url2pathname

import aiohttp

from cfl_graph.leftovers import new_name, remove_abandoned

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024

# What a CSV or XLSX never starts with but a login, error or landing page does.
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_HTML_OPENINGS = (b"<!doctype html", b"<html", b"<head", b"<body")
_UTF8_BOM = b"\xef\xbb\xbf"
# A body that is still only whitespace after this many bytes is not an HTML page worth refusing.
_SNIFF_LIMIT = _CHUNK


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("cfl-graph")
    except importlib.metadata.PackageNotFoundError:
        # Running from a checkout that was never pip-installed.
        version = "dev"
    return f"cfl-graph/{version}"


_USER_AGENT = _user_agent()


# A download in progress is `cpl-<pid>-<random>.download` in the work folder: the pid lets the next sync
# delete what a killed one left (`remove_abandoned_downloads`).
DOWNLOAD_PREFIX = "cpl-"
DOWNLOAD_SUFFIX = ".download"


def remove_abandoned_downloads(work_dir: Path) -> list[Path]:
    """Delete downloads whose process is gone (killed mid-sync: its `finally` never ran)."""
    return remove_abandoned(work_dir, DOWNLOAD_PREFIX, DOWNLOAD_SUFFIX)


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 200 * 1024 * 1024
    connect_timeout: float = 10.0  # seconds to connect
    read_timeout: float = 30.0  # longest silence between two chunks
    total_timeout: float = 300.0  # whole download, one attempt
    attempts: int = 4  # total tries for connection errors, timeouts, truncated bodies and 5xx
    backoff_base: float = 0.5  # sleep backoff_base * 2**(attempt-1) between tries

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"FetchLimits.attempts must be at least 1, not {self.attempts}")
        if self.max_bytes < 0 or self.backoff_base < 0:
            raise ValueError("FetchLimits.max_bytes and backoff_base must not be negative")
        if min(self.connect_timeout, self.read_timeout, self.total_timeout) <= 0:
            raise ValueError("FetchLimits timeouts must be positive")


@dataclass(frozen=True)
class Validators:
    """ETag / Last-Modified from the previous successful fetch of a source, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Fetched:
    source: str
    path: Path  # the temporary file holding the bytes; the caller deletes it
    sha256: str  # 64 lower-case hex, of exactly the bytes in `path`
    size: int
    validators: Validators  # what the server sent; empty for local files
    content_type: str | None  # the Content-Type header as sent; None for local files


@dataclass(frozen=True)
class NotModified:
    source: str
    validators: Validators


# --- errors ---------------------------------------------------------------------------------------


def shown_source(source: str) -> str:
    """The source as messages and logs may show it: a password in the URL is masked."""
    try:
        parts = urlsplit(source)
        has_password = parts.password is not None
    except ValueError:
        return source
    if not has_password:
        return source
    userinfo, _, hostport = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    return parts._replace(netloc=netloc).geturl()


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _status(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


class FetchError(Exception):
    """The CPL could not be fetched from `source`; str() says why and what to do about it."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(message)
        self.source = source


class UnsupportedSource(FetchError):
    def __init__(self, source: str, reason: str) -> None:
        super().__init__(
            source,
            f"Cannot fetch the CPL from {shown_source(source)}: {reason}; "
            "give an http(s) URL, a file:// URL or a local path.",
        )
        self.reason = reason


class SourceNotFound(FetchError):
    """The file does not exist, or the server answered 404 / 410 (`status`; None for files)."""

    def __init__(self, source: str, status: int | None = None) -> None:
        where = "file" if status is None else f"URL ({_status(status)})"
        super().__init__(
            source, f"The CPL source {shown_source(source)} does not exist as a {where}; check it."
        )
        self.status = status


class SourceUnreadable(FetchError):
    """A local source exists but cannot be read: a directory, no permission, an I/O error."""

    def __init__(self, source: str, error: OSError) -> None:
        super().__init__(
            source,
            f"Cannot read the CPL file {shown_source(source)} ({error.strerror or error}); "
            "check that it is a readable file.",
        )
        self.error = error


class SourceUnreachable(FetchError):
    """Connection errors or timeouts on every one of `attempts` tries; `last_error` is the final one."""

    def __init__(self, source: str, attempts: int, last_error: BaseException) -> None:
        if isinstance(last_error, TimeoutError):
            message = (
                f"Timed out fetching the CPL from {shown_source(source)} ({_attempts(attempts)}): the server "
                "did not connect, answer or keep sending within the time limits; try again later."
            )
        else:
            message = (
                f"Could not reach {shown_source(source)} to fetch the CPL ({_attempts(attempts)}; last error "
                f"{type(last_error).__name__}: {last_error}); check the URL and network access."
            )
        super().__init__(source, message)
        self.attempts = attempts
        self.last_error = last_error

    @property
    def timed_out(self) -> bool:
        return isinstance(self.last_error, TimeoutError)


class HttpStatusError(FetchError):
    """A non-2xx answer other than 304, 404 and 410; 5xx only after `attempts` tries."""

    def __init__(self, source: str, status: int, attempts: int) -> None:
        if status >= 500:
            message = (
                f"The server at {shown_source(source)} kept failing with {_status(status)} "
                f"({_attempts(attempts)}) while fetching the CPL; try again later."
            )
        else:
            message = (
                f"{shown_source(source)} refused the CPL download with {_status(status)}; "
                "check the URL and whether the server needs credentials."
            )
        super().__init__(source, message)
        self.status = status
        self.attempts = attempts


class ResponseTooLarge(FetchError):
    def __init__(self, source: str, limit: int) -> None:
        super().__init__(
            source,
            f"The CPL from {shown_source(source)} is larger than the {limit:,}-byte limit; if the list "
            "really has grown that much, raise FetchLimits.max_bytes.",
        )
        self.limit = limit


class TruncatedResponse(FetchError):
    """The body stopped short on the last try; `expected` is None when the size was not declared."""

    def __init__(self, source: str, expected: int | None, received: int) -> None:
        of = "" if expected is None else f" of {expected:,}"
        super().__init__(
            source,
            f"The download of the CPL from {shown_source(source)} was cut short ({received:,}{of} bytes "
            "arrived before the connection closed), even after retrying; try again later.",
        )
        self.expected = expected
        self.received = received


class ChangedWhileDownloading(FetchError):
    """Every try got a body that is not the file the server then held: it kept changing as it was read."""

    def __init__(self, source: str, attempts: int, why: str) -> None:
        super().__init__(
            source,
            f"The CPL at {shown_source(source)} changed while it downloaded ({_attempts(attempts)}; "
            f"last time {why}); nothing of it was kept. Try again once the publisher has finished "
            "replacing the file.",
        )
        self.attempts = attempts
        self.why = why


class PartialContent(FetchError):
    """A 206 to a request for the whole file: a part of the list is not the list."""

    def __init__(self, source: str, content_range: str | None) -> None:
        super().__init__(
            source,
            f"{shown_source(source)} answered with part of the file (HTTP 206, Content-Range: "
            f"{content_range or 'none'}) to a request for all of it; check the URL or the proxy in front.",
        )
        self.content_range = content_range


class HtmlInsteadOfData(FetchError):
    """A web page came back with 200 where the CPL file was expected (labelled or sniffed)."""

    def __init__(self, source: str, content_type: str | None) -> None:
        super().__init__(
            source,
            f"{shown_source(source)} returned an HTML page (Content-Type: {content_type or 'none'}) instead "
            "of the CPL as CSV or XLSX, probably a login or error page; check that the URL points "
            "at the file itself.",
        )
        self.content_type = content_type


# --- the temporary file ---------------------------------------------------------------------------


def _html_verdict(head: bytes, *, complete: bool) -> bool | None:
    """Whether a body starting with `head` is an HTML page; None while more bytes could decide it."""
    text = head.removeprefix(_UTF8_BOM).lstrip()
    opening = text[: max(map(len, _HTML_OPENINGS))].lower()
    if any(opening.startswith(marker) for marker in _HTML_OPENINGS):
        return True
    could_still_be_html = any(marker.startswith(opening) for marker in _HTML_OPENINGS)
    if complete or not could_still_be_html or len(head) >= _SNIFF_LIMIT:
        return False
    return None


class _Download:
    """The temporary file a fetch fills: hashes and counts the bytes, enforces the size limit and
    refuses HTML. Leaving the `with` block by any exception deletes the file."""

    def __init__(self, source: str, dest_dir: Path, max_bytes: int, content_type: str | None) -> None:
        self._source = source
        self._max_bytes = max_bytes
        self._content_type = content_type
        self._hash = hashlib.sha256()
        self._head: bytearray | None = bytearray()  # None once the HTML sniff has decided
        self.size = 0
        self.path = dest_dir / new_name(DOWNLOAD_PREFIX, DOWNLOAD_SUFFIX)
        self._file: IO[bytes] = self.path.open("xb")  # closed in finish/__exit__

    def __enter__(self) -> _Download:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._file.close()
        if error is not None:
            self.path.unlink(missing_ok=True)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise ResponseTooLarge(self._source, self._max_bytes)
        if self._head is not None:
            self._head += chunk
            self._sniff(complete=False)
        self._hash.update(chunk)
        # Written from the event loop: a 64 KiB write lands in the page cache in microseconds, and a
        # thread hop per chunk would cost more than it saves.
        self._file.write(chunk)

    def finish(self, validators: Validators) -> Fetched:
        self._sniff(complete=True)
        self._file.close()
        return Fetched(
            source=self._source,
            path=self.path,
            sha256=self._hash.hexdigest(),
            size=self.size,
            validators=validators,
            content_type=self._content_type,
        )

    def _sniff(self, *, complete: bool) -> None:
        if self._head is None:
            return
        verdict = _html_verdict(bytes(self._head), complete=complete)
        if verdict:
            raise HtmlInsteadOfData(self._source, self._content_type)
        if verdict is False:
            self._head = None


# --- local files ----------------------------------------------------------------------------------


async def _copy_file(source: str, path: Path, dest_dir: Path, max_bytes: int) -> Fetched:
    # Copied, not parsed in place, so a file replaced while the sync runs cannot change what is parsed.
    try:
        handle = await asyncio.to_thread(path.open, "rb")
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SourceNotFound(source) from exc
    except OSError as exc:
        raise SourceUnreadable(source, exc) from exc
    with handle:
        if os.fstat(handle.fileno()).st_size > max_bytes:
            raise ResponseTooLarge(source, max_bytes)
        with _Download(source, dest_dir, max_bytes, content_type=None) as download:
            while True:
                try:
                    chunk = await asyncio.to_thread(handle.read, _CHUNK)
                except OSError as exc:
                    raise SourceUnreadable(source, exc) from exc
                if not chunk:
                    return download.finish(Validators())
                download.write(chunk)


# --- HTTP -----------------------------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth another try; `give_up(attempts)` is the error to raise when tries run out."""

    def __init__(self, reason: str, give_up: Callable[[int], FetchError]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.give_up = give_up


def _unreachable(source: str, error: BaseException) -> _Transient:
    reason = "timed out" if isinstance(error, TimeoutError) else f"{type(error).__name__}: {error}"
    return _Transient(reason, lambda attempts: SourceUnreachable(source, attempts, error))


def _truncated(source: str, expected: int | None, received: int) -> _Transient:
    of = "" if expected is None else f" of {expected}"
    return _Transient(
        f"body cut short after {received}{of} bytes",
        lambda attempts: TruncatedResponse(source, expected, received),
    )


def _changed(source: str, why: str) -> _Transient:
    return _Transient(
        f"the file changed while it downloaded ({why})",
        lambda attempts: ChangedWhileDownloading(source, attempts, why),
    )


def _server_failed(source: str, status: int) -> _Transient:
    return _Transient(_status(status), lambda attempts: HttpStatusError(source, status, attempts))


def _conditional_headers(previous: Validators | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if previous is not None and previous.etag is not None:
        headers["If-None-Match"] = previous.etag
    if previous is not None and previous.last_modified is not None:
        headers["If-Modified-Since"] = previous.last_modified
    return headers


async def _receive(
    response: aiohttp.ClientResponse,
    source: str,
    dest_dir: Path,
    previous: Validators | None,
    max_bytes: int,
) -> Fetched | NotModified:
    status = response.status
    sent = Validators(response.headers.get("ETag"), response.headers.get("Last-Modified"))
    if status == HTTPStatus.NOT_MODIFIED and previous is not None:
        # A 304 may omit the validators; the ones we asked with are still the current ones.
        return NotModified(
            source,
            Validators(sent.etag or previous.etag, sent.last_modified or previous.last_modified),
        )
    if status in (HTTPStatus.NOT_FOUND, HTTPStatus.GONE):
        raise SourceNotFound(source, status)
    if status >= 500:
        raise _server_failed(source, status)
    if not 200 <= status < 300:
        # Includes a 304 we did not ask for: there is no earlier copy it could refer to.
        raise HttpStatusError(source, status, attempts=1)
    if status == HTTPStatus.PARTIAL_CONTENT:  # we never ask for a range
        raise PartialContent(source, response.headers.get("Content-Range"))

    content_type = response.headers.get("Content-Type")
    if content_type is not None and content_type.partition(";")[0].strip().lower() in _HTML_TYPES:
        raise HtmlInsteadOfData(source, content_type)
    if response.content_length is not None and response.content_length > max_bytes:
        raise ResponseTooLarge(source, max_bytes)
    # A compressed body's Content-Length counts wire bytes, not the decoded bytes we count.
    expected = None if response.headers.get("Content-Encoding") else response.content_length

    with _Download(source, dest_dir, max_bytes, content_type) as download:
        try:
            async for chunk in response.content.iter_chunked(_CHUNK):
                download.write(chunk)
        except aiohttp.ClientPayloadError as exc:
            raise _truncated(source, expected, download.size) from exc
        if expected is not None and download.size < expected:
            raise _truncated(source, expected, download.size)
        fetched = download.finish(sent)
        # A digest of a compressed body covers the bytes on the wire, not the ones hashed here.
        announced = None if response.headers.get("Content-Encoding") else _announced_sha256(response.headers)
        if announced is not None and announced != fetched.sha256:
            # The server hashed one file and sent another: it was replaced while being sent.
            raise _changed(source, f"the body does not hash to the SHA-256 announced, {announced}")
        return fetched


def _announced_sha256(headers: Mapping[str, str]) -> str | None:
    """The body's SHA-256 from `Repr-Digest` or `Content-Digest` (RFC 9530) as hex, if one was sent."""
    for name in ("Repr-Digest", "Content-Digest"):
        for member in headers.get(name, "").split(","):
            algorithm, _, value = member.strip().partition("=")
            if algorithm.strip().lower() == "sha-256" and value.startswith(":") and value.endswith(":"):
                try:
                    digest = base64.b64decode(value[1:-1], validate=True)
                except binascii.Error:
                    return None
                return digest.hex() if len(digest) == 32 else None
    return None


def _difference(got: Mapping[str, str], now: Mapping[str, str], length: int) -> str | None:
    """How the file the server holds now (a HEAD's headers) differs from the one just downloaded (its
    GET's headers and length). ETag and Last-Modified are compared only when both answers carry them,
    ETags weakly (a server may mark one weak when it compresses a body and not when it does not)."""
    for name in ("ETag", "Last-Modified"):
        before, after = got.get(name), now.get(name)
        if before is not None and after is not None and before.removeprefix("W/") != after.removeprefix("W/"):
            return f"its {name} was {before} and is now {after}"
    size = now.get("Content-Length")
    if size is not None and size.isdigit() and "Content-Encoding" not in now and int(size) != length:
        return f"{length:,} bytes arrived and the file is now {int(size):,} bytes"
    return None


async def _attempt(
    session: aiohttp.ClientSession,
    source: str,
    dest_dir: Path,
    previous: Validators | None,
    max_bytes: int,
) -> Fetched | NotModified:
    try:
        async with session.get(source, headers=_conditional_headers(previous)) as response:
            received = await _receive(response, source, dest_dir, previous, max_bytes)
        if isinstance(received, Fetched):
            await _still_the_same(session, source, received, response)
        return received
    except aiohttp.InvalidURL as exc:
        raise UnsupportedSource(source, f"it is not a valid URL ({exc})") from exc
    except TimeoutError as exc:  # before ClientError: aiohttp's timeouts are both
        raise _unreachable(source, exc) from exc
    except aiohttp.ClientError as exc:
        raise _unreachable(source, exc) from exc


async def _still_the_same(
    session: aiohttp.ClientSession, source: str, fetched: Fetched, response: aiohttp.ClientResponse
) -> None:
    """Ask again (HEAD) whether the file is still the one downloaded, when the server named it (ETag,
    Last-Modified): a file replaced in place while it was sent arrives whole in length but a mixture of
    two versions, and only this can tell. No answer to the HEAD keeps the download (the GET was whole)."""
    if fetched.validators == Validators():
        return
    try:
        async with session.head(source, allow_redirects=True) as now:
            if now.status != HTTPStatus.OK:
                logger.info(
                    "HEAD %s answered %s; the download is kept unchecked", shown_source(source), now.status
                )
                return
            why = _difference(response.headers, now.headers, fetched.size)
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.info("HEAD %s failed (%s); the download is kept unchecked", shown_source(source), exc)
        return
    if why is not None:
        fetched.path.unlink(missing_ok=True)
        raise _changed(source, why)


async def _fetch_http(
    source: str, dest_dir: Path, previous: Validators | None, limits: FetchLimits
) -> Fetched | NotModified:
    timeout = aiohttp.ClientTimeout(
        total=limits.total_timeout, sock_connect=limits.connect_timeout, sock_read=limits.read_timeout
    )
    async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": _USER_AGENT}) as session:
        attempt = 1
        while True:
            try:
                return await _attempt(session, source, dest_dir, previous, limits.max_bytes)
            except _Transient as failure:
                if attempt >= limits.attempts:
                    raise failure.give_up(attempt) from failure.__cause__
                delay = limits.backoff_base * 2 ** (attempt - 1)
                logger.warning(
                    "Fetching the CPL from %s failed on attempt %d of %d (%s); retrying in %.2fs",
                    shown_source(source),
                    attempt,
                    limits.attempts,
                    failure.reason,
                    delay,
                )
                await asyncio.sleep(delay)
                attempt += 1


# --- entry point ----------------------------------------------------------------------------------


async def fetch_cpl(
    source: str,
    dest_dir: Path,
    *,
    previous: Validators | None = None,
    limits: FetchLimits = FetchLimits(),  # frozen, so one shared default is safe
) -> Fetched | NotModified:
    """Copy the CPL at `source` (a path, a file:// URL or an http(s) URL) into a new temporary file
    in `dest_dir`, which the caller owns and deletes.

    With `previous` validators an HTTP source may answer NotModified instead. Raises a FetchError.
    """
    try:
        parts = urlsplit(source)
        host = parts.hostname
    except ValueError as exc:
        raise UnsupportedSource(source, f"it is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not host:
            raise UnsupportedSource(source, "the URL names no host")
        return await _fetch_http(source, dest_dir, previous, limits)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UnsupportedSource(source, f"file URLs must name a local file, not one on {parts.netloc}")
        path = Path(url2pathname(parts.path))
    elif scheme == "" or len(scheme) == 1:  # one letter is a Windows drive, not a scheme
        path = Path(source)
    else:
        raise UnsupportedSource(source, f"the {scheme}: scheme is not supported")
    return await _copy_file(source, path, dest_dir, limits.max_bytes)

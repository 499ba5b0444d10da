"""R6: the library keeps its own synchronised copy of the CPL. These tests fetch it from a real local
HTTP server (and from files): conditional GET, bounded retries, size and time limits, refusal of HTML
pages, and never a partial download left behind."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from cpl_sync.fetch import (
    ChangedWhileDownloading,
    Fetched,
    FetchError,
    FetchLimits,
    HtmlInsteadOfData,
    HttpStatusError,
    NotModified,
    PartialContent,
    ResponseTooLarge,
    SourceNotFound,
    SourceUnreachable,
    TruncatedResponse,
    UnsupportedSource,
    Validators,
    fetch_cpl,
)

QUICK = FetchLimits(connect_timeout=1.0, read_timeout=0.5, total_timeout=5.0, attempts=3, backoff_base=0.01)
BODY = b"Manufacturer Name,Manufacturer ID,Firmware Version\nNorthfield Metering Ltd,10B2,0102\n" * 40
ETAG = '"cpl-2026-11-25"'
STAMP = "Wed, 25 Nov 2026 06:00:00 GMT"

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CplSite:
    """A real HTTP server on 127.0.0.1 for one test; the test says how it answers."""

    def __init__(self) -> None:
        self.answer: Answer | None = None
        self.requests: list[CIMultiDict[str]] = []  # the headers of every GET, in order
        self.heads = 0  # HEADs: the check, after a download, that the file is still the one downloaded
        self.release = asyncio.Event()  # set at teardown so hanging answers can end
        self.root = ""

    def serve(self, answer: Answer, name: str = "cpl.csv") -> str:
        self.answer = answer
        return f"{self.root}{name}"

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            self.heads += 1
        else:
            self.requests.append(request.headers.copy())
        assert self.answer is not None, "the test did not say how the site answers"
        return await self.answer(request)


@pytest.fixture
async def site() -> AsyncIterator[CplSite]:
    cpl_site = CplSite()
    app = web.Application()
    app.router.add_get("/{name}", cpl_site.dispatch)
    server = TestServer(app, host="127.0.0.1", shutdown_timeout=1.0)
    await server.start_server()
    cpl_site.root = str(server.make_url("/"))
    try:
        yield cpl_site
    finally:
        cpl_site.release.set()
        await server.close()


def nothing_left_in(folder: Path) -> bool:
    return not any(folder.iterdir())


def publish(body: bytes = BODY, content_type: str = "text/csv; charset=utf-8") -> Answer:
    """The ordinary publisher: the file with validators, or 304 when the client already has it."""

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers={"ETag": ETAG})
        return web.Response(
            body=body, headers={"Content-Type": content_type, "ETag": ETAG, "Last-Modified": STAMP}
        )

    return answer


def status(code: int) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text="publisher says no")

    return answer


def in_turn(*answers: Answer) -> Answer:
    """Each request gets the next answer; the last one repeats."""
    queue = list(answers)

    async def answer(request: web.Request) -> web.StreamResponse:
        return await (queue.pop(0) if len(queue) > 1 else queue[0])(request)

    return answer


def cut_short(declared: int = 1000, sent: int = 100) -> Answer:
    """Declares `declared` bytes, sends `sent`, then drops the connection."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/csv"})
        response.content_length = declared
        await response.prepare(request)
        await response.write(BODY[:sent])
        assert request.transport is not None
        request.transport.close()
        return response

    return answer


# --- a healthy publisher ---------------------------------------------------------------------------


async def test_the_published_list_is_downloaded_hashed_and_its_validators_kept(
    site: CplSite, tmp_path: Path
) -> None:
    url = site.serve(publish())
    fetched = await fetch_cpl(url, tmp_path, limits=QUICK)
    assert isinstance(fetched, Fetched)
    assert fetched.path.parent == tmp_path and fetched.path.read_bytes() == BODY
    assert fetched.sha256 == hashlib.sha256(BODY).hexdigest()
    assert fetched.size == len(BODY)
    assert fetched.validators == Validators(etag=ETAG, last_modified=STAMP)
    assert fetched.content_type == "text/csv; charset=utf-8"
    assert site.requests[0]["User-Agent"].startswith("cfl-graph/")


async def test_an_unchanged_list_is_not_downloaded_again_when_its_etag_matches(
    site: CplSite, tmp_path: Path
) -> None:
    url = site.serve(publish())
    first = await fetch_cpl(url, tmp_path, limits=QUICK)
    assert isinstance(first, Fetched)
    first.path.unlink()

    again = await fetch_cpl(url, tmp_path, previous=first.validators, limits=QUICK)

    assert again == NotModified(url, Validators(etag=ETAG, last_modified=STAMP))
    assert site.requests[1]["If-None-Match"] == ETAG
    assert nothing_left_in(tmp_path)


async def test_only_a_known_date_is_sent_as_if_modified_since(site: CplSite, tmp_path: Path) -> None:
    async def by_date(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-Modified-Since") == STAMP:
            return web.Response(status=304)  # with no validators: the client keeps the ones it had
        return web.Response(body=BODY, headers={"Last-Modified": STAMP})

    url = site.serve(by_date)
    previous = Validators(last_modified=STAMP)
    answer = await fetch_cpl(url, tmp_path, previous=previous, limits=QUICK)
    assert answer == NotModified(url, previous)
    assert "If-None-Match" not in site.requests[0]


# --- retries ----------------------------------------------------------------------------------------


async def test_server_errors_are_retried_with_a_logged_warning_until_one_succeeds(
    site: CplSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = site.serve(in_turn(status(500), status(500), publish()))
    caplog.set_level(logging.WARNING, logger="cpl_sync.fetch")

    fetched = await fetch_cpl(url, tmp_path, limits=QUICK)

    assert isinstance(fetched, Fetched) and fetched.path.read_bytes() == BODY
    assert len(site.requests) == 3
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(url in warning and "HTTP 500" in warning for warning in warnings)
    assert "attempt 1 of 3" in warnings[0] and "attempt 2 of 3" in warnings[1]


async def test_a_server_that_keeps_failing_is_given_up_after_the_allowed_attempts(
    site: CplSite, tmp_path: Path
) -> None:
    url = site.serve(status(503))
    with pytest.raises(HttpStatusError) as caught:
        await fetch_cpl(url, tmp_path, limits=QUICK)
    assert (caught.value.status, caught.value.attempts) == (503, QUICK.attempts)
    assert len(site.requests) == QUICK.attempts
    assert url in str(caught.value) and caught.value.source == url
    assert nothing_left_in(tmp_path)


@pytest.mark.parametrize("code", [404, 410])
async def test_a_missing_list_is_reported_without_retrying(site: CplSite, tmp_path: Path, code: int) -> None:
    url = site.serve(status(code))
    with pytest.raises(SourceNotFound) as caught:
        await fetch_cpl(url, tmp_path, limits=QUICK)
    assert caught.value.status == code and url in str(caught.value)
    assert len(site.requests) == 1
    assert nothing_left_in(tmp_path)


async def test_a_refusal_is_reported_without_retrying(site: CplSite, tmp_path: Path) -> None:
    url = site.serve(status(403))
    with pytest.raises(HttpStatusError) as caught:
        await fetch_cpl(url, tmp_path, limits=QUICK)
    assert (caught.value.status, caught.value.attempts) == (403, 1)
    assert url in str(caught.value) and "403 Forbidden" in str(caught.value)
    assert len(site.requests) == 1
    assert nothing_left_in(tmp_path)


async def test_a_password_in_the_url_is_never_shown(site: CplSite, tmp_path: Path) -> None:
    url = site.serve(status(403)).replace("http://", "http://reader:s3cret@")
    with pytest.raises(HttpStatusError) as caught:
        await fetch_cpl(url, tmp_path, limits=QUICK)
    assert "reader:***@127.0.0.1" in str(caught.value) and "s3cret" not in str(caught.value)
    assert caught.value.source == url  # the caller still gets what it passed


# --- time limits ------------------------------------------------------------------------------------


async def test_a_silent_server_times_out_after_bounded_attempts(site: CplSite, tmp_path: Path) -> None:
    async def silent(request: web.Request) -> web.StreamResponse:
        await site.release.wait()
        return web.Response(body=BODY)

    url = site.serve(silent)
    limits = FetchLimits(read_timeout=0.3, attempts=2, backoff_base=0.01)
    with pytest.raises(SourceUnreachable) as caught:
        await fetch_cpl(url, tmp_path, limits=limits)
    assert caught.value.timed_out and caught.value.attempts == 2
    assert "Timed out" in str(caught.value) and url in str(caught.value)
    assert len(site.requests) == 2
    assert nothing_left_in(tmp_path)


async def test_a_server_that_stalls_mid_body_times_out_and_the_partial_file_is_removed(
    site: CplSite, tmp_path: Path
) -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/csv"})
        response.content_length = len(BODY)
        await response.prepare(request)
        await response.write(BODY[:500])
        await site.release.wait()
        return response

    url = site.serve(stalls)
    with pytest.raises(SourceUnreachable) as caught:
        await fetch_cpl(url, tmp_path, limits=FetchLimits(read_timeout=0.3, attempts=1))
    assert caught.value.timed_out
    assert nothing_left_in(tmp_path)


async def test_a_drip_fed_download_is_bounded_by_the_total_timeout(site: CplSite, tmp_path: Path) -> None:
    async def drips(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/csv"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        while not site.release.is_set():  # each byte well within read_timeout, forever
            await response.write(b"a")
            await asyncio.sleep(0.05)
        return response

    url = site.serve(drips)
    limits = FetchLimits(read_timeout=0.5, total_timeout=0.5, attempts=1)
    with pytest.raises(SourceUnreachable) as caught:
        await fetch_cpl(url, tmp_path, limits=limits)
    assert caught.value.timed_out
    assert nothing_left_in(tmp_path)


async def test_a_refused_connection_is_unreachable_after_retries(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cpl.csv"
    with pytest.raises(SourceUnreachable) as caught:
        await fetch_cpl(url, tmp_path, limits=QUICK)
    assert caught.value.attempts == QUICK.attempts and not caught.value.timed_out
    assert url in str(caught.value)
    assert nothing_left_in(tmp_path)


# --- broken or wrong bodies -------------------------------------------------------------------------


async def test_a_body_cut_short_is_retried_then_reported_as_truncated(site: CplSite, tmp_path: Path) -> None:
    url = site.serve(cut_short(declared=1000, sent=100))
    with pytest.raises(TruncatedResponse) as caught:
        await fetch_cpl(url, tmp_path, limits=QUICK)
    assert (caught.value.expected, caught.value.received) == (1000, 100)
    assert url in str(caught.value)
    assert len(site.requests) == QUICK.attempts
    assert nothing_left_in(tmp_path)


async def test_a_body_cut_short_once_is_fetched_whole_on_the_next_attempt(
    site: CplSite, tmp_path: Path
) -> None:
    url = site.serve(in_turn(cut_short(), publish()))
    fetched = await fetch_cpl(url, tmp_path, limits=QUICK)
    assert isinstance(fetched, Fetched) and fetched.sha256 == hashlib.sha256(BODY).hexdigest()
    assert [path.name for path in tmp_path.iterdir()] == [fetched.path.name]


async def test_an_html_page_labelled_as_html_is_refused(site: CplSite, tmp_path: Path) -> None:
    url = site.serve(publish(b"<p>Please sign in</p>", content_type="text/html; charset=utf-8"))
    with pytest.raises(HtmlInsteadOfData) as caught:
        await fetch_cpl(url, tmp_path, limits=QUICK)
    assert caught.value.content_type == "text/html; charset=utf-8"
    assert url in str(caught.value)
    assert len(site.requests) == 1
    assert nothing_left_in(tmp_path)


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf  \r\n<!DOCTYPE html><html><p>Sign in</p></html>",
        b"<HTML><body>Maintenance</body></HTML>",
        b"\n\t<head><title>Error</title></head>",
        b"<body>Not here</body>",
    ],
    ids=["bom-doctype", "upper-case-html", "head", "body"],
)
async def test_an_html_page_served_as_csv_is_recognised_and_refused(
    site: CplSite, tmp_path: Path, body: bytes
) -> None:
    url = site.serve(publish(body))
    with pytest.raises(HtmlInsteadOfData) as caught:
        await fetch_cpl(url, tmp_path, limits=QUICK)
    assert caught.value.content_type == "text/csv; charset=utf-8" and url in str(caught.value)
    assert nothing_left_in(tmp_path)


async def test_a_declared_oversized_body_is_refused_before_reading_it(site: CplSite, tmp_path: Path) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/csv"})
        response.content_length = 10_000_000
        await response.prepare(request)
        await response.write(BODY[:100])
        await site.release.wait()  # reading on would time out instead of failing fast
        return response

    url = site.serve(huge)
    limits = FetchLimits(max_bytes=1000, read_timeout=0.5, attempts=2, backoff_base=0.01)
    with pytest.raises(ResponseTooLarge) as caught:
        await fetch_cpl(url, tmp_path, limits=limits)
    assert caught.value.limit == 1000 and url in str(caught.value)
    assert len(site.requests) == 1
    assert nothing_left_in(tmp_path)


async def test_an_undeclared_body_growing_past_the_limit_is_aborted_while_streaming(
    site: CplSite, tmp_path: Path
) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/csv"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(10_000):  # 640 MiB: far past the limit, but not forever if the client reads on
            await response.write(b"a" * 65536)
        return response

    url = site.serve(endless)
    limits = FetchLimits(max_bytes=200_000, read_timeout=0.5, attempts=2, backoff_base=0.01)
    with pytest.raises(ResponseTooLarge) as caught:
        await fetch_cpl(url, tmp_path, limits=limits)
    assert caught.value.limit == 200_000 and url in str(caught.value)
    assert len(site.requests) == 1
    assert nothing_left_in(tmp_path)


# --- a file that changes while it downloads --------------------------------------------------------


def replaced_after_the_first_answer(new_body: bytes) -> Answer:
    """The first GET gets BODY; from then on (the HEAD that checks it included) the file is `new_body`."""
    answers = 0

    async def answer(request: web.Request) -> web.StreamResponse:
        nonlocal answers
        answers += request.method == "GET"
        body, etag = (BODY, ETAG) if answers == 1 and request.method == "GET" else (new_body, '"newer"')
        return web.Response(body=body, headers={"Content-Type": "text/csv", "ETag": etag})

    return answer


async def test_a_file_replaced_during_the_download_is_downloaded_again(site: CplSite, tmp_path: Path) -> None:
    newer = BODY + b"Harrow Instruments plc,2C4F,0200\n"
    url = site.serve(replaced_after_the_first_answer(newer))
    fetched = await fetch_cpl(url, tmp_path, limits=QUICK)
    assert isinstance(fetched, Fetched) and fetched.path.read_bytes() == newer
    assert fetched.validators.etag == '"newer"'
    assert (len(site.requests), site.heads) == (2, 2)
    assert [path.name for path in tmp_path.iterdir()] == [fetched.path.name]


async def test_a_file_that_changes_on_every_try_is_given_up_after_the_allowed_attempts(
    site: CplSite, tmp_path: Path
) -> None:
    async def always_newer(request: web.Request) -> web.StreamResponse:
        stamp = f'"{len(site.requests)}-{site.heads}"'  # the HEAD after each GET sees another file
        return web.Response(body=BODY, headers={"ETag": stamp})

    url = site.serve(always_newer)
    with pytest.raises(ChangedWhileDownloading) as caught:
        await fetch_cpl(url, tmp_path, limits=QUICK)
    assert caught.value.attempts == QUICK.attempts and "its ETag was" in caught.value.why
    assert nothing_left_in(tmp_path)


async def test_a_check_the_server_cannot_answer_keeps_the_whole_download(
    site: CplSite, tmp_path: Path
) -> None:
    async def no_head(request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(status=405)
        return await publish()(request)

    url = site.serve(no_head)
    fetched = await fetch_cpl(url, tmp_path, limits=QUICK)
    assert isinstance(fetched, Fetched) and fetched.path.read_bytes() == BODY
    assert (len(site.requests), site.heads) == (1, 1)


@pytest.mark.parametrize("header", ["Repr-Digest", "Content-Digest"])
async def test_a_body_that_does_not_hash_to_the_announced_digest_is_refused(
    site: CplSite, tmp_path: Path, header: str
) -> None:
    other = base64.b64encode(hashlib.sha256(b"another file").digest()).decode()

    async def lying(request: web.Request) -> web.StreamResponse:
        return web.Response(body=BODY, headers={header: f"sha-256=:{other}:"})

    url = site.serve(lying)
    with pytest.raises(ChangedWhileDownloading) as caught:
        await fetch_cpl(url, tmp_path, limits=QUICK)
    assert "does not hash to the SHA-256 announced" in str(caught.value)
    assert len(site.requests) == QUICK.attempts and nothing_left_in(tmp_path)

    right = base64.b64encode(hashlib.sha256(BODY).digest()).decode()

    async def honest(request: web.Request) -> web.StreamResponse:
        return web.Response(body=BODY, headers={header: f"sha-512=:AAAA:, sha-256=:{right}:"})

    fetched = await fetch_cpl(site.serve(honest), tmp_path, limits=QUICK)
    assert isinstance(fetched, Fetched) and fetched.path.read_bytes() == BODY


async def test_part_of_the_file_is_refused_without_retrying(site: CplSite, tmp_path: Path) -> None:
    async def partial(request: web.Request) -> web.StreamResponse:
        return web.Response(status=206, body=BODY[:100], headers={"Content-Range": f"bytes 0-99/{len(BODY)}"})

    url = site.serve(partial)
    with pytest.raises(PartialContent) as caught:
        await fetch_cpl(url, tmp_path, limits=QUICK)
    assert caught.value.content_range == f"bytes 0-99/{len(BODY)}" and "HTTP 206" in str(caught.value)
    assert len(site.requests) == 1 and nothing_left_in(tmp_path)


# --- local files and other sources ------------------------------------------------------------------


@pytest.fixture
def published(tmp_path: Path) -> Path:
    folder = tmp_path / "published"
    folder.mkdir()
    return folder


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


async def test_a_local_file_is_copied_and_hashed_so_later_changes_do_not_reach_the_parse(
    published: Path, work: Path
) -> None:
    source = published / "cpl.csv"
    for given in (str(source), source.as_uri()):
        source.write_bytes(BODY)
        fetched = await fetch_cpl(given, work)
        source.write_bytes(b"changed after the fetch")

        assert isinstance(fetched, Fetched) and fetched.source == given
        assert fetched.path.parent == work and fetched.path.read_bytes() == BODY
        assert (fetched.sha256, fetched.size) == (hashlib.sha256(BODY).hexdigest(), len(BODY))
        assert (fetched.validators, fetched.content_type) == (Validators(), None)


async def test_a_missing_local_file_is_not_found(published: Path, work: Path) -> None:
    source = str(published / "nowhere.csv")
    with pytest.raises(SourceNotFound) as caught:
        await fetch_cpl(source, work)
    assert caught.value.status is None and source in str(caught.value)
    assert nothing_left_in(work)


async def test_a_local_file_obeys_the_size_limit_and_the_html_check(published: Path, work: Path) -> None:
    large = published / "large.csv"
    large.write_bytes(BODY)
    with pytest.raises(ResponseTooLarge, match=r"large\.csv"):
        await fetch_cpl(str(large), work, limits=FetchLimits(max_bytes=len(BODY) - 1))

    page = published / "saved-page.csv"
    page.write_bytes(b"<!doctype html><html></html>")
    with pytest.raises(HtmlInsteadOfData, match=r"saved-page\.csv"):
        await fetch_cpl(str(page), work)
    assert nothing_left_in(work)


@pytest.mark.parametrize(
    "source", ["ftp://example.invalid/cpl.csv", "http:///cpl.csv", "file://fileserver/share/cpl.csv"]
)
async def test_an_unsupported_source_is_refused_by_name(tmp_path: Path, source: str) -> None:
    with pytest.raises(UnsupportedSource) as caught:
        await fetch_cpl(source, tmp_path)
    assert isinstance(caught.value, FetchError) and source in str(caught.value)
    assert nothing_left_in(tmp_path)


def test_limits_that_would_never_try_are_rejected() -> None:
    with pytest.raises(ValueError, match="attempts"):
        FetchLimits(attempts=0)

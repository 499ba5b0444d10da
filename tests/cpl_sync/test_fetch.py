"""The CPL fetcher against a real local HTTP server (R6): conditional GET, bounded retries, limits,
refusal of HTML pages, and never a partial download left behind."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from cpl_sync.fetch import (
    Fetched,
    FetchLimits,
    HtmlInsteadOfData,
    HttpStatusError,
    NotModified,
    ResponseTooLarge,
    SourceNotFound,
    SourceUnreachable,
    TruncatedResponse,
    UnsupportedSource,
    Validators,
    fetch_cpl,
)
from tests.fixtures.cpl_server import Publisher, serve_cpl

QUICK = FetchLimits(attempts=3, backoff_base=0.01, read_timeout=0.5, total_timeout=5, connect_timeout=2)
BODY = b"Manufacturer Name,Manufacturer ID\nNorthfield Metering Ltd,10B2\n" * 50


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


async def test_a_download_is_hashed_as_it_streams(tmp_path: Path) -> None:
    publisher = Publisher(body=BODY)
    async with serve_cpl(publisher) as url:
        fetched = await fetch_cpl(url, tmp_path, limits=QUICK)
    assert isinstance(fetched, Fetched)
    assert fetched.path.read_bytes() == BODY
    assert (fetched.sha256, fetched.size) == (hashlib.sha256(BODY).hexdigest(), len(BODY))
    assert fetched.validators.etag == publisher.etag
    assert publisher.requests[0]["User-Agent"].startswith("cfl-graph/")


async def test_an_unchanged_list_answers_304_by_etag_or_by_date(tmp_path: Path) -> None:
    by_etag = Publisher(body=BODY)
    async with serve_cpl(by_etag) as url:
        first = await fetch_cpl(url, tmp_path, limits=QUICK)
        assert isinstance(first, Fetched)
        again = await fetch_cpl(url, tmp_path, previous=first.validators, limits=QUICK)
    assert isinstance(again, NotModified) and again.validators.etag == by_etag.etag
    assert by_etag.requests[1]["If-None-Match"] == by_etag.etag

    stamp = "Wed, 25 Nov 2026 06:00:00 GMT"
    by_date = Publisher(body=BODY, last_modified=stamp)
    async with serve_cpl(by_date) as url:
        answer = await fetch_cpl(url, tmp_path, previous=Validators(last_modified=stamp), limits=QUICK)
    assert isinstance(answer, NotModified)
    assert by_date.requests[0]["If-Modified-Since"] == stamp


async def test_server_errors_are_retried_with_backoff_until_one_succeeds(tmp_path: Path) -> None:
    publisher = Publisher(body=BODY, fail_first=2)
    async with serve_cpl(publisher) as url:
        fetched = await fetch_cpl(url, tmp_path, limits=QUICK)
    assert isinstance(fetched, Fetched) and fetched.size == len(BODY)
    assert len(publisher.requests) == 3


async def test_retries_are_bounded(tmp_path: Path) -> None:
    publisher = Publisher(body=BODY, status=503)
    async with serve_cpl(publisher) as url:
        with pytest.raises(HttpStatusError) as caught:
            await fetch_cpl(url, tmp_path, limits=QUICK)
    assert (caught.value.status, caught.value.attempts, len(publisher.requests)) == (503, 3, 3)
    assert url in str(caught.value)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "status,error", [(404, SourceNotFound), (410, SourceNotFound), (403, HttpStatusError)]
)
async def test_client_errors_are_not_retried(tmp_path: Path, status: int, error: type[Exception]) -> None:
    publisher = Publisher(body=BODY, status=status)
    async with serve_cpl(publisher) as url:
        with pytest.raises(error):
            await fetch_cpl(url, tmp_path, limits=QUICK)
    assert len(publisher.requests) == 1


async def test_a_hanging_server_times_out_within_the_limits(tmp_path: Path) -> None:
    publisher = Publisher(body=BODY, hang_seconds=3)
    async with serve_cpl(publisher) as url:
        with pytest.raises(SourceUnreachable) as caught:
            await fetch_cpl(
                url, tmp_path, limits=FetchLimits(attempts=2, backoff_base=0.01, read_timeout=0.3)
            )
    assert caught.value.timed_out and "Timed out" in str(caught.value)
    assert len(publisher.requests) == 2
    assert leftovers(tmp_path) == []


async def test_a_truncated_body_is_refused_after_retrying(tmp_path: Path) -> None:
    publisher = Publisher(body=BODY, truncate=True)
    async with serve_cpl(publisher) as url:
        with pytest.raises(TruncatedResponse) as caught:
            await fetch_cpl(url, tmp_path, limits=QUICK)
    assert caught.value.expected == len(BODY) and caught.value.received < len(BODY)
    assert len(publisher.requests) == 3
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "content_type,body",
    [("text/html", BODY), ("text/csv", b"\xef\xbb\xbf  <!DOCTYPE html><html><p>Sign in</p>")],
    ids=["labelled", "sniffed"],
)
async def test_an_html_page_served_with_200_is_refused(
    tmp_path: Path, content_type: str, body: bytes
) -> None:
    publisher = Publisher(body=body, content_type=content_type)
    async with serve_cpl(publisher) as url:
        with pytest.raises(HtmlInsteadOfData):
            await fetch_cpl(url, tmp_path, limits=QUICK)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "streamed"])
async def test_an_oversized_body_is_refused(tmp_path: Path, chunked: bool) -> None:
    publisher = Publisher(body=BODY * 20, chunked=chunked)
    async with serve_cpl(publisher) as url:
        with pytest.raises(ResponseTooLarge) as caught:
            await fetch_cpl(url, tmp_path, limits=FetchLimits(max_bytes=len(BODY), attempts=1))
    assert f"{len(BODY):,}-byte limit" in str(caught.value)
    assert leftovers(tmp_path) == []


async def test_a_refused_connection_is_unreachable_after_retries(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceUnreachable) as caught:
        await fetch_cpl(f"http://127.0.0.1:{port}/cpl.xlsx", tmp_path, limits=QUICK)
    assert caught.value.attempts == 3 and not caught.value.timed_out
    assert leftovers(tmp_path) == []


async def test_local_files_are_copied_not_read_in_place(tmp_path: Path) -> None:
    source = tmp_path / "cpl.csv"
    source.write_bytes(BODY)
    work = tmp_path / "work"
    work.mkdir()
    for given in (str(source), source.as_uri()):
        fetched = await fetch_cpl(given, work)
        assert isinstance(fetched, Fetched)
        source.write_bytes(b"changed later")  # the copy is what gets parsed
        assert fetched.path.read_bytes() == BODY and fetched.path.parent == work
        source.write_bytes(BODY)
    with pytest.raises(SourceNotFound, match=r"nowhere\.csv"):
        await fetch_cpl(str(tmp_path / "nowhere.csv"), work)


@pytest.mark.parametrize(
    "source", ["ftp://example.invalid/cpl.csv", "http:///cpl.csv", "file://otherhost/cpl.csv"]
)
async def test_unsupported_sources_are_named(tmp_path: Path, source: str) -> None:
    with pytest.raises(UnsupportedSource):
        await fetch_cpl(source, tmp_path)

"""Atom feeds of the library's published images, overall and per manufacturer (R9: pull only).

    GET /feeds/images.atom                                  every manufacturer
    GET /feeds/manufacturers/{manufacturer_id}/images.atom  one manufacturer id (4 hex digits)

A supplier subscribes in its own feed reader, which signs in with HTTP Basic and an API token as the
password (the middleware accepts that on every path and challenges for it under /feeds/). The library
never pushes: the reader polls, and the ETag lets it do so for the price of a 304.

What is in a feed, and why:
- The newest 100 images by `updated`, the last change of their state (publication, hold, release,
  withdrawal). Drafts never appear.
- A withdrawn image stays in the feed as an updated entry (same id, a later `updated`, "withdrawn" in
  its title, the reason first in its content, and no enclosure since its bytes are no longer served):
  a supplier that took the image must learn it was withdrawn. A held image (the current CPL no longer
  certifies it as it is) is shown the same way with the hold's reason, and its release moves it to the
  top again with its enclosure back. Ordering by `updated` rather than published_at is what makes that
  hold for an old image too: the change moves it to the top, where a reader polling only the feed's
  first page sees it.
- Every party that may read the catalogue gets the same bytes for the same URL (R4): nothing in a feed
  depends on who asks, nor on the Host header the request came with. Links start with the configured
  public base URL (`CFL_PUBLIC_BASE_URL`); without one they are relative (`/api/v1/images/7`), which
  Atom allows and feed readers resolve against the feed's own URL (RFC 4287 section 2, RFC 3986 5.1.3).

The XML is built with ElementTree, which escapes text and attributes itself, so no text from an upload
(release notes, a withdrawal reason) is ever pasted into markup; characters XML 1.0 cannot carry at all
are dropped first. The release notes' HTML is already sanitised (`cfl_graph.images.notes`) and goes in
as the text of a type="html" content element, i.e. escaped once more for XML.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cfl_graph.access.policy import AccessDenied, Action, authorise
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.refusals import refusal_response
from cfl_graph.doors.web.services import services
from cfl_graph.identifiers import ManufacturerId
from cfl_graph.images.listing import FeedEntry, feed_entries
from cfl_graph.tables import ImageState

ATOM = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml; charset=utf-8"
CACHE_CONTROL = "private, max-age=300"
TAG_AUTHORITY = "tag:cfl-graph,2026:"
GENERATOR = "cfl-graph"
AUTHOR = "Centralised Firmware Library"
# An empty feed still needs an `updated`; a fixed instant keeps its bytes (and ETag) stable.
EMPTY_FEED_UPDATED = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

_MANUFACTURER_ID = re.compile(r"[0-9A-Fa-f]{4}")
# Everything XML 1.0 cannot represent, even escaped: C0 controls but tab and newlines, lone
# surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def _add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: _xml_text(v) for k, v in attributes.items()})
    if text is not None:
        element.text = _xml_text(text)
    return element


def _title(entry: FeedEntry) -> str:
    return (
        f"{entry.dcc_file_name} for model {entry.model_id} hardware {entry.hardware_version} ({entry.state})"
    )


def _withdrawal(entry: FeedEntry) -> str:
    assert entry.withdrawn_at is not None
    return f"Withdrawn on {entry.withdrawn_at:%Y-%m-%d}: {entry.withdrawal_reason or ''}"


def _hold(entry: FeedEntry) -> str:
    assert entry.held_at is not None
    return f"Held since {entry.held_at:%Y-%m-%d}, not served: {entry.hold_detail or ''}"


def _standing(entry: FeedEntry) -> list[str]:
    """Why a listed image is not served, first in its entry."""
    if entry.withdrawn:
        return [_withdrawal(entry)]
    if entry.state == ImageState.HELD:
        return [_hold(entry)]
    return []


def _summary(entry: FeedEntry) -> str:
    lines = _standing(entry)
    lines += [
        f"Manufacturer {entry.manufacturer_id}, model {entry.model_id}, hardware {entry.hardware_version}, "
        f"firmware {entry.firmware_version}; {entry.size:,} bytes.",
        f"File SHA-256: {entry.file_sha256}",
        f"Manufacturer image SHA-256: {entry.manufacturer_image_sha256}",
    ]
    if entry.release_notes_text:
        lines += ["", entry.release_notes_text]
    return "\n".join(lines)


def _content_html(entry: FeedEntry) -> str:
    """HTML for the entry's content: the facts escaped here, then the notes' already-sanitised HTML."""
    parts = [f"<p><strong>{html.escape(line)}</strong></p>" for line in _standing(entry)]
    facts = [
        ("Manufacturer", html.escape(entry.manufacturer_id)),
        ("Model", html.escape(entry.model_id)),
        ("Hardware version", html.escape(entry.hardware_version)),
        ("Firmware version", html.escape(entry.firmware_version)),
        ("Size", f"{entry.size:,} bytes"),
        ("File SHA-256", f"<code>{html.escape(entry.file_sha256)}</code>"),
        ("Manufacturer image SHA-256", f"<code>{html.escape(entry.manufacturer_image_sha256)}</code>"),
    ]
    parts.append("<dl>" + "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts) + "</dl>")
    if entry.release_notes_html:
        parts.append(entry.release_notes_html)
    return "\n".join(parts)


def render_feed(entries: Sequence[FeedEntry], *, base_url: str, path: str, feed_id: str, title: str) -> bytes:
    """The Atom document; the same entries and URLs always give the same bytes."""
    # Atom's namespace as the default one, declared on the root: ElementTree's own `default_namespace`
    # refuses the unqualified attribute names Atom uses.
    feed = ET.Element("feed", {"xmlns": ATOM})
    _add(feed, "id", TAG_AUTHORITY + feed_id)
    _add(feed, "title", title)
    _add(feed, "updated", rfc3339(max((e.updated for e in entries), default=EMPTY_FEED_UPDATED)))
    _add(feed, "link", rel="self", type="application/atom+xml", href=base_url + path)
    author = _add(feed, "author")
    _add(author, "name", AUTHOR)
    _add(feed, "generator", GENERATOR)
    for entry in entries:
        item = _add(feed, "entry")
        _add(item, "id", f"{TAG_AUTHORITY}image/{entry.id}")
        _add(item, "title", _title(entry))
        _add(item, "updated", rfc3339(entry.updated))
        _add(item, "published", rfc3339(entry.published_at))
        record = f"{base_url}/api/v1/images/{entry.id}"
        _add(item, "link", rel="alternate", type="application/json", href=record)
        if entry.served:
            # A withdrawn or held image's bytes are not served, so a reader must not be led to fetch them.
            _add(
                item,
                "link",
                rel="enclosure",
                type="application/octet-stream",
                length=str(entry.size),
                href=f"{record}/file",
            )
        _add(item, "category", term=entry.manufacturer_id, label=f"manufacturer {entry.manufacturer_id}")
        _add(item, "summary", _summary(entry), type="text")
        _add(item, "content", _content_html(entry), type="html")
    document: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison, and `*` matches any current representation."""
    if if_none_match is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _feed_response(request: Request, document: bytes) -> Response:
    # The ETag is the document's own digest, so it changes exactly when the bytes do: a publish, a
    # withdrawal, or another configured base URL; never for who asks or the Host they name.
    etag = f'"{hashlib.sha256(document).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(document, headers=headers, media_type=MEDIA_TYPE)


async def _feed(request: Request, manufacturer_from_path: bool) -> Response:
    try:
        authorise(principal_of(request.scope), Action.READ_CATALOGUE)
    except AccessDenied as exc:
        return refusal_response(exc)
    manufacturer: ManufacturerId | None = None
    path, feed_id, title = "/feeds/images.atom", "feed/images", f"{AUTHOR}: firmware images"
    if manufacturer_from_path:
        raw = request.path_params["manufacturer_id"]
        if not _MANUFACTURER_ID.fullmatch(raw):
            return JSONResponse(
                {
                    "error": f"no such feed: a manufacturer id is 4 hexadecimal digits, like 10B2, "
                    f"not {raw[:16]!r}",
                    "code": "NOT_FOUND",
                    "problems": [],
                },
                status_code=404,
            )
        manufacturer = ManufacturerId(raw.upper())
        path = f"/feeds/manufacturers/{manufacturer}/images.atom"
        feed_id = f"feed/manufacturers/{manufacturer}/images"
        title = f"{AUTHOR}: firmware images of manufacturer {manufacturer}"
    found = services(request)
    async with found.sessions() as session:
        entries = await feed_entries(session, manufacturer)
    document = render_feed(entries, base_url=found.public_base_url, path=path, feed_id=feed_id, title=title)
    return _feed_response(request, document)


async def every_image(request: Request) -> Response:
    return await _feed(request, manufacturer_from_path=False)


async def one_manufacturer(request: Request) -> Response:
    return await _feed(request, manufacturer_from_path=True)


routes = [
    Route("/feeds/images.atom", every_image, methods=["GET"]),
    Route("/feeds/manufacturers/{manufacturer_id}/images.atom", one_manufacturer, methods=["GET"]),
]

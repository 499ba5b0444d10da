"""Atom feeds of published images (R9: pull only): what a supplier's feed reader sees, through real HTTP.

The catalogue every test starts from, in the order things happened: A2 published, A1 published (its
notes full of XML's special characters), C1 published by the other manufacturer, A2 withdrawn; A3 is
a draft. So the feed, most recently updated first, reads A2 (withdrawn), C1, A1.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import update

from cfl_graph.access.parties import add_party
from cfl_graph.access.tokens import issue_token
from cfl_graph.audit import SYSTEM
from cfl_graph.database import Database
from cfl_graph.tables import LibraryImage, Role
from tests.fixtures.library import (
    GOOD_NOTES,
    OTHER_C1,
    OWN_A1,
    OWN_A2,
    OWN_A3,
    OWN_B_HW1,
    Version,
    World,
    client,
    make_world,
    serving,
)
from tests.fixtures.parties import OTHER_MANUFACTURER_ID

pytestmark = pytest.mark.postgres

NS = {"atom": "http://www.w3.org/2005/Atom"}
PUBLIC_BASE = "https://cfl.example.org/library"  # CFL_PUBLIC_BASE_URL, with a path prefix
FEED = "/feeds/images.atom"
# Every character XML gives a meaning to, and the sequence that ends a CDATA section.
AWKWARD_NOTES = (
    "## Changes\n\n"
    "- Fixed the comparison `1 < 2 && 3 > 2` that ended with ]]> in the log.\n"
    "- Quoted \"tariff\" & 'rate' names <b>no longer</b> break the display.\n"
)
WITHDRAWAL_REASON = "bricks meters on cold start <script>alert(1)</script> & worse"
# The BEL character cannot appear in XML 1.0 at all, not even as a character reference. Reasons refuse
# control characters now; one stored before they did must still not break the feed.
STORED_REASON = WITHDRAWAL_REASON + "\x07"


@dataclass
class Catalogue:
    world: World
    a1: LibraryImage
    a2: LibraryImage
    a3: LibraryImage
    c1: LibraryImage


async def draft(world: World, version: Version, token: str, notes: str = GOOD_NOTES) -> LibraryImage:
    return await world.upload(world.image(version), token=token, notes=notes)


async def published(world: World, version: Version, token: str, notes: str = GOOD_NOTES) -> LibraryImage:
    image = await draft(world, version, token, notes)
    return await world.publish(image.id, token)


@pytest.fixture
async def catalogue(db: Database, tmp_path: Path) -> Catalogue:
    world = await make_world(db, tmp_path)
    own, other = world.tokens.manufacturer, world.tokens.other_manufacturer
    a2 = await published(world, OWN_A2, own)
    a1 = await published(world, OWN_A1, own, AWKWARD_NOTES)
    c1 = await published(world, OTHER_C1, other)
    a2 = await world.library.withdraw(await world.principal(own), a2.id, WITHDRAWAL_REASON)
    async with world.db.sessions.begin() as session:
        await session.execute(
            update(LibraryImage).where(LibraryImage.id == a2.id).values(withdrawal_reason=STORED_REASON)
        )
    a3 = await draft(world, OWN_A3, own)
    return Catalogue(world, a1, a2, a3, c1)


def parse(answer: httpx2.Response) -> ET.Element:
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    root = ET.fromstring(answer.content)
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"
    return root


def text(element: ET.Element, path: str) -> str:
    found = element.find(path, NS)
    assert found is not None and found.text is not None, path
    return found.text


def entry_ids(feed: ET.Element) -> list[str]:
    return [text(entry, "atom:id") for entry in feed.findall("atom:entry", NS)]


def entry_for(feed: ET.Element, image: LibraryImage) -> ET.Element:
    for entry in feed.findall("atom:entry", NS):
        if text(entry, "atom:id") == f"tag:cfl-graph,2026:image/{image.id}":
            return entry
    raise AssertionError(f"image {image.id} is not in the feed")


def links(entry: ET.Element) -> dict[str, dict[str, str]]:
    return {link.attrib["rel"]: dict(link.attrib) for link in entry.findall("atom:link", NS)}


def instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


async def test_the_feed_lists_published_images_most_recently_updated_first_and_never_drafts(
    catalogue: Catalogue,
) -> None:
    world, a1, a2, c1 = catalogue.world, catalogue.a1, catalogue.a2, catalogue.c1
    base = PUBLIC_BASE
    async with serving(world.app(public_base_url=base)) as url, client(url, world.tokens.supplier) as http:
        answer = await http.get(FEED)
        feed = parse(answer)
    assert answer.headers["Cache-Control"] == "private, max-age=300"
    assert entry_ids(feed) == [f"tag:cfl-graph,2026:image/{image.id}" for image in (a2, c1, a1)]
    assert f"image/{catalogue.a3.id}" not in answer.text  # the draft
    assert text(feed, "atom:id") == "tag:cfl-graph,2026:feed/images"
    assert text(feed, "atom:author/atom:name") == "Centralised Firmware Library"
    assert links(feed)["self"]["href"] == f"{base}/feeds/images.atom"
    assert text(feed, "atom:updated") == text(feed, "atom:entry/atom:updated")

    entry = entry_for(feed, a1)
    assert text(entry, "atom:title") == "10B2-0001-01000000 for model 0001 hardware 0100 (published)"
    assert a1.published_at is not None
    assert instant(text(entry, "atom:published")) == a1.published_at
    assert instant(text(entry, "atom:updated")) == a1.published_at
    assert links(entry)["alternate"]["href"] == f"{base}/api/v1/images/{a1.id}"
    assert links(entry)["enclosure"] == {
        "rel": "enclosure",
        "type": "application/octet-stream",
        "length": str(a1.size),
        "href": f"{base}/api/v1/images/{a1.id}/file",
    }
    for digest in (a1.file_sha256, a1.manufacturer_image_sha256):
        assert digest in text(entry, "atom:summary")
        assert digest in text(entry, "atom:content")


async def test_a_withdrawn_image_stays_in_the_feed_as_an_updated_entry_with_its_reason(
    catalogue: Catalogue,
) -> None:
    world, a2 = catalogue.world, catalogue.a2
    async with serving(world.app()) as base, client(base, world.tokens.supplier) as http:
        entry = entry_for(parse(await http.get(FEED)), a2)
        enclosure_answer = await http.get(f"/api/v1/images/{a2.id}/file")
    assert text(entry, "atom:title") == "10B2-0001-01010000 for model 0001 hardware 0100 (withdrawn)"
    assert a2.published_at is not None and a2.withdrawn_at is not None
    assert instant(text(entry, "atom:published")) == a2.published_at
    assert instant(text(entry, "atom:updated")) == a2.withdrawn_at > a2.published_at
    # The reason as stored, less the one character XML cannot carry.
    reason = WITHDRAWAL_REASON
    assert text(entry, "atom:summary").startswith(f"Withdrawn on {a2.withdrawn_at:%Y-%m-%d}: {reason}\n")
    content = entry.find("atom:content", NS)
    assert content is not None and content.attrib["type"] == "html" and content.text is not None
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; worse" in content.text
    assert "<script>" not in content.text
    # Its bytes are no longer served to suppliers, so the entry offers none.
    assert "enclosure" not in links(entry)
    assert enclosure_answer.status_code == 410


async def test_release_notes_with_xml_special_characters_come_through_exactly(catalogue: Catalogue) -> None:
    world, a1 = catalogue.world, catalogue.a1
    async with serving(world.app()) as base, client(base, world.tokens.supplier) as http:
        raw = (await http.get(FEED)).content
    entry = entry_for(ET.fromstring(raw), a1)
    assert a1.release_notes_html is not None and a1.release_notes_text is not None
    assert "]]&gt;" in a1.release_notes_html and "&amp;" in a1.release_notes_html
    content = entry.find("atom:content", NS)
    assert content is not None and content.text is not None
    assert content.text.endswith(a1.release_notes_html)
    assert text(entry, "atom:summary").endswith("\n\n" + a1.release_notes_text)
    assert "1 < 2 && 3 > 2 that ended with ]]> in the log" in a1.release_notes_text
    assert b"]]>" not in raw and b"CDATA" not in raw


async def test_a_manufacturer_feed_holds_only_that_manufacturers_images(catalogue: Catalogue) -> None:
    world, c1 = catalogue.world, catalogue.c1
    base = PUBLIC_BASE
    async with serving(world.app(public_base_url=base)) as url, client(url, world.tokens.supplier) as http:
        other = parse(await http.get(f"/feeds/manufacturers/{OTHER_MANUFACTURER_ID.lower()}/images.atom"))
        own = parse(await http.get("/feeds/manufacturers/10B2/images.atom"))
        nobody = parse(await http.get("/feeds/manufacturers/FFFF/images.atom"))
    assert entry_ids(other) == [f"tag:cfl-graph,2026:image/{c1.id}"]
    assert text(other, "atom:id") == "tag:cfl-graph,2026:feed/manufacturers/2C4F/images"
    assert links(other)["self"]["href"] == f"{base}/feeds/manufacturers/2C4F/images.atom"
    assert entry_ids(own) == [f"tag:cfl-graph,2026:image/{i.id}" for i in (catalogue.a2, catalogue.a1)]
    assert (entry_ids(nobody), text(nobody, "atom:updated")) == ([], "1970-01-01T00:00:00.000000Z")


async def test_a_malformed_manufacturer_id_is_not_found(db: Database, tmp_path: Path) -> None:
    world = await make_world(db, tmp_path)
    async with serving(world.app()) as base, client(base, world.tokens.supplier) as http:
        for manufacturer_id in ("10B", "10B20", "XYZW", "0x10"):
            answer = await http.get(f"/feeds/manufacturers/{manufacturer_id}/images.atom")
            assert answer.status_code == 404, manufacturer_id
            assert answer.json()["code"] == "NOT_FOUND"
            assert "4 hexadecimal digits" in answer.json()["error"]


async def test_a_feed_reader_signs_in_with_basic_auth_and_the_token_as_password(
    db: Database, tmp_path: Path
) -> None:
    world = await make_world(db, tmp_path)
    async with serving(world.app()) as base:
        async with httpx2.AsyncClient(base_url=base, auth=("reader", world.tokens.supplier)) as reader:
            assert (await reader.get(FEED)).status_code == 200
        async with client(base, None) as anonymous:
            refused = await anonymous.get(FEED)
            wrong = await anonymous.get(FEED, auth=("reader", world.tokens.revoked))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="cfl-graph"'
    assert "error" in refused.json()
    assert wrong.status_code == 401


async def test_every_party_gets_the_same_feed_bytes(catalogue: Catalogue) -> None:
    """R4: no supplier is favoured, and a manufacturer's own drafts do not leak into its view."""
    world = catalogue.world
    async with world.db.sessions.begin() as session:
        second = await add_party(session, "Pennine Energy Ltd", Role.SUPPLIER, actor=SYSTEM)
        second_token = (await issue_token(session, second, actor=SYSTEM)).text
    answers = []
    async with serving(world.app()) as base:
        for token in (world.tokens.supplier, second_token, world.tokens.manufacturer, world.tokens.panel):
            async with client(base, token) as http:
                answers.append(await http.get(FEED))
    assert {a.status_code for a in answers} == {200}
    assert len({hashlib.sha256(a.content).digest() for a in answers}) == 1
    assert len({a.headers["ETag"] for a in answers}) == 1


async def test_a_reader_that_has_the_feed_gets_304_until_the_feed_changes(catalogue: Catalogue) -> None:
    world = catalogue.world
    async with serving(world.app()) as base, client(base, world.tokens.supplier) as http:
        first = await http.get(FEED)
        etag = first.headers["ETag"]
        again = await http.get(FEED, headers={"If-None-Match": etag})
        weak = await http.get(FEED, headers={"If-None-Match": f'"other", W/{etag}'})
        await published(world, OWN_B_HW1, world.tokens.manufacturer)
        changed = await http.get(FEED, headers={"If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "private, max-age=300"
    assert weak.status_code == 304
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert len(parse(changed).findall("atom:entry", NS)) == 4


async def test_links_never_come_from_the_host_header(catalogue: Catalogue) -> None:
    world, a1 = catalogue.world, catalogue.a1
    hosts = ["evil.example", "cfl.example.org:443", "127.0.0.1:1"]
    unset: dict[str, bytes] = {}
    configured: dict[str, bytes] = {}
    for app, into in ((world.app(), unset), (world.app(public_base_url=PUBLIC_BASE), configured)):
        async with serving(app) as url, client(url, world.tokens.supplier) as http:
            for host in hosts:
                answer = await http.get(FEED, headers={"Host": host, "X-Forwarded-Host": "evil.example"})
                assert answer.status_code == 200, answer.text
                into[host] = answer.content
    # Unset: links relative to the site, the same whatever Host the request named.
    assert len(set(unset.values())) == 1 and b"evil.example" not in unset[hosts[0]]
    feed = ET.fromstring(unset[hosts[0]])
    assert links(feed)["self"]["href"] == "/feeds/images.atom"
    assert links(entry_for(feed, a1))["enclosure"]["href"] == f"/api/v1/images/{a1.id}/file"
    # Configured: the base URL, whatever Host the request named.
    assert len(set(configured.values())) == 1 and b"evil.example" not in configured[hosts[0]]
    feed = ET.fromstring(configured[hosts[0]])
    assert links(feed)["self"]["href"] == f"{PUBLIC_BASE}/feeds/images.atom"
    assert links(entry_for(feed, a1))["alternate"]["href"] == f"{PUBLIC_BASE}/api/v1/images/{a1.id}"

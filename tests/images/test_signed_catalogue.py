"""The served signed catalogue (issue 6.6): a client verifies it, sees versions grow with every
publication and withdrawal, and refuses tampered, rolled-back and expired documents."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cfl_graph.catalogue_signing import (
    BadSignature,
    CatalogueExpired,
    RollbackDetected,
    verify_catalogue,
)
from cfl_graph.database import Database
from tests.fixtures.library import OWN_A1, OWN_A2, World, client, make_world, serving

pytestmark = pytest.mark.postgres


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def test_a_client_follows_the_catalogue_as_images_are_published_and_withdrawn(world: World) -> None:
    first = await world.upload(world.image(OWN_A1))
    second = await world.upload(world.image(OWN_A2))
    async with serving(world.app()) as url, client(url, world.tokens.supplier) as http:
        pem = (await http.get("/api/v1/catalogue.pub")).content
        public_key = serialization.load_pem_public_key(pem)
        assert isinstance(public_key, Ed25519PublicKey)

        empty = verify_catalogue((await http.get("/api/v1/catalogue.json")).content, public_key)
        assert empty.images == []  # drafts are never listed

        await world.publish(first.id)
        one_bytes = (await http.get("/api/v1/catalogue.json")).content
        one = verify_catalogue(one_bytes, public_key, last_seen_version=empty.version)
        assert one.version > empty.version
        [entry] = one.images
        assert entry["state"] == "published"
        assert (entry["file_sha256"], entry["length"], entry["url"]) == (
            first.file_sha256,
            first.size,
            f"/api/v1/images/{first.id}/file",
        )
        assert entry["manufacturer_image_sha256"] == OWN_A1.cpl_hash

        await world.publish(second.id)
        await world.library.withdraw(
            await world.principal(world.tokens.manufacturer), first.id, "bricks meters on cold start"
        )
        latest_bytes = (await http.get("/api/v1/catalogue.json")).content
        latest = verify_catalogue(latest_bytes, public_key, last_seen_version=one.version)
        assert latest.version >= one.version + 2  # the publication and the withdrawal each count
        states = {e["id"]: (e["state"], e["withdrawal_reason"]) for e in latest.images}
        assert states == {
            first.id: ("withdrawn", "bricks meters on cold start"),
            second.id: ("published", None),
        }

        # A rolled-back document (an older one replayed) is refused once a newer one was seen.
        with pytest.raises(RollbackDetected):
            verify_catalogue(one_bytes, public_key, last_seen_version=latest.version)
        # Any edit breaks the signature.
        tampered = json.loads(latest_bytes)
        tampered["signed"]["images"][0]["file_sha256"] = "0" * 64
        with pytest.raises(BadSignature):
            verify_catalogue(json.dumps(tampered).encode(), public_key)
        # A client whose clock passes the expiry refuses it: the feed may be frozen.
        with pytest.raises(CatalogueExpired):
            verify_catalogue(latest_bytes, public_key, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=8))


async def test_the_catalogue_is_for_signed_in_parties_and_the_same_for_every_supplier(world: World) -> None:
    image = await world.upload(world.image(OWN_A1))
    await world.publish(image.id)
    async with serving(world.app()) as url:
        async with client(url, None) as http:
            assert (await http.get("/api/v1/catalogue.json")).status_code == 401
        async with client(url, world.tokens.supplier) as http:
            supplier = await http.get("/api/v1/catalogue.json")
        async with client(url, world.tokens.panel) as http:
            panel = await http.get("/api/v1/catalogue.json")
    assert supplier.status_code == 200
    assert supplier.content == panel.content  # one signed copy per revision, whoever asks (R4)

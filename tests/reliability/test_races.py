"""Two users act at once (issue 15, R2, R8): each invariant holds under concurrent requests to a real
server, not only one request at a time.

- Lost bytes: discarding a draft while the same bytes are uploaded again (for the same version, or for
  another model) never deletes the blob the new record points to. The store is slowed where the old
  clean-up raced (between its count of the records and its delete), so the race is met every round.
- Check-then-act: `publishImage` and `declareCommercial` for one version sent at once never both
  succeed: a commercial version is never published (R2).
- Four eyes: an approval covers exactly what was approved; new notes void it, audited, so notes nobody
  approved are never published.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cfl_graph.blobs import BlobStore
from cfl_graph.blobs.local import LocalBlobStore
from cfl_graph.database import Database
from cfl_graph.identifiers import Sha256Hex
from cfl_graph.images.integrity import verify_blobs
from cfl_graph.tables import AuditEvent, CommercialDeclaration, LibraryImage
from tests.fixtures import figures
from tests.fixtures.library import (
    CPL,
    GOOD_NOTES,
    OWN_B_HW1,
    OWN_B_HW2,
    Version,
    World,
    client,
    make_world,
    require_approval,
    serving,
)
from tests.fixtures.parties import OWN_MANUFACTURER_ID

pytestmark = pytest.mark.postgres

ROUNDS = 12
DISCARD = "mutation($id: ID!) { discardImage(id: $id) }"
PUBLISH = "mutation($id: ID!) { publishImage(id: $id) { state } }"
APPROVE = "mutation($id: ID!) { approveImage(id: $id) { approvedAt } }"
NOTES = "mutation($id: ID!, $m: String!) { updateReleaseNotes(id: $id, markdown: $m) { approvedAt } }"
DECLARE = """mutation($model: String!, $fw: String!) { declareCommercial(manufacturerId: "10B2",
  modelId: $model, hardwareVersion: "0100", firmwareVersion: $fw, reason: "built for one supplier only") {
  firmwareVersion } }"""


class SlowDeletes(LocalBlobStore):
    """A local store that takes its time to delete, as a slow disk or S3 would: the window in which an
    upload of the same bytes could find the blob, record it, and lose it."""

    async def delete(self, sha256: Sha256Hex) -> None:
        await asyncio.sleep(0.05)
        await super().delete(sha256)


async def _ask(http: Any, query: str, **variables: Any) -> dict[str, Any]:
    answer = await http.post("/graphql", json={"query": query, "variables": variables})
    body: dict[str, Any] = answer.json()
    return body


async def _upload(http: Any, data: bytes, version: Version) -> Any:
    return await http.post(
        f"/api/v1/images?modelId={version.model_id}&hardwareVersion={version.hardware_version}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


async def test_discarding_a_draft_while_its_bytes_are_uploaded_again_never_loses_them(
    db: Database, tmp_path: Path
) -> None:
    store: BlobStore = SlowDeletes(tmp_path / "blobs")
    world = await make_world(db, tmp_path, store=store)
    # The same bytes fit two records: model 0002 on hardware 0100 and 0200 share firmware 02000000 (the
    # second is kept as a draft with a hash mismatch, which is all a blob needs).
    data = world.image(OWN_B_HW1)
    sha256 = hashlib.sha256(data).hexdigest()
    races = 0
    async with serving(world.app()) as base, client(base, world.tokens.manufacturer) as http:
        for round_number in range(ROUNDS):
            draft = (await _upload(http, data, OWN_B_HW1)).json()
            again = OWN_B_HW1 if round_number % 2 else OWN_B_HW2  # the same version, or another model
            discarded, uploaded = await asyncio.gather(
                _ask(http, DISCARD, id=draft["id"]), _upload(http, data, again)
            )
            assert discarded == {"data": {"discardImage": str(draft["id"])}}, discarded
            if uploaded.status_code == 409:
                # The same version while its draft was still there: refused, and nothing of it kept.
                assert uploaded.json()["problems"][0]["problem"] == "already-in-library"
                continue
            assert uploaded.status_code == 201, uploaded.text
            races += 1
            report = await verify_blobs(world.db.sessions, world.store)
            assert report.intact, f"round {round_number}: {report.problems}"
            kept = uploaded.json()["id"]
            bytes_served = await http.get(f"/api/v1/images/{kept}/file")
            assert (
                bytes_served.status_code == 200 and hashlib.sha256(bytes_served.content).hexdigest() == sha256
            )
            assert (await _ask(http, DISCARD, id=kept))["data"] == {"discardImage": str(kept)}
    assert races >= ROUNDS // 2
    report = await verify_blobs(world.db.sessions, world.store)
    assert report.intact and report.images == 0 and report.unreferenced == [], report
    figures.report(
        f"lost-bytes race on {db.engine.dialect.name}: {races} rounds of a discard racing an upload of its bytes, no blob lost"
    )


MANY = [Version(OWN_MANUFACTURER_ID, "0003", "0100", f"{0x05000000 + n:08X}") for n in range(ROUNDS)]


async def test_publishing_and_declaring_commercial_at_once_never_both_succeed(
    db: Database, tmp_path: Path
) -> None:
    world = await make_world(db, tmp_path)
    assert (await world.sync([*CPL, *MANY])).outcome.value == "applied"
    outcomes: dict[tuple[bool, bool], int] = {}
    async with serving(world.app()) as base, client(base, world.tokens.manufacturer) as http:
        for version in MANY:
            draft = await world.upload(world.image(version))
            published, declared = await asyncio.gather(
                _ask(http, PUBLISH, id=draft.id),
                _ask(http, DECLARE, model=version.model_id, fw=version.firmware_version),
            )
            done = ("errors" not in published, "errors" not in declared)
            outcomes[done] = outcomes.get(done, 0) + 1
            assert done != (True, True), f"{version.firmware_version}: both a publication and a declaration"
            assert done != (False, False), (published, declared)
    async with world.db.sessions() as session:
        served_commercial = (
            await session.execute(
                select(LibraryImage.id)
                .join(
                    CommercialDeclaration,
                    (CommercialDeclaration.manufacturer_id == LibraryImage.manufacturer_id)
                    & (CommercialDeclaration.model_id == LibraryImage.model_id)
                    & (CommercialDeclaration.hardware_version == LibraryImage.hardware_version)
                    & (CommercialDeclaration.firmware_version == LibraryImage.firmware_version),
                )
                .where(LibraryImage.state == "published")
            )
        ).all()
    assert served_commercial == []
    figures.report(
        f"publish against declare on {db.engine.dialect.name}: {len(MANY)} versions, "
        f"{outcomes.get((True, False), 0)} published, {outcomes.get((False, True), 0)} declared, never both"
    )


@dataclass
class FourEyes:
    world: World
    approver: str  # a second token of the uploading manufacturer


@pytest.fixture
async def four_eyes(db: Database, tmp_path: Path) -> FourEyes:
    world = await make_world(db, tmp_path)
    assert (await world.sync([*CPL, *MANY])).outcome.value == "applied"
    approver = await require_approval(world)
    return FourEyes(world, approver)


async def test_new_notes_void_an_approval_and_an_unapproved_text_is_never_published(
    four_eyes: FourEyes,
) -> None:
    world = four_eyes.world
    draft = await world.upload(world.image(OWN_B_HW1))
    async with (
        serving(world.app()) as base,
        client(base, world.tokens.manufacturer) as uploader,
        client(base, four_eyes.approver) as approver,
    ):
        approved = await _ask(approver, APPROVE, id=draft.id)
        assert approved["data"]["approveImage"]["approvedAt"] is not None, approved
        changed = await _ask(
            uploader, NOTES, id=draft.id, m=GOOD_NOTES + "\n- And a change nobody approved.\n"
        )
        assert changed["data"]["updateReleaseNotes"] == {"approvedAt": None}
        refused = await _ask(uploader, PUBLISH, id=draft.id)
        assert "needs approval by a second token" in refused["errors"][0]["message"]
        assert (await _ask(approver, APPROVE, id=draft.id))["data"]["approveImage"]["approvedAt"]
        assert (await _ask(uploader, PUBLISH, id=draft.id))["data"]["publishImage"] == {"state": "PUBLISHED"}
    async with world.db.sessions() as session:
        actions = (
            (
                await session.execute(
                    select(AuditEvent.action).where(AuditEvent.action.like("image.%")).order_by(AuditEvent.id)
                )
            )
            .scalars()
            .all()
        )
        image = await session.get_one(LibraryImage, draft.id)
    assert actions == [
        "image.uploaded",
        "image.approved",
        "image.notes_updated",
        "image.approval_voided",
        "image.approved",
        "image.published",
    ]
    assert (
        image.approved_notes_sha256
        == hashlib.sha256((image.release_notes_markdown or "").encode()).hexdigest()
    )


async def test_approving_and_changing_notes_at_once_never_publishes_notes_nobody_approved(
    four_eyes: FourEyes,
) -> None:
    world = four_eyes.world
    published = 0
    async with (
        serving(world.app()) as base,
        client(base, world.tokens.manufacturer) as uploader,
        client(base, four_eyes.approver) as approver,
    ):
        for round_number, version in enumerate(MANY):
            draft = await world.upload(world.image(version))
            notes = GOOD_NOTES + f"\n- Round {round_number}: changed while it was being approved.\n"
            await asyncio.gather(
                _ask(approver, APPROVE, id=draft.id), _ask(uploader, NOTES, id=draft.id, m=notes)
            )
            answer = await _ask(uploader, PUBLISH, id=draft.id)
            async with world.db.sessions() as session:
                image = await session.get_one(LibraryImage, draft.id)
            assert (image.release_notes_markdown or "").strip() == notes.strip()
            if "errors" not in answer:
                published += 1
                # Published only because the approval saw exactly the notes it has.
                seen = hashlib.sha256((image.release_notes_markdown or "").encode()).hexdigest()
                assert image.approved_notes_sha256 == seen
            else:
                assert image.approved_at is None, "an approval of the old notes survived the change"
    figures.report(
        f"approve against new notes on {world.db.engine.dialect.name}: {len(MANY)} rounds, {published} "
        "published with the notes their approval saw, the rest refused until approved again"
    )

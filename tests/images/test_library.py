"""The image lifecycle through the service every door calls (R1–R4, R8): each check a named problem,
each state change with its audit event, each refusal changing nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from sqlalchemy import func, select, update

from cfl_graph.access.keys import key_fingerprint, revoke_key
from cfl_graph.access.policy import AccessDenied, Forbidden
from cfl_graph.access.tokens import issue_token
from cfl_graph.audit import SYSTEM, verify_chain
from cfl_graph.database import Database
from cfl_graph.errors import InvalidInput
from cfl_graph.identifiers import Sha256Hex
from cfl_graph.images import lifecycle
from cfl_graph.images.errors import ImageGone, ImageNotFound, LibraryError, UploadRefused
from cfl_graph.keys import VersionKey
from cfl_graph.tables import AuditEvent, CatalogueRevision, LibraryImage, Party
from tests.fixtures.library import (
    GOOD_NOTES,
    NOT_ON_CPL,
    OTHER_C1,
    OWN_A1,
    OWN_A2,
    OWN_A3,
    OWN_B_HW1,
    OWN_B_HW2,
    OWN_WITHDRAWN,
    Version,
    World,
    make_world,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


def codes(image_or_error: LibraryImage | LibraryError) -> list[str]:
    if isinstance(image_or_error, LibraryImage):
        return [p["problem"] for p in image_or_error.problems]
    return [p.code for p in image_or_error.problems]


async def image_count(world: World) -> int:
    async with world.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(LibraryImage)) or 0)


async def blob_count(world: World) -> int:
    return len([blob async for blob in world.store.list()])


async def staged_files(world: World) -> list[Path]:
    return list(world.store.staging.folder.glob("*")) if world.store.staging.folder.exists() else []


async def revision(world: World) -> int:
    async with world.db.sessions() as session:
        return int(await session.scalar(select(CatalogueRevision.revision)) or 0)


# --- a clean upload -----------------------------------------------------------------------------


async def test_a_clean_upload_becomes_a_draft_with_both_hashes_and_no_problems(world: World) -> None:
    data = world.image(OWN_A1)
    image = await world.upload(data)
    assert (image.state, image.problems) == ("draft", [])
    assert (image.model_id, image.hardware_version, image.firmware_version) == ("0001", "0100", "01000000")
    assert image.manufacturer_image_sha256 == OWN_A1.cpl_hash
    assert image.file_sha256 == hashlib.sha256(data).hexdigest()
    assert image.size == len(data)
    assert image.dcc_file_name == "10B2-0001-01000000"
    assert image.signature_key_id is not None
    stored = b"".join([chunk async for chunk in world.store.read(Sha256Hex(image.file_sha256))])
    assert stored == data
    assert await staged_files(world) == []


async def test_the_device_model_is_found_from_the_cpl_by_the_manufacturer_image_hash(world: World) -> None:
    # Firmware 02000000 is certified for two hardware versions, each with its own hash.
    image = await world.upload(world.image(OWN_B_HW2))
    assert (image.model_id, image.hardware_version, image.problems) == ("0002", "0200", [])


# --- problems kept on a draft -------------------------------------------------------------------


async def test_a_version_not_on_the_cpl_is_refused_unless_the_model_is_named(world: World) -> None:
    with pytest.raises(UploadRefused) as refused:
        await world.upload(world.image(NOT_ON_CPL))
    assert (refused.value.code, codes(refused.value)) == ("BAD_USER_INPUT", ["model-unknown"])
    image = await world.upload(world.image(NOT_ON_CPL), model_id="0001", hardware_version="0100")
    assert codes(image) == ["not-on-cpl"]


async def test_a_manufacturer_image_whose_hash_is_not_the_cpls_is_a_hash_mismatch(world: World) -> None:
    image = await world.upload(world.image(OWN_A1, manufacturer_image=b"tampered" * 100))
    assert codes(image) == ["hash-mismatch"]
    assert OWN_A1.cpl_hash in image.problems[0]["detail"]


async def test_a_signature_by_an_unregistered_key_does_not_verify(world: World) -> None:
    stranger = generate_private_key(SECP256R1())
    image = await world.upload(world.image(OWN_A1, key=stranger))
    assert codes(image) == ["signature-invalid"]
    assert image.signature_key_id is None


async def test_a_revoked_key_no_longer_verifies(world: World) -> None:
    async with world.db.sessions.begin() as session:
        await revoke_key(session, key_fingerprint(world.key.public_key()), actor=SYSTEM)
    image = await world.upload(world.image(OWN_A1))
    assert codes(image) == ["signature-invalid"]
    assert image.problems[0]["detail"].startswith("no public key is registered for manufacturer 10B2")


async def test_a_version_the_cpl_lists_as_withdrawn_is_not_active(world: World) -> None:
    image = await world.upload(world.image(OWN_WITHDRAWN))
    assert codes(image) == ["not-active-on-cpl"]


async def test_a_header_hardware_range_that_excludes_the_model_is_a_problem(world: World) -> None:
    image = await world.upload(world.image(OWN_A1, min_hw="0200", max_hw="02FF"))
    assert codes(image) == ["hardware-version-outside-range"]


async def test_missing_release_notes_are_a_problem_until_added(world: World) -> None:
    image = await world.upload(world.image(OWN_A1), notes=None)
    assert codes(image) == ["release-notes-missing"]
    principal = await world.principal(world.tokens.manufacturer)
    updated = await world.library.update_release_notes(principal, image.id, GOOD_NOTES)
    assert updated.problems == []
    assert updated.release_notes_html is not None and "<li>" in updated.release_notes_html


async def test_a_version_declared_commercial_is_never_accepted(world: World) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    await world.library.declare_commercial(
        principal, VersionKey("10b2", "1", "100", "1010000"), "built for one supplier under contract"
    )
    image = await world.upload(world.image(OWN_A2))
    assert codes(image) == ["declared-commercial"]
    with pytest.raises(LibraryError, match="declared-commercial"):
        await world.library.publish(principal, image.id)


async def test_several_problems_are_all_reported(world: World) -> None:
    stranger = generate_private_key(SECP256R1())
    image = await world.upload(world.image(OWN_A1, key=stranger, manufacturer_image=b"x" * 64), notes=None)
    assert codes(image) == ["hash-mismatch", "signature-invalid", "release-notes-missing"]


# --- refusals that keep nothing -----------------------------------------------------------------


async def test_an_image_of_another_manufacturer_is_refused_and_nothing_is_kept(world: World) -> None:
    with pytest.raises(UploadRefused) as refused:
        await world.upload(world.image(OTHER_C1))
    assert (refused.value.code, codes(refused.value)) == ("FORBIDDEN", ["manufacturer-not-yours"])
    assert (await image_count(world), await blob_count(world), await staged_files(world)) == (0, 0, [])


async def test_a_malformed_file_is_refused_with_its_format_problem_and_nothing_is_kept(world: World) -> None:
    data = world.image(OWN_A1)
    for broken, problem in [
        (b"\x00" * 4 + data[4:], "bad-magic"),
        (data[:-10], "total-size-lies"),
        (data[:30], "truncated"),
    ]:
        with pytest.raises(UploadRefused) as refused:
            await world.upload(broken)
        assert refused.value.code == "BAD_USER_INPUT"
        assert problem in codes(refused.value)
    assert (await image_count(world), await blob_count(world), await staged_files(world)) == (0, 0, [])


async def test_a_second_image_for_the_same_version_is_refused_while_the_first_exists(world: World) -> None:
    first = await world.upload(world.image(OWN_A1))
    with pytest.raises(UploadRefused) as refused:
        await world.upload(world.image(OWN_A1, header_string="rebuilt"))
    assert (refused.value.code, codes(refused.value)) == ("CONFLICT", ["already-in-library"])
    assert f"image {first.id} (draft)" in str(refused.value.problems[0].detail)
    assert (await image_count(world), await blob_count(world)) == (1, 1)


async def test_the_same_version_can_never_have_a_second_image_once_published(world: World) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    first = await world.upload(world.image(OWN_A1))
    await world.library.publish(principal, first.id)
    await world.library.withdraw(principal, first.id, "bricks meters on cold start")
    with pytest.raises(UploadRefused, match="already-in-library"):
        await world.upload(world.image(OWN_A1, header_string="fixed"))


async def test_bad_release_notes_refuse_the_upload(world: World) -> None:
    with pytest.raises(UploadRefused) as refused:
        await world.upload(world.image(OWN_A1), notes="# Title only")
    assert codes(refused.value) == ["release-notes-invalid"]
    assert await image_count(world) == 0


async def test_an_oversized_upload_is_refused_while_it_streams(world: World) -> None:
    world.library.max_image_bytes = 10_000
    principal = await world.principal(world.tokens.manufacturer)
    receiver = world.library.receiver(principal)
    with pytest.raises(UploadRefused) as refused:
        for _ in range(10):
            await receiver.write(b"\x00" * 4096)
    assert refused.value.code == "TOO_LARGE"
    assert await staged_files(world) == []


@pytest.mark.parametrize("token_name", ["supplier", "panel", "admin", "read_only_manufacturer"])
async def test_only_a_writing_manufacturer_may_upload(world: World, token_name: str) -> None:
    principal = await world.principal(getattr(world.tokens, token_name))
    with pytest.raises(Forbidden):
        world.library.receiver(principal)


# --- states -------------------------------------------------------------------------------------


async def test_publish_then_withdraw_bumps_the_revision_and_records_each_step(world: World) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    image = await world.upload(world.image(OWN_A1))
    before = await revision(world)
    published = await world.library.publish(principal, image.id)
    assert published.state == "published" and published.published_at is not None
    assert await revision(world) == before + 1
    withdrawn = await world.library.withdraw(principal, image.id, "  bricks meters\non cold start ")
    assert (withdrawn.state, withdrawn.withdrawal_reason) == ("withdrawn", "bricks meters on cold start")
    assert await revision(world) == before + 2
    async with world.db.sessions() as session:
        actions = list(
            (
                await session.execute(
                    select(AuditEvent.action).where(AuditEvent.action.like("image.%")).order_by(AuditEvent.id)
                )
            ).scalars()
        )
        assert actions == ["image.uploaded", "image.published", "image.withdrawn"]
        assert (await verify_chain(session)).intact


async def test_an_image_with_problems_cannot_be_published_and_the_refusal_names_them(world: World) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    image = await world.upload(world.image(OWN_A1), notes=None)
    with pytest.raises(LibraryError) as refused:
        await world.library.publish(principal, image.id)
    assert codes(refused.value) == ["release-notes-missing"]
    assert (await world.library.get(principal, image.id)).state == "draft"


async def test_publication_checks_again_so_a_key_revoked_after_upload_blocks_it(world: World) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    image = await world.upload(world.image(OWN_A1))
    async with world.db.sessions.begin() as session:
        await revoke_key(session, key_fingerprint(world.key.public_key()), actor=SYSTEM)
    with pytest.raises(LibraryError, match="signature-invalid"):
        await world.library.publish(principal, image.id)


async def test_a_published_image_is_immutable(world: World) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    image = await world.upload(world.image(OWN_A1))
    await world.library.publish(principal, image.id)
    with pytest.raises(LibraryError, match="only draft images can be given new release notes"):
        await world.library.update_release_notes(
            principal, image.id, GOOD_NOTES + "\n- Another change here.\n"
        )
    with pytest.raises(LibraryError, match="only draft images can be discarded"):
        await world.library.discard(principal, image.id)
    with pytest.raises(LibraryError, match="only draft images can be published"):
        await world.library.publish(principal, image.id)


@pytest.mark.parametrize("reason", ["", "short", "x" * 2001])
async def test_withdrawal_needs_a_real_reason(world: World, reason: str) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    image = await world.upload(world.image(OWN_A1))
    await world.library.publish(principal, image.id)
    with pytest.raises(InvalidInput, match="withdrawal reason must be 10–2000 characters"):
        await world.library.withdraw(principal, image.id, reason)
    assert (await world.library.get(principal, image.id)).state == "published"


async def test_a_discarded_draft_frees_the_version_and_its_bytes(world: World) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    image = await world.upload(world.image(OWN_A1, manufacturer_image=b"wrong" * 50))
    await world.library.discard(principal, image.id)
    assert (await image_count(world), await blob_count(world)) == (0, 0)
    again = await world.upload(world.image(OWN_A1))
    assert again.problems == []


async def test_four_eyes_publication_needs_a_second_tokens_approval(world: World) -> None:
    async with world.db.sessions.begin() as session:
        await session.execute(
            update(Party).where(Party.name == "Northfield Metering Ltd").values(requires_approval=True)
        )
        party = (
            await session.execute(select(Party).where(Party.name == "Northfield Metering Ltd"))
        ).scalar_one()
        second = (await issue_token(session, party, actor=SYSTEM)).text
    uploader = await world.principal(world.tokens.manufacturer)
    approver = await world.principal(second)
    image = await world.upload(world.image(OWN_A1))
    with pytest.raises(LibraryError, match="needs approval by a second token"):
        await world.library.publish(uploader, image.id)
    with pytest.raises(LibraryError, match="uploaded with this token"):
        await world.library.approve(uploader, image.id)
    await world.library.approve(approver, image.id)
    assert (await world.library.publish(uploader, image.id)).state == "published"


# --- visibility and downloads -------------------------------------------------------------------


async def test_drafts_are_seen_by_their_manufacturer_only(world: World) -> None:
    image = await world.upload(world.image(OWN_A1))
    own = await world.principal(world.tokens.manufacturer)
    assert (await world.library.get(own, image.id)).id == image.id
    for name in ["supplier", "other_manufacturer", "panel", "admin"]:
        with pytest.raises(ImageNotFound):
            await world.library.get(await world.principal(getattr(world.tokens, name)), image.id)
    with pytest.raises(AccessDenied):
        await world.library.get(None, image.id)


async def test_the_sql_every_list_reads_sees_what_may_see_sees(world: World) -> None:
    # A list (the catalogue's page, the feeds) filters images in SQL by the reader's sight
    # (`lifecycle.visible_to`, its statement kept per sight); one image at a time, `may_see` decides in
    # Python. Both, for every kind of reader, over drafts, published and withdrawn images of two
    # manufacturers: the same images.
    own, other = world.tokens.manufacturer, world.tokens.other_manufacturer
    await world.upload(world.image(OWN_A1), token=own)
    await world.publish((await world.upload(world.image(OWN_A2), token=own)).id, own)
    withdrawn = await world.publish((await world.upload(world.image(OWN_A3), token=own)).id, own)
    await world.library.withdraw(await world.principal(own), withdrawn.id, "bricks meters on cold start")
    await world.upload(world.image(OTHER_C1), token=other)
    async with world.db.sessions() as session:
        images = list((await session.execute(select(LibraryImage))).scalars())
    assert {image.state for image in images} == {"draft", "published", "withdrawn"}
    readers = [
        None,
        *[
            await world.principal(token)
            for token in world.tokens.as_dict().values()
            if token not in (world.tokens.expired, world.tokens.revoked, world.tokens.disabled_party)
        ],
    ]
    sights = set()
    for reader in readers:
        sights.add(lifecycle.sight(reader))
        async with world.db.sessions() as session:
            listed = set(
                (await session.execute(select(LibraryImage.id).where(lifecycle.visible_to(reader)))).scalars()
            )
        assert listed == {image.id for image in images if lifecycle.may_see(reader, image)}, reader
    assert len(sights) >= 4  # no reader, a reader of listed images, and each manufacturer's own drafts


async def test_another_manufacturer_cannot_change_an_image(world: World) -> None:
    own = await world.principal(world.tokens.manufacturer)
    other = await world.principal(world.tokens.other_manufacturer)
    image = await world.upload(world.image(OWN_A1))
    with pytest.raises(ImageNotFound):
        await world.library.publish(other, image.id)
    await world.library.publish(own, image.id)
    with pytest.raises(Forbidden, match="not registered to Harrow"):
        await world.library.withdraw(other, image.id, "not mine to withdraw at all")


async def test_a_withdrawn_image_is_gone_for_suppliers_but_listed_with_its_reason(world: World) -> None:
    own = await world.principal(world.tokens.manufacturer)
    supplier = await world.principal(world.tokens.supplier)
    image = await world.upload(world.image(OWN_A1))
    await world.library.publish(own, image.id)
    assert (await world.library.for_download(supplier, image.id)).id == image.id
    await world.library.withdraw(own, image.id, "bricks meters on cold start")
    assert (await world.library.get(supplier, image.id)).withdrawal_reason == "bricks meters on cold start"
    with pytest.raises(ImageGone, match="bricks meters on cold start"):
        await world.library.for_download(supplier, image.id)


async def test_panel_downloads_only_when_granted(world: World) -> None:
    own = await world.principal(world.tokens.manufacturer)
    image = await world.upload(world.image(OWN_A1))
    await world.library.publish(own, image.id)
    with pytest.raises(Forbidden):
        await world.library.for_download(await world.principal(world.tokens.panel), image.id)
    granted = await world.principal(world.tokens.panel_with_downloads)
    assert (await world.library.for_download(granted, image.id)).id == image.id


# --- commercial declarations ---------------------------------------------------------------------


async def test_only_certified_versions_can_be_declared_commercial(world: World) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    with pytest.raises(InvalidInput, match="not on the current CPL"):
        await world.library.declare_commercial(principal, VersionKey(*_key(NOT_ON_CPL)), "a contract version")
    with pytest.raises(InvalidInput, match="firmware version"):
        await world.library.declare_commercial(
            principal, VersionKey("10B2", "0001", "0100", "zz"), "a contract"
        )


async def test_a_published_version_must_be_withdrawn_before_it_is_declared_commercial(world: World) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    image = await world.upload(world.image(OWN_A3))
    await world.library.publish(principal, image.id)
    with pytest.raises(LibraryError, match=f"image {image.id} is published"):
        await world.library.declare_commercial(principal, VersionKey(*_key(OWN_A3)), "a contract version")


async def test_declarations_are_for_ones_own_manufacturer_ids(world: World) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    with pytest.raises(Forbidden):
        await world.library.declare_commercial(principal, VersionKey(*_key(OTHER_C1)), "not our version")


async def test_a_version_is_declared_commercial_once(world: World) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    await world.library.declare_commercial(
        principal, VersionKey(*_key(OWN_B_HW1)), "contract for one supplier"
    )
    with pytest.raises(LibraryError, match="already declared commercial"):
        await world.library.declare_commercial(
            principal, VersionKey(*_key(OWN_B_HW1)), "contract again, twice"
        )


def _key(version: Version) -> tuple[str, str, str, str]:
    return (version.manufacturer_id, version.model_id, version.hardware_version, version.firmware_version)


@pytest.mark.parametrize(
    "reason",
    ["\u200b" * 20, "\u200b\u200c\u200d\u2060\ufeff" * 4, "ok" + "\u200b" * 12, "\u3164" * 12, "\u00ad" * 15],
)
async def test_a_reason_of_invisible_characters_is_no_reason(world: World, reason: str) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    image = await world.upload(world.image(OWN_A1))
    await world.library.publish(principal, image.id)
    with pytest.raises(InvalidInput):
        await world.library.withdraw(principal, image.id, reason)

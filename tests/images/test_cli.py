"""Operators import images from the CLI with the upload's checks, and `verify` re-hashes every blob."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from cfl_graph.blobs.local import LocalBlobStore
from cfl_graph.database import Database
from cfl_graph.tables import LibraryImage
from tests.fixtures.cli import run_cli
from tests.fixtures.library import GOOD_NOTES, OTHER_C1, OWN_A1, OWN_A2, World, make_world, require_approval

pytestmark = pytest.mark.postgres


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


def write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


async def test_an_operator_imports_and_publishes_an_image_for_a_manufacturer(
    world: World, tmp_path: Path
) -> None:
    image = write(tmp_path / "a1.zigbee", world.image(OWN_A1))
    notes = write(tmp_path / "notes.md", GOOD_NOTES)
    imported = run_cli(
        world.db.url,
        *(
            "image",
            "import",
            str(image),
            "--party",
            "Northfield Metering Ltd",
            "--notes",
            str(notes),
            "--publish",
        ),
        work=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr
    assert "(10B2-0001-01000000) published: model 0001 hardware 0100" in imported.stdout
    listed = run_cli(world.db.url, "image", "list", work=tmp_path)
    assert "10B2-0001-01000000" in listed.stdout and "published" in listed.stdout
    verified = run_cli(world.db.url, "verify", work=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "image bytes intact: 1 images, 1 blobs" in verified.stdout


async def test_an_import_with_problems_stays_a_draft_and_says_why(world: World, tmp_path: Path) -> None:
    image = write(tmp_path / "a2.zigbee", world.image(OWN_A2))
    imported = run_cli(
        world.db.url,
        "image",
        "import",
        str(image),
        "--party",
        "Northfield Metering Ltd",
        "--publish",
        work=tmp_path,
    )
    assert imported.returncode == 1
    assert "draft" in imported.stdout and "release-notes-missing" in imported.stdout


async def test_an_import_for_the_wrong_manufacturer_keeps_nothing(world: World, tmp_path: Path) -> None:
    image = write(tmp_path / "c1.zigbee", world.image(OTHER_C1))
    imported = run_cli(
        world.db.url, "image", "import", str(image), "--party", "Northfield Metering Ltd", work=tmp_path
    )
    assert imported.returncode == 1
    assert "manufacturer-not-yours" in imported.stderr
    assert "0 images" in run_cli(world.db.url, "verify", work=tmp_path).stdout


async def test_verify_names_an_image_whose_bytes_changed_or_vanished(world: World, tmp_path: Path) -> None:
    notes = write(tmp_path / "notes.md", GOOD_NOTES)
    for version, name in [(OWN_A1, "a1"), (OWN_A2, "a2")]:
        path = write(tmp_path / f"{name}.zigbee", world.image(version))
        done = run_cli(
            world.db.url,
            *("image", "import", str(path), "--party", "Northfield Metering Ltd", "--notes", str(notes)),
            work=tmp_path,
        )
        assert done.returncode == 0, done.stderr
    store = LocalBlobStore(tmp_path / "blobs")
    blobs = sorted([b async for b in store.list()], key=lambda b: b.sha256)
    changed = store.path_of(blobs[0].sha256)
    changed.chmod(0o644)
    data = bytearray(changed.read_bytes())
    data[100] ^= 0xFF
    changed.write_bytes(bytes(data))
    store.path_of(blobs[1].sha256).unlink()
    verified = run_cli(world.db.url, "verify", work=tmp_path)
    assert verified.returncode == 1
    assert "image bytes BROKEN: 2 problem(s) in 2 images" in verified.stderr
    assert f"blob {blobs[0].sha256} now hashes to" in verified.stderr
    assert f"blob {blobs[1].sha256} is missing from the store" in verified.stderr


async def test_four_eyes_is_a_manufacturer_setting(world: World, tmp_path: Path) -> None:
    refused = run_cli(
        world.db.url, "party", "add", "Some Supplier Ltd", "--role", "supplier", "--require-approval"
    )
    assert (refused.returncode, "four-eyes approval is for manufacturer parties" in refused.stderr) == (
        1,
        True,
    )
    added = run_cli(
        world.db.url,
        *("party", "add", "Careful Meters Ltd", "--role", "manufacturer", "--manufacturer-id", "3D01"),
        "--require-approval",
    )
    assert added.returncode == 0, added.stderr


async def test_import_and_publish_for_a_four_eyes_party_is_refused_and_keeps_nothing(
    world: World, tmp_path: Path
) -> None:
    """Such a party publishes only what a second token approved: `--publish` cannot be honoured, so it
    is refused before anything is kept (it used to say "not imported" and leave a draft behind)."""
    await require_approval(world)
    image = write(tmp_path / "a1.zigbee", world.image(OWN_A1))
    notes = write(tmp_path / "notes.md", GOOD_NOTES)
    refused = run_cli(
        world.db.url,
        *("image", "import", str(image), "--party", "Northfield Metering Ltd", "--notes", str(notes)),
        "--publish",
        work=tmp_path,
    )
    assert refused.returncode == 1
    assert "publishes only images a second token approved" in refused.stderr
    async with world.db.sessions() as session:
        assert (await session.execute(select(LibraryImage))).scalars().all() == []
    stored = tmp_path / "blobs" / "sha256"
    assert not stored.exists() or [p for p in stored.rglob("*") if p.is_file()] == []
    drafted = run_cli(
        world.db.url,
        *("image", "import", str(image), "--party", "Northfield Metering Ltd", "--notes", str(notes)),
        work=tmp_path,
    )
    assert drafted.returncode == 0, drafted.stderr
    assert "draft" in drafted.stdout

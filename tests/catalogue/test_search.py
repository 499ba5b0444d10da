"""Searching device models (issue 19): every word must be found, in the manufacturer's name, the model's
name or as an id, so words spanning both names find the models they name; results come best first, the
same on SQLite and PostgreSQL, in pages whose cursors carry the rank."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfl_graph.catalogue.search import MAX_SEARCH_WORDS, DeviceModelFilter, device_models
from cfl_graph.catalogue.snapshots import current_snapshot_id
from cfl_graph.database import Database
from cfl_graph.errors import InvalidInput
from cpl_sync.sync import sync_cpl
from tests.fixtures.cpl_files import row, write_csv

pytestmark = pytest.mark.postgres

LINDUM = "Lindum Meter Systems plc"
TAMARSIDE = "Tamarside Smart Energy Ltd"
MODELS = [
    (LINDUM, "1131", "0001", "LM-E926 Single Phase Credit/Prepay"),
    (LINDUM, "1131", "0002", "LM-E886 Twin Element Variable Tariff"),
    (LINDUM, "1131", "0003", "LM-E511 Polyphase CT Operated"),
    (LINDUM, "1131", "0004", "LM-E512 Phase Balancer"),
    (TAMARSIDE, "1010", "0005", "TS-E241 Twin Element Variable Tariff"),
]


@pytest.fixture
async def snapshot(db: Database, tmp_path: Path) -> int:
    rows = [
        row(
            manufacturer_name=maker,
            manufacturer_id=mid,
            model_id=model,
            model_name=name,
            image_hash=f"{n:064x}",
        )
        for n, (maker, mid, model, name) in enumerate(MODELS)
    ]
    result = await sync_cpl(db, str(write_csv(tmp_path / "cpl.csv", rows)), work_dir=tmp_path / "sync")
    assert result.outcome.value == "applied", result
    async with db.sessions() as session:
        found = await current_snapshot_id(session)
    assert found is not None
    return found


async def _search(
    db: Database, snapshot: int, text: str, first: int = 50, after: str | None = None
) -> list[str]:
    async with db.sessions() as session:
        page = await device_models(session, snapshot, DeviceModelFilter(search=text), first, after)
    return [model.model_id for model in page.rows]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Lindum LM-E926", ["0001"]),  # the manufacturer's name and the model's
        ("Lindum Twin", ["0002"]),  # Tamarside's twin-element meter is not Lindum's
        ("lindum   twin", ["0002"]),  # any case, any spacing
        ("twin element", ["0005", "0002"]),  # as good as each other: in key order
        ("Tamarside 0005", ["0005"]),  # a word may be an id
        ("Lindum Tamarside", []),  # every word must be found
        ("100%_", []),
    ],
)
async def test_words_spanning_the_manufacturers_and_the_models_names_find_the_models(
    db: Database, snapshot: int, text: str, found: list[str]
) -> None:
    assert await _search(db, snapshot, text) == found


async def test_the_best_answers_come_first(db: Database, snapshot: int) -> None:
    # "Phase" starts a word of 0004's name and of 0001's; it is only inside "Polyphase" (0003); the whole
    # text "phase balancer" is in 0004's name.
    assert await _search(db, snapshot, "phase") == ["0001", "0004", "0003"]
    assert await _search(db, snapshot, "phase balancer") == ["0004"]
    assert (await _search(db, snapshot, "1131 phase"))[:2] == ["0001", "0004"]  # an id counts most


async def test_ranked_pages_follow_their_cursors_to_the_end(db: Database, snapshot: int) -> None:
    seen: list[str] = []
    after: str | None = None
    async with db.sessions() as session:
        while True:
            page = await device_models(session, snapshot, DeviceModelFilter(search="phase"), 1, after)
            seen.extend(model.model_id for model in page.rows)
            if not page.has_next:
                break
            after = page.end_cursor
    assert seen == ["0001", "0004", "0003"]
    with pytest.raises(InvalidInput, match="not a cursor of this list"):
        async with db.sessions() as session:
            # A key-order cursor is not a ranked list's.
            plain = await device_models(session, snapshot, DeviceModelFilter(), 1, None)
            await device_models(session, snapshot, DeviceModelFilter(search="phase"), 1, plain.end_cursor)


async def test_a_search_of_too_many_words_is_refused_saying_how_many_it_takes(
    db: Database, snapshot: int
) -> None:
    words = " ".join(f"w{n}" for n in range(MAX_SEARCH_WORDS + 1))
    with pytest.raises(InvalidInput, match=f"search takes at most {MAX_SEARCH_WORDS} words, not 9"):
        await _search(db, snapshot, words)

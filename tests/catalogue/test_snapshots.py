"""The current snapshot as a writer reads it: held until the writer commits, and, when a sync moved it
while the writer waited, the snapshot the sync made current (never none at all)."""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from cfl_graph.catalogue.snapshots import current_snapshot
from cfl_graph.database import Database
from cfl_graph.tables import CplCurrent, CplSnapshot

# Long enough for the waiting writer to have reached the pointer's lock; the assertion does not depend
# on it (a reader that came late reads the moved pointer all the same).
WAIT_SECONDS = 0.5


def _snapshot(number: int) -> CplSnapshot:
    return CplSnapshot(
        source=f"cpl-{number}.csv",
        content_sha256=f"{number:064x}",
        rows_sha256=f"{number:064x}",
        row_count=0,
        device_model_count=0,
    )


async def test_a_writer_waiting_while_a_sync_moves_the_pointer_reads_the_new_snapshot(db: Database) -> None:
    async with db.writes.begin() as session:
        first, second = _snapshot(1), _snapshot(2)
        session.add_all([first, second])
        await session.flush()
        session.add(CplCurrent(snapshot_id=first.id))
    first_id, second_id = first.id, second.id

    async def read_as_a_writer() -> int | None:
        async with db.writes.begin() as session:
            found = await current_snapshot(session, lock=True)
            return None if found is None else found.id

    async with db.writes.begin() as sync:
        await sync.execute(update(CplCurrent).values(snapshot_id=second_id))
        reader = asyncio.create_task(read_as_a_writer())
        await asyncio.sleep(WAIT_SECONDS)
        assert not reader.done(), "the pointer a sync is moving is held until the sync commits"
    assert await asyncio.wait_for(reader, 30) == second_id != first_id

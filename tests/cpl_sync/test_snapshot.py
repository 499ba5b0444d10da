"""Snapshots (R6): written whole in one transaction, immutable, `current` moved only when complete."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import hashlib
import random
import secrets
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from cfl_graph.catalogue.snapshots import current_snapshot
from cfl_graph.database import Database, bulk_insert
from cfl_graph.demo.cpl_data import CplRecord, generate
from cfl_graph.demo.cpl_data import write_csv as write_demo_csv
from cfl_graph.demo.cpl_data import write_xlsx as write_demo_xlsx
from cfl_graph.tables import CplCertifiedFirmware, CplCurrent, CplDeviceModel, CplSnapshot, CplSyncRun
from cpl_sync import snapshot as snapshot_module
from cpl_sync import validate as validate_module
from cpl_sync.columns import Column
from cpl_sync.parse import read_table
from cpl_sync.problems import CplFileRejected
from cpl_sync.snapshot import Stored, store_snapshot, validate_and_store
from cpl_sync.sync import SyncResult, sync_cpl
from cpl_sync.validate import ChunkSink, ValidCpl, validate
from tests.fixtures.cpl_files import row, versions, write_csv, write_xlsx


async def count(db: Database, table: type[object], **where: object) -> int:
    async with db.sessions() as session:
        query = select(func.count()).select_from(table)
        for name, value in where.items():
            query = query.where(getattr(table, name) == value)
        return int((await session.execute(query)).scalar_one())


async def current_id(db: Database) -> int | None:
    async with db.sessions() as session:
        found = await current_snapshot(session)
        return found.id if found else None


async def test_a_valid_file_becomes_the_current_snapshot(db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cpl.csv", versions(3) + versions(2, model_id="0002"))
    result = await sync_cpl(db, str(path), work_dir=tmp_path / "work")
    assert result.outcome == "applied"
    assert await current_id(db) == result.snapshot_id
    assert (result.row_count, result.device_model_count) == (5, 2)
    assert await count(db, CplCertifiedFirmware, snapshot_id=result.snapshot_id) == 5
    assert await count(db, CplDeviceModel, snapshot_id=result.snapshot_id) == 2


async def test_the_same_content_again_makes_no_new_snapshot(db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cpl.csv", versions(3))
    first = await sync_cpl(db, str(path), work_dir=tmp_path)
    again = await sync_cpl(db, str(path), work_dir=tmp_path)
    assert (again.outcome, again.snapshot_id) == ("unchanged", first.snapshot_id)
    assert await count(db, CplSnapshot) == 1
    assert await count(db, CplSyncRun) == 2


async def test_the_same_rows_in_a_resaved_file_make_no_new_snapshot(db: Database, tmp_path: Path) -> None:
    first = await sync_cpl(db, str(write_csv(tmp_path / "a.csv", versions(3))), work_dir=tmp_path)
    resaved = write_xlsx(
        tmp_path / "b.xlsx", list(reversed(versions(3))), title_rows=["Certified Products List"]
    )
    again = await sync_cpl(db, str(resaved), work_dir=tmp_path)
    assert (again.outcome, again.snapshot_id) == ("unchanged", first.snapshot_id)
    # What was stored of it while it validated is gone, and so is the number it was to have.
    assert await count(db, CplCertifiedFirmware) == 3
    changed = await sync_cpl(db, str(write_csv(tmp_path / "c.csv", versions(4))), work_dir=tmp_path)
    assert first.snapshot_id is not None
    assert (changed.outcome, changed.snapshot_id) == ("applied", first.snapshot_id + 1)


async def test_a_changed_list_becomes_a_new_snapshot_and_history_is_kept(
    db: Database, tmp_path: Path
) -> None:
    first = await sync_cpl(db, str(write_csv(tmp_path / "a.csv", versions(3))), work_dir=tmp_path)
    changed = versions(4)
    changed[0][Column.STATUS] = "Withdrawn"
    second = await sync_cpl(
        db, str(write_csv(tmp_path / "b.csv", [*changed[1:], changed[0]])), work_dir=tmp_path
    )
    assert second.outcome == "applied"
    assert second.changes is not None
    assert (second.changes.added, second.changes.removed, second.changes.changed) == (1, 0, 1)
    assert await current_id(db) == second.snapshot_id
    assert await count(db, CplCertifiedFirmware, snapshot_id=first.snapshot_id) == 3  # immutable history


async def test_a_rejected_file_leaves_the_current_snapshot_and_records_why(
    db: Database, tmp_path: Path
) -> None:
    good = await sync_cpl(db, str(write_csv(tmp_path / "a.csv", versions(3))), work_dir=tmp_path)
    bad = write_csv(tmp_path / "b.csv", [*versions(3), row(firmware_version="zz")])
    result = await sync_cpl(db, str(bad), work_dir=tmp_path)
    assert result.outcome == "rejected"
    assert [str(p) for p in result.errors] == [
        "row 5, column F \"Firmware Version\": firmware version 'zz' is not hexadecimal: up to 8 digits 0-9 and A-F, like 01020A04"
    ]
    assert await current_id(db) == good.snapshot_id
    assert await count(db, CplSnapshot) == 1
    async with db.sessions() as session:
        run = (await session.execute(select(CplSyncRun).order_by(CplSyncRun.id.desc()))).scalars().first()
    assert run is not None
    assert (run.outcome, run.error_count, run.problems[0]["row"], run.problems[0]["column"]) == (
        "rejected",
        1,
        5,
        "Firmware Version",
    )
    assert run.content_sha256 is not None and len(run.content_sha256) == 64


async def test_a_bad_row_in_the_last_chunk_refuses_the_file_and_stores_nothing(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However the sync is ordered (storing while it validates, or after), a bad row after every chunk
    before it was good refuses the whole file: no snapshot, no rows, the old snapshot current."""
    good = await sync_cpl(db, str(write_csv(tmp_path / "a.csv", versions(3))), work_dir=tmp_path)
    monkeypatch.setattr(validate_module, "CHUNK_ROWS", 10)
    monkeypatch.setattr(snapshot_module, "BATCH_ROWS", 10)
    rows = versions(34, model_id="0002")
    rows[-1][Column.IMAGE_HASH] = "not a hash"  # sheet row 35: the header is row 1
    result = await sync_cpl(db, str(write_csv(tmp_path / "b.csv", rows)), work_dir=tmp_path)
    assert result.outcome == "rejected"
    assert result.error_count == 1
    assert [(p.row, p.column) for p in result.errors] == [(35, "Manufacturer Image Hash")]
    assert str(result.errors[0]).startswith("row 35, column ")
    assert await current_id(db) == good.snapshot_id
    assert await count(db, CplSnapshot) == 1
    assert await count(db, CplCertifiedFirmware) == 3
    assert await count(db, CplDeviceModel) == 1
    # Nor a gap in the snapshots' numbers: the refused file had none.
    rows[-1][Column.IMAGE_HASH] = "ab" * 32
    fixed = await sync_cpl(db, str(write_csv(tmp_path / "c.csv", rows)), work_dir=tmp_path)
    assert good.snapshot_id is not None
    assert (fixed.outcome, fixed.snapshot_id) == ("applied", good.snapshot_id + 1)


async def test_a_failure_while_writing_leaves_no_rows_and_the_old_snapshot_current(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = await sync_cpl(db, str(write_csv(tmp_path / "a.csv", versions(3))), work_dir=tmp_path)
    monkeypatch.setattr(snapshot_module, "BATCH_ROWS", 10)
    big = write_csv(tmp_path / "b.csv", versions(50))
    valid = validate(read_table(big))

    def fail_after_first_batch(stage: str, done: int, total: int | None) -> None:
        if stage == "store" and done >= 20:
            raise OSError("disk full (injected)")

    with pytest.raises(OSError, match="injected"):
        await store_snapshot(
            db.sessions, valid, source="b.csv", content_sha256="0" * 64, progress=fail_after_first_batch
        )
    assert await current_id(db) == good.snapshot_id
    assert await count(db, CplSnapshot) == 1
    assert await count(db, CplCertifiedFirmware) == 3
    assert await count(db, CplDeviceModel) == 1


async def test_a_failed_sync_is_recorded_as_failed(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("database went away (injected)")

    monkeypatch.setattr("cpl_sync.sync.validate_and_store", broken)
    with pytest.raises(RuntimeError):
        await sync_cpl(db, str(write_csv(tmp_path / "a.csv", versions(2))), work_dir=tmp_path)
    async with db.sessions() as session:
        run = (await session.execute(select(CplSyncRun))).scalar_one()
        current = (await session.execute(select(CplCurrent))).scalar_one_or_none()
    assert run.outcome == "failed"
    assert run.message is not None and "RuntimeError" in run.message
    assert current is None
    assert list((tmp_path).glob("cpl-*")) == []  # the fetched copy is cleaned up


async def test_stored_rows_read_back_exactly_as_validated(db: Database, tmp_path: Path) -> None:
    rows = versions(2, cpa_expiry="31/01/2029", gbcs_version="")
    path = write_csv(tmp_path / "cpl.csv", rows)
    result = await sync_cpl(db, str(path), work_dir=tmp_path)
    valid = validate(read_table(path))
    async with db.sessions() as session:
        stored = list(
            (
                await session.execute(
                    select(CplCertifiedFirmware)
                    .where(CplCertifiedFirmware.snapshot_id == result.snapshot_id)
                    .order_by(CplCertifiedFirmware.firmware_version)
                )
            ).scalars()
        )
        model = (await session.execute(select(CplDeviceModel))).scalar_one()
    assert [
        (s.firmware_version, s.image_hash, s.status, s.gbcs_version, s.cpa_expiry, s.date_added, s.sheet_row)
        for s in stored
    ] == [
        (v.firmware_version, v.image_hash, v.status.value, None, v.cpa_expiry, v.date_added, v.sheet_row)
        for v in valid.firmware
    ]
    assert stored[0].cpa_expiry == dt.date(2029, 1, 31)
    assert (model.device_type, model.smets_version, model.firmware_count) == ("ESME", "SMETS2", 2)


async def test_the_garbage_collector_is_back_on_after_every_outcome(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gc.isenabled()
    await sync_cpl(db, str(write_csv(tmp_path / "a.csv", versions(3))), work_dir=tmp_path)
    assert gc.isenabled()
    await sync_cpl(db, str(write_csv(tmp_path / "b.csv", [row(firmware_version="zz")])), work_dir=tmp_path)
    assert gc.isenabled()

    async def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("database went away (injected)")

    monkeypatch.setattr("cpl_sync.sync.validate_and_store", broken)
    with pytest.raises(RuntimeError):
        await sync_cpl(db, str(write_csv(tmp_path / "c.csv", versions(4))), work_dir=tmp_path)
    assert gc.isenabled()


# --- stored while validating (PostgreSQL's way) against validated, then stored (the reference) ----------

ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def _validate_and_store(db: Database, path: Path, *, streamed: bool, **kwargs: Any) -> Stored:
    def validation(sink: ChunkSink | None) -> ValidCpl:
        return validate(read_table(path), sink=sink)

    _, stored = await validate_and_store(
        db.sessions,
        validation,
        source=path.name,
        content_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        streamed=streamed,
        **kwargs,
    )
    return stored


async def _what_is_stored(db: Database, snapshot_id: int) -> dict[str, Any]:
    """Everything a snapshot holds but its id and when it was made."""

    def without_id(table: Any) -> list[Any]:
        return [c for c in table.__table__.columns if c.name != "snapshot_id"]

    async with db.sessions() as session:
        snapshot = await session.get_one(CplSnapshot, snapshot_id)
        models = (
            await session.execute(
                select(*without_id(CplDeviceModel))
                .where(CplDeviceModel.snapshot_id == snapshot_id)
                .order_by(
                    CplDeviceModel.manufacturer_id, CplDeviceModel.model_id, CplDeviceModel.hardware_version
                )
            )
        ).all()
        firmware = (
            await session.execute(
                select(*without_id(CplCertifiedFirmware))
                .where(CplCertifiedFirmware.snapshot_id == snapshot_id)
                .order_by(
                    CplCertifiedFirmware.manufacturer_id,
                    CplCertifiedFirmware.model_id,
                    CplCertifiedFirmware.hardware_version,
                    CplCertifiedFirmware.firmware_version,
                )
            )
        ).all()
    return {
        "models": [tuple(m) for m in models],
        "firmware": [tuple(f) for f in firmware],
        "counts": (
            snapshot.row_count,
            snapshot.device_model_count,
            snapshot.added_count,
            snapshot.removed_count,
            snapshot.changed_count,
        ),
        "rows_sha256": snapshot.rows_sha256,
    }


def _changed(records: list[CplRecord], seed: int) -> list[CplRecord]:
    """A later list: some versions withdrawn, some gone, some new, a model named two ways, shuffled so
    that each model's rows span chunks."""
    chooser = random.Random(seed)
    later = [
        replace(r, status="Withdrawn") if chooser.random() < 0.1 else r
        for r in records
        if chooser.random() > 0.05
    ]
    later += [replace(r, firmware_version=f"{i:08X}") for i, r in enumerate(records[:25], 0xA000)]
    first = later[0]
    later.append(replace(first, firmware_version="0000FFFF", model_name=first.model_name + " Mk II"))
    chooser.shuffle(later)
    return later


@ON_POSTGRESQL
@pytest.mark.parametrize("keys_set_wise", [True, False], ids=["keys set-wise", "keys row by row"])
@pytest.mark.parametrize(("seed", "together"), [(1, False), (2, False), (1, True)])
async def test_a_snapshot_stored_while_it_validates_is_the_snapshot_stored_after(
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    together: bool,
    keys_set_wise: bool,
) -> None:
    """The same device models with the same facts, the same rows, counts, digest and diff against the
    previous snapshot, whether the rows went in chunk by chunk as they were validated or all after, and
    whether the versions' keys were checked set-wise or row by row. A model goes in with the facts its rows
    so far give; those a later row changes (or first gives) are set again at the end: most of them where
    the rows are shuffled, few where each model's rows come together, as the CPL lists them."""
    monkeypatch.setattr(validate_module, "CHUNK_ROWS", 37)  # some 15 chunks
    set_again: list[tuple[int, int]] = []  # (models set again, models) of each streamed snapshot
    real_set_model_facts = snapshot_module._set_model_facts

    async def counted(session: Any, snapshot_id: int, models: list[Any], stored: dict[Any, Any]) -> None:
        set_again.append((sum(stored[model.key] != model for model in models), len(models)))
        await real_set_model_facts(session, snapshot_id, models, stored)

    monkeypatch.setattr(snapshot_module, "_set_model_facts", counted)
    earlier = list(generate(400, seed=seed))
    first, later = tmp_path / "first.xlsx", tmp_path / "later.xlsx"
    write_demo_xlsx(first, earlier)
    changed = _changed(earlier, seed)
    if together:
        changed.sort(key=lambda r: (r.manufacturer_id, r.model_id, r.hardware_version))
    write_demo_xlsx(later, changed)
    again = tmp_path / "first-again.csv"  # the first list again, in other bytes: current again
    write_demo_csv(again, earlier)

    assert (await _validate_and_store(db, first, streamed=False)).created
    streamed = (await _validate_and_store(db, later, streamed=True, keys_set_wise=keys_set_wise)).snapshot
    assert (await _validate_and_store(db, again, streamed=True, keys_set_wise=keys_set_wise)).created
    after = (await _validate_and_store(db, later, streamed=False)).snapshot

    assert streamed.previous_id != after.previous_id  # each against its own copy of the first list
    stored_streamed, stored_after = (
        await _what_is_stored(db, streamed.id),
        await _what_is_stored(db, after.id),
    )
    assert stored_streamed == stored_after
    assert stored_streamed["counts"][2:] != (0, 0, 0)  # versions were added, removed and changed
    assert len({m[0:3] for m in stored_streamed["models"]}) == len(stored_streamed["models"])
    (changed_facts, described), _ = set_again  # the later list, then the first again
    if together:  # at most the models whose rows straddle a chunk's end, and the one named two ways
        assert changed_facts <= 400 // 37 + 2 and changed_facts < described // 4, set_again
    else:
        assert changed_facts > described // 2, set_again


@ON_POSTGRESQL
@pytest.mark.parametrize("keys_set_wise", [False, True], ids=["keys row by row", "keys set-wise"])
async def test_the_models_are_analysed_again_each_time_they_double_so_their_key_s_check_fits_the_table(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys_set_wise: bool
) -> None:
    """Each version's foreign key, checked row by row, is checked by a query PostgreSQL plans once for the
    connection, from the models' statistics. Planned while the table was one model (a first chunk of one
    model's many versions), it would read the whole table for every row checked: a 100,000-row file in
    chunks of 2,000 took 33 s instead of 2.6. The models are analysed after the first chunk's and again
    each time they have doubled, so the plan is never made for a table less than half its size. Checked
    set-wise, no such plan is made: the models are analysed after the first chunk only."""
    monkeypatch.setattr(validate_module, "CHUNK_ROWS", 20)
    after_each: list[tuple[int, int]] = []  # (models stored, models the statistics saw) after each store
    real_chunk, real_store_chunk = snapshot_module._Stream.chunk, snapshot_module._Stream._store_chunk
    stored_one = threading.Semaphore(0)

    def chunk(stream: Any, models: list[Any], firmware: list[Any]) -> None:  # in the validating thread
        real_chunk(stream, models, firmware)
        assert stored_one.acquire(timeout=10)  # each chunk stored on its own, as a big file's are

    async def store_chunk(stream: Any, models: list[Any], firmware: list[Any]) -> None:
        await real_store_chunk(stream, models, firmware)
        after_each.append((len(stream.models_stored), stream.models_analysed))
        stored_one.release()

    monkeypatch.setattr(snapshot_module._Stream, "chunk", chunk)
    monkeypatch.setattr(snapshot_module._Stream, "_store_chunk", store_chunk)
    one_model = versions(40)
    then_many = [
        row(model_id=f"{i:04X}", firmware_version="01000000", image_hash=f"{i:064x}") for i in range(2, 302)
    ]
    stored = await _validate_and_store(
        db, write_csv(tmp_path / "a.csv", one_model + then_many), streamed=True, keys_set_wise=keys_set_wise
    )
    assert stored.snapshot.device_model_count == 301
    assert after_each[0] == (1, 1)
    if keys_set_wise:
        assert {analysed for _, analysed in after_each} == {1}, after_each
        return
    assert all(models < 2 * analysed for models, analysed in after_each), after_each
    # Twenty new models a chunk from the third: analysed at 1, then 21, 61, 141 and 301 models.
    assert sorted({analysed for _, analysed in after_each}) == [1, 21, 61, 141, 301]


@ON_POSTGRESQL
async def test_while_a_file_streams_python_hands_its_lock_to_the_event_loop_sooner_and_then_as_before(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event loop feeds PostgreSQL while the validating thread holds the interpreter's lock: during a
    stream the lock changes hands within 0.5 ms instead of 5, and afterwards the interval is what it was,
    whether the file was stored or refused."""
    monkeypatch.setattr(validate_module, "CHUNK_ROWS", 10)
    seen: list[float] = []
    real_chunk = snapshot_module._Stream.chunk

    def chunk(stream: Any, models: list[Any], firmware: list[Any]) -> None:  # in the validating thread
        seen.append(sys.getswitchinterval())
        real_chunk(stream, models, firmware)

    monkeypatch.setattr(snapshot_module._Stream, "chunk", chunk)
    before = sys.getswitchinterval()
    assert before != 0.0005
    await _validate_and_store(db, write_csv(tmp_path / "a.csv", versions(30)), streamed=True)
    assert seen and set(seen) == {0.0005}
    assert sys.getswitchinterval() == before
    bad = [*versions(30), row(firmware_version="not hex")]
    with pytest.raises(CplFileRejected):
        await _validate_and_store(db, write_csv(tmp_path / "b.csv", bad), streamed=True)
    assert sys.getswitchinterval() == before


class _ThirdChunkWaits:
    """Holds the validating thread at its third chunk until the store has been abandoned, and records what
    the thread then met."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.chunks: list[int] = []
        self.waited: list[bool] = []
        self.stopped: list[BaseException] = []
        real_chunk = snapshot_module._Stream.chunk

        def chunk(stream: Any, models: list[Any], firmware: list[Any]) -> None:
            self.chunks.append(len(firmware))
            if len(self.chunks) == 3:
                self.waited.append(stream.abandoned.wait(timeout=10))
                time.sleep(0.3)  # a thread slow to get there: whoever abandoned it must wait for it
            try:
                real_chunk(stream, models, firmware)
            except BaseException as exc:
                self.stopped.append(exc)
                raise

        monkeypatch.setattr(snapshot_module._Stream, "chunk", chunk)

    def assert_stopped_at_the_third_chunk(self) -> None:
        assert self.waited == [True]  # the store was abandoned while the thread waited
        assert self.chunks == [10, 10, 10]  # and the validation stopped there, not at the end of the file
        assert [type(e).__name__ for e in self.stopped] == ["_Abandoned"]


async def _nothing_more_stored(db: Database, good: SyncResult, tmp_path: Path) -> None:
    assert await current_id(db) == good.snapshot_id
    assert await count(db, CplSnapshot) == 1
    assert await count(db, CplCertifiedFirmware) == 3
    assert await count(db, CplDeviceModel) == 1
    # Nor a gap in the snapshots' numbers.
    after = await sync_cpl(db, str(write_csv(tmp_path / "after.csv", versions(4))), work_dir=tmp_path)
    assert good.snapshot_id is not None
    assert (after.outcome, after.snapshot_id) == ("applied", good.snapshot_id + 1)


@pytest.fixture
async def held_at_the_third_chunk(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[SyncResult, _ThirdChunkWaits]:
    """A current snapshot of three rows, and chunks of ten rows whose third waits for the store to fail."""
    good = await sync_cpl(db, str(write_csv(tmp_path / "a.csv", versions(3))), work_dir=tmp_path)
    monkeypatch.setattr(validate_module, "CHUNK_ROWS", 10)
    return good, _ThirdChunkWaits(monkeypatch)


@ON_POSTGRESQL
async def test_a_failure_while_storing_as_it_validates_stops_the_validation_and_stores_nothing(
    db: Database, tmp_path: Path, held_at_the_third_chunk: tuple[SyncResult, _ThirdChunkWaits]
) -> None:
    good, thread = held_at_the_third_chunk

    def fail_in_the_second_chunk(stage: str, done: int, total: int | None) -> None:
        if stage == "store" and done >= 20:
            raise OSError("disk full (injected)")

    with pytest.raises(OSError, match="injected"):
        await _validate_and_store(
            db, write_csv(tmp_path / "b.csv", versions(200)), streamed=True, progress=fail_in_the_second_chunk
        )
    thread.assert_stopped_at_the_third_chunk()
    await _nothing_more_stored(db, good, tmp_path)


@ON_POSTGRESQL
async def test_a_sync_cancelled_while_it_stores_stores_nothing_and_waits_for_its_validation(
    db: Database, tmp_path: Path, held_at_the_third_chunk: tuple[SyncResult, _ThirdChunkWaits]
) -> None:
    good, thread = held_at_the_third_chunk
    twenty_stored = asyncio.Event()

    def note_twenty(stage: str, done: int, total: int | None) -> None:
        if stage == "store" and done >= 20:
            twenty_stored.set()  # "store" is reported on the event loop

    storing = asyncio.create_task(
        _validate_and_store(
            db, write_csv(tmp_path / "b.csv", versions(200)), streamed=True, progress=note_twenty
        )
    )
    await asyncio.wait_for(twenty_stored.wait(), timeout=30)
    storing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await storing
    thread.assert_stopped_at_the_third_chunk()  # the task ended only once its thread had
    await _nothing_more_stored(db, good, tmp_path)


async def _a_snapshot_row(session: Any) -> CplSnapshot:
    """An empty snapshot's row, flushed for its id, as a sync begins one."""
    session.add(
        snapshot := CplSnapshot(
            source="a.csv",
            content_sha256="0" * 64,
            rows_sha256="",
            row_count=0,
            device_model_count=0,
            added_count=0,
            removed_count=0,
            changed_count=0,
        )
    )
    await session.flush()
    return snapshot


@ON_POSTGRESQL
async def test_model_facts_that_do_not_match_the_models_stored_fail_the_snapshot(
    db: Database, tmp_path: Path
) -> None:
    valid = validate(read_table(write_csv(tmp_path / "a.csv", versions(2) + versions(1, model_id="0002"))))
    async with db.sessions.begin() as session:
        snapshot = await _a_snapshot_row(session)
        first, second = ((model.key, None) for model in valid.device_models)
        await bulk_insert(
            session,
            CplDeviceModel.__tablename__,
            snapshot_module.MODEL_COLUMNS,
            snapshot_module._models_so_far(snapshot.id, [first]),
        )
        # A model described and never stored.
        with pytest.raises(RuntimeError, match="1 device models stored, 2 described, not the same ones"):
            await snapshot_module._set_model_facts(session, snapshot.id, valid.device_models, dict([first]))
        # A model taken for stored that is not in the table: its facts cannot be set.
        with pytest.raises(RuntimeError, match="2 device models' facts changed, 1 given them"):
            await snapshot_module._set_model_facts(
                session, snapshot.id, valid.device_models, dict([first, second])
            )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_is_never_stored_while_it_validates(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL only"):
        await _validate_and_store(db, write_csv(tmp_path / "a.csv", versions(1)), streamed=True)
    assert await count(db, CplSnapshot) == 0


@ON_POSTGRESQL
@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "stored after"])
async def test_a_snapshot_commits_with_statistics_that_know_its_rows(
    db: Database, tmp_path: Path, streamed: bool
) -> None:
    """Statistics are taken in the snapshot's own transaction, before its diff: planned without them, the
    new snapshot's id is estimated at one row, and a 100,000-row diff once ran 208 s as nested loops. The
    frequencies are this test's own (30 versions of 2 models, then 40 of 3): a test before it that left
    statistics for the same ids would not have them."""
    a = versions(20) + versions(10, model_id="0002")
    b = versions(20, model_id="0003") + versions(10, model_id="0004") + versions(10, model_id="0005")
    first = await _validate_and_store(db, write_csv(tmp_path / "a.csv", a), streamed=streamed)
    second = await _validate_and_store(db, write_csv(tmp_path / "b.csv", b), streamed=streamed)
    expected = {
        "cpl_certified_firmware": {first.snapshot.id: 30 / 70, second.snapshot.id: 40 / 70},
        "cpl_device_models": {first.snapshot.id: 2 / 5, second.snapshot.id: 3 / 5},
    }
    async with db.engine.connect() as conn:
        for table, frequencies in expected.items():
            found = await conn.exec_driver_sql(
                "SELECT most_common_vals::text::int[], most_common_freqs FROM pg_stats "
                f"WHERE tablename = '{table}' AND attname = 'snapshot_id'"
            )
            ids, freqs = tuple(found.one())
            assert dict(zip(ids, freqs, strict=True)) == pytest.approx(frequencies), table


# --- the versions' foreign key checked set-wise (PostgreSQL, where the role may) -------------------------


@ON_POSTGRESQL
async def test_a_version_stored_without_its_device_model_fails_the_set_wise_check(
    db: Database, tmp_path: Path
) -> None:
    """With row triggers off, PostgreSQL lets a version in without its device model; the one check over the
    whole snapshot then finds it, by its sheet row, and the snapshot fails. Outside the copy the key is
    checked row by row again, and once the transaction ends nothing of it is left."""
    valid = validate(read_table(write_csv(tmp_path / "a.csv", versions(2) + versions(1, model_id="0002"))))

    async def copy_versions(session: Any, snapshot_id: int) -> None:
        rows = snapshot_module._firmware_rows(snapshot_id, valid.firmware)
        await bulk_insert(session, CplCertifiedFirmware.__tablename__, snapshot_module.FIRMWARE_COLUMNS, rows)

    with pytest.raises(RuntimeError, match="the version of sheet row 4 was stored without its device model"):
        async with db.sessions.begin() as session:
            snapshot = await _a_snapshot_row(session)
            await bulk_insert(
                session,
                CplDeviceModel.__tablename__,
                snapshot_module.MODEL_COLUMNS,
                snapshot_module._model_rows(snapshot.id, valid.device_models[:1]),
            )
            keys = snapshot_module._SetWiseKeys(session, snapshot.id)
            async with keys.unchecked():
                assert await session.scalar(text("SHOW session_replication_role")) == "replica"
                await copy_versions(session, snapshot.id)  # the third row's model, 0002, is not stored
            assert await session.scalar(text("SHOW session_replication_role")) == "origin"
            await keys.check()
    assert await count(db, CplCertifiedFirmware) == 0
    assert await count(db, CplSnapshot) == 0
    # And row by row, the same copy is refused by PostgreSQL itself.
    with pytest.raises(Exception, match="fk_cpl_certified_firmware_device_model"):
        async with db.sessions.begin() as session:
            await copy_versions(session, (await _a_snapshot_row(session)).id)


@pytest.fixture
async def plain_role(db: Database) -> AsyncIterator[tuple[str, Database]]:
    """A login role that owns nothing and may read and write the tables, and a database connected as it;
    dropped afterwards with whatever was granted to it."""
    role = f"cfl_plain_{secrets.token_hex(4)}"
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'plain'")
        await conn.exec_driver_sql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        await conn.exec_driver_sql(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    as_role = Database.connect(
        db.engine.url.set(username=role, password="plain").render_as_string(hide_password=False)
    )
    try:
        yield role, as_role
    finally:
        await as_role.dispose()
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP OWNED BY {role}")
            await conn.exec_driver_sql(f"DROP ROLE {role}")


@ON_POSTGRESQL
async def test_a_role_that_may_not_turn_row_triggers_off_checks_keys_row_by_row_and_a_granted_one_set_wise(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plain_role: tuple[str, Database]
) -> None:
    """Switching row triggers off is a superuser's right, or a role's granted `SET ON PARAMETER
    session_replication_role`. Without it the sync checks the keys row by row and stores the same snapshot;
    asked to check them set-wise all the same, it refuses before storing anything."""
    role, as_role = plain_role
    monkeypatch.setattr(validate_module, "CHUNK_ROWS", 10)
    ways: list[bool] = []
    real_stream_init = snapshot_module._Stream.__init__

    def noted(stream: Any, *args: Any) -> None:
        real_stream_init(stream, *args)
        ways.append(stream.keys is not None)

    monkeypatch.setattr(snapshot_module._Stream, "__init__", noted)
    a, b, c = (
        write_csv(tmp_path / "a.csv", versions(25)),
        write_csv(tmp_path / "b.csv", versions(30) + versions(5, model_id="0002")),
        write_csv(tmp_path / "c.csv", versions(31) + versions(5, model_id="0002")),
    )
    first = await _validate_and_store(as_role, a, streamed=True)
    with pytest.raises(PermissionError, match="may not set session_replication_role"):
        await _validate_and_store(as_role, b, streamed=True, keys_set_wise=True)
    assert await count(db, CplSnapshot) == 1
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(f"GRANT SET ON PARAMETER session_replication_role TO {role}")
    second = await _validate_and_store(as_role, b, streamed=True)
    third = await _validate_and_store(db, c, streamed=True)  # a superuser's
    assert ways == [False, True, True]
    assert [s.snapshot.row_count for s in (first, second, third)] == [25, 35, 36]
    assert await count(db, CplCertifiedFirmware) == 25 + 35 + 36
    assert (await _what_is_stored(db, second.snapshot.id))["counts"] == (35, 2, 10, 0, 0)


@ON_POSTGRESQL
@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "stored after"])
async def test_every_column_is_analysed_without_statistics_or_when_due_and_else_the_snapshot_id(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    """A sync takes every column's statistics where the tables have none (a first sync, a restored
    database) or where the versions have outgrown them (`whole_statistics_due`), and otherwise only the
    snapshot id's, which a new snapshot moves: the others, a list's share of statuses say, hardly move
    from one snapshot to the next."""
    status = (
        "SELECT most_common_vals::text FROM pg_stats "
        "WHERE tablename = 'cpl_certified_firmware' AND attname = 'status'"
    )
    asked: list[tuple[float, int, int]] = []
    due = False

    def whole_statistics_due(rows_analysed: float, changed: int, previous_rows: int, rows: int) -> bool:
        asked.append((rows_analysed, previous_rows, rows))
        return due

    monkeypatch.setattr(snapshot_module, "whole_statistics_due", whole_statistics_due)
    async with db.engine.begin() as conn:
        for table in ("cpl_device_models", "cpl_certified_firmware"):
            # Statistics gone, as from a restored database (a superuser's right, the test's).
            await conn.exec_driver_sql(f"DELETE FROM pg_statistic WHERE starelid = '{table}'::regclass")
    a = write_csv(tmp_path / "a.csv", versions(30))
    active = await _validate_and_store(db, a, streamed=streamed)
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql(status)).scalar_one() == "{active}"
        columns = await conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stats WHERE tablename IN ('cpl_device_models', 'cpl_certified_firmware')"
        )
        assert columns.scalar_one() == snapshot_module._COLUMNS_BESIDE_THE_SNAPSHOT_ID + 2
    assert asked == []  # no statistics: nothing to weigh

    withdrawn = [row(firmware_version=f"{i:08X}", status="Withdrawn") for i in range(40)]
    later = await _validate_and_store(db, write_csv(tmp_path / "b.csv", withdrawn), streamed=streamed)
    assert asked == [(30, 30, 40)]  # the rows counted, the previous snapshot's, the new one's
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql(status)).scalar_one() == "{active}"  # as the first left it
        found = await conn.exec_driver_sql(
            "SELECT most_common_vals::text::int[], most_common_freqs FROM pg_stats "
            "WHERE tablename = 'cpl_certified_firmware' AND attname = 'snapshot_id'"
        )
        ids, freqs = tuple(found.one())
    assert dict(zip(ids, freqs, strict=True)) == pytest.approx(
        {active.snapshot.id: 30 / 70, later.snapshot.id: 40 / 70}
    )

    due = True
    await _validate_and_store(db, write_csv(tmp_path / "c.csv", versions(30) + withdrawn), streamed=streamed)
    async with db.engine.connect() as conn:
        assert "withdrawn" in (await conn.exec_driver_sql(status)).scalar_one()


def test_whole_statistics_come_each_time_the_versions_have_more_than_doubled() -> None:
    """Syncs of a list of 100,000 versions, with PostgreSQL's counts as its ANALYZE and commits leave them:
    every column's statistics at the 1st, 3rd, 7th, 15th and 31st, the versions never more than twice
    what they were last analysed whole. Counts lost once (a server's crash after the 15th) put the next
    whole statistics two syncs later, not never."""

    def whole_at(syncs: int, counts_lost_after: int | None = None) -> list[int]:
        size, found = 100_000, []
        rows_analysed, changed = -1.0, 0
        for sync in range(1, syncs + 1):
            previous = size if sync > 1 else 0
            if snapshot_module.whole_statistics_due(rows_analysed, changed, previous, size):
                found.append(sync)
                changed = 0  # reset by the ANALYZE, in the sync's transaction
            changed += size  # counted at its commit
            rows_analysed = float(sync * size)  # what either ANALYZE counts: the table's rows
            if sync == counts_lost_after:
                changed = 0
        return found

    assert whole_at(40) == [1, 3, 7, 15, 31]
    assert whole_at(40, counts_lost_after=15) == [1, 3, 7, 15, 33]

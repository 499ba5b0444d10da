"""Store a validated CPL as a new immutable snapshot and move `current` to it, in one transaction.

Either the whole snapshot is written and becomes current, or nothing of it is visible. On PostgreSQL the
rows are stored while the file is still being validated (`validate_and_store`); on SQLite, and as the
reference that way is tested against, the file is validated first and stored after (`store_snapshot`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter
from typing import Any, TypeVar, cast

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cfl_graph.catalogue.snapshots import current_snapshot
from cfl_graph.database import bulk_insert, writer_of
from cfl_graph.identifiers import TechnicalSpecification
from cfl_graph.keys import ModelKey
from cfl_graph.tables import CplCertifiedFirmware, CplCurrent, CplDeviceModel, CplSnapshot
from cfl_graph.tables.base import utc_now
from cpl_sync.diff import FIRMWARE_FIELDS, KEY_FIELDS, DiffCounts, diff_counts
from cpl_sync.validate import (
    SPECIFICATION_COLUMN,
    ChunkSink,
    DeviceModelRow,
    FirmwareRow,
    ProgressCallback,
    ValidCpl,
    firmware_columns,
    sort_by_key,
)

BATCH_ROWS = 20_000
T = TypeVar("T")

# Reads and validates the file, in a worker thread, handing each chunk to the sink when one is given.
Validation = Callable[[ChunkSink | None], ValidCpl]
OnCreated = Callable[[AsyncSession, CplSnapshot], Awaitable[None]]


@dataclass(frozen=True)
class Stored:
    snapshot: CplSnapshot
    created: bool  # False: the content equals the current snapshot's, and nothing was written


def _reported(rows: Iterator[T], total: int, progress: ProgressCallback | None) -> Iterator[T]:
    """The rows as they are read, with a "store" progress report every `BATCH_ROWS` of them."""
    if progress is None:
        yield from rows
        return
    written = 0
    for written, item in enumerate(rows, 1):
        yield item
        if written % BATCH_ROWS == 0:
            progress("store", written, total)
    if written % BATCH_ROWS:
        progress("store", written, total)


MODEL_COLUMNS = (
    "snapshot_id",
    "manufacturer_id",
    "model_id",
    "hardware_version",
    "manufacturer_name",
    "model_name",
    "device_type",
    "smets_version",
    "smets_versions",
    "firmware_count",
)
# A certified version's columns: its key, what it says (the fields a diff compares), and where it sat in the
# sheet; `_firmware_rows` yields its values in this order.
FIRMWARE_COLUMNS = ("snapshot_id", *KEY_FIELDS, *FIRMWARE_FIELDS, "sheet_row")


# A device model's fields in the order of its columns, in C; `MODEL_COLUMNS` names them in that order.
_model_fields = attrgetter(*MODEL_COLUMNS[1:])
_model_key = attrgetter(*ModelKey._fields)


def _model_row(snapshot_id: int, m: DeviceModelRow) -> tuple[Any, ...]:
    return (snapshot_id, *_model_fields(m))


def _model_rows(snapshot_id: int, models: Iterable[DeviceModelRow]) -> Iterator[tuple[Any, ...]]:
    return (_model_row(snapshot_id, m) for m in models)


def _firmware_rows(snapshot_id: int, firmware: Sequence[FirmwareRow]) -> Iterator[tuple[Any, ...]]:
    """`(snapshot_id, *fw.content, fw.sheet_row)` for each row, built from the rows' columns in C
    (`firmware_columns`), with each distinct specification's three columns worked out once. (Row by row in
    Python it took the event loop 0.25 s of a 100,000-row sync, while the validating thread waited for the
    lock.)"""
    parts: dict[TechnicalSpecification, tuple[str, str, str | None]] = {}

    def rows_of(columns: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        specifications = columns[SPECIFICATION_COLUMN]
        for spec in set(specifications).difference(parts):
            parts[spec] = (spec.generation, spec.specification, spec.version)
        spec_columns = zip(*map(parts.__getitem__, specifications), strict=True)
        before, after = columns[:SPECIFICATION_COLUMN], columns[SPECIFICATION_COLUMN + 1 :]
        return zip(repeat(snapshot_id, len(specifications)), *before, *spec_columns, *after, strict=True)

    return chain.from_iterable(map(rows_of, firmware_columns(firmware)))


async def store_snapshot(
    sessions: async_sessionmaker[AsyncSession],
    valid: ValidCpl,
    *,
    source: str,
    content_sha256: str,
    progress: ProgressCallback | None = None,
    on_created: Callable[[AsyncSession, CplSnapshot], Awaitable[None]] | None = None,
) -> Stored:
    """Write `valid` as a new snapshot and make it current, unless it says what the current one says.

    `on_created` runs inside the same transaction once the snapshot is current (the sync records its
    outcome and audit event there, so they commit with it or not at all)."""
    async with writer_of(sessions).begin() as session:
        previous = await current_snapshot(session)
        if previous is not None and (
            previous.content_sha256 == content_sha256 or previous.rows_sha256 == valid.rows_sha256
        ):
            return Stored(previous, created=False)

        snapshot = CplSnapshot(
            source=source,
            content_sha256=content_sha256,
            rows_sha256=valid.rows_sha256,
            row_count=len(valid.firmware),
            device_model_count=len(valid.device_models),
            previous_id=previous.id if previous else None,
            added_count=len(valid.firmware),
            removed_count=0,
            changed_count=0,
        )
        session.add(snapshot)
        await session.flush()

        models = _model_rows(snapshot.id, valid.device_models)
        await bulk_insert(session, CplDeviceModel.__tablename__, MODEL_COLUMNS, models)
        await bulk_insert(
            session,
            CplCertifiedFirmware.__tablename__,
            FIRMWARE_COLUMNS,
            _reported(_firmware_rows(snapshot.id, valid.firmware), len(valid.firmware), progress),
        )
        counts = await _analysed_and_diffed(session, snapshot.id, snapshot.row_count, previous)
        await _make_current(session, snapshot, counts, on_created)
        return Stored(snapshot, created=True)


async def _analyze(session: AsyncSession, rows: int, previous_rows: int) -> None:
    """Statistics for the new rows, committed with them: without them the planner takes the new snapshot
    for one row, and the diff and the reports' joins run as nested loops (a 100,000-row diff took 208 s
    instead of 13). ANALYZE samples this transaction's own rows.

    Every column's where the tables have none yet (a first sync, a restored database) or where the
    versions will be more than twice what was last analysed whole (`whole_statistics_due`); otherwise the
    snapshot id's alone, the one column whose distribution a new snapshot moves: a snapshot is the list
    again, some 1.5 % of its rows moved, so the other columns' shares of values hardly move, and their
    counts of distinct values are off by at most the factor of two the rule allows. 0.07 s instead of
    0.38-0.52 at 100,000 rows (`docs/decisions.md`)."""
    columns, rows_analysed, changed = (await session.execute(_STATISTICS_KEPT)).one()
    whole = columns != _COLUMNS_BESIDE_THE_SNAPSHOT_ID or whole_statistics_due(
        rows_analysed, changed, previous_rows, rows
    )
    await session.execute(_ANALYZE if whole else _ANALYZE_SNAPSHOT_IDS)


def whole_statistics_due(rows_analysed: float, changed_since: int, previous_rows: int, rows: int) -> bool:
    """Whether the versions, with a new snapshot of `rows`, are more than twice what their statistics last
    saw whole. PostgreSQL knows the rows its last ANALYZE counted (`rows_analysed`, negative if none) and
    those inserted, changed or deleted since the last whole one (`changed_since`, which an ANALYZE of some
    columns leaves alone). A sync's ANALYZE runs before its commit counts its rows, so the rows seen whole
    are those counted less those changed since, plus the previous snapshot's, if that sync analysed them
    whole; if it did not, the guess is high, and the next whole statistics come a sync or so later."""
    if rows_analysed < 0:
        return True
    seen_whole = rows_analysed - changed_since + previous_rows
    return rows_analysed + rows > 2 * seen_whole


_ANALYZE = text("ANALYZE cpl_device_models, cpl_certified_firmware")
_ANALYZE_SNAPSHOT_IDS = text("ANALYZE cpl_device_models (snapshot_id), cpl_certified_firmware (snapshot_id)")
_STATISTICS_OF = (CplDeviceModel.__table__, CplCertifiedFirmware.__table__)
_COLUMNS_BESIDE_THE_SNAPSHOT_ID = sum(len(table.columns) - 1 for table in _STATISTICS_OF)
# The two tables' columns with statistics but the snapshot ids; the versions' rows the last ANALYZE counted,
# and their rows inserted, changed or deleted since the last whole one.
_STATISTICS_KEPT = text(
    """
    SELECT
        (SELECT count(*) FROM pg_stats
         WHERE schemaname = current_schema()
           AND tablename IN ('cpl_device_models', 'cpl_certified_firmware') AND attname <> 'snapshot_id'),
        c.reltuples,
        coalesce(s.n_mod_since_analyze, 0)
    FROM pg_class AS c LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
    WHERE c.oid = 'cpl_certified_firmware'::regclass
    """
)


async def _analysed_and_diffed(
    session: AsyncSession, snapshot_id: int, rows: int, previous: CplSnapshot | None
) -> DiffCounts | None:
    """Once every row of a snapshot is stored: its statistics (PostgreSQL), then its diff's counts against
    the previous snapshot, if any."""
    if session.get_bind().dialect.name == "postgresql":
        await _analyze(session, rows, previous.row_count if previous else 0)
    return None if previous is None else await diff_counts(session, previous.id, snapshot_id)


async def _make_current(
    session: AsyncSession, snapshot: CplSnapshot, counts: DiffCounts | None, on_created: OnCreated | None
) -> None:
    """The end of either way of storing: the diff's counts (None: no previous snapshot), `current`."""
    if counts is not None:
        snapshot.added_count, snapshot.removed_count, snapshot.changed_count = (
            counts.added,
            counts.removed,
            counts.changed,
        )
    now = utc_now()
    moved = await session.execute(
        update(CplCurrent).where(CplCurrent.id == 1).values(snapshot_id=snapshot.id, since=now)
    )
    if moved.rowcount == 0:  # type: ignore[attr-defined]
        session.add(CplCurrent(id=1, snapshot_id=snapshot.id, since=now))
    if on_created is not None:
        await on_created(session, snapshot)


class _Unchanged(Exception):
    """The file says what the current snapshot says (its bytes, known before validating, or its rows,
    once validated: `valid`): its transaction is rolled back, with whatever was stored of it."""

    def __init__(self, valid: ValidCpl | None, previous_id: int) -> None:
        self.valid, self.previous_id = valid, previous_id


class _Abandoned(Exception):
    """Raised in the validating thread once the transaction it was feeding has failed."""


async def validate_and_store(
    sessions: async_sessionmaker[AsyncSession],
    validation: Validation,
    *,
    source: str,
    content_sha256: str,
    progress: ProgressCallback | None = None,
    on_created: OnCreated | None = None,
    streamed: bool | None = None,
    keys_set_wise: bool | None = None,
) -> tuple[ValidCpl, Stored]:
    """Validate a file (raising `CplFileRejected` if it is bad) and store it as the new current snapshot,
    unless it says what the current one says.

    Streamed (the default on PostgreSQL): each chunk's rows are copied into the snapshot's transaction as
    soon as they are validated, and PostgreSQL inserts and checks them on its own core while the next
    chunk validates. A device model goes in with its first row's chunk, with the facts its rows so far
    give, its foreign key checked as before; those of its facts a later row changes are set once the last
    row is read. A file found bad anywhere, its last row included, is refused whole: its transaction rolls
    back and nothing of it is seen.

    The versions' foreign key to their device models is checked set-wise, once every row is in, where the
    database lets the sync switch PostgreSQL's row triggers off for its own transaction (`keys_set_wise`
    None: where it may; True: it must; False: row by row, as any other insert is; `_SetWiseKeys`).

    Not streamed (the default on SQLite, where the write lock would be held
    for the whole validation, and the database shares the process): validate, then `store_snapshot`."""
    on_postgresql = sessions.kw["bind"].dialect.name == "postgresql"
    if streamed and not on_postgresql:
        raise ValueError("a CPL is stored while it validates on PostgreSQL only")
    if not (on_postgresql if streamed is None else streamed):
        valid = await asyncio.to_thread(validation, None)
        stored = await store_snapshot(
            sessions,
            valid,
            source=source,
            content_sha256=content_sha256,
            progress=progress,
            on_created=on_created,
        )
        return valid, stored
    try:
        return await _stream(
            sessions, validation, source, content_sha256, progress, on_created, keys_set_wise
        )
    except _Unchanged as unchanged:
        # Same bytes as the current snapshot's: validated now, outside any transaction, so that a file
        # the rules refuse is refused whatever is current.
        again = unchanged.valid if unchanged.valid is not None else await asyncio.to_thread(validation, None)
        async with sessions() as session:
            previous = await session.get_one(CplSnapshot, unchanged.previous_id)
        return again, Stored(previous, created=False)


async def _stream(
    sessions: async_sessionmaker[AsyncSession],
    validation: Validation,
    source: str,
    content_sha256: str,
    progress: ProgressCallback | None,
    on_created: OnCreated | None,
    keys_set_wise: bool | None,
) -> tuple[ValidCpl, Stored]:
    async with writer_of(sessions).begin() as session:
        previous = await current_snapshot(session)
        if previous is not None and previous.content_sha256 == content_sha256:
            raise _Unchanged(None, previous.id)  # nothing written: the transaction ends here
        # Its counts and digest are known once the last row is read; until the commit nobody else sees it.
        # Its id is the next after the last, not drawn from the sequence: a file refused in its last row
        # rolls back and leaves no gap in the snapshots' numbers (`_CLAIM_ID`).
        snapshot = CplSnapshot(
            id=await session.scalar(_NEXT_ID),
            source=source,
            content_sha256=content_sha256,
            rows_sha256="",
            row_count=0,
            device_model_count=0,
            previous_id=previous.id if previous else None,
            added_count=0,
            removed_count=0,
            changed_count=0,
        )
        session.add(snapshot)
        await session.flush()
        set_wise = keys_set_wise is not False and await _may_check_keys_set_wise(session)
        if keys_set_wise and not set_wise:
            raise PermissionError(
                "the versions' keys cannot be checked set-wise: this database role may not set "
                "session_replication_role"
            )
        keys = _SetWiseKeys(session, snapshot.id) if set_wise else None
        stream = _Stream(session, snapshot.id, progress, keys, previous)
        valid = await stream.run(validation)
        if previous is not None and previous.rows_sha256 == valid.rows_sha256:
            raise _Unchanged(valid, previous.id)  # rolls back the transaction
        snapshot.rows_sha256 = valid.rows_sha256
        snapshot.row_count = snapshot.added_count = len(valid.firmware)
        snapshot.device_model_count = len(valid.device_models)
        await _make_current(session, snapshot, stream.counts, on_created)
        await session.execute(_CLAIM_ID, {"id": snapshot.id})
        return valid, Stored(snapshot, created=True)


# Syncs are one at a time (`lock.sync_lock`); another writer of a snapshot at once would meet the primary
# key. The sequence is moved to the id as the snapshot is about to commit, as `nextval` would have: it is
# not transactional, so a refused file must not move it.
_NEXT_ID = select(func.coalesce(func.max(CplSnapshot.id), 0) + 1)
_CLAIM_ID = text("SELECT setval(pg_get_serial_sequence('cpl_snapshots', 'id'), :id)")


_FreshModels = list[tuple[ModelKey, DeviceModelRow | None]]
_Message = tuple[_FreshModels, list[FirmwareRow]] | list[DeviceModelRow] | None


class _Stream(ChunkSink):
    """Stores what the validating thread hands on, in the order it comes, on the event loop: each chunk's
    new device models and rows, then the models' facts, the statistics, the diff against the previous
    snapshot and the keys' check, while the thread sorts and digests the rows."""

    def __init__(
        self,
        session: AsyncSession,
        snapshot_id: int,
        progress: ProgressCallback | None,
        keys: _SetWiseKeys | None,
        previous: CplSnapshot | None,
    ) -> None:
        self.session, self.snapshot_id, self.progress = session, snapshot_id, progress
        self.previous = previous  # the current snapshot, which the new one is diffed against
        self.counts: DiffCounts | None = None  # the diff's, once every row is stored
        self.keys = keys  # None: each version's key is checked as it goes in
        self.loop = asyncio.get_running_loop()
        # Unbounded: a message holds lists of the rows validation keeps for its sort and digest anyway.
        self.queue: asyncio.Queue[_Message] = asyncio.Queue()
        self.abandoned = threading.Event()
        self.rows_stored = 0
        # Each device model stored, with the facts it was stored with (None: blanks, a fact not yet given).
        self.models_stored: dict[ModelKey, DeviceModelRow | None] = {}
        self.models_analysed = 0  # how many models the table's statistics last saw (`_ANALYZE_MODELS`)

    def check(self) -> None:  # in the validating thread, after every chunk
        if self.abandoned.is_set():
            raise _Abandoned  # the transaction it was feeding has failed, or the sync was cancelled

    def chunk(self, models: _FreshModels, firmware: list[FirmwareRow]) -> None:
        self.check()
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (models, firmware))

    def models(self, device_models: list[DeviceModelRow]) -> None:
        self.check()
        self.loop.call_soon_threadsafe(self.queue.put_nowait, device_models)

    async def run(self, validation: Validation) -> ValidCpl:
        with _LOCK_HANDED_OVER_OFTEN:
            return await self._run(validation)

    async def _run(self, validation: Validation) -> ValidCpl:
        validating = asyncio.ensure_future(asyncio.to_thread(validation, self))
        # Runs after every message the thread posted: each was queued to the loop before the thread ended.
        validating.add_done_callback(lambda _: self.queue.put_nowait(None))
        try:
            backlog: deque[_Message] = deque()
            while (message := backlog.popleft() if backlog else await self.queue.get()) is not None:
                if validating.done() and (validating.cancelled() or validating.exception() is not None):
                    break  # the file was refused (or validation failed): what is queued is not stored
                if isinstance(message, tuple):
                    models, firmware = list(message[0]), list(message[1])
                    # Chunks that queued while the last was stored go in together: fewer statements,
                    # round trips, and waits for the interpreter's lock the validating thread holds.
                    while not self.queue.empty():
                        backlog.append(self.queue.get_nowait())
                    while backlog and isinstance(following := backlog[0], tuple):
                        backlog.popleft()
                        models.extend(following[0])
                        firmware.extend(following[1])
                    await self._store_chunk(models, firmware)
                else:
                    await _set_model_facts(self.session, self.snapshot_id, message, self.models_stored)
                    # Every row is stored: the statistics and the diff, while the thread sorts and digests.
                    self.counts = await _analysed_and_diffed(
                        self.session, self.snapshot_id, self.rows_stored, self.previous
                    )
                    if self.keys is not None:
                        await self.keys.check()
            valid = await asyncio.shield(validating)
        except BaseException:
            self.abandoned.set()
            await _finished(validating)
            raise
        if self.rows_stored != len(valid.firmware):
            validated, stored = len(valid.firmware), self.rows_stored
            raise RuntimeError(f"snapshot {self.snapshot_id}: {validated} rows validated, {stored} stored")
        if self.progress is not None:
            self.progress("store", self.rows_stored, self.rows_stored)
        return valid

    async def _store_chunk(self, models: _FreshModels, firmware: list[FirmwareRow]) -> None:
        if models:
            await bulk_insert(
                self.session,
                CplDeviceModel.__tablename__,
                MODEL_COLUMNS,
                _models_so_far(self.snapshot_id, models),
            )
            self.models_stored.update(models)
            # Checked row by row, the key's check is planned from the models' statistics (`_ANALYZE_MODELS`);
            # set-wise, they are taken after the first chunk only, for the models' facts' statement.
            doubled = len(self.models_stored) >= 2 * self.models_analysed
            if doubled and (self.keys is None or not self.models_analysed):
                await self.session.execute(_ANALYZE_MODELS)
                self.models_analysed = len(self.models_stored)
        sort_by_key(firmware)  # key order within the chunk, as the rows are read back
        async with contextlib.nullcontext() if self.keys is None else self.keys.unchecked():
            await bulk_insert(
                self.session,
                CplCertifiedFirmware.__tablename__,
                FIRMWARE_COLUMNS,
                _firmware_rows(self.snapshot_id, firmware),
            )
        self.rows_stored += len(firmware)
        if self.progress is not None:
            self.progress("store", self.rows_stored, None)


class _SwitchInterval:
    """How soon Python hands its lock from the thread that holds it to one that asks for it
    (`sys.setswitchinterval`): shortened while any stream lasts, and put back when the last ends.

    The event loop feeds PostgreSQL the rows (and, in a server, answers requests) while the validating
    thread holds the lock for most of the time; each time the loop wakes for its socket it waited up to
    the default 5 ms, and PostgreSQL, which has a core of its own, waited with it. Handed over within
    0.5 ms: a million rows synced in 22.9 s instead of 25.1, 100,000 in 2.60 s instead of 2.71 (means of
    three). The validating thread pays a few more switches, microseconds each."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.streams = 0
        self.before = 0.0

    def __enter__(self) -> None:
        with self.lock:
            if self.streams == 0:
                self.before = sys.getswitchinterval()
                sys.setswitchinterval(self.seconds)
            self.streams += 1

    def __exit__(self, *_: object) -> None:
        with self.lock:
            self.streams -= 1
            if self.streams == 0:
                sys.setswitchinterval(self.before)


_LOCK_HANDED_OVER_OFTEN = _SwitchInterval(0.0005)


async def _finished(validating: asyncio.Future[ValidCpl]) -> None:
    """Wait for the validating thread to end (it stops at its next chunk once abandoned, or after the sort
    and digest if it is past its last), whatever it raised, and however often this task is cancelled
    meanwhile: no thread outlives the sync that started it. The caller then raises what stopped it."""
    while not validating.done():
        with contextlib.suppress(BaseException):
            await asyncio.shield(validating)


class _SetWiseKeys:
    """The versions' foreign key to their device models, checked once for the whole snapshot instead of
    row by row.

    PostgreSQL checks a foreign key with a trigger on each row inserted: an index probe and a lock on the
    model, about half of its work in a sync (0.45 s of 0.9 at 100,000 rows), and why its store used to end
    well after the validation. The constraint stays declared (PostgreSQL estimates a version's join with its
    model from it, and the reports are planned by it: `docs/decisions.md`), but while the sync copies its
    versions in, its transaction sets `session_replication_role` to `replica`, which fires no ordinary
    trigger, the key's among them; then, once every row and model is in and the statistics are taken, one
    anti-join finds any version without its model and fails the snapshot. The models are this transaction's
    own, unseen by anyone else until it commits, so nothing can take one away between the two; the lock the
    row-wise check takes guards against that alone.

    Only a role that may set the parameter does this (a superuser, or one granted `SET ON PARAMETER
    session_replication_role`, PostgreSQL 15 and later); any other checks row by row, as before. `SET LOCAL`
    ends with the transaction, commit or rollback."""

    def __init__(self, session: AsyncSession, snapshot_id: int) -> None:
        self.session, self.snapshot_id = session, snapshot_id

    @contextlib.asynccontextmanager
    async def unchecked(self) -> AsyncIterator[None]:
        """Row triggers off for what runs inside (the versions' copy), and on again after it; should that
        fail, the transaction is done for, and its end puts the setting back."""
        await self.session.execute(_ROW_TRIGGERS_OFF)
        yield
        await self.session.execute(_ROW_TRIGGERS_ON)

    async def check(self) -> None:
        orphan = await self.session.scalar(_VERSION_WITHOUT_ITS_MODEL, {"snapshot_id": self.snapshot_id})
        if orphan is not None:
            raise RuntimeError(
                f"snapshot {self.snapshot_id}: the version of sheet row {orphan} was stored without its "
                "device model"
            )


async def _may_check_keys_set_wise(session: AsyncSession) -> bool:
    version = session.get_bind().dialect.server_version_info or (0,)
    return bool(await session.scalar(_MAY_SET_REPLICA if version >= (15,) else _IS_SUPERUSER))


_ROW_TRIGGERS_OFF = text("SET LOCAL session_replication_role = replica")
_ROW_TRIGGERS_ON = text("SET LOCAL session_replication_role = origin")
_MAY_SET_REPLICA = text("SELECT has_parameter_privilege('session_replication_role', 'SET')")
_IS_SUPERUSER = text("SELECT current_setting('is_superuser') = 'on'")
# The first such row, by an aggregate: a `LIMIT 1` invited a plan that starts fast, a probe of the models'
# index for each version (0.27-0.43 s at 100,000 rows), where one hash anti-join takes 0.03-0.05 s. And the
# snapshot's id on both sides: with it on the versions' side only, PostgreSQL sorted them and probed too.
_VERSION_WITHOUT_ITS_MODEL = text(
    """
    SELECT min(f.sheet_row) FROM cpl_certified_firmware AS f
    WHERE f.snapshot_id = :snapshot_id AND NOT EXISTS (
        SELECT FROM cpl_device_models AS m
        WHERE m.snapshot_id = :snapshot_id AND m.manufacturer_id = f.manufacturer_id
          AND m.model_id = f.model_id AND m.hardware_version = f.hardware_version
    )
    """
)


# Each firmware row's foreign key is checked by a query PostgreSQL plans when the first is checked and
# keeps for the connection. Planned with no statistics for the new snapshot's id (a fresh database, or an
# id its statistics have not seen), it estimates one row either way and takes the smaller index,
# (snapshot_id, device_type, smets_version), reading every model of the snapshot stored so far for each
# row checked: 100,000 rows took 42 s instead of 0.8. Planned while the table is a page or two (a first
# chunk of few models), it reads the whole table for each row: a 100,000-row file in chunks of 2,000 took
# 33 s instead of 2.6. So the models are analysed after the first chunk's, and again each time they have
# doubled since: the plan is always made for a table at least half its size (ANALYZE also drops the plans
# kept for the table). A sample of the table, some 10-50 ms each, a handful of times a file.
_ANALYZE_MODELS = text("ANALYZE cpl_device_models")


def _models_so_far(snapshot_id: int, models: _FreshModels) -> Iterator[tuple[Any, ...]]:
    """Device models as first stored: with their facts as the rows read so far choose them, or their key
    and blanks while one of the facts is not given."""
    for key, row in models:
        yield (snapshot_id, *key, "", "", "", "", "", 0) if row is None else _model_row(snapshot_id, row)


_FACT_COLUMNS = MODEL_COLUMNS[1:]  # the key's three, then the facts
_SET_MODEL_FACTS = text(
    """
    UPDATE cpl_device_models AS m
    SET manufacturer_name = f.manufacturer_name, model_name = f.model_name, device_type = f.device_type,
        smets_version = f.smets_version, smets_versions = f.smets_versions, firmware_count = f.firmware_count
    FROM unnest(
        CAST(:manufacturer_id AS text[]), CAST(:model_id AS text[]), CAST(:hardware_version AS text[]),
        CAST(:manufacturer_name AS text[]), CAST(:model_name AS text[]), CAST(:device_type AS text[]),
        CAST(:smets_version AS text[]), CAST(:smets_versions AS text[]), CAST(:firmware_count AS int[])
    ) AS f(manufacturer_id, model_id, hardware_version, manufacturer_name, model_name, device_type,
           smets_version, smets_versions, firmware_count)
    WHERE m.snapshot_id = :snapshot_id AND m.manufacturer_id = f.manufacturer_id
      AND m.model_id = f.model_id AND m.hardware_version = f.hardware_version
    """
)


async def _set_model_facts(
    session: AsyncSession,
    snapshot_id: int,
    models: list[DeviceModelRow],
    stored: dict[ModelKey, DeviceModelRow | None],
) -> None:
    """Give each device model the facts chosen over all its rows where it was stored with others (a later
    row changed its count or a fact, or gave one missing), in one statement (one column array per fact).
    Every model stored must be one the file describes, and every one it describes stored."""
    # Plain tuples, each hashed and compared as the `ModelKey` of the same parts it finds.
    keys = cast(list[ModelKey], list(map(_model_key, models)))
    if len(models) != len(stored) or not all(map(stored.__contains__, keys)):
        raise RuntimeError(
            f"snapshot {snapshot_id}: {len(stored)} device models stored, {len(models)} described, not "
            "the same ones"
        )
    # Compared as tuples of their fields, in C: a million-row file describes some 90,000 models, and this
    # runs on the event loop while PostgreSQL waits for it.
    changed = [
        model
        for model, key in zip(models, keys, strict=True)
        if (was := stored[key]) is None or _model_fields(was) != _model_fields(model)
    ]
    if not changed:
        return
    rows = [row[1:] for row in _model_rows(snapshot_id, changed)]
    values: dict[str, Any] = {name: [row[i] for row in rows] for i, name in enumerate(_FACT_COLUMNS)}
    result = await session.execute(_SET_MODEL_FACTS, {**values, "snapshot_id": snapshot_id})
    if (updated := result.rowcount) != len(changed):  # type: ignore[attr-defined]
        raise RuntimeError(
            f"snapshot {snapshot_id}: {len(changed)} device models' facts changed, {updated} given them"
        )

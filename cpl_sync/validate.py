"""Turn a parsed CPL table into typed, normalised rows, or reject it with every problem it has.

A file is rejected whole only when it cannot be trusted as a whole: a key (manufacturer id, model id,
hardware or firmware version) or an image hash that cannot be read, a duplicate key, or a fact a
version's certification rests on (status, date added, technical specification) that cannot be read.
Facts that merely disagree between the rows of one device model (a name spelt two ways, a device type
typo) are applied with a warning per row; the value kept is the one on the most recently listed row
(`prevails`, the one rule). An unreadable optional cell (GBCS version, CPA reference or expiry) is a
warning and stays empty. Errors are reported in full up to a cap, and counted exactly beyond it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice, repeat
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from cfl_graph import identifiers as ids
from cfl_graph.identifiers import Cell, InvalidValue
from cfl_graph.keys import ModelKey, VersionKey
from cpl_sync.columns import Column
from cpl_sync.parse import Header, Table
from cpl_sync.problems import CplFileRejected, Problem, Severity

MAX_REPORTED_PROBLEMS = 200
# Rows validated (and, on PostgreSQL, handed on to be stored) at a time. Small enough that a chunk's cells
# stay in the processor's cache: a million rows validate in 6.2 s in chunks of 2,000, 7.5 s of 10,000.
CHUNK_ROWS = 2_000
# A chunk whose every cell was read and whose keys are all new is accepted column-wise, in C (`validate`);
# off, every chunk goes through the row-by-row loop, the reference a differential test compares it with.
COLUMN_WISE_CHUNKS = True

# (stage, done, total if known). Called from the thread that does the stage: on PostgreSQL "validate"
# from the validating thread while "store" is called from the event loop, at the same time.
ProgressCallback = Callable[[str, int, int | None], None]


@dataclass(frozen=True, slots=True)
class DeviceModelRow:
    manufacturer_id: ids.ManufacturerId
    model_id: ids.ModelId
    hardware_version: ids.HardwareVersion
    manufacturer_name: str
    model_name: str
    device_type: ids.DeviceType
    # The generation of the most recently listed version, and every generation its versions have
    # (`SMETS1,SMETS2` when a firmware upgrade moved the model from one to the other).
    smets_version: ids.SmetsVersion
    smets_versions: str
    firmware_count: int

    @property
    def key(self) -> ModelKey:
        return ModelKey.of(self)


class FirmwareRow(NamedTuple):
    """One certified version as read from the file. A named tuple, as immutable as a frozen dataclass but
    built several times faster (a frozen dataclass sets each field through `object.__setattr__`: 0.2 s of
    a 100,000-row file)."""

    manufacturer_id: ids.ManufacturerId
    model_id: ids.ModelId
    hardware_version: ids.HardwareVersion
    firmware_version: ids.FirmwareVersion
    image_hash: ids.Sha256Hex
    status: ids.CplStatus
    specification: ids.TechnicalSpecification
    gbcs_version: str | None
    cpa_reference: str | None
    cpa_expiry: dt.date | None
    date_added: dt.date
    sheet_row: int

    @property
    def key(self) -> VersionKey:
        return VersionKey.of(self)

    @property
    def content(self) -> tuple[Any, ...]:
        """What the row says, key first, in the stored column order (its place in the file aside)."""
        return (
            self.manufacturer_id,
            self.model_id,
            self.hardware_version,
            self.firmware_version,
            self.image_hash,
            self.status,
            self.specification.generation,
            self.specification.specification,
            self.specification.version,
            self.gbcs_version,
            self.cpa_reference,
            self.cpa_expiry,
            self.date_added,
        )


# A `FirmwareRow` from a tuple of its fields, in C: what the named tuple's own `__new__` does, without a
# call of Python per row.
_firmware_row = functools.partial(tuple.__new__, FirmwareRow)


def sort_by_key(firmware: list[FirmwareRow]) -> None:
    """Into the order of `FirmwareRow.key`. A row's tuple starts with its key, and a file's keys are unique
    (a second row with a key refuses the file), so the tuples' own order is the keys': nothing is built per
    row to sort by (0.15 s -> 0.11 s for 100,000 rows in no order, 0.07 s in sorted runs)."""
    firmware.sort()


@dataclass(frozen=True)
class ValidCpl:
    header: Header
    device_models: list[DeviceModelRow]  # in key order
    firmware: list[FirmwareRow]  # in key order
    warnings: list[Problem]
    rows_sha256: str


class ChunkSink(Protocol):
    """Where a file is stored while it is validated (`snapshot.validate_and_store`). Called from the
    validating thread; handed rows only while the file has no error (a file with one is refused whole)."""

    def check(self) -> None:
        """After each chunk: raises if what the file is stored into has failed, which stops validation."""

    def chunk(
        self, models: list[tuple[ModelKey, DeviceModelRow | None]], firmware: list[FirmwareRow]
    ) -> None:
        """After each chunk: the device models first seen in it, each with its facts as the rows read so far
        choose them (None while one of them is not given), and its accepted rows, in file order."""

    def models(self, device_models: list[DeviceModelRow]) -> None:
        """Once every row is read and found good: each device model with its facts as all its rows choose
        them, before the rows are sorted and digested. Most are as `chunk` gave them: a model's rows
        usually come together."""


_NORMALISERS: dict[Column, Callable[[Cell], Any]] = {
    Column.MANUFACTURER_NAME: lambda v: ids.cell_text(v, "manufacturer name"),
    Column.MANUFACTURER_ID: ids.manufacturer_id,
    Column.MODEL_NAME: lambda v: ids.cell_text(v, "model name"),
    Column.MODEL_ID: ids.model_id,
    Column.HARDWARE_VERSION: ids.hardware_version,
    Column.FIRMWARE_VERSION: ids.firmware_version,
    Column.DEVICE_TYPE: ids.device_type,
    Column.SMETS_VERSION: ids.technical_specification,
    Column.GBCS_VERSION: lambda v: None if _blank(v) else ids.gbcs_version(v),
    Column.IMAGE_HASH: ids.sha256_hex,
    Column.CPA_REFERENCE: lambda v: ids.optional_text(v, "CPA certificate reference"),
    Column.CPA_EXPIRY: lambda v: None if _blank(v) else ids.date(v, "CPA expiry date"),
    Column.STATUS: ids.cpl_status,
    Column.DATE_ADDED: lambda v: ids.date(v, "date added"),
}


_MOSTLY_UNIQUE = frozenset({Column.IMAGE_HASH, Column.FIRMWARE_VERSION})
# For the mostly unique columns: whether every cell of a chunk's column is what its normaliser returns as it
# is (0.06 s a column of 100,000 cells called one by one, 0.007 s checked at once).
_CANONICAL_COLUMN: dict[Column, Callable[[Sequence[Cell]], bool]] = {
    Column.IMAGE_HASH: ids.canonical_sha256_column,
    Column.FIRMWARE_VERSION: ids.canonical_firmware_version_column,
}
_CACHE_LIMIT = 200_000
# Facts of a device model (or of a manufacturer id) that its other rows can supply: a row whose cell
# cannot be read is kept, with a warning, when another row of the same model gives a value.
MODEL_FACTS = (Column.MANUFACTURER_NAME, Column.MODEL_NAME, Column.DEVICE_TYPE)
# Optional facts: an unreadable cell is a warning and the fact stays empty.
OPTIONAL_FACTS = frozenset({Column.GBCS_VERSION, Column.CPA_REFERENCE, Column.CPA_EXPIRY})


When = tuple[dt.date, int]  # (date added, sheet row) of the row a value was read from


def prevails(candidate: When, kept: When | None) -> bool:
    """The one rule for facts that rows of one device model (or manufacturer) give differently: the
    most recently listed row wins, and of rows listed the same day, the one further down the sheet.
    (`_Facts.note` writes it out for the rows that agree with their model's first.)"""
    return kept is None or candidate > kept


def _blank(value: Cell) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class _Problems:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.error_count = 0

    @property
    def full(self) -> bool:
        """Whether no more errors are kept, only counted."""
        return len(self.errors) >= self.cap

    def error(self, problem: Problem) -> None:
        self.error_count += 1
        if len(self.errors) < self.cap:
            self.errors.append(problem)

    def warn(self, problem: Problem) -> None:
        if len(self.warnings) < self.cap:
            self.warnings.append(problem)


def _rows_in_chunks(
    table: Table, max_rows: int, problems: _Problems, progress: ProgressCallback | None
) -> Iterator[list[tuple[int, list[Cell]]]]:
    """Non-blank rows in chunks: big enough for column-wise work, small enough for flat memory. A row
    with a truthy cell is not blank (`any`, in C, stops at the first); only a row of falsy cells is
    counted through (a 0 or a False is not blank)."""
    nonblank = (row for row in table.rows if any(row[1]) or not _blank_row(row[1]))
    count = 0
    while chunk := list(islice(nonblank, CHUNK_ROWS)):
        if count + len(chunk) > max_rows:
            raise CplFileRejected(
                [
                    Problem(
                        f"the file has more than {max_rows:,} rows, the most accepted",
                        chunk[max_rows - count][0],
                    )
                ],
                problems.error_count + 1,
            )
        count += len(chunk)
        yield chunk
        if progress is not None and len(chunk) == CHUNK_ROWS:
            progress("validate", count, None)


def _blank_row(cells: list[Cell]) -> bool:
    return cells.count("") + cells.count(None) == len(cells)


class _Normalised:
    """What each distinct cell of a column normalised to so far (or the `InvalidValue` it raised), and the
    cells that raised, to be found among a chunk's by a set intersection in C."""

    def __init__(self) -> None:
        self.values: dict[Cell, Any] = {}
        self.invalid: set[Cell] = set()

    def clear(self) -> None:
        self.values.clear()
        self.invalid.clear()


def _normalise_column(
    column: Column, normalise: Callable[[Cell], Any], cache: _Normalised | None, cells: Sequence[Cell]
) -> tuple[list[Any], dict[int, str]]:
    """Normalise one column of a chunk; return the values and {row index: reason} for the bad cells."""
    bad: dict[int, str] = {}
    if cache is None:
        # Mostly distinct cells (hashes, versions): a column already in canonical form is taken as it is,
        # checked at once in C; else normalised in one pass of `map`, and cell by cell below only if one of
        # them cannot be read.
        if (canonical := _CANONICAL_COLUMN.get(column)) is not None and canonical(cells):
            return list(cells), bad
        with contextlib.suppress(InvalidValue):
            return list(map(normalise, cells)), bad
    distinct = set(cells) if cache is not None else None
    # True == 1 and False == 0 share a hash: a column holding booleans is normalised cell by cell.
    if cache is None or distinct is None or True in distinct or False in distinct:
        values: list[Any] = []
        for index, cell in enumerate(cells):
            try:
                values.append(normalise(cell))
            except InvalidValue as exc:
                values.append(None)
                bad[index] = exc.reason
        return values, bad
    if len(cache.values) > _CACHE_LIMIT:
        cache.clear()
    known = cache.values
    # The dict itself, not its keys: `set.difference` looks each of the set's cells up in a dict, but walks
    # the whole of any other iterable (a view of a cache of 100,000 names, for each column of each chunk).
    for cell in distinct.difference(known):
        try:
            known[cell] = normalise(cell)
        except InvalidValue as exc:
            known[cell] = exc
            cache.invalid.add(cell)
    values = list(map(known.__getitem__, cells))
    if cache.invalid and (invalid := distinct.intersection(cache.invalid)):
        for index, cell in enumerate(cells):
            if cell in invalid:
                bad[index] = known[cell].reason
                values[index] = None
    return values, bad


def validate(
    table: Table,
    *,
    max_rows: int = 2_000_000,
    max_problems: int = MAX_REPORTED_PROBLEMS,
    progress: ProgressCallback | None = None,
    sink: ChunkSink | None = None,
) -> ValidCpl:
    header = table.header
    problems = _Problems(max_problems)
    for note in table.notes:
        (problems.warn if note.severity is Severity.WARNING else problems.error)(note)
    plan: list[tuple[Column, int, Callable[[Cell], Any], _Normalised | None]] = [
        (column, position, _NORMALISERS[column], None if column in _MOSTLY_UNIQUE else _Normalised())
        for column, position in header.columns.items()
    ]
    pick = itemgetter(*(position for _, position, _, _ in plan))
    width = max(position for _, position, _, _ in plan) + 1
    facts = _Facts(problems, header)
    seen: dict[tuple[str, str, str, str], tuple[int, str]] = {}  # by version key
    firmware: list[FirmwareRow] = []
    data_rows = 0

    def problem(row: int, column: Column, reason: str, severity: Severity = Severity.ERROR) -> Problem:
        return Problem(reason, row, header.heading(column), header.columns[column], severity)

    for chunk in _rows_in_chunks(table, max_rows, problems, progress):
        data_rows += len(chunk)
        accepted_before = len(firmware)
        rows = [
            cells if len(cells) >= width else [*cells, *[None] * (width - len(cells))] for _, cells in chunk
        ]
        # CPL values repeat (names, ids, types, dates): each distinct cell is normalised once per column.
        columns: dict[Column, list[Any]] = {}
        bad_cells: dict[int, list[tuple[Column, str]]] = {}
        for (column, _, normalise, cache), cells in zip(
            plan, zip(*map(pick, rows), strict=True), strict=True
        ):
            values, bad = _normalise_column(column, normalise, cache, cells)
            columns[column] = values
            for index, reason in bad.items():
                bad_cells.setdefault(index, []).append((column, reason))
        none = [None] * len(chunk)
        manufacturer_ids, model_ids = columns[Column.MANUFACTURER_ID], columns[Column.MODEL_ID]
        hardware, versions = columns[Column.HARDWARE_VERSION], columns[Column.FIRMWARE_VERSION]
        hashes, statuses, added = (
            columns[Column.IMAGE_HASH],
            columns[Column.STATUS],
            columns[Column.DATE_ADDED],
        )
        specifications = columns[Column.SMETS_VERSION]
        gbcs = columns.get(Column.GBCS_VERSION, none)
        cpa = columns.get(Column.CPA_REFERENCE, none)
        expiry = columns.get(Column.CPA_EXPIRY, none)
        described = list(
            zip(
                columns[Column.MANUFACTURER_NAME],
                columns[Column.MODEL_NAME],
                columns[Column.DEVICE_TYPE],
                strict=True,
            )
        )
        keys = list(zip(manufacturer_ids, model_ids, hardware, versions, strict=True))
        if (
            COLUMN_WISE_CHUNKS
            and not bad_cells
            and len(set(keys)) == len(keys)
            and seen.keys().isdisjoint(keys)
        ):
            # The common chunk, every cell read and no key seen before: its rows are built in C, and only
            # the model's facts are noted row by row. The loop below is the reference (one row at a time,
            # for every chunk with a problem), and gives the same rows, facts and warnings.
            sheet_rows = [sheet_row for sheet_row, _ in chunk]
            seen.update(zip(keys, zip(sheet_rows, hashes, strict=True), strict=True))
            accepted = list(
                map(
                    _firmware_row,
                    zip(
                        manufacturer_ids,
                        model_ids,
                        hardware,
                        versions,
                        hashes,
                        statuses,
                        specifications,
                        gbcs,
                        cpa,
                        expiry,
                        added,
                        sheet_rows,
                        strict=True,
                    ),
                )
            )
            note_facts = facts.note
            for row, said in zip(accepted, described, strict=True):
                note_facts(row, said, ())
            firmware.extend(accepted)
        else:
            for index, (sheet_row, _) in enumerate(chunk):
                unreadable: list[tuple[Column, str]] = []
                if (cell_errors := bad_cells.get(index)) is not None:
                    if any(c not in OPTIONAL_FACTS and c not in MODEL_FACTS for c, _ in cell_errors):
                        # The row cannot be trusted: every cell of it that cannot be read is reported.
                        fatal = [(c, r) for c, r in cell_errors if c not in OPTIONAL_FACTS]
                        if problems.full:
                            # Past the cap only the count is kept: building each problem would cost a file
                            # of a million bad rows a minute.
                            problems.error_count += len(fatal)
                        else:
                            for column, reason in fatal:
                                problems.error(problem(sheet_row, column, reason))
                        continue
                    for column, reason in cell_errors:
                        if column in OPTIONAL_FACTS:
                            problems.warn(
                                problem(sheet_row, column, f"{reason}; left empty", Severity.WARNING)
                            )
                        else:
                            unreadable.append((column, reason))
                # A plain tuple: hashed and compared as the `VersionKey` of the same parts, built faster.
                key = keys[index]
                image_hash = hashes[index]
                if (earlier := seen.get(key)) is not None:
                    first_row, first_hash = earlier
                    reason = (
                        f"duplicate of row {first_row} (same manufacturer, model, hardware and firmware "
                        "version)"
                    )
                    if first_hash != image_hash:
                        reason += " with a different image hash"
                        problems.error(problem(sheet_row, Column.IMAGE_HASH, reason))
                    else:
                        problems.error(problem(sheet_row, Column.FIRMWARE_VERSION, reason))
                    continue
                seen[key] = (sheet_row, image_hash)
                row = FirmwareRow(
                    manufacturer_ids[index],
                    model_ids[index],
                    hardware[index],
                    versions[index],
                    image_hash,
                    statuses[index],
                    specifications[index],
                    gbcs[index],
                    cpa[index],
                    expiry[index],
                    added[index],
                    sheet_row,
                )
                facts.note(row, described[index], unreadable)
                firmware.append(row)
        if sink is None:
            pass
        elif problems.error_count:
            sink.check()
        else:
            sink.chunk(facts.take_fresh(), firmware[accepted_before:])

    if data_rows == 0:
        problems.error(Problem("the file has a header row but no data rows", header.row))
    device_models = facts.device_models()
    if problems.error_count:
        raise CplFileRejected(problems.errors, problems.error_count, problems.warnings)
    if progress is not None:
        progress("validate", data_rows, data_rows)
    if sink is not None:
        sink.models(device_models)

    sort_by_key(firmware)
    return ValidCpl(header, device_models, firmware, problems.warnings, rows_digest(device_models, firmware))


@dataclass
class _ModelSeen:
    """What the rows of one device model say of it so far."""

    row: int  # its first row
    first: tuple[str | None, ids.DeviceType | None]  # the first readable model name and device type
    first_rows: list[int]  # the rows they were read from
    latest: When | None  # the prevailing row among those that give both facts, and what it gives
    values: tuple[str, ids.DeviceType] | None
    generation_when: When
    generation: ids.SmetsVersion
    generations: set[ids.SmetsVersion]
    partial: list[tuple[When, str | None, ids.DeviceType | None]]  # rows that give only one fact
    firmware_count: int = 1


@dataclass
class _MakerSeen:
    """What the rows of one manufacturer id say its name is."""

    first: str
    first_row: int
    latest: When
    name: str


class _Facts:
    """Model-level facts (names, device type, SMETS generations) gathered over the rows of a file, each
    chosen by `prevails`, with a warning for every row that disagrees with the first reading."""

    def __init__(self, problems: _Problems, header: Header) -> None:
        self.problems = problems
        self.header = header
        self.models: dict[ModelKey, _ModelSeen] = {}
        self.fresh: list[ModelKey] = []  # models first seen since `take_fresh` was last called
        self.generation_of: dict[ids.TechnicalSpecification, ids.SmetsVersion] = {}
        self.makers: dict[ids.ManufacturerId, _MakerSeen] = {}
        self.unreadable: list[tuple[FirmwareRow, Column, str]] = []

    def _problem(self, row: int, column: Column, reason: str, severity: Severity) -> Problem:
        return Problem(reason, row, self.header.heading(column), self.header.columns[column], severity)

    def _warn(self, row: int, column: Column, reason: str) -> None:
        self.problems.warn(self._problem(row, column, reason, Severity.WARNING))

    def note(
        self,
        row: FirmwareRow,
        said: tuple[str | None, str | None, ids.DeviceType | None],
        unreadable: Sequence[tuple[Column, str]],
    ) -> None:
        when = (row.date_added, row.sheet_row)
        maker_name, model_name, device_type = said
        spec = row.specification
        if (generation := self.generation_of.get(spec)) is None:
            generation = self.generation_of[spec] = spec.generation
        # The model's key as a plain tuple, which finds the `ModelKey` it equals (a named tuple of the same
        # parts); one is built only for a model seen for the first time.
        seen = self.models.get(row[:3])  # type: ignore[call-overload]
        maker = self.makers.get(row.manufacturer_id)
        if (
            seen is not None
            and maker is not None
            and not unreadable
            and seen.first == (model_name, device_type)
            and maker.first == maker_name
        ):
            # The common case, rows that agree with the model's first row: only counts and winners move.
            # `prevails`, written out (a change to the rule is a change here too): this runs per row.
            seen.firmware_count += 1
            if seen.latest is None or when > seen.latest:
                seen.latest, seen.values = when, (model_name, device_type)
            if when > seen.generation_when:
                seen.generation_when, seen.generation = when, generation
            seen.generations.add(generation)
            if when > maker.latest:
                maker.latest, maker.name = when, maker_name
            return
        key = ModelKey.of(row)
        for column, reason in unreadable:
            self.unreadable.append((row, column, reason))
        label = "/".join(key)
        if maker_name is not None:
            if maker is None:
                self.makers[row.manufacturer_id] = _MakerSeen(maker_name, row.sheet_row, when, maker_name)
            else:
                if maker_name != maker.first:
                    self._warn(
                        row.sheet_row,
                        Column.MANUFACTURER_NAME,
                        f'manufacturer name "{maker_name}" differs from "{maker.first}" on row '
                        f"{maker.first_row} for manufacturer id {row.manufacturer_id}; the most recently "
                        "listed name is kept",
                    )
                if prevails(when, maker.latest):
                    maker.latest, maker.name = when, maker_name
        if seen is None:
            seen = _ModelSeen(
                row=row.sheet_row,
                first=(model_name, device_type),
                first_rows=[row.sheet_row, row.sheet_row],
                latest=None,
                values=None,
                generation_when=when,
                generation=generation,
                generations={generation},
                partial=[],
                firmware_count=1,
            )
            self.models[key] = seen
            self.fresh.append(key)
        else:
            seen.firmware_count += 1
            first_name, first_type = seen.first
            if first_name is None and model_name is not None:
                seen.first, seen.first_rows[0] = (model_name, first_type), row.sheet_row
            elif model_name is not None and model_name != first_name:
                self._warn(
                    row.sheet_row,
                    Column.MODEL_NAME,
                    f'model name "{model_name}" differs from "{first_name}" on row {seen.first_rows[0]} '
                    f"for device model {label}; the most recently listed name is kept",
                )
            if first_type is None and device_type is not None:
                seen.first, seen.first_rows[1] = (seen.first[0], device_type), row.sheet_row
            elif device_type is not None and device_type != first_type:
                self._warn(
                    row.sheet_row,
                    Column.DEVICE_TYPE,
                    f"device type {device_type} differs from {first_type} on row {seen.first_rows[1]} for "
                    f"device model {label}; the device type of the most recently listed row is kept",
                )
            if prevails(when, seen.generation_when):
                seen.generation_when, seen.generation = when, generation
            seen.generations.add(generation)
        if model_name is not None and device_type is not None:
            if prevails(when, seen.latest):
                seen.latest, seen.values = when, (model_name, device_type)
        else:
            seen.partial.append((when, model_name, device_type))

    def take_fresh(self) -> list[tuple[ModelKey, DeviceModelRow | None]]:
        """The models first seen since the last call, each with its facts as the rows so far choose them."""
        fresh, self.fresh = self.fresh, []
        return [(key, self._row(key, self.models[key], *self._chosen(self.models[key]))) for key in fresh]

    @staticmethod
    def _chosen(seen: _ModelSeen) -> tuple[str | None, ids.DeviceType | None]:
        """The model name and device type `prevails` chooses over the rows seen so far (None if none
        gives it)."""
        picks: list[Any] = []
        for position in (0, 1):
            best: tuple[When, Any] | None = None
            if seen.latest is not None and seen.values is not None:
                best = (seen.latest, seen.values[position])
            for when, *values in seen.partial:
                if values[position] is not None and prevails(when, None if best is None else best[0]):
                    best = (when, values[position])
            picks.append(None if best is None else best[1])
        return picks[0], picks[1]

    def _row(
        self, key: ModelKey, seen: _ModelSeen, model_name: str | None, device_type: ids.DeviceType | None
    ) -> DeviceModelRow | None:
        # The key's parts were read from checked cells (its rows are FirmwareRows).
        manufacturer_id = ids.ManufacturerId(key.manufacturer_id)
        maker = self.makers.get(manufacturer_id)
        if maker is None or model_name is None or device_type is None:
            return None
        return DeviceModelRow(
            manufacturer_id,
            ids.ModelId(key.model_id),
            ids.HardwareVersion(key.hardware_version),
            maker.name,
            model_name,
            device_type,
            seen.generation,
            ",".join(sorted(seen.generations)),
            seen.firmware_count,
        )

    def device_models(self) -> list[DeviceModelRow]:
        """Each model's facts as `prevails` chooses them; an unreadable fact no row of the model (or,
        for a name, of the manufacturer) gives is an error, else a warning."""
        chosen = {key: self._chosen(seen) for key, seen in self.models.items()}
        for row, column, reason in self.unreadable:
            key = ModelKey.of(row)
            if column is Column.MANUFACTURER_NAME:
                maker = self.makers.get(row.manufacturer_id)
                kept, whose = (
                    (None if maker is None else maker.name),
                    f"manufacturer id {row.manufacturer_id}",
                )
            else:
                kept = chosen[key][0 if column is Column.MODEL_NAME else 1]
                whose = "device model " + "/".join(key)
            if kept is None:
                self.problems.error(self._problem(row.sheet_row, column, reason, Severity.ERROR))
            else:
                self._warn(
                    row.sheet_row, column, f"{reason}; the other rows of {whose} give {kept}, which is kept"
                )
        result = []
        for key, seen in sorted(self.models.items()):
            if (model := self._row(key, seen, *chosen[key])) is not None:
                result.append(model)
            # else: reported above as an error, and the file is rejected
        return result


_FIELD = {name: index for index, name in enumerate(FirmwareRow._fields)}
SPECIFICATION_COLUMN = _FIELD["specification"]  # its place among `firmware_columns`'
_COLUMNS_AT_A_TIME = 10_000


def firmware_columns(firmware: Sequence[FirmwareRow]) -> Iterator[list[tuple[Any, ...]]]:
    """The rows' columns, in `FirmwareRow`'s field order, transposed in C ten thousand rows at a time: for
    work done a column at a time over any number of rows (the digest, the COPY's rows)."""
    for start in range(0, len(firmware), _COLUMNS_AT_A_TIME):
        yield list(zip(*firmware[start : start + _COLUMNS_AT_A_TIME], strict=True))


_DIGESTED_AS_THEY_ARE = tuple(
    _FIELD[name]
    for name in ("manufacturer_id", "model_id", "hardware_version", "firmware_version", "image_hash")
)
_STATUS = _FIELD["status"]
_DIGESTED_AS_TEXT = tuple(_FIELD[name] for name in ("gbcs_version", "cpa_reference"))
# Columns of few distinct values whose text costs a call each (`date.__str__`): written once per value.
_DIGESTED_AS_TEXT_OF_EACH_VALUE = tuple(_FIELD[name] for name in ("cpa_expiry", "date_added"))


def rows_digest(device_models: list[DeviceModelRow], firmware: list[FirmwareRow]) -> str:
    """SHA-256 over the normalised content in key order: equal for files that say the same thing."""
    digest = hashlib.sha256()
    for model in device_models:
        digest.update(
            "\x1f".join(
                (
                    "M",
                    *model.key,
                    model.manufacturer_name,
                    model.model_name,
                    model.device_type,
                    model.smets_version,
                )
            ).encode()
            + b"\n"
        )
    # Each line is joined in C from the rows' columns (`firmware_columns`): `str(value)` is what a
    # line has always held for every type a row holds (str, StrEnum, date, None); the specification's
    # three parts, and a date's text, are worked out once per distinct value (a date's `str` is a call:
    # 0.13 s of a 100,000-row file, and the digest ends the validation's critical path).
    spec_text: dict[ids.TechnicalSpecification, str] = {}
    value_text: dict[dt.date | None, str] = {}
    for columns in firmware_columns(firmware):
        specifications = columns[SPECIFICATION_COLUMN]
        for spec in set(specifications).difference(spec_text):
            spec_text[spec] = f"{spec.generation}\x1f{spec.specification}\x1f{spec.version}"
        for i in _DIGESTED_AS_TEXT_OF_EACH_VALUE:
            for value in set(columns[i]).difference(value_text):
                value_text[value] = str(value)
        fields = [
            *(columns[i] for i in _DIGESTED_AS_THEY_ARE),
            map(str, columns[_STATUS]),
            map(spec_text.__getitem__, specifications),
            *(map(str, columns[i]) for i in _DIGESTED_AS_TEXT),
            *(map(value_text.__getitem__, columns[i]) for i in _DIGESTED_AS_TEXT_OF_EACH_VALUE),
        ]
        lines = map("\x1f".join, zip(repeat("F"), *fields))
        digest.update(("\n".join(lines) + "\n").encode())
    return digest.hexdigest()

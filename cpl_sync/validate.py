"""Turn a parsed CPL table into typed, normalised rows, or reject it with every problem it has.

Any error rejects the whole file; warnings (a manufacturer spelt two ways, say) are kept with the
sync run. Errors are reported in full up to a cap, and counted exactly beyond it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from cfl_graph import identifiers as ids
from cfl_graph.identifiers import Cell, InvalidValue
from cpl_sync.columns import Column
from cpl_sync.parse import Header, Table
from cpl_sync.problems import CplFileRejected, Problem, Severity

MAX_REPORTED_PROBLEMS = 200
CHUNK_ROWS = 10_000

ModelKey = tuple[ids.ManufacturerId, ids.ModelId, ids.HardwareVersion]
FirmwareKey = tuple[ids.ManufacturerId, ids.ModelId, ids.HardwareVersion, ids.FirmwareVersion]
ProgressCallback = Callable[[str, int, int | None], None]


@dataclass(frozen=True, slots=True)
class DeviceModelRow:
    manufacturer_id: ids.ManufacturerId
    model_id: ids.ModelId
    hardware_version: ids.HardwareVersion
    manufacturer_name: str
    model_name: str
    device_type: ids.DeviceType
    smets_version: ids.SmetsVersion
    firmware_count: int

    @property
    def key(self) -> ModelKey:
        return (self.manufacturer_id, self.model_id, self.hardware_version)


@dataclass(frozen=True, slots=True)
class FirmwareRow:
    manufacturer_id: ids.ManufacturerId
    model_id: ids.ModelId
    hardware_version: ids.HardwareVersion
    firmware_version: ids.FirmwareVersion
    image_hash: ids.Sha256Hex
    status: ids.CplStatus
    gbcs_version: str | None
    cpa_reference: str | None
    cpa_expiry: dt.date | None
    date_added: dt.date
    sheet_row: int

    @property
    def key(self) -> FirmwareKey:
        return (self.manufacturer_id, self.model_id, self.hardware_version, self.firmware_version)

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
            self.gbcs_version,
            self.cpa_reference,
            self.cpa_expiry,
            self.date_added,
        )


@dataclass(frozen=True)
class ValidCpl:
    header: Header
    device_models: list[DeviceModelRow]  # in key order
    firmware: list[FirmwareRow]  # in key order
    warnings: list[Problem]
    rows_sha256: str


_NORMALISERS: dict[Column, Callable[[Cell], Any]] = {
    Column.MANUFACTURER_NAME: lambda v: ids.name(v, "manufacturer name"),
    Column.MANUFACTURER_ID: ids.manufacturer_id,
    Column.MODEL_NAME: lambda v: ids.name(v, "model name"),
    Column.MODEL_ID: ids.model_id,
    Column.HARDWARE_VERSION: ids.hardware_version,
    Column.FIRMWARE_VERSION: ids.firmware_version,
    Column.DEVICE_TYPE: ids.device_type,
    Column.SMETS_VERSION: ids.smets_version,
    Column.GBCS_VERSION: lambda v: None if _blank(v) else ids.gbcs_version(v),
    Column.IMAGE_HASH: ids.sha256_hex,
    Column.CPA_REFERENCE: lambda v: ids.optional_text(v, "CPA certificate reference"),
    Column.CPA_EXPIRY: lambda v: None if _blank(v) else ids.date(v, "CPA expiry date"),
    Column.STATUS: ids.cpl_status,
    Column.DATE_ADDED: lambda v: ids.date(v, "date added"),
}


_MOSTLY_UNIQUE = frozenset({Column.IMAGE_HASH, Column.FIRMWARE_VERSION})
_CACHE_LIMIT = 200_000


def _blank(value: Cell) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@dataclass
class _ModelSeen:
    row: int
    manufacturer_name: str
    model_name: str
    device_type: ids.DeviceType
    smets_version: ids.SmetsVersion
    newest: dt.date
    firmware_count: int = 0


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
    """Non-blank rows in chunks: big enough for column-wise work, small enough for flat memory."""
    chunk: list[tuple[int, list[Cell]]] = []
    count = 0
    for sheet_row, cells in table.rows:
        if cells.count("") + cells.count(None) == len(cells):
            continue
        count += 1
        if count > max_rows:
            raise CplFileRejected(
                [Problem(f"the file has more than {max_rows:,} rows, the most accepted", sheet_row)],
                problems.error_count + 1,
            )
        chunk.append((sheet_row, cells))
        if len(chunk) == CHUNK_ROWS:
            yield chunk
            chunk = []
            if progress is not None:
                progress("validate", count, None)
    if chunk:
        yield chunk


def _normalise_column(
    column: Column, normalise: Callable[[Cell], Any], cache: dict[Cell, Any] | None, cells: Sequence[Cell]
) -> tuple[list[Any], dict[int, str]]:
    """Normalise one column of a chunk; return the values and {row index: reason} for the bad cells."""
    bad: dict[int, str] = {}
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
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    for cell in distinct.difference(cache.keys()):
        try:
            cache[cell] = normalise(cell)
        except InvalidValue as exc:
            cache[cell] = exc
    values = list(map(cache.__getitem__, cells))
    invalid = {cell for cell in distinct if isinstance(cache[cell], InvalidValue)}
    if invalid:
        for index, cell in enumerate(cells):
            if cell in invalid:
                bad[index] = cache[cell].reason
                values[index] = None
    return values, bad


def validate(
    table: Table,
    *,
    max_rows: int = 2_000_000,
    max_problems: int = MAX_REPORTED_PROBLEMS,
    progress: ProgressCallback | None = None,
) -> ValidCpl:
    header = table.header
    problems = _Problems(max_problems)
    for note in table.notes:
        (problems.warn if note.severity is Severity.WARNING else problems.error)(note)
    plan: list[tuple[Column, int, Callable[[Cell], Any], dict[Cell, Any] | None]] = [
        (column, position, _NORMALISERS[column], None if column in _MOSTLY_UNIQUE else {})
        for column, position in header.columns.items()
    ]
    pick = itemgetter(*(position for _, position, _, _ in plan))
    width = max(position for _, position, _, _ in plan) + 1
    models: dict[ModelKey, _ModelSeen] = {}
    manufacturer_names: dict[str, tuple[str, dt.date, int]] = {}
    seen: dict[FirmwareKey, tuple[int, str]] = {}
    firmware: list[FirmwareRow] = []
    data_rows = 0

    def problem(row: int, column: Column, reason: str, severity: Severity = Severity.ERROR) -> Problem:
        return Problem(reason, row, header.heading(column), header.columns[column], severity)

    for chunk in _rows_in_chunks(table, max_rows, problems, progress):
        data_rows += len(chunk)
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
        gbcs = columns.get(Column.GBCS_VERSION, none)
        cpa = columns.get(Column.CPA_REFERENCE, none)
        expiry = columns.get(Column.CPA_EXPIRY, none)
        described = list(
            zip(
                columns[Column.MANUFACTURER_NAME],
                columns[Column.MODEL_NAME],
                columns[Column.DEVICE_TYPE],
                columns[Column.SMETS_VERSION],
                strict=True,
            )
        )
        last_model: tuple[ModelKey, tuple[Any, ...]] | None = None
        for index, (sheet_row, _) in enumerate(chunk):
            if (cell_errors := bad_cells.get(index)) is not None:
                if problems.full:
                    # Past the cap only the count is kept: building each problem would cost a file of
                    # a million bad rows a minute.
                    problems.error_count += len(cell_errors)
                else:
                    for column, reason in cell_errors:
                        problems.error(problem(sheet_row, column, reason))
                continue
            key = (manufacturer_ids[index], model_ids[index], hardware[index], versions[index])
            image_hash = hashes[index]
            if (earlier := seen.get(key)) is not None:
                first_row, first_hash = earlier
                reason = (
                    f"duplicate of row {first_row} (same manufacturer, model, hardware and firmware version)"
                )
                if first_hash != image_hash:
                    reason += " with a different image hash"
                    problems.error(problem(sheet_row, Column.IMAGE_HASH, reason))
                else:
                    problems.error(problem(sheet_row, Column.FIRMWARE_VERSION, reason))
                continue
            seen[key] = (sheet_row, image_hash)
            row = FirmwareRow(
                key[0],
                key[1],
                key[2],
                key[3],
                image_hash,
                statuses[index],
                gbcs[index],
                cpa[index],
                expiry[index],
                added[index],
                sheet_row,
            )
            model_key = (key[0], key[1], key[2])
            said = described[index]
            # Rows of one device model usually sit together and agree: then only the counts move.
            if last_model == (model_key, said):
                seen_model = models[model_key]
                seen_model.firmware_count += 1
                seen_model.newest = max(seen_model.newest, row.date_added)
                firmware.append(row)
                continue
            if not _check_model(row, _Described(*said), models, problems, problem):
                continue
            _note_manufacturer_name(row, said[0], manufacturer_names, problems, problem)
            last_model = (model_key, said)
            firmware.append(row)

    if data_rows == 0:
        problems.error(Problem("the file has a header row but no data rows", header.row))
    if problems.error_count:
        raise CplFileRejected(problems.errors, problems.error_count, problems.warnings)
    if progress is not None:
        progress("validate", data_rows, data_rows)

    firmware.sort(key=lambda r: r.key)
    names = {mid: n for mid, (n, _, _) in manufacturer_names.items()}
    device_models = [
        DeviceModelRow(
            key[0],
            key[1],
            key[2],
            names[key[0]],
            m.model_name,
            m.device_type,
            m.smets_version,
            m.firmware_count,
        )
        for key, m in sorted(models.items())
    ]
    return ValidCpl(header, device_models, firmware, problems.warnings, rows_digest(device_models, firmware))


@dataclass(frozen=True, slots=True)
class _Described:
    """What a row says about its device model, checked against the model's other rows."""

    manufacturer_name: str
    model_name: str
    device_type: ids.DeviceType
    smets_version: ids.SmetsVersion


def _check_model(
    row: FirmwareRow,
    described: _Described,
    models: dict[ModelKey, _ModelSeen],
    problems: _Problems,
    problem: Callable[..., Problem],
) -> bool:
    key = (row.manufacturer_id, row.model_id, row.hardware_version)
    seen = models.get(key)
    if seen is None:
        models[key] = _ModelSeen(
            row.sheet_row,
            described.manufacturer_name,
            described.model_name,
            described.device_type,
            described.smets_version,
            row.date_added,
            1,
        )
        return True
    label = "/".join(key)
    ok = True
    for column, attr in ((Column.DEVICE_TYPE, "device_type"), (Column.SMETS_VERSION, "smets_version")):
        given, first = getattr(described, attr), getattr(seen, attr)
        if given != first:
            problems.error(
                problem(
                    row.sheet_row,
                    column,
                    f"{given} differs from {first} on row {seen.row} for the same device model {label}",
                )
            )
            ok = False
    if not ok:
        return False
    seen.firmware_count += 1
    if described.model_name != seen.model_name:
        problems.warn(
            problem(
                row.sheet_row,
                Column.MODEL_NAME,
                f'model name "{described.model_name}" differs from "{seen.model_name}" on row '
                f"{seen.row} for device model {label}; the most recently listed name is kept",
                Severity.WARNING,
            )
        )
        if row.date_added > seen.newest:
            seen.model_name = described.model_name
    seen.newest = max(seen.newest, row.date_added)
    return True


def _note_manufacturer_name(
    row: FirmwareRow,
    spelt: str,
    names: dict[str, tuple[str, dt.date, int]],
    problems: _Problems,
    problem: Callable[..., Problem],
) -> None:
    known = names.get(row.manufacturer_id)
    if known is None:
        names[row.manufacturer_id] = (spelt, row.date_added, row.sheet_row)
        return
    name, newest, first_row = known
    if spelt != name:
        problems.warn(
            problem(
                row.sheet_row,
                Column.MANUFACTURER_NAME,
                f'manufacturer name "{spelt}" differs from "{name}" on row {first_row} for '
                f"manufacturer id {row.manufacturer_id}; the most recently listed name is kept",
                Severity.WARNING,
            )
        )
    if row.date_added > newest:
        names[row.manufacturer_id] = (spelt, row.date_added, first_row)


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
    for start in range(0, len(firmware), 10_000):
        lines = ["\x1f".join(map(str, ("F", *fw.content))) for fw in firmware[start : start + 10_000]]
        digest.update(("\n".join(lines) + "\n").encode())
    return digest.hexdigest()

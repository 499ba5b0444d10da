"""Turn a parsed CPL table into typed, normalised rows, or reject it with every problem it has.

Any error rejects the whole file; warnings (a manufacturer spelt two ways, say) are kept with the
sync run. Errors are reported in full up to a cap, and counted exactly beyond it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cfl_graph import identifiers as ids
from cfl_graph.identifiers import Cell, InvalidValue
from cpl_sync.columns import Column
from cpl_sync.parse import Header, Table
from cpl_sync.problems import CplFileRejected, Problem, Severity

MAX_REPORTED_PROBLEMS = 200

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
_UNSEEN = object()


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

    def error(self, problem: Problem) -> None:
        self.error_count += 1
        if len(self.errors) < self.cap:
            self.errors.append(problem)

    def warn(self, problem: Problem) -> None:
        if len(self.warnings) < self.cap:
            self.warnings.append(problem)


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
    # CPL values repeat (names, ids, types, dates): normalise each distinct cell once per column.
    plan = [
        (column, position, _NORMALISERS[column], None if column in _MOSTLY_UNIQUE else {})
        for column, position in header.columns.items()
    ]
    models: dict[ModelKey, _ModelSeen] = {}
    manufacturer_names: dict[str, tuple[str, dt.date, int]] = {}
    seen: dict[FirmwareKey, tuple[int, str]] = {}
    firmware: list[FirmwareRow] = []
    data_rows = 0

    def problem(row: int, column: Column, reason: str, severity: Severity = Severity.ERROR) -> Problem:
        return Problem(reason, row, header.heading(column), header.columns[column], severity)

    for sheet_row, cells in table.rows:
        if cells.count("") + cells.count(None) == len(cells):
            continue
        data_rows += 1
        if data_rows > max_rows:
            raise CplFileRejected(
                [Problem(f"the file has more than {max_rows:,} rows, the most accepted", sheet_row)],
                problems.error_count + 1,
            )
        if progress is not None and data_rows % 10_000 == 0:
            progress("validate", data_rows, None)
        values: dict[Column, Any] = {}
        row_ok = True
        width = len(cells)
        for column, position, normalise, cache in plan:
            cell = cells[position] if position < width else None
            value = _UNSEEN if cache is None or type(cell) is bool else cache.get(cell, _UNSEEN)
            if value is _UNSEEN:
                try:
                    value = normalise(cell)
                except InvalidValue as exc:
                    value = exc
                if cache is not None and type(cell) is not bool and len(cache) < _CACHE_LIMIT:
                    cache[cell] = value
            if isinstance(value, InvalidValue):
                problems.error(problem(sheet_row, column, value.reason))
                row_ok = False
            else:
                values[column] = value
        if not row_ok:
            continue
        row = FirmwareRow(
            values[Column.MANUFACTURER_ID],
            values[Column.MODEL_ID],
            values[Column.HARDWARE_VERSION],
            values[Column.FIRMWARE_VERSION],
            values[Column.IMAGE_HASH],
            values[Column.STATUS],
            values.get(Column.GBCS_VERSION),
            values.get(Column.CPA_REFERENCE),
            values.get(Column.CPA_EXPIRY),
            values[Column.DATE_ADDED],
            sheet_row,
        )
        if (earlier := seen.get(row.key)) is not None:
            first_row, first_hash = earlier
            reason = f"duplicate of row {first_row} (same manufacturer, model, hardware and firmware version)"
            if first_hash != row.image_hash:
                reason += " with a different image hash"
                problems.error(problem(sheet_row, Column.IMAGE_HASH, reason))
            else:
                problems.error(problem(sheet_row, Column.FIRMWARE_VERSION, reason))
            continue
        seen[row.key] = (sheet_row, row.image_hash)
        if not _check_model(row, values, models, problems, problem):
            continue
        _note_manufacturer_name(row, values[Column.MANUFACTURER_NAME], manufacturer_names, problems, problem)
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


def _check_model(
    row: FirmwareRow,
    values: dict[Column, Any],
    models: dict[ModelKey, _ModelSeen],
    problems: _Problems,
    problem: Callable[..., Problem],
) -> bool:
    key = row.key[:3]
    seen = models.get(key)
    if seen is None:
        models[key] = _ModelSeen(
            row.sheet_row,
            values[Column.MANUFACTURER_NAME],
            values[Column.MODEL_NAME],
            values[Column.DEVICE_TYPE],
            values[Column.SMETS_VERSION],
            row.date_added,
            1,
        )
        return True
    label = "/".join(key)
    ok = True
    for column, attr in ((Column.DEVICE_TYPE, "device_type"), (Column.SMETS_VERSION, "smets_version")):
        if values[column] != getattr(seen, attr):
            problems.error(
                problem(
                    row.sheet_row,
                    column,
                    f"{values[column]} differs from {getattr(seen, attr)} on row {seen.row} "
                    f"for the same device model {label}",
                )
            )
            ok = False
    if not ok:
        return False
    seen.firmware_count += 1
    if values[Column.MODEL_NAME] != seen.model_name:
        problems.warn(
            problem(
                row.sheet_row,
                Column.MODEL_NAME,
                f'model name "{values[Column.MODEL_NAME]}" differs from "{seen.model_name}" on row '
                f"{seen.row} for device model {label}; the most recently listed name is kept",
                Severity.WARNING,
            )
        )
        if row.date_added > seen.newest:
            seen.model_name = values[Column.MODEL_NAME]
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
            (
                "M|"
                + "|".join(
                    str(v)
                    for v in (
                        *model.key,
                        model.manufacturer_name,
                        model.model_name,
                        model.device_type.value,
                        model.smets_version.value,
                    )
                )
                + "\n"
            ).encode()
        )
    for fw in firmware:
        digest.update(
            (
                "F|"
                + "|".join(
                    "" if v is None else str(v)
                    for v in (
                        *fw.key,
                        fw.image_hash,
                        fw.status.value,
                        fw.gbcs_version,
                        fw.cpa_reference,
                        fw.cpa_expiry,
                        fw.date_added,
                    )
                )
                + "\n"
            ).encode()
        )
    return digest.hexdigest()

"""The CPL generator behind the demo and the benchmarks gives exact, deterministic, realistic lists."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import re
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

import pytest
from python_calamine import CalamineWorkbook

from cfl_graph import identifiers as ids
from cfl_graph.demo.cpl_data import (
    DEVICE_TYPES,
    IN_SCOPE_DEVICE_TYPES,
    SHEET_NAME,
    SMETS_VERSIONS,
    STATUSES,
    CplRecord,
    generate,
    main,
    manufacturer_image,
    write_csv,
    write_xlsx,
)
from cpl_sync.columns import HEADINGS, Column

DeviceModelKey = tuple[str, str, str]


@lru_cache(maxsize=4)
def records(rows: int = 12345, seed: int = 1) -> tuple[CplRecord, ...]:
    return tuple(generate(rows, seed))


def histories(rows: tuple[CplRecord, ...]) -> dict[DeviceModelKey, list[CplRecord]]:
    by_model: dict[DeviceModelKey, list[CplRecord]] = defaultdict(list)
    for record in rows:
        by_model[record.manufacturer_id, record.model_id, record.hardware_version].append(record)
    return by_model


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.reader(stream))


def test_record_fields_are_the_cpl_columns_in_order() -> None:
    assert [field.name for field in dataclasses.fields(CplRecord)] == [column.value for column in Column]


def test_same_seed_gives_a_byte_identical_csv(tmp_path: Path) -> None:
    write_csv(tmp_path / "first.csv", generate(2000, seed=7))
    write_csv(tmp_path / "second.csv", generate(2000, seed=7))
    assert (tmp_path / "first.csv").read_bytes() == (tmp_path / "second.csv").read_bytes()


def test_different_seeds_give_different_lists() -> None:
    assert records(1000, 1) != records(1000, 2)
    first = {record.manufacturer_name for record in records(1000, 1)}
    second = {record.manufacturer_name for record in records(1000, 2)}
    assert first != second


@pytest.mark.parametrize("rows", [100, 1000, 12345])
def test_generates_exactly_the_rows_asked_for(rows: int) -> None:
    assert len(records(rows)) == rows


def test_zero_rows_is_an_empty_list_and_negative_is_refused() -> None:
    assert list(generate(0)) == []
    with pytest.raises(ValueError, match="negative"):
        generate(-1)


def test_each_certified_version_is_listed_once() -> None:
    keys = Counter((r.manufacturer_id, r.model_id, r.hardware_version, r.firmware_version) for r in records())
    assert keys.most_common(1)[0][1] == 1


def test_manufacturer_ids_and_names_belong_to_one_manufacturer_each() -> None:
    for rows in (100, 12345):
        pairs = {(r.manufacturer_id, r.manufacturer_name) for r in records(rows)}
        assert len({mid for mid, _ in pairs}) == len({name for _, name in pairs}) == len(pairs)
        assert 8 <= len(pairs) <= 40


def test_firmware_rises_and_dates_do_not_fall_within_a_device_model_history() -> None:
    by_model = histories(records())
    assert any(len(history) >= 5 for history in by_model.values())
    for history in by_model.values():
        versions = [int(record.firmware_version, 16) for record in history]
        assert versions == sorted(versions) and len(set(versions)) == len(versions)
        dates = [record.date_added for record in history]
        assert dates == sorted(dates)
        gbcs = [tuple(map(int, record.gbcs_version[1:].split("."))) for record in history]
        assert gbcs == sorted(gbcs)
        assert len({(r.model_name, r.device_type, r.smets_version[:6]) for r in history}) == 1


def test_image_hash_is_the_sha256_of_the_manufacturer_image() -> None:
    for record in records()[::97]:
        image = manufacturer_image(record)
        assert 900 <= len(image) <= 1100
        assert record.image_hash == hashlib.sha256(image).hexdigest()
    first, second = records()[:2]
    assert manufacturer_image(first) != manufacturer_image(second)


def test_manufacturer_image_depends_only_on_the_row_key() -> None:
    record = records()[0]
    relisted = dataclasses.replace(record, status="Withdrawn", manufacturer_name="Renamed Ltd")
    assert manufacturer_image(relisted) == manufacturer_image(record)


def test_hex_fields_have_fixed_width_and_case() -> None:
    patterns = {
        "manufacturer_id": re.compile(r"[0-9A-F]{4}"),
        "model_id": re.compile(r"[0-9A-F]{4}"),
        "hardware_version": re.compile(r"[0-9A-F]{4}"),
        "firmware_version": re.compile(r"[0-9A-F]{8}"),
        "image_hash": re.compile(r"[0-9a-f]{64}"),
        "cpa_reference": re.compile(r"CPA-20\d\d-\d{4,}"),
        "gbcs_version": re.compile(r"v\d\.\d"),
    }
    for record in records():
        for field, pattern in patterns.items():
            assert pattern.fullmatch(getattr(record, field)), (field, record)


def test_device_types_statuses_and_dates_are_as_the_cpl_shows_them() -> None:
    rows = records()
    types = Counter(record.device_type for record in rows)
    assert set(types) <= set(DEVICE_TYPES)
    assert set(types) >= IN_SCOPE_DEVICE_TYPES
    assert sum(types[kind] for kind in IN_SCOPE_DEVICE_TYPES) >= 0.9 * len(rows)

    statuses = Counter(record.status for record in rows)
    assert set(statuses) <= set(STATUSES)
    assert statuses["Active"] > len(rows) / 2 > statuses["Withdrawn"] > statuses["Suspended"] > 0

    # The SMETS/CHTS column names the specification each version was certified against.
    smets = Counter(record.smets_version[:6] for record in rows)
    assert set(smets) <= set(SMETS_VERSIONS) and smets["SMETS2"] > smets["SMETS1"] > 0
    assert {ids.technical_specification(r.smets_version).generation for r in rows} == set(SMETS_VERSIONS)
    assert len({record.smets_version for record in rows}) > 4

    for record in rows:
        assert datetime.date(2014, 1, 1) <= record.date_added <= datetime.date(2026, 12, 31)
        assert record.cpa_expiry > record.date_added


def test_older_versions_are_withdrawn_more_often() -> None:
    oldest: Counter[str] = Counter()
    newest: Counter[str] = Counter()
    for history in histories(records()).values():
        if len(history) >= 3:
            oldest[history[0].status] += 1
            newest[history[-1].status] += 1
    assert oldest["Withdrawn"] > 2 * newest["Withdrawn"]


@pytest.mark.parametrize(("title_rows", "header_row"), [(True, 3), (False, 0)])
def test_xlsx_reads_back_with_the_same_values_as_the_csv(
    tmp_path: Path, title_rows: bool, header_row: int
) -> None:
    assert write_csv(tmp_path / "cpl.csv", generate(1000, seed=3)) == 1000
    assert write_xlsx(tmp_path / "cpl.xlsx", generate(1000, seed=3), title_rows=title_rows) == 1000

    workbook = CalamineWorkbook.from_path(str(tmp_path / "cpl.xlsx"))
    assert workbook.sheet_names == [SHEET_NAME]
    sheet = workbook.get_sheet_by_name(SHEET_NAME).to_python()
    if title_rows:
        assert sheet[0][0] == "Certified Products List"
        assert str(sheet[1][0]).startswith("Published ")
        assert not any(sheet[2])
    assert sheet[header_row] == [HEADINGS[column] for column in Column]

    def as_text(cell: object) -> str:
        # Dates must come back as real dates, not text or bare serial numbers.
        if isinstance(cell, datetime.date):
            return cell.isoformat()
        assert isinstance(cell, str), cell
        return cell

    from_xlsx = [[as_text(cell) for cell in row] for row in sheet[header_row:]]
    assert from_xlsx == csv_rows(tmp_path / "cpl.csv")


def test_cli_writes_the_rows_and_reports_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "cpl.csv"
    assert main(["--rows", "150", "--seed", "4", "--out", str(out)]) == 0
    assert "150 rows" in capsys.readouterr().out
    assert len(csv_rows(out)) == 151

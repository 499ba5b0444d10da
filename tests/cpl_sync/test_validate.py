"""Validation (R6): every problem reported as sheet row + column + reason, and any error rejects the file."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cfl_graph.demo.cpl_data import generate
from cfl_graph.demo.cpl_data import write_csv as write_demo_csv
from cfl_graph.identifiers import CplStatus, DeviceType
from cpl_sync.columns import HEADINGS, Column
from cpl_sync.parse import read_table
from cpl_sync.problems import CplFileRejected
from cpl_sync.validate import ValidCpl, rows_digest, validate
from tests.fixtures.cpl_files import row, versions, write_csv, write_xlsx


def valid(path: Path) -> ValidCpl:
    return validate(read_table(path))


def errors(path: Path, **kwargs: Any) -> list[str]:
    with pytest.raises(CplFileRejected) as caught:
        validate(read_table(path), **kwargs)
    return [str(p) for p in caught.value.problems]


def test_values_are_normalised_once_at_the_edge(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "cpl.xlsx",
        [
            row(
                manufacturer_id="10b2",
                model_id="1",
                hardware_version="0x100",
                firmware_version="1.2.10.4",
                image_hash="AB" * 32,
                device_type="esme",
                smets_version="SMETS 2",
                status="Active",
                gbcs_version="3.2",
            )
        ],
    )
    fw = valid(path).firmware[0]
    assert fw.key == ("10B2", "0001", "0100", "01021004")
    assert fw.image_hash == "ab" * 32
    assert fw.status is CplStatus.ACTIVE
    assert fw.gbcs_version == "v3.2"


@pytest.mark.parametrize(
    "cell", [dt.date(2024, 3, 1), 45352, "2024-03-01", "01/03/2024", "1 Mar 2024", "01-Mar-2024"]
)
def test_dates_as_excel_dates_serials_or_text(tmp_path: Path, cell: object) -> None:
    path = write_xlsx(tmp_path / "cpl.xlsx", [row(date_added=cell)])
    assert valid(path).firmware[0].date_added == dt.date(2024, 3, 1)


def test_numeric_ids_that_lost_leading_zeros_in_excel_are_padded(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "cpl.xlsx", [row(model_id=12, firmware_version=10203)])
    fw = valid(path).firmware[0]
    assert (fw.model_id, fw.firmware_version) == ("0012", "00010203")


def test_malformed_hex_names_row_column_and_reason(tmp_path: Path) -> None:
    rows = [row(), row(firmware_version="02000000", image_hash="ab" * 31 + "a")]
    path = write_xlsx(tmp_path / "cpl.xlsx", rows, title_rows=["Certified Products List"])
    assert errors(path) == [
        'row 5, column J "Manufacturer Image Hash": image hash has 63 hex digits; a SHA-256 has 64'
    ]


def test_every_bad_cell_of_a_row_is_reported(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "cpl.csv", [row(manufacturer_id="XYZ1", device_type="Toaster", status="maybe")]
    )
    found = errors(path)
    assert found == [
        "row 2, column B \"Manufacturer ID\": manufacturer id 'XYZ1' is not hexadecimal: up to 4 digits 0-9 and A-F, like 10B2",
        "row 2, column G \"Device Type\": device type 'Toaster' is not one of ESME, GSME, PPMID, HCALCS, CHF, GPF",
        "row 2, column M \"Status\": status 'maybe' is not one of active, withdrawn, suspended, expired",
    ]


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cpl.csv", [row(), row()])
    assert errors(path) == [
        'row 3, column F "Firmware Version": duplicate of row 2 (same manufacturer, model, hardware and '
        "firmware version)"
    ]


def test_duplicate_keys_with_conflicting_hashes_point_at_the_hash(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cpl.csv", [row(), row(image_hash="cd" * 32)])
    assert errors(path) == [
        'row 3, column J "Manufacturer Image Hash": duplicate of row 2 (same manufacturer, model, hardware and '
        "firmware version) with a different image hash"
    ]


def test_a_device_type_typo_on_one_row_is_a_warning_and_the_latest_listing_decides(tmp_path: Path) -> None:
    # The most recently listed row says GSME: the model is a GSME, and the other row gets a warning.
    rows = [
        row(date_added="2024-01-15"),
        row(firmware_version="02000000", device_type="GSME", date_added="2024-06-01"),
    ]
    result = valid(write_csv(tmp_path / "cpl.csv", rows))
    assert [m.device_type for m in result.device_models] == [DeviceType.GSME]
    assert [str(w) for w in result.warnings] == [
        'row 3, column G "Device Type": device type GSME differs from ESME on row 2 for device model '
        "10B2/0001/0100; the device type of the most recently listed row is kept"
    ]
    # The same rows the other way up the sheet: the listing date decides, not the order.
    flipped = valid(write_csv(tmp_path / "flipped.csv", list(reversed(rows))))
    assert [m.device_type for m in flipped.device_models] == [DeviceType.GSME]
    assert len(flipped.warnings) == 1


def test_rows_listed_the_same_day_are_decided_by_the_later_row(tmp_path: Path) -> None:
    rows = [row(), row(firmware_version="02000000", model_name="LM-E926 Twin Element")]
    result = valid(write_csv(tmp_path / "cpl.csv", rows))
    assert result.device_models[0].model_name == "LM-E926 Twin Element"
    assert "the most recently listed name is kept" in str(result.warnings[0])


def test_an_unreadable_device_type_is_taken_from_the_model_s_other_rows(tmp_path: Path) -> None:
    rows = [row(), row(firmware_version="02000000", device_type="ESEM"), row(firmware_version="03000000")]
    result = valid(write_csv(tmp_path / "cpl.csv", rows))
    assert [m.device_type for m in result.device_models] == [DeviceType.ESME]
    assert [fw.firmware_version for fw in result.firmware] == ["01000000", "02000000", "03000000"]
    assert [str(w) for w in result.warnings] == [
        "row 3, column G \"Device Type\": device type 'ESEM' is not one of ESME, GSME, PPMID, HCALCS, CHF, GPF; "
        "the other rows of device model 10B2/0001/0100 give ESME, which is kept"
    ]


def test_an_unreadable_device_type_no_other_row_gives_rejects_the_file(tmp_path: Path) -> None:
    rows = [row(), row(model_id="0002", device_type="ESEM")]
    assert errors(write_csv(tmp_path / "cpl.csv", rows)) == [
        "row 3, column G \"Device Type\": device type 'ESEM' is not one of ESME, GSME, PPMID, HCALCS, CHF, GPF"
    ]


def test_an_unreadable_optional_cell_is_a_warning_and_stays_empty(tmp_path: Path) -> None:
    result = valid(write_csv(tmp_path / "cpl.csv", [row(cpa_expiry="TBC", gbcs_version="latest")]))
    fw = result.firmware[0]
    assert (fw.gbcs_version, fw.cpa_expiry) == (None, None)
    assert sorted(str(w) for w in result.warnings) == [
        "row 2, column I \"GBCS Version\": GBCS version 'latest' is not a version like v3.2; left empty",
        "row 2, column L \"CPA Expiry Date\": CPA expiry date 'TBC' is not a date (use 2024-03-31, "
        "31/03/2024 or 31 Mar 2024); left empty",
    ]


def test_the_smets_column_belongs_to_each_firmware_version(tmp_path: Path) -> None:
    # A firmware upgrade moved the model to a later SMETS2 version, and a non-compliant meter became
    # SMETS1 through an upgrade: the file is applied, each version keeping what it was certified against.
    rows = [
        row(firmware_version="01000000", smets_version="SMETS2 v3.2", date_added="2022-01-10"),
        row(firmware_version="02000000", smets_version="SMETS2 V4.1", date_added="2023-05-02"),
        row(firmware_version="03000000", smets_version="SMETS1 v1.2", date_added="2024-02-20"),
    ]
    result = valid(write_csv(tmp_path / "cpl.csv", rows))
    assert [str(fw.specification) for fw in result.firmware] == ["SMETS2 v3.2", "SMETS2 v4.1", "SMETS1 v1.2"]
    assert result.warnings == []
    (model,) = result.device_models
    assert (model.smets_version, model.smets_versions) == ("SMETS1", "SMETS1,SMETS2")


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("SMETS2 v4.1", "SMETS2 v4.1"),
        ("SMETS2 V3.2", "SMETS2 v3.2"),
        ("smets2v4.1", "SMETS2 v4.1"),
        ("SMETS 2 v 4.1", "SMETS2 v4.1"),
        ("SMETS1 v1.2", "SMETS1 v1.2"),
        ("SMETS1 (v1.2)", "SMETS1 v1.2"),
        ("SMETS2 - version 4.1", "SMETS2 v4.1"),
        ("SMETS2", "SMETS2"),
        ("2", "SMETS2"),
        ("CHTS v1.3", "CHTS v1.3"),
        ("chts", "CHTS"),
    ],
)
def test_the_specification_is_read_in_the_spellings_people_use(
    tmp_path: Path, cell: str, written: str
) -> None:
    fw = valid(write_xlsx(tmp_path / "cpl.xlsx", [row(smets_version=cell)])).firmware[0]
    assert str(fw.specification) == written


@pytest.mark.parametrize("cell", ["SMETS3", "SMETS", "v4.1", "SMETS2.5", "CHTS2", "SMETS2 v4.1.x"])
def test_an_unreadable_specification_rejects_the_file(tmp_path: Path, cell: str) -> None:
    (problem,) = errors(write_csv(tmp_path / "cpl.csv", [row(smets_version=cell)]))
    assert problem.startswith('row 2, column H "SMETS Version": SMETS version')
    assert "like SMETS2, SMETS2 v4.1 or CHTS v1.3" in problem


def test_the_smets_chts_heading_of_the_published_cpl_is_read(tmp_path: Path) -> None:
    header = [HEADINGS[c] if c is not Column.SMETS_VERSION else "SMETS/CHTS Version" for c in Column]
    path = write_csv(tmp_path / "cpl.csv", [row(smets_version="SMETS2 v4.1")], header=header)
    fw = valid(path).firmware[0]
    assert str(fw.specification) == "SMETS2 v4.1"


def test_empty_required_cells_are_errors_and_optional_ones_are_not(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "cpl.csv", [row(model_name="", gbcs_version="", cpa_reference="", cpa_expiry="")]
    )
    assert errors(path) == ['row 2, column C "Model Name": model name is empty']
    path = write_csv(tmp_path / "ok.csv", [row(gbcs_version="", cpa_reference="", cpa_expiry="")])
    fw = valid(path).firmware[0]
    assert (fw.gbcs_version, fw.cpa_reference, fw.cpa_expiry) == (None, None, None)


def test_blank_rows_are_skipped(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cpl.csv", [row(), {}, row(firmware_version="02000000")])
    assert [fw.sheet_row for fw in valid(path).firmware] == [2, 4]


def test_a_header_without_rows_is_rejected(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cpl.csv", [])
    assert errors(path) == ["row 1: the file has a header row but no data rows"]


def test_errors_are_capped_but_counted_exactly(tmp_path: Path) -> None:
    rows = versions(500, device_type="Kettle")
    path = write_csv(tmp_path / "cpl.csv", rows)
    with pytest.raises(CplFileRejected) as caught:
        validate(read_table(path), max_problems=20)
    assert len(caught.value.problems) == 20
    assert caught.value.error_count == 500
    assert "(and 497 more)" in str(caught.value)


def test_too_many_rows_is_an_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cpl.csv", versions(11))
    assert errors(path, max_rows=10) == ["row 12: the file has more than 10 rows, the most accepted"]


def test_names_spelt_differently_are_warnings_keeping_the_latest(tmp_path: Path) -> None:
    rows = versions(2)
    rows[1][Column.MANUFACTURER_NAME] = "Northfield Metering Limited"
    result = valid(write_csv(tmp_path / "cpl.csv", rows))
    assert result.device_models[0].manufacturer_name == "Northfield Metering Limited"
    assert len(result.warnings) == 1
    assert "the most recently listed name is kept" in str(result.warnings[0])


def test_device_models_are_derived_with_firmware_counts(tmp_path: Path) -> None:
    rows = versions(3) + versions(2, model_id="0002", device_type="GSME")
    result = valid(write_csv(tmp_path / "cpl.csv", rows))
    assert [(m.model_id, m.device_type, m.firmware_count) for m in result.device_models] == [
        ("0001", DeviceType.ESME, 3),
        ("0002", DeviceType.GSME, 2),
    ]


def _rows_digest_line_by_line(valid: ValidCpl) -> str:
    """The rows digest as first written, one formatted line per row: the reference `rows_digest`'s
    column-wise joining must agree with, byte for byte (a stored snapshot's digest is compared with every
    later file's: a digest that changed would store an unchanged list again)."""
    digest = hashlib.sha256()
    for m in valid.device_models:
        line = "\x1f".join(("M", *m.key, m.manufacturer_name, m.model_name, m.device_type, m.smets_version))
        digest.update(line.encode() + b"\n")
    for fw in valid.firmware:
        spec = fw.specification
        digest.update(
            (
                f"F\x1f{fw.manufacturer_id}\x1f{fw.model_id}\x1f{fw.hardware_version}\x1f{fw.firmware_version}"
                f"\x1f{fw.image_hash}\x1f{fw.status}\x1f{spec.generation}\x1f{spec.specification}"
                f"\x1f{spec.version}\x1f{fw.gbcs_version}\x1f{fw.cpa_reference}\x1f{fw.cpa_expiry}"
                f"\x1f{fw.date_added}\n"
            ).encode()
        )
    return digest.hexdigest()


@pytest.mark.parametrize("rows", [0, 1, 9_999, 10_000, 10_001, 23_456])
def test_the_rows_digest_is_the_one_written_line_by_line(tmp_path: Path, rows: int) -> None:
    """Across the ten-thousand-row batches, with empty GBCS versions, CPA references and expiry dates, and
    the statuses and specifications the demo list has."""
    if rows == 0:
        result = ValidCpl(valid(write_csv(tmp_path / "a.csv", versions(1))).header, [], [], [], "")
    else:
        records = list(generate(rows, seed=rows))
        blanked = [
            replace(r, gbcs_version="", cpa_reference="", cpa_expiry=None) if i % 7 == 0 else r  # type: ignore[arg-type]
            for i, r in enumerate(records)
        ]
        write_demo_csv(tmp_path / "cpl.csv", blanked)
        result = valid(tmp_path / "cpl.csv")
        assert any(fw.cpa_expiry is None for fw in result.firmware)
        assert any(fw.gbcs_version is None for fw in result.firmware)
    assert rows_digest(result.device_models, result.firmware) == _rows_digest_line_by_line(result)


def test_the_rows_digest_of_a_known_list_is_the_one_snapshots_already_hold(tmp_path: Path) -> None:
    """The digest of a fixed list, as the code before the column-wise digest (`bc1149b`) worked it out: a
    snapshot stored then is still recognised when the same list comes again."""
    path = write_csv(tmp_path / "a.csv", versions(5, gbcs_version="", cpa_expiry="31/01/2029"))
    assert valid(path).rows_sha256 == "edd4a50a8c4f18f1cdafcf585464725b7b3c519cd7c1518294dd7657209bafa1"


def test_the_rows_digest_ignores_order_and_file_format(tmp_path: Path) -> None:
    rows = versions(5)
    a = valid(write_csv(tmp_path / "a.csv", rows))
    b = valid(write_xlsx(tmp_path / "b.xlsx", list(reversed(rows)), title_rows=["CPL"]))
    assert a.rows_sha256 == b.rows_sha256
    c = valid(
        write_csv(
            tmp_path / "c.csv",
            [*rows[:4], row(**{**{k.value: v for k, v in rows[4].items()}, "status": "Withdrawn"})],
        )
    )
    assert c.rows_sha256 != a.rows_sha256


# Cells a CPL row may hold, the readable ones several times over so that most chunks are whole: bad hex,
# a number where text belongs, True (hashed as 1), blanks, spellings that normalise alike, names and
# device types that disagree between the rows of one model, and keys that repeat.
_CELLS: dict[Column, list[Any]] = {
    Column.MANUFACTURER_NAME: ["Northfield"] * 6 + ["Northfield Ltd", "", None],
    Column.MANUFACTURER_ID: ["10B2"] * 4 + ["10b2", 2.0, "2", "XYZ", ""],
    Column.MODEL_NAME: ["NM-1"] * 5 + ["NM-2", "", 7],
    Column.MODEL_ID: ["0001"] * 4 + ["1", "0002", True, "G"],
    Column.HARDWARE_VERSION: ["0100"] * 4 + ["0x100", "0200"],
    Column.FIRMWARE_VERSION: [f"{i:08X}" for i in range(40)] + ["1.2.3.4", "zz", ""],
    Column.DEVICE_TYPE: ["ESME"] * 6 + ["esme", "GSME", "toaster", ""],
    Column.SMETS_VERSION: ["SMETS2"] * 4 + ["SMETS1 v1.2", "SMETS2 v4.1", "SMETS9"],
    Column.GBCS_VERSION: ["v3.2"] * 4 + ["", "bad", None],
    Column.IMAGE_HASH: [f"{i:064x}" for i in range(40)] + ["AB" * 32, "12", ""],
    Column.CPA_REFERENCE: ["CPA-1"] * 3 + ["", None],
    Column.CPA_EXPIRY: ["2029-01-31"] * 3 + ["", "nope", dt.date(2030, 1, 1)],
    Column.STATUS: ["Active"] * 4 + ["Withdrawn", "maybe"],
    Column.DATE_ADDED: ["2024-01-15"] * 3 + ["2023-05-01", dt.date(2024, 1, 15), "not a date"],
}
_BLANK_ROW: list[Any] = [None] * len(Column)


def _outcome(cells: list[list[Any]]) -> tuple[str, Any]:
    from cpl_sync.parse import Header, Table

    columns = {column: position for position, column in enumerate(Column)}
    header = Header(None, 1, columns, {column: HEADINGS[column] for column in Column})
    table = Table(header, iter([(index + 2, list(row)) for index, row in enumerate(cells)]))
    try:
        result = validate(table, max_problems=1_000)
    except CplFileRejected as rejected:
        return "rejected", (rejected.problems, rejected.error_count, rejected.warnings)
    return "valid", result


@pytest.mark.parametrize("seed", range(6))
def test_column_wise_chunks_answer_as_the_row_by_row_reference(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Issue 17 (P1): a chunk whose cells were all read and whose keys are all new is accepted in C; any
    other goes row by row. Over lists of good rows with bad cells, duplicates, blank rows and disagreeing
    facts scattered through them, in chunks of five, both ways give the same rows, device models,
    warnings and digest, or refuse the file with the same problems."""
    import random

    from cpl_sync import validate as validate_module

    monkeypatch.setattr(validate_module, "CHUNK_ROWS", 5)
    built = 0
    original = validate_module._firmware_row

    def counted(fields: tuple[Any, ...]) -> Any:
        nonlocal built
        built += 1
        return original(fields)

    monkeypatch.setattr(validate_module, "_firmware_row", counted)
    rng = random.Random(seed)
    outcomes: list[str] = []
    for _ in range(60):
        rows = [
            list(_BLANK_ROW)
            if rng.random() < 0.03
            else [
                # Mostly the first (readable) cell of a column, so that whole chunks are common.
                _CELLS[column][0] if rng.random() < 0.9 else rng.choice(_CELLS[column])
                for column in Column
            ]
            for _ in range(rng.randrange(1, 40))
        ]
        version, image_hash = (
            list(Column).index(Column.FIRMWARE_VERSION),
            list(Column).index(Column.IMAGE_HASH),
        )
        for position, line in enumerate(rows):  # distinct versions, but for those drawn from the pool
            if line[version] == "00000000":
                line[version], line[image_hash] = f"{position:08X}", f"{position:064x}"
        monkeypatch.setattr(validate_module, "COLUMN_WISE_CHUNKS", True)
        column_wise = _outcome(rows)
        monkeypatch.setattr(validate_module, "COLUMN_WISE_CHUNKS", False)
        reference = _outcome(rows)
        assert column_wise == reference
        outcomes.append(reference[0])
    assert {"valid", "rejected"} <= set(outcomes), outcomes
    assert built > 0, "no chunk was accepted column-wise: the comparison compared the reference with itself"

"""CPL identifiers are normalised once, at the edge, whatever spelling the CPL used."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfl_graph import identifiers as ids
from cfl_graph.identifiers import InvalidValue


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_firmware_versions_in_any_hex_spelling_normalise_alike(n: int) -> None:
    expected = f"{n:08X}"
    assert ids.firmware_version(f"0x{n:x}") == expected
    assert ids.firmware_version(f"{n:x}") == expected
    assert ids.firmware_version(f"  {n:08X} ") == expected
    assert ids.firmware_version(ids.firmware_version(f"{n:x}")) == expected  # idempotent


@given(st.tuples(*[st.integers(min_value=0, max_value=99)] * 4))
def test_bcd_dotted_firmware_versions_become_eight_digits(parts: tuple[int, int, int, int]) -> None:
    dotted = ".".join(str(p) for p in parts)
    assert ids.firmware_version(dotted) == "".join(f"{p:02d}" for p in parts)


@given(st.binary(min_size=32, max_size=32))
def test_sha256_is_lower_case_whatever_its_spelling(digest: bytes) -> None:
    hexed = digest.hex()
    assert ids.sha256_hex(hexed.upper()) == hexed
    assert ids.sha256_hex("0x" + hexed) == hexed
    assert ids.sha256_hex(":".join(hexed[i : i + 2] for i in range(0, 64, 2))) == hexed


@given(st.text(max_size=12))
def test_any_text_is_either_a_firmware_version_or_a_reasoned_error(text: str) -> None:
    try:
        value = ids.firmware_version(text)
    except InvalidValue as exc:
        assert exc.reason
    else:
        assert len(value) == 8 and value == value.upper()


@pytest.mark.parametrize(
    "cell,reason",
    [
        ("1.2.3", "a dotted version needs four decimal parts"),
        ("123456789", "has 9 hex digits, at most 8 allowed"),
        (1.5, "is a number with a fraction"),
        ("", "firmware version is empty"),
        (None, "firmware version is empty"),
        (True, "is a bool, not text"),
        ("v1", "is not hexadecimal"),
    ],
)
def test_bad_firmware_versions_say_why(cell: ids.Cell, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        ids.firmware_version(cell)


def test_excel_ate_the_leading_zeros() -> None:
    assert ids.manufacturer_id(123) == "0123"
    assert ids.model_id(7.0) == "0007"
    with pytest.raises(InvalidValue, match="at most 4"):
        ids.hardware_version(12345)


@pytest.mark.parametrize(
    "cell",
    [
        "2024-03-31",
        "31/03/2024",
        "31-03-2024",
        "31.03.2024",
        "31 Mar 2024",
        "31 March 2024",
        "31-Mar-2024",
        "2024-03-31T00:00:00",
        "2024-03-31 00:00:00",
        45382,
        "45382",
        dt.date(2024, 3, 31),
        dt.datetime(2024, 3, 31, 12, 0),
    ],
)
def test_dates_in_every_shape_the_cpl_uses(cell: ids.Cell) -> None:
    assert ids.date(cell, "date added") == dt.date(2024, 3, 31)


@pytest.mark.parametrize(
    "cell,reason",
    [
        ("03/31/2024", "is not a date"),
        ("1850-01-01", "outside 1990-2100"),
        ("soon", "is not a date"),
        (dt.time(9, 30), "is a time of day"),  # a date cell before 1900, as readers give it
    ],
)
def test_bad_dates_say_why(cell: ids.Cell, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        ids.date(cell, "date added")


def test_device_types_by_code_or_full_name_and_scope() -> None:
    assert ids.device_type("Electricity Smart Metering Equipment") is ids.DeviceType.ESME
    assert ids.device_type("hcalcs") is ids.DeviceType.HCALCS
    assert ids.device_type("Communications Hub Function") is ids.DeviceType.CHF
    assert {t for t in ids.DeviceType if t.in_library_scope} == {"ESME", "GSME", "PPMID", "HCALCS"}


def test_names_are_tidied_and_control_characters_refused() -> None:
    assert ids.name("  Northfield\u00a0 Metering\tLtd ", "manufacturer name") == "Northfield Metering Ltd"
    with pytest.raises(InvalidValue, match="control characters"):
        ids.name("Bad\x07Name", "model name")

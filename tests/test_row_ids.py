"""One reading of a row id at every door: ASCII digits, within what the id columns hold; anything else
is an `InvalidValue` that says what was expected, never another exception and never a wrong number."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfl_graph.identifiers import InvalidValue
from cfl_graph.row_ids import MAX_ROW_ID, is_ascii_number, row_id

# Text that `str.isdigit` or `int()` accepts but that is no id: superscripts and other numerals (isdigit
# yes, int() no), other scripts' digits (int() reads them), signs, spaces, underscores and too many digits.
ODD_IDS = [
    "²",
    "1²",
    "¹²³",
    "٣",
    "۱۲",
    "१",
    "𝟏",
    "１",
    "①",
    "Ⅻ",
    "-1",
    "+1",
    " 1",
    "1 ",
    "1\n",
    "1_000",
    "0x10",
    "1e3",
    "1.0",
    "",
    "0",
    str(MAX_ROW_ID + 1),
    str(2**63),
    "9" * 30,
    "9" * 5000,
    "1\x00",
]


@pytest.mark.parametrize("raw", ODD_IDS)
def test_odd_ids_are_refused_with_what_was_expected(raw: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        row_id(raw, "image id")
    assert refused.value.reason.startswith("image id must be a whole number from 1 to 2,147,483,647")
    assert len(refused.value.reason) < 200


def test_ids_in_range_in_ascii_digits_are_read() -> None:
    assert row_id("1") == 1
    assert row_id("007") == 7
    assert row_id(str(MAX_ROW_ID)) == MAX_ROW_ID
    assert row_id("0" * 50 + "12") == 12
    assert row_id(42) == 42
    assert row_id("0", minimum=0) == 0


def test_values_of_other_types_are_refused() -> None:
    for raw in (None, 1.0, True, b"1", ["1"], 2**70, -1):
        with pytest.raises(InvalidValue):
            row_id(raw)


@given(st.text(max_size=30))
def test_any_text_is_an_id_only_when_it_is_ascii_digits_in_range(text: str) -> None:
    try:
        value = row_id(text)
    except InvalidValue:
        assert not (is_ascii_number(text) and 1 <= int(text) <= MAX_ROW_ID)
    else:
        assert text.isascii() and text.isdigit() and str(value) == text.lstrip("0")


@given(st.integers(min_value=1, max_value=MAX_ROW_ID))
def test_every_id_the_columns_hold_reads_back(value: int) -> None:
    assert row_id(str(value)) == value

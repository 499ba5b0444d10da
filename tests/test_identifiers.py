"""CPL identifiers are normalised once, at the edge, whatever spelling the CPL used."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

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


# --- properties over any input (hypothesis) ------------------------------------------------------------

ANY_CELL = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.times(),
    st.timedeltas(),
)
NORMALISERS: dict[str, Callable[[ids.Cell], object]] = {
    "manufacturer id": ids.manufacturer_id,
    "model id": ids.model_id,
    "hardware version": ids.hardware_version,
    "firmware version": ids.firmware_version,
    "image hash": ids.sha256_hex,
    "device type": ids.device_type,
    "SMETS version": ids.smets_version,
    "status": ids.cpl_status,
    "GBCS version": ids.gbcs_version,
    "name": lambda cell: ids.name(cell, "model name"),
    "date": lambda cell: ids.date(cell, "date added"),
    "optional text": lambda cell: ids.optional_text(cell, "CPA certificate reference"),
}


@pytest.mark.parametrize("what", NORMALISERS)
@given(cell=ANY_CELL)
def test_any_cell_is_a_value_or_a_reasoned_refusal_and_nothing_else(what: str, cell: ids.Cell) -> None:
    """Whatever a spreadsheet reader hands over: a normalised value, or InvalidValue with a reason; never
    another exception (which would fail the whole sync as an internal error)."""
    try:
        NORMALISERS[what](cell)
    except InvalidValue as exc:
        assert exc.reason.strip()


@pytest.mark.parametrize(
    ("normalise", "width"), [(ids.manufacturer_id, 4), (ids.model_id, 4), (ids.hardware_version, 4)]
)
@given(number=st.integers(min_value=0, max_value=0xFFFF), spelling=st.integers(0, 5))
def test_hex_ids_in_every_spelling_excel_and_people_use_normalise_alike(
    normalise: Callable[[ids.Cell], str], width: int, number: int, spelling: int
) -> None:
    canonical = f"{number:0{width}X}"
    cells: list[ids.Cell] = [
        canonical,
        canonical.lower(),
        f"0x{number:x}",
        f" {number:X} ",
        # Excel turns an all-digit id into a number and drops its leading zeros.
        int(canonical) if canonical.isdigit() else canonical,
        float(canonical) if canonical.isdigit() else f"0X{canonical}",
    ]
    cell = cells[spelling]
    assert normalise(cell) == canonical
    assert normalise(normalise(cell)) == canonical  # idempotent


@given(number=st.integers(min_value=0x10000, max_value=2**40))
def test_hex_ids_wider_than_four_digits_are_refused_never_cut(number: int) -> None:
    with pytest.raises(InvalidValue, match="at most 4 allowed"):
        ids.manufacturer_id(f"{number:X}")


@given(
    day=st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2100, 12, 31)),
    shape=st.sampled_from(
        ["%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%d %b %Y", "%d %B %Y", "%d-%b-%Y"]
    ),
)
def test_every_plausible_date_reads_back_in_every_text_shape(day: dt.date, shape: str) -> None:
    assert ids.date(day.strftime(shape), "date added") == day


@given(day=st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2100, 12, 31)), kind=st.integers(0, 4))
def test_every_plausible_date_reads_back_as_a_cell_or_an_excel_serial(day: dt.date, kind: int) -> None:
    serial = (day - dt.date(1899, 12, 30)).days
    cells: list[ids.Cell] = [
        day,
        dt.datetime.combine(day, dt.time(13, 30)),
        serial,
        float(serial),
        str(serial),
    ]
    cell = cells[kind]
    assert ids.date(cell, "date added") == day


@given(day=st.one_of(st.dates(max_value=dt.date(1989, 12, 31)), st.dates(min_value=dt.date(2101, 1, 1))))
def test_dates_outside_1990_to_2100_are_refused_in_every_shape(day: dt.date) -> None:
    for cell in (day, day.isoformat(), day.strftime("%d/%m/%Y")):
        with pytest.raises(InvalidValue, match=r"outside 1990-2100|is not a date"):
            ids.date(cell, "date added")


FOLDINGS = st.sampled_from(["{}", "{} ", " {}", "{}.", "-{}-"]).flatmap(
    lambda frame: st.sampled_from([str.upper, str.lower, str.title]).map(lambda case: (frame, case))
)


@given(member=st.sampled_from(list(ids.DeviceType)), folding=FOLDINGS)
def test_device_types_fold_case_spacing_and_punctuation_only(
    member: ids.DeviceType, folding: tuple[str, Callable[[str], str]]
) -> None:
    frame, case = folding
    assert ids.device_type(frame.format(case(member.value))) is member


@given(member=st.sampled_from(list(ids.CplStatus)), folding=FOLDINGS)
def test_statuses_fold_case_spacing_and_punctuation_only(
    member: ids.CplStatus, folding: tuple[str, Callable[[str], str]]
) -> None:
    frame, case = folding
    assert ids.cpl_status(frame.format(case(member.value))) is member


@given(text=st.text(max_size=30))
def test_any_device_type_or_status_text_is_a_member_or_names_the_allowed_values(text: str) -> None:
    for normalise, allowed in ((ids.device_type, "ESME, GSME"), (ids.cpl_status, "active, withdrawn")):
        try:
            normalise(text)
        except InvalidValue as exc:
            assert allowed in exc.reason or "is empty" in exc.reason


@given(text=st.text(max_size=250))
def test_a_name_is_refused_or_tidy_and_tidying_it_again_changes_nothing(text: str) -> None:
    try:
        tidy = ids.name(text, "model name")
    except InvalidValue:
        return
    assert tidy == tidy.strip() and "  " not in tidy and 0 < len(tidy) <= 200
    assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in tidy)
    assert ids.name(tidy, "model name") == tidy


@given(
    digest=st.binary(min_size=32, max_size=32),
    group=st.sampled_from([1, 2, 4, 8, 16]),
    sep=st.sampled_from([" ", ":", "  "]),
)
def test_a_sha256_with_separators_between_any_groups_is_its_64_lower_case_digits(
    digest: bytes, group: int, sep: str
) -> None:
    hexed = digest.hex().upper()
    spaced = sep.join(hexed[i : i + group] for i in range(0, 64, group))
    assert ids.sha256_hex(spaced) == digest.hex()


@given(text=st.text(alphabet="0123456789abcdefABCDEF :x", max_size=80))
def test_hex_like_text_is_a_sha256_only_with_exactly_64_digits(text: str) -> None:
    try:
        value = ids.sha256_hex(text)
    except InvalidValue as exc:
        assert "hex digits" in exc.reason or "not hexadecimal" in exc.reason or "is empty" in exc.reason
    else:
        assert len(value) == 64 and value == value.lower() and set(value) <= set("0123456789abcdef")


@pytest.mark.parametrize(
    "text,visible",
    [
        ("bricks meters", 12),
        ("\u200b" * 20, 0),  # zero-width spaces
        ("\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u202e\u2066", 0),  # joiners, BOM, soft hyphen, bidi
        ("\u3000\u00a0\u2003 \t\n\r", 0),  # ideographic, no-break, em and ASCII spaces, controls
        ("\u3164\u115f\u1160\uffa0\u2800\u034f", 0),  # Hangul fillers, braille blank, grapheme joiner
        ("\U000e0041\U000e0042", 0),  # tag characters
        ("e\u0301te\u0301", 3),  # combining accents add to their letter
        ("über\u200bcold", 8),
        ("电表变砖", 4),
        ("\U0001f525", 1),
    ],
)
def test_visible_length_counts_only_characters_a_reader_sees(text: str, visible: int) -> None:
    assert ids.visible_length(text) == visible


@given(st.text())
def test_visible_length_never_exceeds_the_length_and_ignores_added_invisibles(text: str) -> None:
    assert 0 <= ids.visible_length(text) <= len(text)
    assert ids.visible_length("\u200b" + text + " \u2060") == ids.visible_length(text)


@pytest.mark.parametrize("text", ["١.٢.١٠.٤", "١٢٣٤٥٦٧٨", "v٣.٢", "٣١/٠٣/٢٠٢٤", "٤٥٠٠٠", "²", "4500²"])
def test_digits_of_other_scripts_or_superscripts_are_no_cpl_value(text: str) -> None:
    for normalise in (ids.firmware_version, ids.gbcs_version, lambda value: ids.date(value, "date added")):
        with pytest.raises(InvalidValue):
            normalise(text)


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2026-01-31", dt.date(2026, 1, 31)),
        ("2024-02-29", dt.date(2024, 2, 29)),
        ("2023-02-29", None),
        ("2024-13-01", None),
        ("20240331", None),  # date.fromisoformat takes it
        ("2024-W13-7", None),  # and this ISO week date, ten characters long
        ("２０２４-03-31", None),  # and digits of other scripts
        ("2024-3-31", None),
        (" 2024-03-31", None),
        ("2024-03-31T00:00", None),
        ("", None),
        (20240331, None),
    ],
)
def test_an_iso_day_is_yyyy_mm_dd_in_the_digits_0_to_9_and_nothing_else(
    text: object, day: dt.date | None
) -> None:
    assert ids.iso_day(text) == day


def _cells_near(canonical: st.SearchStrategy[str]) -> st.SearchStrategy[list[ids.Cell]]:
    """Columns of canonical cells with, now and then, one that is nearly so: another case, a digit short,
    a digit of another script, padding, a number, a blank."""
    near = st.one_of(
        canonical.map(str.swapcase),
        canonical.map(lambda text: text[1:]),
        canonical.map(lambda text: "٣" + text[1:]),
        canonical.map(lambda text: f" {text[1:]}"),
        st.integers(min_value=0, max_value=99_999_999),
        st.sampled_from(["", None]),
    )
    return st.lists(st.one_of(canonical, canonical, canonical, near), min_size=1, max_size=12)


_HASHES = st.text("0123456789abcdef", min_size=64, max_size=64)
_FIRMWARE = st.text("0123456789ABCDEF", min_size=8, max_size=8)


@given(_cells_near(_HASHES))
def test_a_hash_column_is_found_canonical_at_once_exactly_when_each_cell_is(cells: list[ids.Cell]) -> None:
    """The column-wise check (`validate` takes such a column as it is) against the normaliser's own first
    line: a column of canonical cells is what `sha256_hex` returns cell by cell."""
    each = all(type(cell) is str and ids._CANONICAL_SHA256.fullmatch(cell) for cell in cells)
    assert ids.canonical_sha256_column(cells) == each
    if each:
        assert [ids.sha256_hex(cell) for cell in cells] == cells


@given(_cells_near(_FIRMWARE))
def test_a_firmware_version_column_is_found_canonical_at_once_exactly_when_each_cell_is(
    cells: list[ids.Cell],
) -> None:
    each = all(type(cell) is str and ids._CANONICAL_FIRMWARE.fullmatch(cell) for cell in cells)
    assert ids.canonical_firmware_version_column(cells) == each
    if each:
        assert [ids.firmware_version(cell) for cell in cells] == cells

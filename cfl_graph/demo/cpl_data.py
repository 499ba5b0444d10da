"""Realistic, deterministic Certified Products List data for the demo and the benchmarks.

`generate(rows, seed)` yields CPL rows; `write_csv` and `write_xlsx` write them the way published lists look.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import datetime
import hashlib
import math
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import xlsxwriter

from cpl_sync.columns import HEADINGS, Column

DEVICE_TYPES: tuple[str, ...] = ("ESME", "GSME", "PPMID", "HCALCS", "CHF", "GPF")
IN_SCOPE_DEVICE_TYPES: frozenset[str] = frozenset({"ESME", "GSME", "PPMID", "HCALCS"})
SMETS_VERSIONS: tuple[str, ...] = ("SMETS1", "SMETS2")
STATUSES: tuple[str, ...] = ("Active", "Withdrawn", "Suspended")

FIRST_LISTED = datetime.date(2014, 1, 6)
LAST_LISTED = datetime.date(2026, 9, 30)
PUBLISHED = datetime.date(2026, 10, 1)
SHEET_NAME = "Certified Products"
IMAGE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class CplRecord:
    """One CPL row, values as the CPL shows them; fields are named after
    `cpl_sync.columns.Column`."""

    manufacturer_name: str
    manufacturer_id: str
    model_name: str
    model_id: str
    hardware_version: str
    firmware_version: str
    device_type: str
    smets_version: str
    gbcs_version: str
    image_hash: str
    cpa_reference: str
    cpa_expiry: datetime.date
    status: str
    date_added: datetime.date


def manufacturer_image_for_key(
    manufacturer_id: str, model_id: str, hardware_version: str, firmware_version: str
) -> bytes:
    """The Manufacturer Image bytes of one certified version, derived from its key alone.

    The same key gives the same image whatever the seed, so firmware images built later from a CPL
    snapshot match the hash this generator listed for them.
    """
    head = f"CFL-BENCH-IMAGE {manufacturer_id} {model_id} {hardware_version} {firmware_version}\n"
    encoded = head.encode("ascii")
    # SHAKE gives a full kilobyte of varied bytes for the price of one hash call.
    return encoded + hashlib.shake_128(encoded).digest(max(IMAGE_SIZE - len(encoded), 0))


def manufacturer_image(record: CplRecord) -> bytes:
    """The Manufacturer Image whose SHA-256 is `record.image_hash` (about 1 KiB)."""
    return manufacturer_image_for_key(
        record.manufacturer_id, record.model_id, record.hardware_version, record.firmware_version
    )


def generate(rows: int, seed: int = 1) -> Iterator[CplRecord]:
    """Exactly `rows` CPL rows, grouped by manufacturer and device model, oldest firmware first.

    The same (rows, seed) always gives the same rows; rows are produced lazily, so a million cost
    no more memory than a hundred.
    """
    if rows < 0:
        raise ValueError(f"rows must not be negative, got {rows}")
    return _generate(rows, seed)


# --- writing ------------------------------------------------------------------------------------

_HEADER: tuple[str, ...] = tuple(HEADINGS[column] for column in Column)
_values = attrgetter(*(column.value for column in Column))
_DATE_COLUMNS = frozenset({Column.CPA_EXPIRY, Column.DATE_ADDED})
_TEXT_INDEXES = tuple(index for index, column in enumerate(Column) if column not in _DATE_COLUMNS)
_DATE_INDEXES = tuple(index for index, column in enumerate(Column) if column in _DATE_COLUMNS)
_EXCEL_EPOCH = datetime.date(1899, 12, 30).toordinal()
_COLUMN_WIDTHS: dict[Column, int] = {
    Column.MANUFACTURER_NAME: 30,
    Column.MODEL_NAME: 44,
    Column.IMAGE_HASH: 68,
    Column.CPA_REFERENCE: 26,
}
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def write_csv(path: Path, records: Iterable[CplRecord]) -> int:
    """Write a header row then one row per record (UTF-8, ISO dates); return the number of records."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(_HEADER)
        for record in records:
            # str() of a date is its ISO form, which is what the CSV carries.
            writer.writerow(_values(record))
            count += 1
    return count


def write_xlsx(
    path: Path, records: Iterable[CplRecord], *, title_rows: bool = True, published: datetime.date = PUBLISHED
) -> int:
    """Write one "Certified Products" sheet the way published lists look; return the number of records.

    With `title_rows`, the list's title and publication date sit above a blank row and the header, as in
    the published files, so a parser has to find the header rather than assume row 1.
    """
    count = 0
    # constant_memory streams each row to disk as soon as the next one starts: flat memory for 1M rows.
    with xlsxwriter.Workbook(str(path), {"constant_memory": True}) as workbook:
        # A fixed creation time keeps the file byte-identical for the same records.
        workbook.set_properties({"created": datetime.datetime.combine(published, datetime.time())})
        sheet = workbook.add_worksheet(SHEET_NAME)
        title_format = workbook.add_format({"bold": True, "font_size": 14})
        header_format = workbook.add_format({"bold": True, "bottom": 1})
        date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
        for index, column in enumerate(Column):
            sheet.set_column(index, index, _COLUMN_WIDTHS.get(column, max(len(HEADINGS[column]) + 2, 12)))

        header_row = 0
        if title_rows:
            sheet.write_string(0, 0, "Certified Products List", title_format)
            month = _MONTHS[published.month - 1]
            sheet.write_string(1, 0, f"Published {published.day} {month} {published.year}")
            header_row = 3
        for index, heading in enumerate(_HEADER):
            sheet.write_string(header_row, index, heading, header_format)
        sheet.freeze_panes(header_row + 1, 0)

        write_string = sheet.write_string
        write_number = sheet.write_number
        row = header_row
        for record in records:
            row += 1
            values = _values(record)
            for index in _TEXT_INDEXES:
                write_string(row, index, values[index])
            for index in _DATE_INDEXES:
                # A real Excel date: the serial day number shown through a date format.
                write_number(row, index, values[index].toordinal() - _EXCEL_EPOCH, date_format)
            count += 1
        if count:
            sheet.autofilter(header_row, 0, row, len(_HEADER) - 1)
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cfl_graph.demo.cpl_data",
        description="Write a realistic, deterministic CPL as XLSX or CSV.",
    )
    parser.add_argument("--rows", type=int, required=True, help="exact number of CPL rows")
    parser.add_argument("--seed", type=int, default=1, help="same rows and seed, same file (default 1)")
    parser.add_argument(
        "--format", choices=("xlsx", "csv"), default=None, help="default: from --out's suffix, else xlsx"
    )
    parser.add_argument("--no-title-rows", action="store_true", help="XLSX: header on the first row")
    parser.add_argument("--out", type=Path, required=True, help="file to write")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    out: Path = args.out
    file_format: str = args.format or ("csv" if out.suffix.lower() == ".csv" else "xlsx")

    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    records = generate(args.rows, args.seed)
    if file_format == "csv":
        count = write_csv(out, records)
    else:
        count = write_xlsx(out, records, title_rows=not args.no_title_rows)
    elapsed = time.perf_counter() - started
    print(f"{count} rows written to {out} ({file_format}) in {elapsed:.1f} s")
    return 0


# --- what the generated list looks like -----------------------------------------------------------

# Fictional place and landscape names: none of these, with the trades below, is a real meter maker.
_NAME_STEMS = (
    "Northfield",
    "Calder",
    "Pennine",
    "Severnside",
    "Brackley",
    "Ashdown",
    "Harwood",
    "Tamarside",
    "Wensley",
    "Lindum",
    "Quantock",
    "Mendip",
    "Cheviot",
    "Fenland",
    "Ribblesdale",
    "Hallamshire",
    "Solway",
    "Torridge",
    "Wyvern",
    "Langdale",
    "Medway",
    "Eskdale",
    "Thornbury",
    "Brindley",
    "Larkspur",
    "Axmouth",
    "Blackdown",
    "Coquetdale",
    "Elmbridge",
    "Fairlight",
    "Glenmore",
    "Holloway",
    "Ivelbrook",
    "Kennetside",
    "Lomondvale",
    "Marchwood",
    "Nethercott",
    "Orwell",
    "Purbeck",
    "Redesdale",
    "Stourhead",
    "Tweedmouth",
    "Ullesthorpe",
    "Wharfedale",
    "Yarrowford",
    "Amberley",
)
_TRADES = (
    "Metering",
    "Smart Energy",
    "Meter Systems",
    "Energy Devices",
    "Instruments",
    "Controls",
    "Technologies",
    "Electronics",
    "Measurement",
    "Utility Devices",
)
_LEGAL_FORMS = ("Ltd", "Ltd", "Ltd", "plc")

# Relative weights per device type (in DEVICE_TYPES order) for the kinds of maker the CPL lists.
_PROFILES: tuple[tuple[int, ...], ...] = (
    (45, 35, 12, 4, 2, 2),  # full range, including communications hubs
    (78, 4, 10, 8, 0, 0),  # electricity meters
    (4, 82, 14, 0, 0, 0),  # gas meters
    (0, 0, 62, 38, 0, 0),  # in-home displays and load switches
)
_PROFILE_WEIGHTS = (4, 3, 2, 2)

_MODEL_LETTERS = {"ESME": "E", "GSME": "G", "PPMID": "D", "HCALCS": "L", "CHF": "C", "GPF": "P"}
_MODEL_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "ESME": (
        "Single Phase Credit/Prepay",
        "Single Phase Dual Element",
        "Polyphase Credit/Prepay",
        "Twin Element Variable Tariff",
        "Polyphase CT Operated",
        "Single Phase ALCS",
    ),
    "GSME": (
        "U6 Credit/Prepay Gas Meter",
        "U6 Ultrasonic Gas Meter",
        "G4 Diaphragm Gas Meter",
        "U16 Gas Meter",
    ),
    "PPMID": ("In-Home Display", "Prepayment In-Home Display", "Colour In-Home Display", "Compact Display"),
    "HCALCS": ("HAN Connected Load Switch", "Auxiliary Load Control Switch", "Boost Controller"),
    "CHF": ("Communications Hub Function", "Dual Band Communications Hub Function"),
    "GPF": ("Gas Proxy Function", "Dual Band Gas Proxy Function"),
}
_SMETS1_TYPES = frozenset({"ESME", "GSME", "PPMID"})
_SMETS1_SHARE = 0.12

_SMETS1_FIRST = FIRST_LISTED.toordinal()
_SMETS1_LAST = datetime.date(2018, 12, 31).toordinal()
_SMETS2_FIRST = datetime.date(2016, 3, 1).toordinal()
_SMETS2_LAST = datetime.date(2025, 12, 31).toordinal()
_LAST_LISTED = LAST_LISTED.toordinal()
_PUBLISHED = PUBLISHED.toordinal()

# The GBCS version current from each date; a device model may lag one version behind.
_GBCS_ERAS: tuple[tuple[datetime.date, str], ...] = (
    (datetime.date(2014, 1, 1), "v1.0"),
    (datetime.date(2017, 1, 1), "v2.0"),
    (datetime.date(2019, 7, 1), "v3.2"),
    (datetime.date(2021, 7, 1), "v4.0"),
    (datetime.date(2023, 4, 1), "v4.1"),
)
_GBCS_ERA_STARTS = tuple(start.toordinal() for start, _ in _GBCS_ERAS)
# The SMETS2 version a version listed from each date was certified against (the CPL's SMETS/CHTS column
# belongs to the firmware version: an upgrade can move a meter to a later version). The CPL writes it
# `SMETS2 v4.1`, sometimes `SMETS2 V4.1`; a few rows give the generation alone.
_SMETS2_ERAS: tuple[tuple[datetime.date, str], ...] = (
    (datetime.date(2014, 1, 1), "v1.58"),
    (datetime.date(2017, 1, 1), "v2.0"),
    (datetime.date(2019, 7, 1), "v3.2"),
    (datetime.date(2021, 7, 1), "v4.0"),
    (datetime.date(2023, 4, 1), "v4.1"),
)
_SMETS2_ERA_STARTS = tuple(start.toordinal() for start, _ in _SMETS2_ERAS)


@dataclass(frozen=True, slots=True)
class _Manufacturer:
    name: str
    id: str
    model_prefix: str
    type_weights: tuple[int, ...]
    rows: int


@dataclass(frozen=True, slots=True)
class _DeviceModel:
    manufacturer: _Manufacturer
    model_name: str
    model_id: str
    hardware_version: str
    device_type: str
    smets_version: str


@dataclass(slots=True)
class _CpaCertificates:
    """Hands out CPA certificate references, numbered in sequence within each year."""

    issued: dict[int, int]

    def next_reference(self, rng: random.Random, year: int) -> str:
        # Each year's numbering starts part-way in, as other products were certified that year too.
        serial = self.issued[year] + 1 if year in self.issued else rng.randint(1, 150)
        self.issued[year] = serial
        return f"CPA-{year}-{serial:04d}"


def _generate(rows: int, seed: int) -> Iterator[CplRecord]:
    rng = random.Random(seed)
    mean_history = _mean_history_length(rows)
    certificates = _CpaCertificates({})
    for manufacturer in _manufacturers(rng, rows):
        yield from _manufacturer_rows(rng, manufacturer, mean_history, certificates)


def _manufacturer_count(rows: int) -> int:
    # 8 makers for a hundred rows, rising with the log of the size to 40 for a million.
    scaled = round(8 + 8 * math.log10(max(rows, 100) / 100))
    return min(rows, max(8, min(40, scaled)))


def _mean_history_length(rows: int) -> float:
    # Bigger lists have longer firmware histories as well as more device models.
    return 4.0 + 2.0 * math.log10(max(rows, 100) / 100)


def _manufacturers(rng: random.Random, rows: int) -> list[_Manufacturer]:
    count = _manufacturer_count(rows)
    stems = rng.sample(_NAME_STEMS, count)
    # Manufacturer ids sit in the range that ZigBee manufacturer codes use.
    ids = rng.sample(range(0x1000, 0x1300), count)
    # A few large makers and a long tail of small ones, in no particular order.
    shares = [1 / (rank + 1) ** 0.8 for rank in range(count)]
    rng.shuffle(shares)
    allocation = _allocate(rows, shares)
    makers = []
    for stem, number, maker_rows in zip(stems, ids, allocation, strict=True):
        trade = rng.choice(_TRADES)
        profile = rng.choices(_PROFILES, weights=_PROFILE_WEIGHTS)[0]
        makers.append(
            _Manufacturer(
                name=f"{stem} {trade} {rng.choice(_LEGAL_FORMS)}",
                id=f"{number:04X}",
                model_prefix=stem[0] + trade[0],
                type_weights=profile,
                rows=maker_rows,
            )
        )
    return makers


def _allocate(rows: int, shares: Sequence[float]) -> list[int]:
    """Split `rows` in proportion to `shares`, at least one each, summing exactly to `rows`."""
    spare = rows - len(shares)
    total = sum(shares)
    quotas = [spare * share / total for share in shares]
    counts = [1 + math.floor(quota) for quota in quotas]
    by_remainder = sorted(range(len(shares)), key=lambda i: (math.floor(quotas[i]) - quotas[i], i))
    for index in by_remainder[: rows - sum(counts)]:
        counts[index] += 1
    return counts


def _manufacturer_rows(
    rng: random.Random, manufacturer: _Manufacturer, mean_history: float, certificates: _CpaCertificates
) -> Iterator[CplRecord]:
    remaining = manufacturer.rows
    used_model_ids: set[int] = set()
    model_numbers: dict[str, int] = {}
    while remaining:
        device_type = rng.choices(DEVICE_TYPES, weights=manufacturer.type_weights)[0]
        smets1 = device_type in _SMETS1_TYPES and rng.random() < _SMETS1_SHARE
        model_id = rng.randint(0x0001, 0xFFFE)
        while model_id in used_model_ids:
            model_id = rng.randint(0x0001, 0xFFFE)
        used_model_ids.add(model_id)
        letter = _MODEL_LETTERS[device_type]
        # Model numbers rise in tens per maker and type, so names never repeat within a maker.
        if letter not in model_numbers:
            model_numbers[letter] = rng.randrange(100, 800, 10)
        model_numbers[letter] += 10
        number = model_numbers[letter]
        description = rng.choice(_MODEL_DESCRIPTIONS[device_type])
        model_name = f"{manufacturer.model_prefix}-{letter}{number + rng.randint(0, 9)} {description}"
        if smets1:
            first_listed = rng.randint(_SMETS1_FIRST, _SMETS1_LAST)
        else:
            first_listed = rng.randint(_SMETS2_FIRST, _SMETS2_LAST)

        hardware_base = rng.randint(0x0001, 0x0300)
        hardware_step = rng.choice((0x0001, 0x0010, 0x0100))
        hardware_versions = rng.choices((1, 2, 3), weights=(60, 30, 10))[0]
        for revision in range(hardware_versions):
            device_model = _DeviceModel(
                manufacturer=manufacturer,
                model_name=model_name,
                model_id=f"{model_id:04X}",
                hardware_version=f"{hardware_base + revision * hardware_step:04X}",
                device_type=device_type,
                smets_version="SMETS1" if smets1 else "SMETS2",
            )
            length = min(remaining, _history_length(rng, mean_history))
            yield from _firmware_history(rng, device_model, first_listed, length, certificates)
            remaining -= length
            # A later hardware revision is certified some months after the one before it.
            first_listed += rng.randint(120, 720)
            if not remaining or first_listed > _LAST_LISTED:
                break


def _history_length(rng: random.Random, mean: float) -> int:
    return 1 + min(int(rng.expovariate(1 / (mean - 1))), int(6 * mean))


def _firmware_history(
    rng: random.Random,
    device_model: _DeviceModel,
    first_listed: int,
    length: int,
    certificates: _CpaCertificates,
) -> Iterator[CplRecord]:
    span = min(_LAST_LISTED - first_listed, length * rng.randint(45, 160))
    # rng.random() rather than randint: this runs once per row, and randint costs four times as much.
    draw = rng.random
    listed_days = [first_listed, *sorted(first_listed + int(draw() * (span + 1)) for _ in range(length - 1))]
    gbcs_lag = rng.choice((0, 0, 1))
    firmware = (rng.randint(1, 4), rng.randint(0, 9), rng.randint(0, 5), rng.randint(0, 255))
    manufacturer = device_model.manufacturer
    certificate = ""
    expiry = 0
    for position, listed in enumerate(listed_days):
        if position:
            firmware = _next_firmware(rng, firmware)
        # A new version is mostly covered by the model's existing CPA certificate, until it nears expiry.
        if not certificate or listed > expiry - 180 or draw() < 0.2:
            issued = listed - 14 - int(draw() * 107)
            certificate = certificates.next_reference(rng, datetime.date.fromordinal(issued).year)
            expiry = issued + round(365.25 * (3 + int(draw() * 3)))
        firmware_version = "{:02X}{:02X}{:02X}{:02X}".format(*firmware)
        image = manufacturer_image_for_key(
            manufacturer.id, device_model.model_id, device_model.hardware_version, firmware_version
        )
        age = (length - 1 - position) / (length - 1) if length > 1 else 0.0
        yield CplRecord(
            manufacturer_name=manufacturer.name,
            manufacturer_id=manufacturer.id,
            model_name=device_model.model_name,
            model_id=device_model.model_id,
            hardware_version=device_model.hardware_version,
            firmware_version=firmware_version,
            device_type=device_model.device_type,
            smets_version=_technical_specification(device_model.smets_version, listed, gbcs_lag, draw()),
            gbcs_version=_gbcs_version(listed, gbcs_lag),
            image_hash=hashlib.sha256(image).hexdigest(),
            cpa_reference=certificate,
            cpa_expiry=datetime.date.fromordinal(expiry),
            status=_status(rng, age, expired=expiry < _PUBLISHED),
            date_added=datetime.date.fromordinal(listed),
        )


def _next_firmware(rng: random.Random, firmware: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    major, minor, patch, _ = firmware
    draw = rng.random()
    if draw < 0.06:
        major, minor, patch = major + 1, 0, 0
    elif draw < 0.3:
        minor, patch = minor + 1, 0
    else:
        patch += 1 + int(draw * 10) % 3
    if patch > 0xFF:
        minor, patch = minor + 1, 0
    if minor > 0xFF:
        major, minor, patch = major + 1, 0, 0
    return major, minor, patch, int(rng.random() * 0x100)


def _technical_specification(generation: str, listed: int, lag: int, draw: float) -> str:
    if generation == "SMETS1":
        return "SMETS1" if draw < 0.5 else "SMETS1 v1.2"
    if draw < 0.05:
        return "SMETS2"
    era = bisect.bisect_right(_SMETS2_ERA_STARTS, listed) - 1
    version = _SMETS2_ERAS[max(era - lag, 0)][1]
    return f"SMETS2 {'V' + version[1:] if draw > 0.9 else version}"


def _gbcs_version(listed: int, lag: int) -> str:
    era = bisect.bisect_right(_GBCS_ERA_STARTS, listed) - 1
    return _GBCS_ERAS[max(era - lag, 0)][1]


def _status(rng: random.Random, age: float, *, expired: bool) -> str:
    """Older versions, and those whose CPA certificate has lapsed, are more often withdrawn."""
    withdrawn = 0.02 + 0.25 * age + (0.15 if expired else 0.0)
    draw = rng.random()
    if draw < 0.02:
        return "Suspended"
    if draw < 0.02 + withdrawn:
        return "Withdrawn"
    return "Active"


if __name__ == "__main__":
    raise SystemExit(main())

"""The canonical CPL columns, the header spellings accepted for each, and which are required.

Header cells are compared after folding case and dropping everything but letters and digits,
so "Manufacturer ID", "manufacturer_id" and "MANUFACTURER  Id" are the same header.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Column(StrEnum):
    MANUFACTURER_NAME = "manufacturer_name"
    MANUFACTURER_ID = "manufacturer_id"
    MODEL_NAME = "model_name"
    MODEL_ID = "model_id"
    HARDWARE_VERSION = "hardware_version"
    FIRMWARE_VERSION = "firmware_version"
    DEVICE_TYPE = "device_type"
    SMETS_VERSION = "smets_version"
    GBCS_VERSION = "gbcs_version"
    IMAGE_HASH = "image_hash"
    CPA_REFERENCE = "cpa_reference"
    CPA_EXPIRY = "cpa_expiry"
    STATUS = "status"
    DATE_ADDED = "date_added"


# The heading each column carries in files this project writes (demo data, exports); also the
# name shown in error messages when a column is missing.
HEADINGS: dict[Column, str] = {
    Column.MANUFACTURER_NAME: "Manufacturer Name",
    Column.MANUFACTURER_ID: "Manufacturer ID",
    Column.MODEL_NAME: "Model Name",
    Column.MODEL_ID: "Model ID",
    Column.HARDWARE_VERSION: "Hardware Version",
    Column.FIRMWARE_VERSION: "Firmware Version",
    Column.DEVICE_TYPE: "Device Type",
    Column.SMETS_VERSION: "SMETS Version",
    Column.GBCS_VERSION: "GBCS Version",
    Column.IMAGE_HASH: "Manufacturer Image Hash",
    Column.CPA_REFERENCE: "CPA Certificate Reference",
    Column.CPA_EXPIRY: "CPA Expiry Date",
    Column.STATUS: "Status",
    Column.DATE_ADDED: "Date Added",
}

_ALIASES: dict[Column, tuple[str, ...]] = {
    Column.MANUFACTURER_NAME: ("Manufacturer", "Manufacturer Name", "Device Manufacturer"),
    Column.MANUFACTURER_ID: (
        "Manufacturer ID",
        "Manufacturer Identifier",
        "Manufacturer Code",
        "Mfr ID",
        "MID",
    ),
    Column.MODEL_NAME: ("Model Name", "Model", "Device Model", "Device Model Name"),
    Column.MODEL_ID: ("Model ID", "Model Identifier", "Model Code", "Device Model ID"),
    Column.HARDWARE_VERSION: ("Hardware Version", "HW Version", "Hardware Revision", "HW Ver"),
    Column.FIRMWARE_VERSION: ("Firmware Version", "FW Version", "Firmware Revision", "FW Ver"),
    Column.DEVICE_TYPE: ("Device Type", "Type", "Device Category"),
    Column.SMETS_VERSION: (
        "SMETS Version",
        "SMETS",
        "SMETS Ver",
        "Technical Specification",
        "Technical Specification Version",
        "SMETS/CHTS",
        "SMETS/CHTS Version",
        "SMETS or CHTS Version",
        "SMETS/CHTS Technical Specification",
    ),
    Column.GBCS_VERSION: ("GBCS Version", "GBCS", "GBCS Ver"),
    Column.IMAGE_HASH: (
        "Manufacturer Image Hash",
        "Image Hash",
        "Firmware Hash",
        "Firmware Image Hash",
        "Hash",
        "SHA-256",
        "SHA256",
        "Manufacturer Image SHA-256",
    ),
    Column.CPA_REFERENCE: (
        "CPA Certificate Reference",
        "CPA Reference",
        "CPA Certificate",
        "CPA Cert Ref",
        "CPA Certificate Number",
    ),
    Column.CPA_EXPIRY: (
        "CPA Expiry Date",
        "CPA Expiry",
        "CPA Renewal Date",
        "CPA Certificate Expiry",
        "CPA Expiry/Renewal Date",
        "Renewal Date",
    ),
    Column.STATUS: ("Status", "CPL Status", "Certification Status"),
    Column.DATE_ADDED: ("Date Added", "Date Added to CPL", "Date Listed", "Listed On", "Added"),
}

OPTIONAL: frozenset[Column] = frozenset({Column.GBCS_VERSION, Column.CPA_REFERENCE, Column.CPA_EXPIRY})
REQUIRED: tuple[Column, ...] = tuple(c for c in Column if c not in OPTIONAL)

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def fold_heading(text: str) -> str:
    """The comparison form of a header cell: lower case, letters and digits only."""
    return _NON_ALNUM.sub("", text.casefold())


HEADER_LOOKUP: dict[str, Column] = {
    fold_heading(alias): column for column, aliases in _ALIASES.items() for alias in aliases
}


def column_for_heading(text: str) -> Column | None:
    return HEADER_LOOKUP.get(fold_heading(text))

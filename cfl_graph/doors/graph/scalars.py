"""Scalars whose refusals say what a value should be, in place of the parser's own words (strawberry's
Date passed on Python's "Invalid isoformat string" and "month must be in 1..12")."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.schema.types.base_scalars import DateDefinition
from strawberry.types.scalar import ScalarDefinition

from cfl_graph.identifiers import iso_day

MAX_SHOWN = 40  # characters of a refused value repeated in its refusal


def _date(value: object) -> dt.date:
    day = iso_day(value)
    if day is None:
        shown = f"not {value[:MAX_SHOWN]!r}" if isinstance(value, str) else "as text"
        raise StrawberryInputCoercionError(f"a Date is a day written YYYY-MM-DD, like 2026-01-31, {shown}")
    return day


# Name, description and output as strawberry's, so the SDL is unchanged; only the reading differs.
DATE = dataclasses.replace(DateDefinition, parse_value=_date)
SCALAR_OVERRIDES: Mapping[object, ScalarDefinition] = {dt.date: DATE}

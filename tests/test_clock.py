"""The clock every record's time comes from (`cfl_graph.clock`): the wall clock, or one a process sets
and moves forward for a while (the demo's history)."""

from __future__ import annotations

import datetime as dt

import pytest

from cfl_graph import clock
from cfl_graph.tables.base import utc_now

DAY = dt.datetime(2025, 4, 1, 9, 0, tzinfo=dt.UTC)


def test_records_take_the_set_clock_and_then_the_wall_clock_again() -> None:
    with clock.set_to(DAY) as demo:
        assert utc_now() == DAY
        demo.move_to(DAY + dt.timedelta(days=12))
        assert utc_now() == DAY + dt.timedelta(days=12)
    assert abs(utc_now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


def test_a_set_clock_never_goes_back_nor_is_set_twice_nor_naive() -> None:
    with clock.set_to(DAY) as demo:
        with pytest.raises(ValueError, match="moves forward only"):
            demo.move_to(DAY - dt.timedelta(seconds=1))
        with pytest.raises(RuntimeError, match="already set"), clock.set_to(DAY):
            pass
    with pytest.raises(ValueError, match="aware"), clock.set_to(dt.datetime(2025, 1, 1)):
        pass
    assert clock.now() > DAY

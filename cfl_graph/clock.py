"""What time the service records: every row's and audit event's time is `now()`.

The wall clock, unless a process sets another one for a while (`set_to`): the demo plays its history on a
clock it moves forward itself, so each snapshot, upload, publication and audit event carries the day it
happened in the story, written by the same code that writes it in production. Only a process's own work
sees a clock it set; nothing else does (each worker of `serve` is a process of its own).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager


class SetClock:
    """A clock that says what it was last set to, and never goes back."""

    def __init__(self, moment: dt.datetime) -> None:
        self.moment = _utc(moment)

    def move_to(self, moment: dt.datetime) -> None:
        moment = _utc(moment)
        if moment < self.moment:
            raise ValueError(f"a set clock moves forward only: {moment} is before {self.moment}")
        self.moment = moment


_set: SetClock | None = None


def now() -> dt.datetime:
    """The time to record, in UTC."""
    return _set.moment if _set is not None else dt.datetime.now(dt.UTC)


@contextmanager
def set_to(moment: dt.datetime) -> Iterator[SetClock]:
    """Record times from a clock the caller moves (`SetClock.move_to`), then the wall clock again.

    A set clock must stay behind the wall clock: an audit trail whose events go back in time fails
    `cfl-graph verify`, and so would the first real event after a clock set in the future."""
    global _set
    if _set is not None:
        raise RuntimeError("a clock is already set")
    _set = SetClock(moment)
    try:
        yield _set
    finally:
        _set = None


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("a clock is set to an aware time (UTC)")
    return moment.astimezone(dt.UTC)

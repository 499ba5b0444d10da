"""The demo's story (`cfl_graph.demo.history`): quarterly CPL lists that add, drop, delist and re-hash
versions, and publications weeks after listing, some late, some never, each while the CPL allows it."""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
from functools import cache

from cfl_graph.demo import history
from cfl_graph.demo.cpl_data import CplRecord, generate
from cfl_graph.demo.load import DEMO_ROWS, DEMO_SEED
from cfl_graph.keys import VersionKey


@cache
def story() -> history.Plan:
    return history.plan(list(generate(DEMO_ROWS, seed=DEMO_SEED)))


def _rows(rows: list[CplRecord]) -> dict[VersionKey, CplRecord]:
    return {
        VersionKey(r.manufacturer_id, r.model_id, r.hardware_version, r.firmware_version): r for r in rows
    }


def _list_at(moment: dt.datetime) -> dict[VersionKey, CplRecord]:
    """The CPL as the library held it at `moment` (lists are synchronised at 08:00 on their day)."""
    held = [
        rows for day, rows in story().lists if dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC) <= moment
    ]
    return _rows(held[-1])


def test_the_cpl_is_published_quarterly_for_several_quarters() -> None:
    days = [day for day, _ in story().lists]
    assert len(days) >= 6
    assert days[0] == history.OPENED and days[-1] == history.LAST_LIST
    assert all(day.day == 1 and day.month in (1, 4, 7, 10) for day in days)
    assert all((later - earlier).days in range(89, 93) for earlier, later in itertools.pairwise(days))


def test_the_lists_add_drop_delist_and_rehash_versions() -> None:
    added = removed = status_changed = hash_changed = 0
    lists = [_rows(rows) for _, rows in story().lists]
    for before, after in itertools.pairwise(lists):
        added += len(after.keys() - before.keys())
        removed += len(before.keys() - after.keys())
        for key in before.keys() & after.keys():
            status_changed += before[key].status != after[key].status
            hash_changed += before[key].image_hash != after[key].image_hash
    assert added > 300 and removed >= 3 and status_changed >= 30
    # One version mistyped for a quarter then corrected (two changes), one changed for good.
    assert hash_changed == 3
    # A version that first appears in a list is dated by that list.
    for (day, rows), (_, previous) in zip(story().lists[1:], story().lists, strict=False):
        new = _rows(rows).keys() - _rows(previous).keys()
        assert {_rows(rows)[key].date_added for key in new} == {day}


def test_publications_come_weeks_after_listing_some_late_some_never() -> None:
    plan = story()
    delays = []
    for publication in plan.publications:
        listed = _list_at(publication.uploaded)[publication.key]
        assert listed.status == "Active"
        # Published while the CPL still lists the version as active (else the library would refuse).
        assert _list_at(publication.published)[publication.key].status == "Active"
        assert publication.uploaded < publication.published <= history.STORY_ENDS
        delays.append((publication.published.date() - listed.date_added).days)
    assert len(delays) > 400
    assert 7 <= statistics.median(delays) <= 21
    late = sum(days > 30 for days in delays)
    assert 0.03 < late / len(delays) < 0.25
    assert history.Habit.SILENT in plan.habits.values()
    new_in_scope = {
        key
        for (day, rows) in plan.lists[1:]
        for key, row in _rows(rows).items()
        if row.date_added == day and row.device_type in {"ESME", "GSME", "PPMID", "HCALCS"}
    }
    assert len(new_in_scope - {p.key for p in plan.publications}) > 50  # never published (or commercial)


def test_declarations_pathways_and_withdrawals_join_published_versions() -> None:
    plan = story()
    published = {p.key: p for p in plan.publications}
    assert len(plan.declarations) > 10 and not {d.key for d in plan.declarations} & published.keys()
    assert len(plan.withdrawals) == history.WITHDRAWN_BY_MANUFACTURER
    assert all(w.key in published and w.at > published[w.key].published for w in plan.withdrawals)
    assert len(plan.pathways) > 100
    for pathway in plan.pathways:
        assert int(pathway.to_version, 16) > int(pathway.model.firmware_version, 16)
        assert pathway.model in published


def test_events_are_in_the_order_they_happened() -> None:
    events = story().events()
    moments = [moment for moment, _, _ in events]
    assert moments == sorted(moments) and moments[-1] <= history.STORY_ENDS
    assert dt.datetime.now(dt.UTC) > history.STORY_ENDS  # a set clock stays behind the wall clock

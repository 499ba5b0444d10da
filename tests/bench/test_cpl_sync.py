"""bench.cpl_sync measures each side in a child process of its own; here a small list goes through both,
to prove the benchmark syncs what it reads and reports where the sync's time went, in order, and that
its next sync is a changed list synced on top of the first."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.cpl_sync import next_listing
from cfl_graph.demo.cpl_data import CplRecord, generate


@pytest.mark.slow  # four child interpreters
def test_the_benchmark_reports_the_sync_and_its_stages_in_order_and_the_next_sync() -> None:
    from bench.cpl_sync import measure

    measured = measure(300, None, repeats=1)
    assert measured.rows == 300 and measured.file_mb > 0
    assert measured.bare_read_s > 0 and measured.sync_s > 0
    assert measured.sync_validated_s is not None and measured.sync_stored_s is not None
    # Every row is checked before every row is stored (SQLite validates, then stores), and both before
    # the sync is done.
    assert 0 < measured.sync_validated_s <= measured.sync_stored_s <= measured.sync_s
    assert measured.next_sync_s is not None and measured.next_sync_s > 0
    assert measured.next_ratio is not None and measured.next_ratio > 0


def test_the_next_listing_drops_changes_and_adds_a_few_rows_and_keeps_every_key_unique() -> None:
    before = list(generate(2000, seed=3))
    after = list(next_listing(2000, 3))
    old, new = {_key(r): r for r in before}, {_key(r): r for r in after}
    assert max(Counter(map(_key, after)).values()) == 1
    assert len(old.keys() - new.keys()) == 10  # every 200th dropped
    assert 1 <= len(new.keys() - old.keys()) <= 10  # one after every 200th, where its key is free
    changed = [k for k in old.keys() & new.keys() if old[k] != new[k]]
    assert len(changed) == 20  # every 100th
    assert all(old[k].status != new[k].status for k in changed)


def _key(record: CplRecord) -> tuple[str, str, str, str]:
    return (record.manufacturer_id, record.model_id, record.hardware_version, record.firmware_version)

"""bench.cpl_sync measures each side in a child process of its own; here a small list goes through both,
to prove the benchmark syncs what it reads and reports where the sync's time went, in order."""

from __future__ import annotations

import pytest

from bench.cpl_sync import measure


@pytest.mark.slow  # two child interpreters
def test_the_benchmark_reports_the_sync_and_its_stages_in_order() -> None:
    measured = measure(300, None, repeats=1)
    assert measured.rows == 300 and measured.file_mb > 0
    assert measured.bare_read_s > 0 and measured.sync_s > 0
    assert measured.sync_validated_s is not None and measured.sync_stored_s is not None
    # Every row is checked before every row is stored (SQLite validates, then stores), and both before
    # the sync is done.
    assert 0 < measured.sync_validated_s <= measured.sync_stored_s <= measured.sync_s

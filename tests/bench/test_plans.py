"""bench.plans finds the CPL tables' scans in a plan, a snapshot's partition counted as its table."""

from __future__ import annotations

from bench.plans import Scan, _scans


def test_a_scan_of_a_snapshot_s_partition_counts_as_a_scan_of_the_versions_table() -> None:
    plan = {
        "Node Type": "Nested Loop",
        "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "cpl_certified_firmware_12", "Actual Rows": 3},
            {
                "Node Type": "Index Scan",
                "Relation Name": "cpl_device_models",
                "Index Name": "pk_cpl_device_models",
                "Actual Rows": 1,
            },
            {"Node Type": "Seq Scan", "Relation Name": "cpl_certified_firmware_before_partitions"},
            {"Node Type": "Seq Scan", "Relation Name": "library_images", "Actual Rows": 9},
        ],
    }
    assert list(_scans(plan)) == [
        Scan("Seq Scan", "cpl_certified_firmware", None, 3),
        Scan("Index Scan", "cpl_device_models", "pk_cpl_device_models", 1),
        Scan("Seq Scan", "cpl_certified_firmware", None, 0),
    ]

"""The caches' one LRU (cfl_graph/bounded.py): bounded by a count or by bytes, least recently used first."""

from __future__ import annotations

from cfl_graph.bounded import Bounded


def test_a_count_bound_forgets_the_least_recently_used_entry_first() -> None:
    seen = Bounded[str, int](2)
    seen.put("a", 1)
    seen.put("b", 2)
    assert seen.get("a") == 1  # now the most recently used
    seen.put("c", 3)
    assert ("a" in seen, "b" in seen, "c" in seen) == (True, False, True)
    assert len(seen) == 2 and seen.used == 2
    assert seen.get("b", -1) == -1


def test_a_byte_bound_counts_each_entrys_size_and_keeps_nothing_larger_than_itself() -> None:
    texts = Bounded[str, bytes](10, len)
    texts.put("a", b"12345")
    texts.put("b", b"1234")
    assert texts.used == 9
    texts.put("c", b"123")  # 12 bytes: the oldest goes
    assert texts.all_keys() == ["b", "c"] and texts.used == 7
    texts.put("b", b"x" * 11)  # larger than the bound: not kept, and the stale value is gone too
    assert texts.all_keys() == ["c"] and texts.used == 3
    texts.pop("c")
    assert len(texts) == 0 and texts.used == 0

"""The response cache's own rules: bounded in bytes, old state dropped at once, one computation per key
whoever waits for it (the graph's behaviour over HTTP is in tests/graph/test_cached_answers.py)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from cfl_graph.doors.web.response_cache import (
    ENTRY_OVERHEAD_BYTES,
    AnswerKey,
    PersistedQueries,
    ResponseCache,
)
from cfl_graph.revisions import Revisions

TODAY = dt.date(2026, 12, 1)
NOW = Revisions(snapshot_id=4, served=10, records=12)
KEY = AnswerKey(
    schema="combined:abc",
    document_sha256="0" * 64,
    operation_name=None,
    variables="{}",
    view=("supplier", "downloads"),
    snapshot_id=4,
    reads_cpl=True,
    served=10,
    records=None,
    day=TODAY,
)


def key(number: int, **changes: object) -> AnswerKey:
    return KEY._replace(document_sha256=f"{number:064x}", **changes)  # type: ignore[arg-type]


def test_a_key_s_validator_is_the_same_from_release_to_release() -> None:
    # The ETags clients hold and the answers kept in Redis are named by the key's digest: a release
    # that changes how a key is written (its repr) would answer every conditional request in full once.
    assert KEY.etag() == '"f33939b4e74f5d252dc34aca2afe1da3e9391037"'
    assert key(1) == key(1) and hash(key(1)) == hash(key(1)) and key(1) != key(2)


def test_the_least_recently_used_answers_go_once_the_bytes_are_spent() -> None:
    cache = ResponseCache(max_bytes=3 * (1000 + ENTRY_OVERHEAD_BYTES))
    for number in range(3):
        cache.put(key(number), b"x" * 1000)
    assert cache.get(key(0)) is not None  # now the most recently used
    cache.put(key(3), b"x" * 1000)
    assert cache.get(key(1)) is None
    assert [cache.get(key(n)) is not None for n in (0, 2, 3)] == [True, True, True]
    assert cache.size_bytes <= cache._answers.limit
    cache.put(key(4), b"x" * (5 * 1000))  # larger than the whole cache: not kept, nothing evicted for it
    assert cache.get(key(4)) is None and len(cache) == 3


@pytest.mark.parametrize(
    ("moved", "dropped"),
    [
        (Revisions(snapshot_id=5, served=10, records=12), {"cpl", "both", "drafts"}),
        (Revisions(snapshot_id=4, served=11, records=13), {"library", "both", "drafts"}),
        (Revisions(snapshot_id=4, served=10, records=13), {"drafts"}),
        (NOW, set()),
    ],
)
def test_a_newer_state_drops_exactly_the_answers_that_read_what_moved(
    moved: Revisions, dropped: set[str]
) -> None:
    cache = ResponseCache(max_bytes=1 << 20)
    kept = {
        "cpl": key(1, served=None, day=None),
        "library": key(2, snapshot_id=None, reads_cpl=False),
        "both": key(3),
        "drafts": key(4, served=None, records=12),  # a manufacturer's: CPL facts and its drafts
        "nothing": key(5, snapshot_id=None, reads_cpl=False, served=None, day=None),
    }
    cache.observe(NOW, TODAY)
    for name, k in kept.items():
        cache.put(k, name.encode())
    cache.observe(moved, TODAY)
    assert {name for name, k in kept.items() if cache.get(k) is None} == dropped


def test_a_new_day_drops_the_answers_that_count_days() -> None:
    cache = ResponseCache(max_bytes=1 << 20)
    cache.observe(NOW, TODAY)
    cache.put(key(1), b"days missing: 3")
    cache.put(key(2, day=None), b"no days")
    cache.observe(NOW, TODAY + dt.timedelta(days=1))
    assert cache.get(key(1)) is None
    assert cache.get(key(2, day=None)) == b"no days"


async def test_askers_of_one_key_share_one_computation_even_when_the_first_goes_away() -> None:
    cache = ResponseCache(max_bytes=1 << 20)
    runs = 0
    release = asyncio.Event()

    async def compute() -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return "answer"

    first = asyncio.create_task(cache.once(KEY, compute))
    others = [asyncio.create_task(cache.once(KEY, compute)) for _ in range(5)]
    await asyncio.sleep(0)
    first.cancel()  # the first asker hangs up; the computation goes on for the others
    release.set()
    assert await asyncio.gather(*others) == ["answer"] * 5
    assert runs == 1
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failed_computation_fails_every_waiter_and_the_next_asker_tries_again() -> None:
    cache = ResponseCache(max_bytes=1 << 20)
    attempts = 0

    async def compute() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        if attempts == 1:
            raise ConnectionError("the database went away")
        return "answer"

    waiting = [cache.once(KEY, compute) for _ in range(3)]
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await cache.once(KEY, compute) == "answer"
    assert attempts == 2


def test_persisted_query_texts_are_bounded_too() -> None:
    persisted = PersistedQueries(max_bytes=3 * (100 + 64 + ENTRY_OVERHEAD_BYTES))
    for number in range(5):
        persisted.put(f"{number:064x}", "q" * 100)
    assert len(persisted) == 3
    assert persisted.get(f"{0:064x}") is None
    assert persisted.get(f"{4:064x}") == "q" * 100

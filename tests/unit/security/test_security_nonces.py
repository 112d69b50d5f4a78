"""MemoryNonceCache: check-and-record, expiry, bound, and atomicity under threads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from hiem.security import MemoryNonceCache, NonceCache

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_first_sighting_records_and_the_second_is_a_replay() -> None:
    cache = MemoryNonceCache(now=Clock())
    assert cache.seen("k", T0 + timedelta(minutes=5)) is False
    assert cache.seen("k", T0 + timedelta(minutes=5)) is True
    assert cache.seen("other", T0 + timedelta(minutes=5)) is False


def test_keys_are_forgotten_after_they_expire() -> None:
    clock = Clock()
    cache = MemoryNonceCache(now=clock)
    cache.seen("k", T0 + timedelta(minutes=5))
    clock.now = T0 + timedelta(minutes=5)
    assert len(cache) == 1 and cache.seen("k", T0 + timedelta(minutes=10)) is False
    assert len(cache) == 1  # the expired entry was purged, the new one recorded


def test_already_expired_keys_are_not_stored() -> None:
    cache = MemoryNonceCache(now=Clock())
    assert cache.seen("k", T0 - timedelta(seconds=1)) is False
    assert len(cache) == 0


def test_the_cache_is_bounded_and_forgets_the_soonest_expiring_key_first() -> None:
    cache = MemoryNonceCache(max_entries=3, now=Clock())
    for minutes, key in ((5, "a"), (1, "b"), (9, "c"), (7, "d")):
        cache.seen(key, T0 + timedelta(minutes=minutes))
    assert len(cache) == 3
    assert cache.seen("b", T0 + timedelta(minutes=1)) is False  # evicted: it expired soonest
    assert cache.seen("c", T0 + timedelta(minutes=9)) is True


def test_naive_expiry_is_taken_as_utc() -> None:
    cache = MemoryNonceCache(now=Clock())
    cache.seen("k", (T0 + timedelta(minutes=1)).replace(tzinfo=None))
    assert cache.seen("k", T0 + timedelta(minutes=1)) is True


def test_only_one_of_many_concurrent_first_sightings_wins() -> None:
    cache = MemoryNonceCache()
    expires = datetime.now(UTC) + timedelta(minutes=5)
    barrier = threading.Barrier(32)
    outcomes: list[bool] = []
    lock = threading.Lock()

    def race() -> None:
        barrier.wait()
        outcome = cache.seen("same-message", expires)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=race) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(False) == 1 and outcomes.count(True) == 31


def test_memory_cache_satisfies_the_protocol_and_rejects_a_zero_bound() -> None:
    assert isinstance(MemoryNonceCache(), NonceCache)
    with pytest.raises(ValueError):
        MemoryNonceCache(max_entries=0)

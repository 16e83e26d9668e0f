"""The in-memory counter store: independent keys, consistent decisions, bounded memory."""

from __future__ import annotations

import pytest

from propylon.domain.config import Quota, RateLimit
from propylon.policy.rate import GcraLimit
from propylon.storage.counters import CounterStore
from propylon.storage.memory_counters import MemoryCounters

RATE = GcraLimit(RateLimit(requests=2, per_seconds=1))
QUOTA = Quota(max=2, renewal_seconds=60)


def test_is_a_counter_store() -> None:
    store: CounterStore = MemoryCounters()
    assert store.rate_hit("k", RATE, 0.0).allowed


def test_rate_keys_are_independent() -> None:
    store = MemoryCounters()
    assert [store.rate_hit("a", RATE, 10.0).allowed for _ in range(3)] == [True, True, False]
    assert [store.rate_hit("b", RATE, 10.0).allowed for _ in range(3)] == [True, True, False]
    assert store.rate_hit("a", RATE, 10.5).allowed
    assert not store.rate_hit("a", RATE, 10.5).allowed


def test_quota_keys_are_independent_and_apart_from_rate_keys() -> None:
    store = MemoryCounters()
    assert [store.quota_hit("a", QUOTA, 0.0).allowed for _ in range(3)] == [True, True, False]
    assert store.quota_hit("b", QUOTA, 1.0).allowed
    assert store.rate_hit("a", RATE, 1.0).allowed  # same key, other table
    denied = store.quota_hit("a", QUOTA, 30.0)
    assert not denied.allowed
    assert denied.reset_after == pytest.approx(30.0)
    assert store.quota_hit("a", QUOTA, 60.0).allowed  # new window


def test_clear_forgets_everything() -> None:
    store = MemoryCounters()
    store.rate_hit("a", RATE, 0.0)
    store.rate_hit("a", RATE, 0.0)
    store.quota_hit("a", QUOTA, 0.0)
    store.quota_hit("a", QUOTA, 0.0)
    store.clear()
    assert len(store) == 0
    assert store.rate_hit("a", RATE, 0.0).remaining == 1
    assert store.quota_hit("a", QUOTA, 0.0).remaining == 1


def test_recovered_entries_are_swept_as_traffic_goes_on() -> None:
    store = MemoryCounters()
    for i in range(10_000):
        # each key is used once; its bucket is full again one second later
        store.rate_hit(f"user-{i}", RATE, i / 100)
        store.quota_hit(f"user-{i}", Quota(max=5, renewal_seconds=1), i / 100)
    # at 100 new keys a second, about 100 entries per table are live at any time
    assert len(store) < 2 * 400


def test_sweeping_keeps_live_state() -> None:
    store = MemoryCounters()
    slow = GcraLimit(RateLimit(requests=1, per_seconds=10_000))
    store.rate_hit("hog", slow, 0.0)
    for i in range(5_000):
        store.rate_hit(f"k{i}", RATE, float(i))
    assert not store.rate_hit("hog", slow, 5_000.0).allowed


def test_hard_cap_bounds_memory_under_many_live_keys() -> None:
    store = MemoryCounters(max_keys=100)
    slow = GcraLimit(RateLimit(requests=1, per_seconds=3600))
    long_quota = Quota(max=1, renewal_seconds=3600)
    for i in range(5_000):
        store.rate_hit(f"k{i}", slow, 0.0)
        store.quota_hit(f"k{i}", long_quota, 0.0)
        assert len(store) <= 200
    # the most recent keys are still limited
    assert not store.rate_hit("k4999", slow, 1.0).allowed
    assert not store.quota_hit("k4999", long_quota, 1.0).allowed


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        MemoryCounters(max_keys=0)


def test_a_rate_entry_is_kept_for_a_grace_second_after_its_bucket_refills() -> None:
    # Sweeping runs per 32 keys added and drops an entry once its bucket has been full for a
    # second: a steady caller under a generous limit is not dropped and re-added on every request.
    store = MemoryCounters()
    store.rate_hit("a", RATE, 0.0)  # 2 per second: full again at 0.5
    for i in range(31):
        store.rate_hit(f"k{i}", RATE, 1.4)  # the 32nd key added sweeps: "a" is within its grace
    assert len(store) == 32
    for i in range(31, 63):
        store.rate_hit(f"k{i}", RATE, 1.6)  # the 64th sweeps again: "a" has been full for 1.1 s
    assert len(store) == 63

"""Token buckets: a burst of the bucket size passes, the next is limited, refill is exact."""

from __future__ import annotations

import pytest

from adbtd.services.ratelimit import BucketSpec, MemoryBucketStore, bucket_specs
from adbtd.settings import build_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("per_minute", "burst"), [(60, 60), (30, 10), (30, 30), (1, 1)])
def test_burst_of_bucket_size_passes_then_next_is_limited(per_minute: float, burst: int) -> None:
    clock = FakeClock()
    store = MemoryBucketStore(clock)
    spec = BucketSpec("b", per_minute, burst)
    decisions = [store.take("k", spec) for _ in range(burst)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == list(range(burst - 1, -1, -1))
    limited = store.take("k", spec)
    assert not limited.allowed
    assert limited.retry_after == max(1, round(60 / per_minute))


def test_retry_after_is_true_time_until_one_token() -> None:
    clock = FakeClock()
    store = MemoryBucketStore(clock)
    spec = BucketSpec("send", 30, 10)  # one token every 2 s
    for _ in range(10):
        store.take("k", spec)
    clock.now += 0.5
    limited = store.take("k", spec)
    assert not limited.allowed and limited.retry_after == 2  # 1.5 s rounds up
    clock.now += 1.5
    assert store.take("k", spec).allowed
    assert not store.take("k", spec).allowed


def test_keys_and_buckets_are_independent() -> None:
    clock = FakeClock()
    store = MemoryBucketStore(clock)
    spec = BucketSpec("default", 60, 1)
    other = BucketSpec("fetch", 60, 1)
    assert store.take("a", spec).allowed
    assert not store.take("a", spec).allowed
    assert store.take("b", spec).allowed
    assert store.take("a", other).allowed


def test_reset_counts_seconds_until_full() -> None:
    clock = FakeClock()
    store = MemoryBucketStore(clock)
    spec = BucketSpec("default", 60, 60)
    first = store.take("k", spec)
    assert (first.limit, first.remaining, first.reset_seconds) == (60, 59, 1)


def test_rates_come_from_settings(tmp_path: object) -> None:
    specs = bucket_specs(
        build_settings(data_dir=tmp_path, rate_send_per_minute=600, rate_send_burst=100)
    )
    assert (specs["send"].per_minute, specs["send"].burst) == (600, 100)
    assert (specs["default"].per_minute, specs["default"].burst) == (60, 60)
    assert (specs["fetch"].per_minute, specs["fetch"].burst) == (30, 30)

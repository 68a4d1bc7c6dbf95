"""Rate limits shared through a real Redis: two API processes draw from one bucket per key."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from adbtd.adapters.redis_buckets import RedisBucketStore
from adbtd.runtime import make_bucket_store
from adbtd.services.ratelimit import BucketSpec
from tests.support.redis_server import running_redis


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis() as url:
        yield url


def test_two_stores_share_one_bucket(redis_url: str) -> None:
    first, second = RedisBucketStore(redis_url), RedisBucketStore(redis_url)
    spec = BucketSpec("send", 30, 10)
    key = "key_" + secrets.token_hex(4)
    decisions = [(first if i % 2 else second).take(key, spec) for i in range(10)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == list(range(9, -1, -1))
    limited = first.take(key, spec)
    assert not limited.allowed
    assert limited.retry_after in (1, 2)
    assert second.take("key_other", spec).allowed
    first.close()
    second.close()


def test_runtime_picks_the_store_from_settings(redis_url: str) -> None:
    assert isinstance(make_bucket_store(redis_url), RedisBucketStore)
    with pytest.raises(ValueError, match="ADBTD_RATE_LIMIT_STORE"):
        make_bucket_store("memcached://nope")

"""Rate limits shared through a real Redis: two API processes draw from one bucket per key."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from adbtd.adapters.redis_buckets import RedisBucketStore
from adbtd.api.app import create_app
from adbtd.runtime import Runtime, make_bucket_store
from adbtd.services import api_keys, workspaces
from adbtd.services.ratelimit import BucketSpec
from adbtd.settings import Settings
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


def test_api_limits_through_redis(
    redis_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(
        rate_limit_store=redis_url, rate_default_burst=3, rate_default_per_minute=1
    )
    runtime = Runtime.from_settings(settings)
    try:
        with runtime.db.transaction() as session:
            ws = workspaces.create_workspace(session, slug="redis", name="Redis")
            token = api_keys.create_key(session, workspace_id=ws.id, name="k").token
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(runtime)) as client:
            statuses = [client.get("/api/v1/me", headers=headers).status_code for _ in range(4)]
            limited = client.get("/api/v1/me", headers=headers)
        assert statuses == [200, 200, 200, 429]
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
    finally:
        runtime.close()

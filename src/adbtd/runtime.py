"""The process's shared objects, built once from settings and handed to the API, CLI and workers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from adbtd.db.engine import Database
from adbtd.services.ratelimit import BucketStore, MemoryBucketStore
from adbtd.settings import Settings


def make_bucket_store(spec: str) -> BucketStore:
    """``memory`` for one process; a ``redis://`` URL when several API processes share limits."""
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from adbtd.adapters.redis_buckets import RedisBucketStore

        return RedisBucketStore(spec)
    if spec != "memory":
        raise ValueError(f"unknown ADBTD_RATE_LIMIT_STORE {spec!r}")
    return MemoryBucketStore()


def _nothing() -> None:
    return None


@dataclass
class Runtime:
    """Settings, database and stores of one process.

    ``node_changed`` wakes the in-process reconciler; ``order_placed`` wakes the order worker.
    """

    settings: Settings
    db: Database
    buckets: BucketStore = field(default_factory=MemoryBucketStore)
    node_changed: Callable[[], None] = _nothing
    order_placed: Callable[[], None] = _nothing

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            settings=settings,
            db=Database(settings.resolved_database_url),
            buckets=make_bucket_store(settings.rate_limit_store),
        )

    def close(self) -> None:
        self.db.dispose()

"""The process's shared objects, built once from settings and handed to the API, CLI and workers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from adbtd.db.engine import Database
from adbtd.services.ratelimit import BucketStore, MemoryBucketStore
from adbtd.settings import Settings


def _nothing() -> None:
    return None


@dataclass
class Runtime:
    """Settings, database and stores of one process; ``node_changed`` wakes the reconciler."""

    settings: Settings
    db: Database
    buckets: BucketStore = field(default_factory=MemoryBucketStore)
    node_changed: Callable[[], None] = _nothing

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, db=Database(settings.resolved_database_url))

    def close(self) -> None:
        self.db.dispose()

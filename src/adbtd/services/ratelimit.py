"""Per-key token buckets behind a small store interface (in-process now, Redis later)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from adbtd.settings import Settings


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """A bucket: ``burst`` tokens at most, refilled at ``per_minute`` tokens a minute."""

    name: str
    per_minute: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # until one token is back; 0 when allowed


class BucketStore(Protocol):
    # True when ``take`` never waits on the network (may run on the event loop).
    @property
    def local(self) -> bool: ...

    def take(self, key: str, spec: BucketSpec) -> Decision: ...


def bucket_specs(settings: Settings) -> dict[str, BucketSpec]:
    """The reference's three buckets, with rates from settings."""
    return {
        "default": BucketSpec(
            "default", settings.rate_default_per_minute, settings.rate_default_burst
        ),
        "send": BucketSpec("send", settings.rate_send_per_minute, settings.rate_send_burst),
        "fetch": BucketSpec("fetch", settings.rate_fetch_per_minute, settings.rate_fetch_burst),
    }


def decide(tokens: float, spec: BucketSpec) -> tuple[float, Decision]:
    """Pure bucket step: given the refilled token count, take one if possible."""
    allowed = tokens >= 1.0
    left = tokens - 1.0 if allowed else tokens
    missing_for_full = spec.burst - left
    reset = math.ceil(missing_for_full / spec.per_second - 1e-9) if missing_for_full > 0 else 0
    retry_after = 0 if allowed else max(1, math.ceil((1.0 - left) / spec.per_second - 1e-9))
    return left, Decision(allowed, spec.burst, int(left), reset, retry_after)


class MemoryBucketStore:
    """Buckets in this process's memory; right for one API process (the embedded default)."""

    local = True

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def take(self, key: str, spec: BucketSpec) -> Decision:
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get((key, spec.name), (float(spec.burst), now))
            tokens = min(float(spec.burst), tokens + (now - last) * spec.per_second)
            left, decision = decide(tokens, spec)
            self._buckets[(key, spec.name)] = (left, now)
            return decision


class Clock(Protocol):
    def __call__(self) -> float: ...

"""Token buckets in Redis, so several API processes share one limit per key.

One Lua script refills and takes atomically on the server; time comes from Redis (``TIME``) so
API hosts with skewed clocks still agree.
"""

from __future__ import annotations

from typing import Any

import redis

from adbtd.services.ratelimit import BucketSpec, Decision, decide

# KEYS[1] = bucket key; ARGV = burst, tokens per second. Returns {tokens_before_take*1e6}.
_REFILL = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or t
tokens = math.min(burst, tokens + math.max(0, t - ts) * rate)
local left = tokens
if tokens >= 1 then left = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(left), 'ts', tostring(t))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(tokens)
"""


class RedisBucketStore:
    """``BucketStore`` backed by Redis; the decision arithmetic is the shared pure ``decide``."""

    local = False

    def __init__(self, url: str, *, prefix: str = "adbtd:rl:") -> None:
        self._client: Any = redis.Redis.from_url(url, socket_timeout=2.0)
        self._script = self._client.register_script(_REFILL)
        self._prefix = prefix

    def take(self, key: str, spec: BucketSpec) -> Decision:
        raw = self._script(
            keys=[f"{self._prefix}{spec.name}:{key}"], args=[spec.burst, spec.per_second]
        )
        _left, decision = decide(float(raw), spec)
        return decision

    def close(self) -> None:
        self._client.close()

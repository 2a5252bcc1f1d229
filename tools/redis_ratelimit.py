"""The Redis rate limiter: token buckets shared by every process, one Lua script per call."""

from __future__ import annotations

import math

import redis

from observability.endpoints import redis_client, redis_hint, safe_url
from tools.base import RateLimiterError
from tools.spec import RateLimit

__all__ = ["RedisRateLimiter"]

# `take_token` in Lua. KEYS[1]: the bucket hash (`tokens`, `updated`). ARGV: calls, per_s,
# now, expiry in ms. Numbers travel as %.17g text: exact doubles both ways (Lua's tostring
# keeps 14 digits, and a number reply would be cut to an integer).
_TAKE = """
local calls, per_s, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(bucket[1]) or calls
local updated = tonumber(bucket[2]) or now
local rate = calls / per_s
tokens = math.min(calls, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'updated', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return string.format('%.17g', wait)
"""

EXPIRY_WINDOWS = 3
"""A bucket idle this many windows is dropped: it would have refilled to full anyway."""


class RedisRateLimiter:
    """The `RateLimiter` on Redis: one token bucket per key, exact across processes; the same
    rule as `InMemoryRateLimiter` (`take_token`). Each call is one round trip.

    Args:
        url_or_client: a `redis://` URL (the limiter opens a client; `close()` closes it) or a
            `redis.Redis` client (used as is, left open).
        prefix: namespace of the bucket keys (`<prefix><key>`).
        timeout_s: socket timeout of a client opened from a URL.
    """

    def __init__(
        self,
        url_or_client: redis.Redis | str,
        *,
        prefix: str = "bastion:rate:",
        timeout_s: float = 5.0,
    ) -> None:
        self._owns = isinstance(url_or_client, str)
        self.url = safe_url(url_or_client)
        """Where the buckets live (password hidden), as named in errors."""
        self._client = redis_client(url_or_client, timeout_s)
        self._prefix = prefix
        self._take = self._client.register_script(_TAKE)

    def acquire(self, key: str, limit: RateLimit, *, now: float) -> float:
        """See `RateLimiter.acquire`."""
        expiry_ms = max(1000, math.ceil(limit.per_s * EXPIRY_WINDOWS * 1000))
        args = (limit.calls, repr(float(limit.per_s)), repr(float(now)), expiry_ms)
        try:
            return float(self._take((f"{self._prefix}{key}",), args))
        except redis.exceptions.RedisError as error:
            raise RateLimiterError(
                f"rate limiter at {self.url} failed on bucket `{key}` "
                f"({type(error).__name__}: {error}). Calls with a rate limit are refused "
                f"until it works. Hint: {redis_hint(error)}."
            ) from error

    def close(self) -> None:
        """Close the client if the limiter opened it from a URL."""
        if self._owns:
            self._client.close()

"""The in-process rate limiter: one token bucket per key (reference implementation)."""

from __future__ import annotations

import threading

from tools.spec import RateLimit

__all__ = ["InMemoryRateLimiter", "take_token"]


def take_token(
    tokens: float, updated: float, limit: RateLimit, now: float
) -> tuple[float, float, float]:
    """The bucket rule every limiter shares.

    Args:
        tokens: tokens in the bucket at `updated` (a new bucket starts full: `limit.calls`).
        updated: when `tokens` was measured.
        limit: the contract's limit.
        now: the time of this call.

    Returns:
        (tokens left, time measured, wait): `wait` is 0.0 when a token was taken, else the
        seconds until one will be there (and nothing was taken).
    """
    rate = limit.calls / limit.per_s
    tokens = min(float(limit.calls), tokens + max(0.0, now - updated) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, now, 0.0
    return tokens, now, (1.0 - tokens) / rate


class InMemoryRateLimiter:
    """Token buckets private to this process. Thread-safe."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, limit: RateLimit, *, now: float) -> float:
        """See `RateLimiter.acquire`."""
        with self._lock:
            tokens, updated = self._buckets.get(key, (float(limit.calls), now))
            tokens, updated, wait = take_token(tokens, updated, limit, now)
            self._buckets[key] = (tokens, updated)
            return wait

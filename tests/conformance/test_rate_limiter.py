"""Conformance of every `RateLimiter`: bursts, refill, independent buckets, exact under races."""

from __future__ import annotations

import random
import socket
import sys
import threading
from collections.abc import Iterator

import pytest
import redis

from tools.base import RateLimiter, RateLimiterError
from tools.ratelimit import InMemoryRateLimiter, take_token
from tools.redis_ratelimit import EXPIRY_WINDOWS, RedisRateLimiter
from tools.spec import RateLimit

T0 = 1_700_000_000.0
FIVE_PER_10S = RateLimit(calls=5, per_s=10.0)  # a token every 2 s


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def limiter(request: pytest.FixtureRequest) -> Iterator[RateLimiter]:
    """The in-process limiter, then the Redis one on the real (emptied) server."""
    if request.param == "memory":
        yield InMemoryRateLimiter()
        return
    redis_limiter = RedisRateLimiter(request.getfixturevalue("redis_url"))
    yield redis_limiter
    redis_limiter.close()


def test_implements_the_protocol(limiter: RateLimiter) -> None:
    assert isinstance(limiter, RateLimiter)


def test_a_burst_of_calls_is_admitted_then_the_wait_is_exact(limiter: RateLimiter) -> None:
    assert [limiter.acquire("refund", FIVE_PER_10S, now=T0) for _ in range(5)] == [0.0] * 5
    # Empty: one token takes per_s / calls = 2 s, and a refusal takes nothing.
    assert limiter.acquire("refund", FIVE_PER_10S, now=T0) == pytest.approx(2.0)
    assert limiter.acquire("refund", FIVE_PER_10S, now=T0 + 0.5) == pytest.approx(1.5)


def test_tokens_refill_with_time_up_to_the_burst(limiter: RateLimiter) -> None:
    for _ in range(5):
        limiter.acquire("refund", FIVE_PER_10S, now=T0)
    assert limiter.acquire("refund", FIVE_PER_10S, now=T0 + 1.0) == pytest.approx(1.0)
    assert limiter.acquire("refund", FIVE_PER_10S, now=T0 + 2.0) == 0.0
    assert limiter.acquire("refund", FIVE_PER_10S, now=T0 + 2.0) == pytest.approx(2.0)
    later = T0 + 1000.0  # long idle: full again, but never more than `calls`
    admitted = [limiter.acquire("refund", FIVE_PER_10S, now=later) == 0.0 for _ in range(7)]
    assert admitted == [True] * 5 + [False] * 2


def test_buckets_are_independent(limiter: RateLimiter) -> None:
    one = RateLimit(calls=1, per_s=60.0)
    assert limiter.acquire("tenant:acme", one, now=T0) == 0.0
    assert limiter.acquire("tenant:acme", one, now=T0) == pytest.approx(60.0)
    assert limiter.acquire("tenant:globex", one, now=T0) == 0.0
    assert limiter.acquire("tenant:acme:x", one, now=T0) == 0.0
    assert limiter.acquire("tenant:ácme 🎉", one, now=T0) == 0.0


def test_every_answer_follows_take_token(limiter: RateLimiter) -> None:
    rng = random.Random(4)
    limits = [RateLimit(calls=3, per_s=1.5), RateLimit(calls=1, per_s=0.1), FIVE_PER_10S]
    buckets: dict[str, tuple[float, float]] = {}
    now = T0
    for _ in range(300):
        now += rng.choice([0.0, 0.0, 0.013, 0.1, 0.7, 3.0])
        n = rng.randrange(3)
        key, limit = f"k{n}", limits[n]
        tokens, updated = buckets.get(key, (float(limit.calls), now))
        tokens, updated, wait = take_token(tokens, updated, limit, now)
        buckets[key] = (tokens, updated)
        assert limiter.acquire(key, limit, now=now) == pytest.approx(wait, rel=1e-9, abs=1e-9)


def test_concurrent_acquires_admit_exactly_the_burst(limiter: RateLimiter) -> None:
    threads, per_thread, limit = 16, 5, RateLimit(calls=37, per_s=3600.0)
    start = threading.Barrier(threads)
    admitted = [0] * threads
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            limiter.acquire(f"warm-up-{n}", limit, now=T0)  # connect before the race
            start.wait()
            admitted[n] = sum(
                limiter.acquire("shared", limit, now=T0) == 0.0 for _ in range(per_thread)
            )
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert not errors
    assert sum(admitted) == 37 < threads * per_thread


# ---------------------------------------------------------------------------------------------
# Redis specifics.


@pytest.mark.redis
def test_an_idle_redis_bucket_expires_after_a_few_windows(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    limiter = RedisRateLimiter(admin, prefix="rl:")
    limiter.acquire("refund", FIVE_PER_10S, now=T0)
    ttl_ms = admin.pttl("rl:refund")
    assert 10_000 < ttl_ms <= EXPIRY_WINDOWS * 10_000
    assert admin.hget("rl:refund", "tokens") == b"4"
    admin.close()


def test_an_unreachable_redis_raises_naming_the_url_without_its_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    limiter = RedisRateLimiter(f"redis://:s3cret@127.0.0.1:{port}/0", timeout_s=0.5)
    with pytest.raises(RateLimiterError) as caught:
        limiter.acquire("tenant:acme", FIVE_PER_10S, now=T0)
    message = str(caught.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in message and "s3cret" not in message
    assert "bucket `tenant:acme`" in message
    assert "is Redis running there? check BASTION_REDIS_URL" in message
    limiter.close()

"""B11 budget ledger: Redis reserve + settle round trip vs one PING and vs the in-memory ledger."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import redis

from bench.redis_server import redis_server
from bench.timing import Timing, interleaved
from guards.base import BudgetCaps, BudgetKey, BudgetLedger, Charge
from guards.budget import InMemoryBudgetLedger
from guards.redis_budget import RedisBudgetLedger

__all__ = ["run"]

KEY = BudgetKey(tenant="bench", workflow="b11", environment="bench")
CAPS = BudgetCaps(tokens=10**12, steps=10**9, usd=10**6)  # capped, so every check runs
CHARGE = Charge(tokens=1200, steps=1, usd=0.0042)


def _reserve_settle(ledger: BudgetLedger, tag: str) -> Callable[[], None]:
    """One admitted reservation settled at its estimate, under a new id each call."""
    ids = (f"{tag}-{n}" for n in itertools.count())

    def once() -> None:
        rid = next(ids)
        if not ledger.reserve(KEY, rid, CHARGE).admitted:
            raise AssertionError(f"B11 reservation {rid!r} was refused; the caps are too low")
        ledger.settle(rid, CHARGE)

    return once


def _reserve_only(ledger: BudgetLedger) -> Callable[[], None]:
    """One reservation left held (the caps leave room for every hold the run makes)."""
    ids = (f"hold-{n}" for n in itertools.count())

    def once() -> None:
        ledger.reserve(KEY, next(ids), CHARGE)

    return once


def _us(timing: Timing) -> tuple[float, float]:
    return round(timing.median_ms * 1000, 1), round(timing.p99_ms * 1000, 1)


def run() -> dict[str, Any]:
    """Measure B11 and return its result object (µs; ratio = Redis ledger / one PING)."""
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        on_redis = RedisBudgetLedger(client)
        in_memory = InMemoryBudgetLedger()
        for ledger in (on_redis, in_memory):
            ledger.set_caps(KEY, CAPS)
        subjects: dict[str, Callable[[], object]] = {
            "redis": _reserve_settle(on_redis, "redis"),
            "memory": _reserve_settle(in_memory, "memory"),
            "ping": client.ping,
            "redis_reserve": _reserve_only(on_redis),
        }
        timings = interleaved(subjects, repeats=5000, warmup=50, budget_s=15)
        rounds = len(timings["redis"].samples_ms)
        assert on_redis.spent(KEY) == in_memory.spent(KEY), "the two ledgers disagree"
        client.close()
    value, p99 = _us(timings["redis"])
    baseline, baseline_p99 = _us(timings["ping"])
    memory, memory_p99 = _us(timings["memory"])
    reserve, reserve_p99 = _us(timings["redis_reserve"])
    return {
        "id": "B11",
        "name": "budget ledger reserve+settle on Redis (2 EVALSHA) vs one PING",
        "value": value,
        "unit": "µs",
        "baseline": baseline,
        "ratio": round(value / baseline, 2),
        "p99": p99,
        "baseline_p99": baseline_p99,
        "reserve_p50": reserve,
        "reserve_p99": reserve_p99,
        "memory_p50": memory,
        "memory_p99": memory_p99,
        "ratio_to_memory": round(value / memory, 1),
        "samples": rounds,
        "goal": "reserve_p50 <= 1.5 x baseline (one round trip); ratio <= 3 (two)",
    }

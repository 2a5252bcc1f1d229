"""`Services`: the shared backends (kill switch, budget ledger, effect ledger, rate limiter)
chosen from settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from graphs.settings import Settings
from guards import BudgetLedger, KillSwitch
from guards.budget import InMemoryBudgetLedger
from guards.killswitch import InMemoryKillSwitch
from guards.redis_budget import RedisBudgetLedger
from guards.redis_killswitch import RedisKillSwitch
from guards.sqlite_killswitch import SqliteKillSwitch
from tools import (
    EffectLedger,
    InMemoryEffectLedger,
    InMemoryRateLimiter,
    RateLimiter,
    RedisEffectLedger,
    RedisRateLimiter,
    SqliteEffectLedger,
)

__all__ = ["Services", "services_for"]


@dataclass(frozen=True, kw_only=True)
class Services:
    """Backends shared by runs.

    Embedded (no `BASTION_REDIS_URL`): the kill switch and the effect ledger are SQLite files
    under `BASTION_HOME`, so `bastion kill` and `bastion undo` reach what runs in other
    processes (the demo, `langgraph dev`); the budget ledger and rate limiter are in-process
    (per process). With Redis, every worker, the CLI and the console share all four.
    """

    kill_switch: KillSwitch
    """Stops runs by scope."""
    ledger: BudgetLedger
    """Tenant budget buckets."""
    effects: EffectLedger
    """Side effects, recorded write-ahead: exactly once, and undoable by run."""
    rate_limiter: RateLimiter
    """Token buckets of the tools' rate limits."""

    @classmethod
    def in_process(cls) -> Services:
        """Services private to this process (tests, notebooks, a graph built without settings)."""
        return cls(
            kill_switch=InMemoryKillSwitch(),
            ledger=InMemoryBudgetLedger(),
            effects=InMemoryEffectLedger(),
            rate_limiter=InMemoryRateLimiter(),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Redis-backed services when `settings.redis_url` is set, embedded ones otherwise."""
        if settings.redis_url:
            return cls(
                kill_switch=RedisKillSwitch(settings.redis_url),
                ledger=RedisBudgetLedger(settings.redis_url),
                effects=RedisEffectLedger(settings.redis_url),
                rate_limiter=RedisRateLimiter(settings.redis_url),
            )
        return cls(
            kill_switch=SqliteKillSwitch(settings.kill_switch_path),
            ledger=InMemoryBudgetLedger(),
            effects=SqliteEffectLedger(settings.effects_path),
            rate_limiter=InMemoryRateLimiter(),
        )


_SHARED: dict[Settings, Services] = {}
_SHARED_LOCK = threading.Lock()


def services_for(settings: Settings) -> Services:
    """One `Services` per settings in this process (graphs built from the same settings share
    the kill switch and ledgers, so a kill reaches all of them). Thread-safe: two threads
    asking at once get the same one, never two budget ledgers splitting a tenant's budget."""
    with _SHARED_LOCK:
        if settings not in _SHARED:
            _SHARED[settings] = Services.from_settings(settings)
        return _SHARED[settings]

"""`Services`: the shared backends (kill switch, budget ledger) chosen from settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from graphs.settings import Settings
from guards import BudgetLedger, KillSwitch
from guards.budget import InMemoryBudgetLedger
from guards.killswitch import InMemoryKillSwitch
from guards.redis_budget import RedisBudgetLedger
from guards.redis_killswitch import RedisKillSwitch
from guards.sqlite_killswitch import SqliteKillSwitch

__all__ = ["Services", "services_for"]


@dataclass(frozen=True, kw_only=True)
class Services:
    """Backends shared by runs: one kill switch, one budget ledger.

    Embedded (no `BASTION_REDIS_URL`): the kill switch is a SQLite file under `BASTION_HOME`,
    so `bastion kill` reaches runs in other processes (the demo, `langgraph dev`); the ledger
    is in-process (tenant budgets per process). With Redis, every worker, the CLI and the
    console share both.
    """

    kill_switch: KillSwitch
    """Stops runs by scope."""
    ledger: BudgetLedger
    """Tenant budget buckets."""

    @classmethod
    def in_process(cls) -> Services:
        """Services private to this process (tests, notebooks, a graph built without settings)."""
        return cls(kill_switch=InMemoryKillSwitch(), ledger=InMemoryBudgetLedger())

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Redis-backed services when `settings.redis_url` is set, embedded ones otherwise."""
        if settings.redis_url:
            return cls(
                kill_switch=RedisKillSwitch(settings.redis_url),
                ledger=RedisBudgetLedger(settings.redis_url),
            )
        return cls(
            kill_switch=SqliteKillSwitch(settings.kill_switch_path),
            ledger=InMemoryBudgetLedger(),
        )


@cache
def services_for(settings: Settings) -> Services:
    """One `Services` per settings in this process (graphs built from the same settings share
    the kill switch and ledger, so a kill reaches all of them)."""
    return Services.from_settings(settings)

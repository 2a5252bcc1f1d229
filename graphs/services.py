"""`Services`: the shared backends (kill switch, budget ledger, effect ledger, rate limiter,
memory, trace sink, audit log) chosen from settings."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from graphs.settings import Settings
from guards import BudgetLedger, KillSwitch
from guards.budget import InMemoryBudgetLedger
from guards.killswitch import InMemoryKillSwitch
from guards.redis_budget import RedisBudgetLedger
from guards.redis_killswitch import RedisKillSwitch
from guards.sqlite_killswitch import SqliteKillSwitch
from memory import RetentionSweeper, VersionedMemory, in_memory, open_memory
from nodes import encode_step
from observability import (
    AuditLog,
    InMemoryAuditLog,
    InMemoryTraceSink,
    Tracer,
    TraceSink,
)
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
    """Backends shared by runs; `close()` (or leaving a `with` block) closes them.

    Embedded (no `BASTION_REDIS_URL`): the kill switch, the effect ledger and memory are
    SQLite files under `BASTION_HOME`, so `bastion kill`, `bastion undo` and `bastion memory`
    reach what runs in other processes (the demo, `langgraph dev`); the budget ledger and rate
    limiter are in-process (per process). With Redis, every worker, the CLI and the console
    share all five; with `BASTION_WEAVIATE_URL`, long-term memory lives in Weaviate.
    """

    kill_switch: KillSwitch
    """Stops runs by scope."""
    ledger: BudgetLedger
    """Tenant budget buckets."""
    effects: EffectLedger
    """Side effects, recorded write-ahead: exactly once, and undoable by run."""
    rate_limiter: RateLimiter
    """Token buckets of the tools' rate limits."""
    memory: VersionedMemory = field(default_factory=in_memory)
    """Versioned, governed memory: agents read it before their turns, memory tools write it."""
    traces: TraceSink = field(default_factory=InMemoryTraceSink)
    """Reasoning trace events and run summaries (what the console and `bastion replay` read)."""
    audit: AuditLog = field(default_factory=InMemoryAuditLog)
    """The hash-chained audit log: decisions, approvals, effects, kills, policy loads, reverts."""
    tracer: Tracer = field(default=None)  # type: ignore[assignment]
    """Writes `traces` and `audit` off the graph's hot path (built from them by default)."""
    sweeper: RetentionSweeper | None = None
    """Promotes and purges memory by retention on a timer (long-lived processes; see
    `Settings.memory_sweep_s`)."""
    closer: ExitStack = field(default_factory=ExitStack, repr=False, compare=False)
    """Closes what was opened for these services (memory backends, the retention sweeper)."""

    def __post_init__(self) -> None:
        if self.tracer is None:
            tracer = Tracer(sink=self.traces, audit=self.audit, encode=encode_step)
            object.__setattr__(self, "tracer", tracer)

    @classmethod
    def in_process(cls) -> Services:
        """Services private to this process (tests, notebooks, a graph built without settings)."""
        return cls(
            kill_switch=InMemoryKillSwitch(),
            ledger=InMemoryBudgetLedger(),
            effects=InMemoryEffectLedger(),
            rate_limiter=InMemoryRateLimiter(),
            memory=in_memory(),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Redis-backed services when `settings.redis_url` is set, embedded ones otherwise;
        memory as `open_memory` opens it from the settings (with its namespaces' conflict
        policies), swept for retention every `settings.memory_sweep_s` seconds.

        Raises:
            MemoryBackendError: memory cannot be opened (says which backend and what to do).
        """
        closer = ExitStack()
        try:
            memory = closer.enter_context(
                open_memory(
                    home=settings.memory_path,
                    redis_url=settings.redis_url,
                    weaviate_url=settings.weaviate_url,
                    embedder=settings.embeddings,
                    conflicts=settings.conflict_policies,
                )
            )
            sweeper = None
            if settings.memory_sweep_s > 0:
                sweeper = RetentionSweeper(memory, interval_s=settings.memory_sweep_s).start()
                closer.callback(sweeper.stop)  # before the memory it sweeps is closed
            return cls(**_backends(settings), memory=memory, sweeper=sweeper, closer=closer)
        except BaseException:
            closer.close()
            raise

    def close(self) -> None:
        """Write what the tracer holds, then close the backends' connections (memory, then
        any backend that has `close()`)."""
        self.tracer.close()
        self.closer.close()
        backends = (self.kill_switch, self.ledger, self.effects, self.rate_limiter)
        for backend in (*backends, self.traces, self.audit):
            close = getattr(backend, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> Services:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _backends(settings: Settings) -> dict[str, Any]:
    """Kill switch, budget ledger, effect ledger, rate limiter, trace sink and audit log for
    `settings`."""
    from observability.redis_audit import RedisAuditLog
    from observability.redis_trace import RedisTraceSink
    from observability.sqlite_audit import SqliteAuditLog
    from observability.sqlite_trace import SqliteTraceSink

    key = settings.audit_key.encode() if settings.audit_key else None
    if settings.redis_url:
        return {
            "kill_switch": RedisKillSwitch(settings.redis_url),
            "ledger": RedisBudgetLedger(settings.redis_url),
            "effects": RedisEffectLedger(settings.redis_url),
            "rate_limiter": RedisRateLimiter(settings.redis_url),
            "traces": RedisTraceSink(settings.redis_url),
            "audit": RedisAuditLog(settings.redis_url, key=key),
        }
    return {
        "kill_switch": SqliteKillSwitch(settings.kill_switch_path),
        "ledger": InMemoryBudgetLedger(),
        "effects": SqliteEffectLedger(settings.effects_path),
        "rate_limiter": InMemoryRateLimiter(),
        "traces": SqliteTraceSink(settings.traces_path),
        "audit": SqliteAuditLog(settings.audit_path, key=key),
    }


_SHARED: dict[Settings, Services] = {}
_SHARED_LOCK = threading.Lock()


def services_for(settings: Settings) -> Services:
    """One `Services` per settings in this process (graphs built from the same settings share
    the kill switch and ledgers, so a kill reaches all of them). Thread-safe: two threads
    asking at once get the same one, never two budget ledgers splitting a tenant's budget.
    They live as long as the process: do not close them."""
    with _SHARED_LOCK:
        if settings not in _SHARED:
            _SHARED[settings] = Services.from_settings(settings)
        return _SHARED[settings]

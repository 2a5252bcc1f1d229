"""Tools: typed contracts, a registry with scoped views, the execution gateway, the effect
ledger, rollback and shadow mode."""

from tools.base import (
    Claim,
    Compensation,
    EffectIntent,
    EffectLedger,
    EffectLedgerError,
    EffectOutcome,
    EffectRecord,
    EffectStatus,
    RateLimiter,
    RateLimiterError,
    SecretSource,
)
from tools.contract import tool_contract
from tools.gateway import (
    DurabilityError,
    ErrorKind,
    ExecutionGateway,
    ToolInvocation,
    ToolResult,
    idempotency_key,
    require_durable,
)
from tools.ledger import InMemoryEffectLedger
from tools.ratelimit import InMemoryRateLimiter
from tools.redis_ledger import RedisEffectLedger
from tools.redis_ratelimit import RedisRateLimiter
from tools.registry import ToolRegistry
from tools.shadow import CallChange, ProposedCall, ShadowMode, diff_calls
from tools.spec import (
    RateLimit,
    RiskZone,
    Secrets,
    SideEffect,
    ToolConfigError,
    ToolContext,
    ToolError,
    ToolRetry,
    ToolSpec,
)
from tools.sqlite_ledger import SqliteEffectLedger
from tools.undo import UndoEntry, UndoError, UndoReport, UndoStatus, undo_run

__all__ = [
    "CallChange",
    "Claim",
    "Compensation",
    "DurabilityError",
    "EffectIntent",
    "EffectLedger",
    "EffectLedgerError",
    "EffectOutcome",
    "EffectRecord",
    "EffectStatus",
    "ErrorKind",
    "ExecutionGateway",
    "InMemoryEffectLedger",
    "InMemoryRateLimiter",
    "ProposedCall",
    "RateLimit",
    "RateLimiter",
    "RateLimiterError",
    "RedisEffectLedger",
    "RedisRateLimiter",
    "RiskZone",
    "SecretSource",
    "Secrets",
    "ShadowMode",
    "SideEffect",
    "SqliteEffectLedger",
    "ToolConfigError",
    "ToolContext",
    "ToolError",
    "ToolInvocation",
    "ToolRegistry",
    "ToolResult",
    "ToolRetry",
    "ToolSpec",
    "UndoEntry",
    "UndoError",
    "UndoReport",
    "UndoStatus",
    "diff_calls",
    "idempotency_key",
    "require_durable",
    "tool_contract",
    "undo_run",
]

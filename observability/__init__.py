"""Observability: reasoning traces, the hash-chained audit log, costs, KPIs and explanations."""

from observability.base import AuditLog, TraceBackendError, TraceSink
from observability.chain import (
    GENESIS,
    AuditConfigError,
    ChainProblem,
    VerifyReport,
    canonical,
    check_entry,
    seal,
    verify_chain,
)
from observability.events import (
    AUDIT_KINDS,
    AuditEntry,
    AuditHead,
    AuditKind,
    AuditRecord,
    CostRecord,
    RunSummary,
    TraceEvent,
    TraceStatus,
)
from observability.memory_sinks import InMemoryAuditLog, InMemoryTraceSink
from observability.otel import OTelTraceSink
from observability.pricing import DEFAULT_PRICES, ModelPrice, PriceTable
from observability.redis_trace import RedisTraceSink
from observability.runs import OUTCOME_STATUSES, fold_run, zero_cost
from observability.sqlite_trace import SqliteTraceSink
from observability.tracer import Encoder, Tracer, TracerStats

__all__ = [
    "AUDIT_KINDS",
    "DEFAULT_PRICES",
    "GENESIS",
    "OUTCOME_STATUSES",
    "AuditConfigError",
    "AuditEntry",
    "AuditHead",
    "AuditKind",
    "AuditLog",
    "AuditRecord",
    "ChainProblem",
    "CostRecord",
    "Encoder",
    "InMemoryAuditLog",
    "InMemoryTraceSink",
    "ModelPrice",
    "OTelTraceSink",
    "PriceTable",
    "RedisTraceSink",
    "RunSummary",
    "SqliteTraceSink",
    "TraceBackendError",
    "TraceEvent",
    "TraceSink",
    "TraceStatus",
    "Tracer",
    "TracerStats",
    "VerifyReport",
    "canonical",
    "check_entry",
    "fold_run",
    "seal",
    "verify_chain",
    "zero_cost",
]

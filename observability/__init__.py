"""Observability: reasoning traces, the hash-chained audit log, costs, KPIs and explanations."""

from observability.audit_export import (
    ExportFormat,
    ExportResult,
    export_audit,
    verify_jsonl,
)
from observability.base import (
    AuditLog,
    TraceBackendError,
    TraceSink,
)
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
from observability.costs import (
    COST_KEYS,
    CostLine,
    cost_rollup,
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
from observability.explain import (
    ExplainError,
    Explanation,
    explain_decision,
    explain_run,
)
from observability.feedback import (
    FeedbackError,
    FeedbackRecord,
    dataset_jsonl,
    evaluation_dataset,
    feedback_entry,
    feedback_from_audit,
)
from observability.kpis import (
    CONFIDENCE_BUCKETS,
    INCIDENT_KINDS,
    Kpis,
    Quantiles,
    compute_kpis,
    incident_kind,
)
from observability.memory_sinks import (
    InMemoryAuditLog,
    InMemoryTraceSink,
)
from observability.otel import (
    OTelTraceSink,
)
from observability.pricing import (
    DEFAULT_PRICES,
    ModelPrice,
    PriceTable,
)
from observability.prometheus import (
    CONTENT_TYPE,
    prometheus_text,
)
from observability.redis_audit import (
    RedisAuditLog,
)
from observability.redis_trace import (
    RedisTraceSink,
)
from observability.runs import (
    OUTCOME_STATUSES,
    fold_run,
    zero_cost,
)
from observability.slos import (
    SLO_METRICS,
    SloConfigError,
    SloResult,
    SloTarget,
    check_slos,
    default_slos,
)
from observability.sqlite_audit import (
    SqliteAuditLog,
)
from observability.sqlite_trace import (
    SqliteTraceSink,
)
from observability.tracer import (
    Encoder,
    Tracer,
    TracerStats,
)

__all__ = [
    "AUDIT_KINDS",
    "CONFIDENCE_BUCKETS",
    "CONTENT_TYPE",
    "COST_KEYS",
    "DEFAULT_PRICES",
    "GENESIS",
    "INCIDENT_KINDS",
    "OUTCOME_STATUSES",
    "SLO_METRICS",
    "AuditConfigError",
    "AuditEntry",
    "AuditHead",
    "AuditKind",
    "AuditLog",
    "AuditRecord",
    "ChainProblem",
    "CostLine",
    "CostRecord",
    "Encoder",
    "ExplainError",
    "Explanation",
    "ExportFormat",
    "ExportResult",
    "FeedbackError",
    "FeedbackRecord",
    "InMemoryAuditLog",
    "InMemoryTraceSink",
    "Kpis",
    "ModelPrice",
    "OTelTraceSink",
    "PriceTable",
    "Quantiles",
    "RedisAuditLog",
    "RedisTraceSink",
    "RunSummary",
    "SloConfigError",
    "SloResult",
    "SloTarget",
    "SqliteAuditLog",
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
    "check_slos",
    "compute_kpis",
    "cost_rollup",
    "dataset_jsonl",
    "default_slos",
    "evaluation_dataset",
    "explain_decision",
    "explain_run",
    "export_audit",
    "feedback_entry",
    "feedback_from_audit",
    "fold_run",
    "incident_kind",
    "prometheus_text",
    "seal",
    "verify_chain",
    "verify_jsonl",
    "zero_cost",
]

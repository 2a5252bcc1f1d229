"""The records observability keeps: reasoning trace events, run summaries and audit entries.

They are plain JSON-safe TypedDicts, like run state: every sink (SQLite, Redis Streams, a JSONL
export, the console's JSON API) stores and returns them without a serializer.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from typing_extensions import TypedDict

__all__ = [
    "AUDIT_KINDS",
    "AuditEntry",
    "AuditHead",
    "AuditKind",
    "AuditRecord",
    "CostRecord",
    "RunSummary",
    "TraceEvent",
    "TraceStatus",
]

TraceStatus = Literal["ok", "interrupted", "error"]
"""How a node step ended: returned an update, paused for a human (`interrupt`), or raised."""


class CostRecord(TypedDict):
    """What one step (or a run, or a tenant) consumed."""

    tokens_in: int
    """Input tokens of the model calls."""
    tokens_out: int
    """Output tokens of the model calls."""
    usd: float
    """Model spend from the price table."""


class TraceEvent(TypedDict):
    """One node step of one run: the reasoning contract (DESIGN §4)."""

    event_id: str
    """Unique id of this event."""
    ts: float
    """Unix time the step started."""
    duration_ms: float
    """How long the node ran (wall clock; for `interrupted`, until it paused)."""
    run_id: str
    """The run (a thread holds many runs); empty before intake assigned one."""
    thread_id: str
    """The LangGraph thread."""
    tenant: str
    """Tenant of the run."""
    workflow: str
    """Workflow of the run."""
    node: str
    """Graph node name: `intake`, `orchestrator`, `agent_<name>`, `guard`, `approval`, ..."""
    agent: str | None
    """Specialist that acted (agent nodes) or whose proposals were decided (guard, approval)."""
    goal: str
    """The request the run serves (set by intake; shortened)."""
    context_hash: str
    """Fingerprint of the context the node saw (thread, message count, last message id)."""
    proposals: list[dict[str, Any]]
    """Tool calls proposed in this step: call_id, tool, args, confidence, rationale."""
    verdicts: list[dict[str, Any]]
    """Decisions made in this step: decision_id, call_id, kind, reasons, zone, policies
    (`id@version`), decided_by, memory_reads."""
    tool_calls: list[dict[str, Any]]
    """Tools run in this step: call_id, tool, status, replayed, shadow, side_effect."""
    output: str
    """What the step said or concluded (the route, the answer, the outcome; shortened)."""
    confidence: float | None
    """Lowest confidence among this step's proposals, if any was stated."""
    flags: list[str]
    """Policy and guard flags: taint, findings, halts, budget fallbacks."""
    escalation: dict[str, Any] | None
    """When the step asked a human: zone, reasons, call_ids, reviewers, deadline."""
    memory_reads: list[dict[str, Any]]
    """Memory the step read (namespace, key, version, commit_id)."""
    cost: CostRecord
    """What this step consumed."""
    status: TraceStatus
    """ok, interrupted or error."""
    error: str | None
    """The exception, for `error` steps."""


class RunSummary(TypedDict):
    """One run as the console lists it, folded from its trace events."""

    run_id: str
    """The run."""
    thread_id: str
    """Its thread."""
    tenant: str
    """Its tenant."""
    workflow: str
    """Its workflow."""
    goal: str
    """Its request (shortened)."""
    status: str
    """`running`, `waiting` (for a human), or the outcome: resolved, unresolved, failed,
    halted, rejected."""
    started_at: float
    """Time of its first event."""
    updated_at: float
    """Time of its latest event."""
    steps: int
    """Node steps traced."""
    cost: CostRecord
    """What it consumed so far."""
    escalations: int
    """Times it asked a human."""
    interventions: int
    """Decisions a human made in it."""
    incidents: int
    """Guard trips: denials and halts."""


AuditKind = Literal[
    "decision",
    "approval",
    "approval_timeout",
    "effect",
    "undo",
    "kill",
    "lift",
    "policy",
    "memory_revert",
    "feedback",
    "gap",
]
AUDIT_KINDS: tuple[str, ...] = get_args(AuditKind)
"""Every audit kind, for validation at the boundary."""


class AuditEntry(TypedDict):
    """Something that must stay on record: who did what, when, to what, and why."""

    kind: AuditKind
    """decision, approval, approval_timeout, effect, undo, kill, lift, policy, memory_revert,
    feedback, or gap (records lost while the audit log was unreachable)."""
    ts: float
    """Unix time it happened."""
    tenant: str
    """Tenant it concerns; `*` for all tenants (a global kill, a policy bundle)."""
    actor: str
    """Who: `guard`, `human:<reviewer>`, `system:deadline`, `cli:<user>`, `console:<key>`."""
    run_id: str
    """Run it concerns, or empty."""
    subject: str
    """What: a decision id, a call id, a kill scope, a commit id, a policy bundle digest."""
    detail: dict[str, Any]
    """The rest, JSON-safe: reasons, policies, the tool and its outcome, the note."""


class AuditRecord(AuditEntry):
    """An audit entry sealed into the chain."""

    seq: int
    """Position in the log, from 1, without gaps."""
    prev: str
    """`hash` of the record before (64 zeros for the first)."""
    hash: str
    """SHA-256 (or HMAC-SHA-256 with the audit key) over `prev`, `seq` and the entry."""


class AuditHead(TypedDict):
    """The last record's position and hash: kept apart from the records, so a truncated log
    is caught, and worth copying somewhere else (a witness) from time to time."""

    seq: int
    """Sequence number of the last record."""
    hash: str
    """Its hash."""

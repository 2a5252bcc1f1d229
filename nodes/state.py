"""Run state: what a run carries from node to node, checkpointed after every step.

Records in state are plain JSON-safe dicts (TypedDicts), not dataclasses: every checkpointer
(SQLite, Redis) and the LangGraph server's JSON API can store and return them without a
serializer allow-list. Decision *values* live in `guards`; nodes convert at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from guards import BreakerState

__all__ = [
    "BudgetState",
    "FindingRecord",
    "MemoryReadRecord",
    "Outcome",
    "OutcomeStatus",
    "ProposalRecord",
    "RunContext",
    "RunState",
    "Usage",
    "VerdictRecord",
]

OutcomeStatus = Literal["resolved", "unresolved", "failed", "halted", "rejected"]


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """Per-run context set by the caller (`graph.invoke(..., context=...)`), never by a model."""

    tenant: str = "default"
    """Tenant the run works for: the wall between customers' data and budgets."""
    user: str | None = None
    """Who started the run, for the record."""


class ProposalRecord(TypedDict):
    """A tool call an agent proposed; it runs only if the guard (or a human) allows it."""

    call_id: str
    """The model's tool-call id; the ToolMessage answering it carries the same id."""
    agent: str
    """Specialist that proposed it."""
    tool: str
    """Tool name as the model wrote it (may not exist)."""
    args: dict[str, Any]
    """Arguments as proposed, or as edited by a reviewer."""
    confidence: float | None
    """Model's stated confidence, if it gave one."""
    rationale: str
    """Model's text accompanying the call."""
    error: str | None
    """Why the call is malformed (e.g. unparsable arguments); the guard denies such calls."""


class MemoryReadRecord(TypedDict):
    """A memory record an agent's turn read (`memory.MemoryRead` as kept in state)."""

    namespace: list[str]
    """Namespace below the tenant."""
    key: str
    """Record key."""
    version: int
    """Version that was read."""
    commit_id: str
    """Commit that wrote that version."""


class VerdictRecord(TypedDict):
    """`guards.Verdict.to_record()` plus the call it decided."""

    call_id: str
    """Proposal the verdict is about."""
    decision_id: str
    """Unique decision id."""
    kind: Literal["allow", "deny", "escalate", "halt"]
    """The decision."""
    reasons: list[str]
    """Why."""
    zone: str | None
    """Risk zone considered."""
    policies: list[str]
    """`id@version` of each policy applied."""
    decided_by: str
    """`guard` or `human:<reviewer>`."""
    memory_reads: NotRequired[list[MemoryReadRecord]]
    """Memory the proposing agent's turn read (ids and versions): what the decision rests on.
    Empty when the agent has no memory; absent in records made before memory existed."""


class Usage(TypedDict):
    """What a run consumed."""

    tokens_in: int
    """Input tokens over all model calls."""
    tokens_out: int
    """Output tokens over all model calls."""
    steps: int
    """Model turns (specialists and the orchestrator)."""
    tool_calls: int
    """Tool calls the gateway executed."""
    cost_usd: float
    """Model spend from the price table."""
    started_at: float
    """Unix time the run started."""


class BudgetState(TypedDict):
    """How the run stands against its money thresholds."""

    extra_usd: float
    """Money a human granted beyond the run's cap."""
    threshold_hit: bool
    """The spend threshold was crossed (and acted on: fallback model or a human asked)."""
    fallback: bool
    """Specialists use their fallback (cheaper) model from now on."""


class FindingRecord(TypedDict):
    """A content-scanner finding, as kept in state (never the matched value itself)."""

    where: str
    """`input`, `tool:<name>` or `egress:<tool>`."""
    type: str
    """e.g. `credit_card`, `injection`."""
    category: str
    """`pii`, `secret`, `injection` or `protected`."""
    severity: str
    """`low`, `medium` or `high`."""
    span: list[int]
    """Start and end offsets in the scanned text."""


class Outcome(TypedDict):
    """How a run ended."""

    status: OutcomeStatus
    """resolved / unresolved (exit conditions), failed, halted (a guard stopped it), rejected
    (input outside the workflow's entry condition)."""
    reason: str
    """Why, in one sentence."""
    summary: str
    """The final answer or the last thing said."""


class ShadowRecord(TypedDict):
    """A run's shadow mode, as stored in state (see `tools.ShadowMode`)."""

    graph: bool
    """Every side-effecting call is simulated."""
    agents: list[str]
    """Calls by these specialists are simulated."""
    tools: list[str]
    """Calls of these tools are simulated."""


class RunState(TypedDict, total=False):
    """The graph state of a Bastion run."""

    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation: user input, agents' messages and tool results."""
    run_id: str
    """Id of the current run on this thread (a thread can hold many runs)."""
    tenant: str
    """Copied from the run context at intake."""
    workflow: str
    """Set by intake from the graph's workflow."""
    active_agent: str | None
    """Specialist currently working, or None between handoffs."""
    routes: list[str]
    """Specialists the orchestrator handed to, in order, this run."""
    proposals: list[ProposalRecord]
    """The active agent's pending tool calls."""
    verdicts: list[VerdictRecord]
    """Every decision this run, in order (the latest per call id counts)."""
    usage: Usage
    """Consumption this run."""
    outcome: Outcome | None
    """Set when the run is decided; None while it runs."""
    history: list[str]
    """Fingerprints (tool + canonical args) of every proposal this run: loop detection."""
    progress_step: int
    """The step at which the run last made progress (a new tool result or specialist)."""
    taint: list[str]
    """Why the run is tainted: untrusted instructions seen in the input or a tool output."""
    findings: list[FindingRecord]
    """Content-scanner findings this run."""
    breakers: dict[str, BreakerState]
    """Circuit breaker per tool; kept across runs on the thread (a broken tool stays broken)."""
    budget: BudgetState
    """Spend thresholds this run."""
    shadow: ShadowRecord
    """Shadow mode asked for at the start of this run (`configurable["shadow"]`), kept so a
    resume without it stays simulated."""
    memory_reads: list[MemoryReadRecord]
    """What the latest agent turn read from memory (replaced every turn of an agent with
    memory; copied into each verdict on its proposals)."""
    memory_commits: list[str]
    """Memory commits of the latest step whose tools wrote memory. Written only by such a
    step, so the checkpointer stamps them into that step's checkpoint metadata
    (`memory.checkpoints.CommitStampingSaver`)."""
    memory_commits_step: int
    """The superstep that wrote `memory_commits`: only the checkpoint of that step is stamped,
    even when a thread copy re-puts every checkpoint with all channels as new."""

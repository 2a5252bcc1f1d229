"""Helpers that read and build the plain records kept in run state."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from guards import UsageSnapshot, Verdict
from nodes.state import (
    FindingRecord,
    MemoryReadRecord,
    ProposalRecord,
    RunState,
    Usage,
    VerdictRecord,
)

if TYPE_CHECKING:
    from guards.scanners import ContentScanner

__all__ = [
    "ModelCall",
    "agent_node_name",
    "charge_model_call",
    "latest_verdicts",
    "model_name_of",
    "new_usage",
    "pending_with",
    "scan_findings",
    "this_run",
    "usage_of",
    "usage_snapshot",
    "verdict_record",
]


def agent_node_name(agent: str) -> str:
    """Graph node name of a specialist (`:` and `|` are reserved in LangGraph node names)."""
    return f"agent_{agent}"


def new_usage() -> Usage:
    """Zero usage, started now."""
    return Usage(
        tokens_in=0, tokens_out=0, steps=0, tool_calls=0, cost_usd=0.0, started_at=time.time()
    )


def usage_snapshot(state: RunState) -> UsageSnapshot:
    """The guard's view of the run's usage."""
    usage = state.get("usage") or new_usage()
    budget = state.get("budget")
    return UsageSnapshot(
        steps=usage["steps"],
        tokens=usage["tokens_in"] + usage["tokens_out"],
        cost_usd=usage["cost_usd"],
        seconds=time.time() - usage["started_at"],
        extra_usd=budget["extra_usd"] if budget else 0.0,
    )


@dataclass(frozen=True, kw_only=True)
class ModelCall:
    """Usage of one model call."""

    tokens_in: int
    """Input tokens reported (or estimated)."""
    tokens_out: int
    """Output tokens reported (or estimated)."""
    cost_usd: float
    """Dollar cost from the price table."""


def charge_model_call(state: RunState, call: ModelCall) -> Usage:
    """The run's usage after one more model call (one step)."""
    usage = state.get("usage") or new_usage()
    return Usage(
        tokens_in=usage["tokens_in"] + call.tokens_in,
        tokens_out=usage["tokens_out"] + call.tokens_out,
        steps=usage["steps"] + 1,
        tool_calls=usage["tool_calls"],
        cost_usd=usage["cost_usd"] + call.cost_usd,
        started_at=usage["started_at"],
    )


def model_name_of(model: BaseChatModel) -> str:
    """The name a model is priced under (`model_name`, then `model`, then its type)."""
    for attribute in ("model_name", "model"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def usage_of(reply: AIMessage, estimate_in: Callable[[], int]) -> tuple[int, int]:
    """Token usage a model reported, or estimates (computed only then) when it reported none."""
    if reply.usage_metadata:
        return reply.usage_metadata["input_tokens"], reply.usage_metadata["output_tokens"]
    return estimate_in(), max(1, len(str(reply.content)) // 4)


def verdict_record(
    verdict: Verdict, call_id: str, memory_reads: Sequence[MemoryReadRecord] = ()
) -> VerdictRecord:
    """A verdict as stored in state, tied to the proposal it decided and to the memory the
    proposing turn read (`state["memory_reads"]`)."""
    return VerdictRecord(
        call_id=call_id,
        **verdict.to_record(),  # type: ignore[typeddict-item]
        memory_reads=list(memory_reads),
    )


def latest_verdicts(state: RunState) -> dict[str, VerdictRecord]:
    """The deciding (latest) verdict for each pending proposal."""
    pending = {p["call_id"] for p in state.get("proposals") or []}
    latest: dict[str, VerdictRecord] = {}
    for record in state.get("verdicts") or []:
        if record["call_id"] in pending:
            latest[record["call_id"]] = record
    return latest


def pending_with(state: RunState, kind: str) -> list[ProposalRecord]:
    """Pending proposals whose deciding verdict is `kind`."""
    latest = latest_verdicts(state)
    return [
        p
        for p in state.get("proposals") or []
        if p["call_id"] in latest and latest[p["call_id"]]["kind"] == kind
    ]


def this_run(messages: Sequence[BaseMessage]) -> tuple[str, list[BaseMessage]]:
    """The request of the current run (latest human message) and every message after it.

    A thread can hold many runs; a run's own work starts at its request.
    """
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            content = messages[index].content
            return (content if isinstance(content, str) else str(content)), list(
                messages[index + 1 :]
            )
    return "", list(messages)


def scan_findings(
    scanner: ContentScanner,
    text: str,
    *,
    where: str,
    kinds: frozenset[str] = frozenset({"pii", "secret", "injection"}),
) -> tuple[list[FindingRecord], list[str]]:
    """Scan `text` for `kinds`; return the findings as records and the taint reasons among them.

    Injected instructions of medium or high severity taint the run: from then on its side
    effects need a human.
    """
    found = scanner.scan(text, kinds=kinds)
    records = [
        FindingRecord(
            where=where, type=f.type, category=f.category, severity=f.severity, span=list(f.span)
        )
        for f in found
    ]
    taint = [
        f"{where} contains {f.type.replace('_', ' ')}: {f.detail}"
        for f in found
        if f.category == "injection" and f.severity != "low"
    ]
    return records, taint

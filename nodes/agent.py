"""Agent node: a specialist's model turn. Its tool calls become proposals; it never runs a tool."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, SystemMessage

from guards import RunLimits
from nodes.models import estimate_tokens
from nodes.records import (
    ModelCall,
    charge_model_call,
    model_name_of,
    usage_of,
    usage_snapshot,
    verdict_record,
)
from nodes.state import Outcome, ProposalRecord, RunState
from nodes.workflow import AgentSpec
from observability import PriceTable
from tools import ToolRegistry

__all__ = ["make_agent_node", "route_after_agent"]


def _confidence(reply: AIMessage, call_id: str) -> float | None:
    # Models that state confidence put it in additional_kwargs: one number, or one per call id.
    stated = reply.additional_kwargs.get("confidence")
    if isinstance(stated, dict):
        stated = stated.get(call_id)
    return float(stated) if isinstance(stated, int | float) else None


def proposals_from(agent: str, reply: AIMessage) -> list[ProposalRecord]:
    """The reply's tool calls (well-formed and malformed) as proposals."""
    rationale = reply.content if isinstance(reply.content, str) else ""
    proposals = [
        ProposalRecord(
            call_id=call["id"] or "",
            agent=agent,
            tool=call["name"],
            args=dict(call["args"]),
            confidence=_confidence(reply, call["id"] or ""),
            rationale=rationale,
            error=None,
        )
        for call in reply.tool_calls
    ]
    proposals += [
        ProposalRecord(
            call_id=bad.get("id") or "",
            agent=agent,
            tool=bad.get("name") or "",
            args={},
            confidence=None,
            rationale=rationale,
            error=f"arguments were not valid JSON ({bad.get('error') or 'unparsable'}):"
            f" {bad.get('args')!r}. Call the tool again with a JSON object.",
        )
        for bad in reply.invalid_tool_calls
    ]
    return proposals


def make_agent_node(
    spec: AgentSpec, tools: ToolRegistry, limits: RunLimits, prices: PriceTable
) -> Callable[[RunState], dict[str, Any]]:
    """Build the node for specialist `spec`, whose model sees only `tools`."""
    schemas = [tool.llm_schema() for tool in tools]
    schema_chars = len(json.dumps(schemas)) if schemas else 0  # once, not per model call
    model = spec.model.bind_tools(schemas) if schemas else spec.model
    model_name = model_name_of(spec.model)
    system = SystemMessage(spec.instructions)

    def agent(state: RunState) -> dict[str, Any]:
        messages = [system, *(state.get("messages") or [])]
        reserve = estimate_tokens(messages, tools_chars=schema_chars)
        halted = limits.check(usage_snapshot(state), next_tokens=reserve, next_steps=1)
        if halted is not None:
            return {
                "proposals": [],
                "verdicts": [*state.get("verdicts", []), verdict_record(halted, "")],
                "outcome": Outcome(status="halted", reason=halted.reason, summary=""),
            }
        reply = model.invoke(messages)
        reply.name = spec.name
        tokens_in, tokens_out = usage_of(reply, lambda: reserve)
        call = ModelCall(
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=prices.cost(model_name, tokens_in, tokens_out),
        )
        return {
            "messages": [reply],
            "active_agent": spec.name,
            "proposals": proposals_from(spec.name, reply),
            "usage": charge_model_call(state, call),
        }

    return agent


def route_after_agent(state: RunState) -> str:
    """Proposals go to the guard; a finished turn goes back to the orchestrator."""
    if state.get("outcome"):
        return "finalize"
    return "guard" if state.get("proposals") else "orchestrator"

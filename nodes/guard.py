"""Guard node: asks the guard plane about every pending proposal and records the verdicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import ToolMessage

from guards import ActionGuard, ActionRequest, Verdict
from nodes.records import agent_node_name, latest_verdicts, usage_snapshot, verdict_record
from nodes.state import Outcome, ProposalRecord, RunState
from nodes.workflow import Workflow
from tools import ToolRegistry

__all__ = ["make_guard_node", "refusal_message", "route_after_guard"]


def refusal_message(proposal: ProposalRecord, text: str) -> ToolMessage:
    """The tool message that answers a call which did not run (the model must see why)."""
    return ToolMessage(
        content=text, tool_call_id=proposal["call_id"], name=proposal["tool"], status="error"
    )


def make_guard_node(
    guard: ActionGuard,
    registry: ToolRegistry,
    workflow: Workflow,
    agent_tools: Mapping[str, frozenset[str]],
) -> Callable[[RunState], dict[str, Any]]:
    """Build the guard node.

    Args:
        guard: decides each action.
        registry: every tool, to look up zones and side effects.
        workflow: the task boundary (side-effect budget).
        agent_tools: each specialist's scoped tool names.
    """

    def decide(state: RunState, proposal: ProposalRecord) -> Verdict:
        if proposal["error"]:
            return Verdict.deny(f"`{proposal['tool']}` was not called: {proposal['error']}")
        spec = registry.get(proposal["tool"])
        request = ActionRequest(
            tenant=state.get("tenant", "default"),
            workflow=workflow.name,
            agent=proposal["agent"],
            tool=proposal["tool"],
            args=proposal["args"],
            zone=spec.zone_for(proposal["args"]) if spec else None,
            side_effect=spec.side_effect if spec else None,
            allowed_tools=agent_tools.get(proposal["agent"], frozenset()),
            write_tools=workflow.write_tools,
            usage=usage_snapshot(state),
        )
        return guard.evaluate(request)

    def guard_node(state: RunState) -> dict[str, Any]:
        proposals = state.get("proposals") or []
        verdicts = [(p, decide(state, p)) for p in proposals]
        records = [
            *state.get("verdicts", []),
            *(verdict_record(v, p["call_id"]) for p, v in verdicts),
        ]
        halt = next((v for _, v in verdicts if v.kind == "halt"), None)
        if halt is not None:
            return {
                "verdicts": records,
                "messages": [
                    refusal_message(p, f"not run: the run was halted ({halt.reason})")
                    for p in proposals
                ],
                "outcome": Outcome(status="halted", reason=halt.reason, summary=""),
            }
        return {
            "verdicts": records,
            "messages": [
                refusal_message(p, f"denied by policy: {v.reason}")
                for p, v in verdicts
                if v.kind == "deny"
            ],
        }

    return guard_node


def route_after_guard(state: RunState) -> str:
    """Escalations to approval first, then allowed calls to execute, else back to the agent."""
    if state.get("outcome"):
        return "finalize"
    kinds = {record["kind"] for record in latest_verdicts(state).values()}
    if "escalate" in kinds:
        return "approval"
    if "allow" in kinds:
        return "execute"
    return agent_node_name(state.get("active_agent") or "")

"""Guard node: asks the guard plane about every pending proposal and records the verdicts."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import ToolMessage

from guards import ActionGuard, ActionRequest, Verdict, proposal_fingerprint
from nodes.records import agent_node_name, latest_verdicts, usage_snapshot, verdict_record
from nodes.state import Outcome, ProposalRecord, RunState
from nodes.workflow import Workflow
from tools import ToolRegistry

__all__ = [
    "ProposalJudge",
    "halted_update",
    "make_guard_node",
    "refusal_message",
    "route_after_guard",
]


def refusal_message(proposal: ProposalRecord, text: str) -> ToolMessage:
    """The tool message that answers a call which did not run (the model must see why)."""
    return ToolMessage(
        content=text, tool_call_id=proposal["call_id"], name=proposal["tool"], status="error"
    )


@dataclass(frozen=True, kw_only=True)
class ProposalJudge:
    """Translates a proposal in run state into the guard's `ActionRequest` and decides it."""

    guard: ActionGuard
    """The guard plane."""
    registry: ToolRegistry
    """Every tool, to look up zones, side effects and egress."""
    workflow: Workflow
    """The task boundary (side-effect budget)."""
    agent_tools: Mapping[str, frozenset[str]]
    """Each specialist's scoped tool names."""

    def judge(
        self,
        state: RunState,
        proposal: ProposalRecord,
        *,
        history: list[str],
        approved_by: str | None = None,
    ) -> Verdict:
        """Decide `proposal`; `approved_by` re-checks an action a human approved."""
        if proposal["error"]:
            return Verdict.deny(f"`{proposal['tool']}` was not called: {proposal['error']}")
        spec = self.registry.get(proposal["tool"])
        return self.guard.evaluate(
            ActionRequest(
                tenant=state.get("tenant", "default"),
                workflow=self.workflow.name,
                run_id=state.get("run_id", ""),
                agent=proposal["agent"],
                tool=proposal["tool"],
                args=proposal["args"],
                confidence=proposal["confidence"],
                zone=spec.zone_for(proposal["args"]) if spec else None,
                side_effect=spec.side_effect if spec else None,
                egress=spec.egress if spec else False,
                allowed_tools=self.agent_tools.get(proposal["agent"], frozenset()),
                write_tools=self.workflow.write_tools,
                usage=usage_snapshot(state),
                history=history,
                breakers=state.get("breakers") or {},
                taint=state.get("taint") or [],
                approved_by=approved_by,
                now=time.time(),
            )
        )


def halted_update(
    proposals: list[ProposalRecord], verdict: Verdict, records: list[Any]
) -> dict[str, Any]:
    """Stop the run: answer every pending call and set the outcome."""
    return {
        "verdicts": records,
        "messages": [
            refusal_message(p, f"not run: the run was halted ({verdict.reason})") for p in proposals
        ],
        "outcome": Outcome(status="halted", reason=verdict.reason, summary=""),
    }


def make_guard_node(judge: ProposalJudge) -> Callable[[RunState], dict[str, Any]]:
    """Build the guard node."""

    def guard_node(state: RunState) -> dict[str, Any]:
        proposals = list(state.get("proposals") or [])
        history = list(state.get("history") or [])
        records = list(state.get("verdicts") or [])
        messages = []
        for index, proposal in enumerate(proposals):
            verdict = judge.judge(state, proposal, history=history)
            history.append(proposal_fingerprint(proposal["tool"], proposal["args"]))
            records.append(verdict_record(verdict, proposal["call_id"]))
            if verdict.kind == "halt":
                update = halted_update(proposals, verdict, records)
                return {**update, "history": history}
            if verdict.args is not None:  # the guard changed the arguments (egress redaction)
                proposals[index] = {**proposal, "args": dict(verdict.args)}
            if verdict.kind == "deny":
                messages.append(refusal_message(proposal, f"denied by policy: {verdict.reason}"))
        return {
            "verdicts": records,
            "messages": messages,
            "history": history,
            "proposals": proposals,
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

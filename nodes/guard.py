"""Guard node: asks the guard plane about every pending proposal and records the verdicts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig

from guards import ActionGuard, ActionRequest, Verdict, proposal_fingerprint
from nodes.records import agent_node_name, latest_verdicts, usage_snapshot, verdict_record
from nodes.state import Outcome, ProposalRecord, RunState
from nodes.toolview import ToolViews
from nodes.workflow import Workflow
from tools import ToolRegistry

__all__ = [
    "Executor",
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
    tools: ToolViews
    """Each specialist's tools, scoped for the tenant."""

    def judge(
        self,
        state: RunState,
        proposal: ProposalRecord,
        *,
        history: list[str] | None = None,
        approved_by: str | None = None,
    ) -> Verdict:
        """Decide `proposal`.

        Args:
            state: the run.
            proposal: the call to decide.
            history: fingerprints of the earlier proposals (default: the run's).
            approved_by: set to re-check an action a human approved.
        """
        if proposal["error"]:
            return Verdict.deny(f"`{proposal['tool']}` was not called: {proposal['error']}")
        spec = self.registry.get(proposal["tool"])
        tenant = state.get("tenant", "default")
        return self.guard.evaluate(
            ActionRequest(
                tenant=tenant,
                workflow=self.workflow.name,
                run_id=state.get("run_id", ""),
                agent=proposal["agent"],
                tool=proposal["tool"],
                args=proposal["args"],
                confidence=proposal["confidence"],
                zone=spec.zone_for(proposal["args"]) if spec else None,
                side_effect=spec.side_effect if spec else None,
                egress=spec.egress if spec else False,
                allowed_tools=self.tools.for_agent(proposal["agent"], tenant).names,
                write_tools=self.workflow.write_tools,
                usage=usage_snapshot(state),
                history=(state.get("history") or []) if history is None else history,
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


Executor = Callable[[RunState, RunnableConfig], dict[str, Any]]
"""The execute node's function: runs the allowed calls of a state."""


def make_guard_node(
    judge: ProposalJudge, execute: Executor | None = None
) -> Callable[[RunState, RunnableConfig], dict[str, Any]]:
    """Build the guard node.

    With `execute`, a batch that needs no human (nothing escalated, nothing halted) runs its
    allowed calls in the same step: the verdict still precedes every effect, the gateway still
    checks the kill switch right before each one, and a crash in between re-runs the step,
    whose effects the idempotency keys replay instead of repeating. Saving the extra graph step
    matters because every tool call pays it.
    """

    def guard_node(state: RunState, config: RunnableConfig) -> dict[str, Any]:
        proposals = list(state.get("proposals") or [])
        history = list(state.get("history") or [])
        records = list(state.get("verdicts") or [])
        # What the proposing turn read from memory: part of every decision's trace.
        reads = state.get("memory_reads") or ()
        messages = []
        kinds = set()
        for index, proposal in enumerate(proposals):
            verdict = judge.judge(state, proposal, history=history)
            history.append(proposal_fingerprint(proposal["tool"], proposal["args"]))
            records.append(verdict_record(verdict, proposal["call_id"], reads))
            kinds.add(verdict.kind)
            if verdict.kind == "halt":
                return {**halted_update(proposals, verdict, records), "history": history}
            if verdict.args is not None:  # the guard changed the arguments (egress redaction)
                proposals[index] = {**proposal, "args": dict(verdict.args)}
            if verdict.kind == "deny":
                messages.append(refusal_message(proposal, f"denied by policy: {verdict.reason}"))
        update: dict[str, Any] = {
            "verdicts": records,
            "messages": messages,
            "history": history,
            "proposals": proposals,
        }
        if execute is None or "escalate" in kinds or "allow" not in kinds:
            return update
        done = execute({**state, **update}, config)  # type: ignore[typeddict-item]
        # Every call is answered now: no pending proposals, so the route goes to the agent.
        return {**update, **done, "messages": [*messages, *done["messages"]], "proposals": []}

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

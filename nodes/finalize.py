"""Finalize node: decides the outcome from the workflow's exit conditions and closes the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage

from guards import ActionGuard
from nodes.records import new_usage, this_run
from nodes.state import FindingRecord, Outcome, RunState
from nodes.workflow import Workflow

__all__ = ["make_finalize_node"]


def _final_answer(state: RunState) -> str:
    """The last thing an agent said (without calling a tool) in this run."""
    _, run = this_run(state.get("messages") or [])
    for message in reversed(run):
        if isinstance(message, AIMessage) and not message.tool_calls and message.content:
            return message.content if isinstance(message.content, str) else str(message.content)
    return ""


def _ran(message: ToolMessage) -> bool:
    """Whether a tool message reports a call the tool really received (not a refusal)."""
    artifact = message.artifact if isinstance(message.artifact, dict) else None
    return artifact is not None and artifact.get("error_kind") in (None, "tool_error", "crashed")


def _what_happened(state: RunState) -> str:
    """A summary for a human picking up a stopped run: who worked, what ran, what was asked."""
    usage = state.get("usage") or new_usage()
    ran = [
        m.name
        for m in this_run(state.get("messages") or [])[1]
        if isinstance(m, ToolMessage) and _ran(m)
    ]
    routes = " → ".join(state.get("routes") or []) or "no specialist"
    tools = ", ".join(f"{name} x{ran.count(name)}" for name in dict.fromkeys(ran)) or "none"
    return (
        f"Stopped after {usage['steps']} steps and ${usage['cost_usd']:.4f}: "
        f"{routes}; tool calls: {tools}."
    )


def make_finalize_node(
    workflow: Workflow, guard: ActionGuard | None = None
) -> Callable[[RunState], dict[str, Any]]:
    """Build the finalize node for `workflow`.

    The final answer is what leaves the system, so it passes the egress screen (secrets and
    sensitive PII redacted) when `guard` has one.
    """
    egress = guard.egress if guard else None

    def finalize(state: RunState) -> dict[str, Any]:
        summary = _final_answer(state)
        update: dict[str, Any] = {"active_agent": None, "proposals": []}
        if egress is not None and summary:
            summary, removed = egress.screen_text(summary)
            if removed:
                update["findings"] = [
                    *(state.get("findings") or []),
                    *(
                        FindingRecord(
                            where="egress:answer",
                            type=t,
                            category="redacted",
                            severity="high",
                            span=[],
                        )
                        for t in removed
                    ),
                ]
        outcome = state.get("outcome")
        if outcome:
            if outcome["status"] == "halted":  # a human picks this up: say what happened
                said = f" Last said: {summary}" if summary else ""
                summary = _what_happened(state) + said
            outcome = Outcome(
                status=outcome["status"],
                reason=outcome["reason"],
                summary=outcome["summary"] or summary,
            )
        elif failure := workflow.exit.failure(state):
            outcome = Outcome(status="failed", reason=failure, summary=summary)
        elif workflow.exit.success(state):
            outcome = Outcome(status="resolved", reason="exit condition met", summary=summary)
        else:
            outcome = Outcome(
                status="unresolved",
                summary=summary,
                reason="specialists finished without meeting the exit condition",
            )
        return {**update, "outcome": outcome}

    return finalize

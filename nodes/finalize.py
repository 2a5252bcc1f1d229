"""Finalize node: decides the outcome from the workflow's exit conditions and closes the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage

from nodes.records import this_run
from nodes.state import Outcome, RunState
from nodes.workflow import Workflow

__all__ = ["make_finalize_node"]


def _final_answer(state: RunState) -> str:
    """The last thing an agent said (without calling a tool) in this run."""
    _, run = this_run(state.get("messages") or [])
    for message in reversed(run):
        if isinstance(message, AIMessage) and not message.tool_calls and message.content:
            return message.content if isinstance(message.content, str) else str(message.content)
    return ""


def make_finalize_node(workflow: Workflow) -> Callable[[RunState], dict[str, Any]]:
    """Build the finalize node for `workflow`."""

    def finalize(state: RunState) -> dict[str, Any]:
        summary = _final_answer(state)
        outcome = state.get("outcome")
        if outcome:
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
        return {"outcome": outcome, "active_agent": None, "proposals": []}

    return finalize

"""Finalize node: decides the outcome from the workflow's exit conditions and closes the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage

from nodes.state import Outcome, RunState
from nodes.workflow import Workflow

__all__ = ["make_finalize_node"]


def _final_answer(state: RunState) -> str:
    for message in reversed(state.get("messages") or []):
        if isinstance(message, AIMessage) and not message.tool_calls and message.content:
            return message.content if isinstance(message.content, str) else str(message.content)
        if not isinstance(message, AIMessage) and message.type == "human":
            break  # nothing said in this run
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

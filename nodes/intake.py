"""Intake node: stamps tenant and workflow from the run context and checks the entry condition."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from langgraph.runtime import Runtime

from nodes.records import new_usage, this_run
from nodes.state import Outcome, RunContext, RunState
from nodes.workflow import Workflow

__all__ = ["make_intake_node", "route_after_intake"]

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def make_intake_node(workflow: Workflow) -> Callable[..., dict[str, Any]]:
    """Build the intake node for `workflow`.

    It resets the per-run fields (a thread can hold many runs), so a new request on an old
    thread starts with a fresh budget and no stale proposals.
    """

    def intake(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        context = runtime.context if isinstance(runtime.context, RunContext) else RunContext()
        update: dict[str, Any] = {
            "tenant": context.tenant,
            "workflow": workflow.name,
            "active_agent": None,
            "routes": [],
            "proposals": [],
            "verdicts": [],
            "usage": new_usage(),
            "outcome": None,
        }
        problem = None
        if not _TENANT.match(context.tenant or ""):
            problem = (
                f"tenant {context.tenant!r} is not a valid tenant id (letters, digits, "
                "`_.-`, at most 64 chars); pass context={'tenant': ...}"
            )
        else:
            problem = workflow.entry.rejects(this_run(state.get("messages") or [])[0])
        if problem:
            update["outcome"] = Outcome(status="rejected", reason=problem, summary="")
        return update

    return intake


def route_after_intake(state: RunState) -> Literal["orchestrator", "finalize"]:
    """Rejected requests go straight to finalize; the rest to the orchestrator."""
    return "finalize" if state.get("outcome") else "orchestrator"

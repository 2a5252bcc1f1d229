"""Intake node: stamps tenant, workflow and run id, checks the entry condition, scans the input."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from guards import ActionGuard, KillTarget, UnknownTenantError
from nodes.records import new_usage, scan_findings, this_run
from nodes.state import BudgetState, Outcome, RunContext, RunState, ShadowRecord
from nodes.workflow import Workflow
from tools import ShadowMode

__all__ = ["make_intake_node", "route_after_intake"]

# The memory contract's rule: a tenant is also a store namespace label and a Weaviate tenant.
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _tenant_problem(tenant: str, guard: ActionGuard) -> str | None:
    if not _TENANT.match(tenant or ""):
        return (
            f"tenant {tenant!r} is not a valid tenant id (letters, digits, `_-`, at most 64 "
            "chars); pass context={'tenant': ...}"
        )
    if guard.tenants is not None:
        try:
            guard.tenants.get(tenant)
        except UnknownTenantError as error:
            return str(error)
    return None


def make_intake_node(
    workflow: Workflow, guard: ActionGuard | None = None
) -> Callable[..., dict[str, Any]]:
    """Build the intake node for `workflow`.

    It resets the per-run fields (a thread can hold many runs), so a new request on an old
    thread starts with a fresh budget, no stale proposals and no taint. Circuit breakers are
    kept: a tool that is down stays down for the next run.
    """
    guard = guard or ActionGuard(limits=workflow.limits)

    def intake(
        state: RunState, runtime: Runtime[RunContext], config: RunnableConfig
    ) -> dict[str, Any]:
        context = runtime.context if isinstance(runtime.context, RunContext) else RunContext()
        # Parsed here, before any model spend: a bad value fails the run at once.
        shadow = ShadowMode.parse((config.get("configurable") or {}).get("shadow"))
        run_id = f"run_{uuid.uuid4().hex[:16]}"
        request = this_run(state.get("messages") or [])[0]
        update: dict[str, Any] = {
            "run_id": run_id,
            "tenant": context.tenant,
            "workflow": workflow.name,
            "active_agent": None,
            "routes": [],
            "proposals": [],
            "verdicts": [],
            "usage": new_usage(),
            "outcome": None,
            "history": [],
            "progress_step": 0,
            "taint": [],
            "findings": [],
            "memory_reads": [],
            "budget": BudgetState(extra_usd=0.0, threshold_hit=False, fallback=False),
            "shadow": ShadowRecord(
                graph=shadow.graph, agents=sorted(shadow.agents), tools=sorted(shadow.tools)
            ),
        }
        problem = _tenant_problem(context.tenant, guard) or workflow.entry.rejects(request)
        if problem:
            update["outcome"] = Outcome(status="rejected", reason=problem, summary="")
            return update
        killed = guard.killed(
            KillTarget(tenant=context.tenant, workflow=workflow.name, run_id=run_id)
        )
        if killed is not None:
            update["outcome"] = Outcome(status="halted", reason=killed.reason, summary="")
            return update
        if guard.scanner is not None:
            findings, taint = scan_findings(guard.scanner, request, where="input")
            update["findings"], update["taint"] = findings, taint
        return update

    return intake


def route_after_intake(state: RunState) -> Literal["orchestrator", "finalize"]:
    """Rejected requests go straight to finalize; the rest to the orchestrator."""
    return "finalize" if state.get("outcome") else "orchestrator"

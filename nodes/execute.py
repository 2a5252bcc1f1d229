"""Execute node: hands allowed calls to the execution gateway and returns the tool messages.

Before any side effect it refuses a durability mode that could repeat effects after a crash;
immediately before each one the gateway asks the kill switch. After each call it scans the
output (injected instructions taint the run), updates the tool's breaker and notes progress.
Calls covered by shadow mode (built in, or `configurable["shadow"]` per run) are simulated.

Memory commits: a tool that writes memory declares `memory_commit: str` in its output model
and returns the commit id there (empty when it wrote nothing). The node collects the commits
its calls made into `state["memory_commits"]`, only in a step that made some, so the
checkpointer stamps them into that step's checkpoint metadata.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig

from guards import ActionGuard, KillTarget
from nodes.records import agent_node_name, new_usage, pending_with, scan_findings
from nodes.state import ProposalRecord, RunState, Usage
from tools import ExecutionGateway, ShadowMode, ToolInvocation, ToolResult, require_durable
from tools.shadow import SHADOW_OFF

__all__ = ["MEMORY_COMMIT_FIELD", "make_execute_node", "memory_writers", "route_after_execute"]

MEMORY_COMMIT_FIELD = "memory_commit"
"""Output field in which a tool that writes memory returns its commit id."""

DURABILITY_KEY = "__pregel_durability"
"""Where LangGraph puts the run's `durability` in a node's config (when the caller set one;
its default is `async`). A test pins it, so a LangGraph change cannot silently skip the check."""


def _readable(content: str) -> str:
    """A tool output as the model will read it: JSON strings decoded (a `\\t` escape must not
    hide "ignore\tprevious instructions" from the scanner), else the text as is."""
    try:
        value = json.loads(content)
    except ValueError:  # plain text, or JSON cut short by the contract's output bound
        return content
    strings: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return "\n".join(strings) if strings else content


def _message(result: ToolResult) -> ToolMessage:
    return ToolMessage(
        content=result.content,
        tool_call_id=result.call_id,
        name=result.tool,
        status="success" if result.ok else "error",
        artifact={
            "idempotency_key": result.idempotency_key,
            "error_kind": result.error_kind,
            "error_code": result.error_code,
            "attempts": result.attempts,
            "replayed": result.replayed,
            "shadow": result.shadow,
        },
    )


def memory_writers(gateway: ExecutionGateway) -> frozenset[str]:
    """Tools whose output model declares `memory_commit` (the tools that write memory)."""
    return frozenset(
        spec.name
        for spec in gateway.registry
        if spec.output_model is not None and MEMORY_COMMIT_FIELD in spec.output_model.model_fields
    )


def _memory_commit(result: ToolResult) -> str | None:
    """The commit a memory tool's call made now (not a replay, not a simulation)."""
    if not result.ok or result.replayed or result.shadow:
        return None
    try:
        output = json.loads(result.content)
    except ValueError:  # cut short by the output bound: the commit id is not readable
        return None
    commit = output.get(MEMORY_COMMIT_FIELD) if isinstance(output, dict) else None
    return commit if isinstance(commit, str) and commit else None


def _check_durability(
    configurable: dict[str, Any],
    proposals: list[ProposalRecord],
    gateway: ExecutionGateway,
    shadow: ShadowMode,
) -> None:
    writes = [
        p["tool"]
        for p in proposals
        if (spec := gateway.registry.get(p["tool"])) is not None
        and spec.side_effect != "none"
        and not shadow.covers(p["agent"], p["tool"])
    ]
    require_durable(configurable.get(DURABILITY_KEY, "async"), writes)


def make_execute_node(
    gateway: ExecutionGateway, guard: ActionGuard, shadow: ShadowMode = SHADOW_OFF
) -> Callable[[RunState, RunnableConfig], dict[str, Any]]:
    """Build the execute node over `gateway`, governed by `guard`, simulating what `shadow`
    covers."""
    writers = memory_writers(gateway)  # once: the hot path parses no other tool's output

    def execute(state: RunState, config: RunnableConfig) -> dict[str, Any]:
        configurable = config.get("configurable") or {}
        # Keys are per thread; a run without one must not share keys with other such runs.
        thread_id = str(configurable.get("thread_id") or state.get("run_id", ""))
        # The run's own mode (stored at intake, so a plain resume keeps it) and a resume's.
        mode = (
            shadow
            | ShadowMode.parse(state.get("shadow"))
            | ShadowMode.parse(configurable.get("shadow"))
        )
        allowed = pending_with(state, "allow")
        _check_durability(configurable, allowed, gateway, mode)
        tenant = state.get("tenant", "default")
        target = KillTarget(
            tenant=tenant, workflow=state.get("workflow", ""), run_id=state.get("run_id", "")
        )

        def before_effect(_: ToolInvocation) -> str | None:
            halted = guard.killed(target)
            return halted.reason if halted else None

        messages = []
        findings = list(state.get("findings") or [])
        taint = list(state.get("taint") or [])
        breakers = dict(state.get("breakers") or {})
        progressed = False
        executed = 0
        commits: list[str] = []
        for proposal in allowed:
            result = gateway.execute(
                ToolInvocation(
                    tool=proposal["tool"],
                    args=proposal["args"],
                    call_id=proposal["call_id"],
                    tenant=tenant,
                    thread_id=thread_id,
                    agent=proposal["agent"],
                    run_id=state.get("run_id", ""),
                    shadow=mode.covers(proposal["agent"], proposal["tool"]),
                ),
                before_effect=before_effect,
            )
            messages.append(_message(result))
            if result.tool in writers and (commit := _memory_commit(result)):
                commits.append(commit)
            ran = result.ran or result.replayed
            if ran:
                executed += 1
                breakers[result.tool] = guard.breaker.record(
                    breakers.get(result.tool), ok=result.ok, now=time.time()
                )
            progressed = progressed or result.ok
            if ran and guard.scanner is not None:  # error texts can carry third-party words too
                found, tainted = scan_findings(
                    guard.scanner, _readable(result.content), where=f"tool:{result.tool}"
                )
                findings += found
                taint += tainted
        usage = state.get("usage") or new_usage()
        update: dict[str, Any] = {
            "messages": messages,
            "usage": Usage(**{**usage, "tool_calls": usage["tool_calls"] + executed}),
            "breakers": breakers,
            "findings": findings,
            "taint": taint,
        }
        if progressed:
            update["progress_step"] = usage["steps"]
        if commits:
            update["memory_commits"] = commits
            update["memory_commits_step"] = (config.get("metadata") or {}).get("langgraph_step")
        return update

    return execute


def route_after_execute(state: RunState) -> str:
    """Tool results go back to the agent that asked for them."""
    return agent_node_name(state.get("active_agent") or "")

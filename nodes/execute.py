"""Execute node: hands allowed calls to the execution gateway and returns the tool messages.

After each call it scans the output (injected instructions taint the run), updates the tool's
circuit breaker and notes progress; immediately before each side effect it asks the kill switch.
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
from nodes.state import RunState, Usage
from tools import ExecutionGateway, ToolInvocation, ToolResult

__all__ = ["make_execute_node", "route_after_execute"]


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
        artifact={"idempotency_key": result.idempotency_key, "error_kind": result.error_kind},
    )


def make_execute_node(
    gateway: ExecutionGateway, guard: ActionGuard
) -> Callable[[RunState, RunnableConfig], dict[str, Any]]:
    """Build the execute node over `gateway`, governed by `guard`."""

    def execute(state: RunState, config: RunnableConfig) -> dict[str, Any]:
        thread_id = str((config.get("configurable") or {}).get("thread_id", ""))
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
        for proposal in pending_with(state, "allow"):
            result = gateway.execute(
                ToolInvocation(
                    tool=proposal["tool"],
                    args=proposal["args"],
                    call_id=proposal["call_id"],
                    tenant=tenant,
                    thread_id=thread_id,
                    agent=proposal["agent"],
                ),
                before_effect=before_effect,
            )
            messages.append(_message(result))
            ran = result.ok or result.error_kind in ("tool_error", "crashed")
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
        return update

    return execute


def route_after_execute(state: RunState) -> str:
    """Tool results go back to the agent that asked for them."""
    return agent_node_name(state.get("active_agent") or "")

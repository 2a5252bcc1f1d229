"""Execute node: hands allowed calls to the execution gateway and returns the tool messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig

from nodes.records import agent_node_name, new_usage, pending_with
from nodes.state import RunState, Usage
from tools import ExecutionGateway, ToolInvocation

__all__ = ["make_execute_node", "route_after_execute"]


def make_execute_node(
    gateway: ExecutionGateway,
) -> Callable[[RunState, RunnableConfig], dict[str, Any]]:
    """Build the execute node over `gateway`."""

    def execute(state: RunState, config: RunnableConfig) -> dict[str, Any]:
        thread_id = str((config.get("configurable") or {}).get("thread_id", ""))
        messages = []
        for proposal in pending_with(state, "allow"):
            result = gateway.execute(
                ToolInvocation(
                    tool=proposal["tool"],
                    args=proposal["args"],
                    call_id=proposal["call_id"],
                    tenant=state.get("tenant", "default"),
                    thread_id=thread_id,
                    agent=proposal["agent"],
                )
            )
            messages.append(
                ToolMessage(
                    content=result.content,
                    tool_call_id=result.call_id,
                    name=result.tool,
                    status="success" if result.ok else "error",
                    artifact={
                        "idempotency_key": result.idempotency_key,
                        "error_kind": result.error_kind,
                    },
                )
            )
        usage = state.get("usage") or new_usage()
        return {
            "messages": messages,
            "usage": Usage(**{**usage, "tool_calls": usage["tool_calls"] + len(messages)}),
        }

    return execute


def route_after_execute(state: RunState) -> str:
    """Tool results go back to the agent that asked for them."""
    return agent_node_name(state.get("active_agent") or "")

"""Tools: typed contracts, a registry with scoped views, and the execution gateway."""

from tools.gateway import ExecutionGateway, ToolInvocation, ToolResult, idempotency_key
from tools.registry import ToolRegistry
from tools.spec import (
    RiskZone,
    SideEffect,
    ToolConfigError,
    ToolContext,
    ToolError,
    ToolSpec,
    tool_contract,
)

__all__ = [
    "ExecutionGateway",
    "RiskZone",
    "SideEffect",
    "ToolConfigError",
    "ToolContext",
    "ToolError",
    "ToolInvocation",
    "ToolRegistry",
    "ToolResult",
    "ToolSpec",
    "idempotency_key",
    "tool_contract",
]

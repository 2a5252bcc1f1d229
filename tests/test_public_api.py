"""Each package's public names are pinned: removing or renaming one is a deliberate change."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "observability": ["DEFAULT_PRICES", "ModelPrice", "PriceTable"],
    "guards": [
        "ActionGuard",
        "ActionRequest",
        "GuardConfigError",
        "PolicyRef",
        "RunLimits",
        "UsageSnapshot",
        "Verdict",
        "VerdictKind",
    ],
    "tools": [
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
    ],
    "memory": ["CheckpointerConfigError", "open_checkpointer"],
    "nodes": [
        "AgentSpec",
        "EntryCondition",
        "EscalationPath",
        "ExitConditions",
        "InvalidResumeError",
        "ModelConfigError",
        "ModelRouter",
        "Outcome",
        "OutcomeStatus",
        "ProposalRecord",
        "ReviewResponse",
        "RouteDecision",
        "Router",
        "RunContext",
        "RunState",
        "ScriptPolicy",
        "ScriptedChatModel",
        "SequentialRouter",
        "Usage",
        "VerdictRecord",
        "Workflow",
        "WorkflowConfigError",
        "agent_node_name",
        "estimate_tokens",
        "load_chat_model",
        "make_agent_node",
        "make_approval_node",
        "make_execute_node",
        "make_finalize_node",
        "make_guard_node",
        "make_intake_node",
        "make_orchestrator_node",
        "parse_review",
        "route_after_agent",
        "route_after_approval",
        "route_after_execute",
        "route_after_guard",
        "route_after_intake",
        "route_from_orchestrator",
        "this_run",
    ],
    "graphs": [
        "AgentSpec",
        "OrchestratorBuilder",
        "RunContext",
        "Settings",
        "SettingsError",
        "Workflow",
        "build_orchestrator",
    ],
    "graphs.support": [
        "REFUND_AUTO_LIMIT",
        "SUPPORT_WORKFLOW",
        "SupportDB",
        "build_support_graph",
        "format_ticket",
        "make_support_tools",
        "parse_ticket",
        "scripted_review",
        "support_model",
    ],
    "console": ["Reviewer", "RunReport", "main", "run_to_end"],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_all_is_pinned_and_importable(package: str) -> None:
    """`__all__` equals the pinned list and every name in it exists."""
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name} is in __all__ but missing"

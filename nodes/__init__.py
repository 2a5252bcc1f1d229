"""Nodes: the run state schema and the node factories the orchestrator graph is built from."""

from nodes.agent import make_agent_node, route_after_agent
from nodes.approval import (
    InvalidResumeError,
    ReviewResponse,
    make_approval_node,
    parse_review,
    route_after_approval,
)
from nodes.execute import make_execute_node, route_after_execute
from nodes.finalize import make_finalize_node
from nodes.guard import ProposalJudge, make_guard_node, route_after_guard
from nodes.intake import make_intake_node, route_after_intake
from nodes.memory import MEMORY_HEADER, MemoryBinding, MemoryContext, run_scope, tool_scope
from nodes.models import (
    ModelConfigError,
    ScriptedChatModel,
    ScriptPolicy,
    estimate_tokens,
    load_chat_model,
)
from nodes.orchestrator import (
    ModelRouter,
    RouteDecision,
    Router,
    SequentialRouter,
    make_orchestrator_node,
    route_from_orchestrator,
)
from nodes.records import agent_node_name, this_run
from nodes.run_metadata import model_call_config, run_config
from nodes.spend import Admission, ModelGate
from nodes.state import (
    BudgetState,
    FindingRecord,
    MemoryReadRecord,
    Outcome,
    OutcomeStatus,
    ProposalRecord,
    RunContext,
    RunState,
    ShadowRecord,
    Usage,
    VerdictRecord,
)
from nodes.toolview import ToolViews
from nodes.tracing import NodeStep, encode_step, traced
from nodes.workflow import (
    AgentSpec,
    EntryCondition,
    EscalationPath,
    ExitConditions,
    Workflow,
    WorkflowConfigError,
)

__all__ = [
    "MEMORY_HEADER",
    "Admission",
    "AgentSpec",
    "BudgetState",
    "EntryCondition",
    "EscalationPath",
    "ExitConditions",
    "FindingRecord",
    "InvalidResumeError",
    "MemoryBinding",
    "MemoryContext",
    "MemoryReadRecord",
    "ModelConfigError",
    "ModelGate",
    "ModelRouter",
    "NodeStep",
    "Outcome",
    "OutcomeStatus",
    "ProposalJudge",
    "ProposalRecord",
    "ReviewResponse",
    "RouteDecision",
    "Router",
    "RunContext",
    "RunState",
    "ScriptPolicy",
    "ScriptedChatModel",
    "SequentialRouter",
    "ShadowRecord",
    "ToolViews",
    "Usage",
    "VerdictRecord",
    "Workflow",
    "WorkflowConfigError",
    "agent_node_name",
    "encode_step",
    "estimate_tokens",
    "load_chat_model",
    "make_agent_node",
    "make_approval_node",
    "make_execute_node",
    "make_finalize_node",
    "make_guard_node",
    "make_intake_node",
    "make_orchestrator_node",
    "model_call_config",
    "parse_review",
    "route_after_agent",
    "route_after_approval",
    "route_after_execute",
    "route_after_guard",
    "route_after_intake",
    "route_from_orchestrator",
    "run_config",
    "run_scope",
    "this_run",
    "tool_scope",
    "traced",
]

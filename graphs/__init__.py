"""Graphs: the composition root that wires nodes, guards, tools and memory into runnable graphs."""

from graphs.audit import policy_subject, record_policy_bundle
from graphs.orchestrator import OrchestratorBuilder, build_orchestrator
from graphs.services import Services, services_for
from graphs.settings import Settings, SettingsError
from nodes import AgentSpec, RunContext, Workflow

__all__ = [
    "AgentSpec",
    "OrchestratorBuilder",
    "RunContext",
    "Services",
    "Settings",
    "SettingsError",
    "Workflow",
    "build_orchestrator",
    "policy_subject",
    "record_policy_bundle",
    "services_for",
]

"""The guard's input: one proposed action with everything needed to judge it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guards.limits import UsageSnapshot

__all__ = ["ActionRequest"]


@dataclass(frozen=True, kw_only=True)
class ActionRequest:
    """A proposed tool call as the guard sees it (nodes translate proposals into this)."""

    tenant: str
    """Tenant of the run, from the run context (never from model output)."""
    workflow: str
    """Workflow the run belongs to."""
    agent: str
    """Specialist that proposed the action."""
    tool: str
    """Tool the agent wants to call."""
    args: Mapping[str, Any] = field(default_factory=dict)
    """Arguments as proposed."""
    zone: str | None = None
    """Risk zone of the tool for these args (`green`, `yellow`, `red`); None if unknown tool."""
    side_effect: str | None = None
    """`none`, `reversible` or `irreversible`; None if the tool is unknown."""
    allowed_tools: frozenset[str] = frozenset()
    """The agent's scoped tool list."""
    write_tools: frozenset[str] = frozenset()
    """The workflow's side-effect budget: tools allowed to change the world."""
    usage: UsageSnapshot = UsageSnapshot()
    """What the run has consumed so far."""

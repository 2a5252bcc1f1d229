"""The guard's input: one proposed action with everything needed to judge it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from guards.breaker import BreakerState
from guards.limits import UsageSnapshot

__all__ = ["ActionRequest"]


@dataclass(frozen=True, kw_only=True)
class ActionRequest:
    """A proposed tool call as the guard sees it (nodes translate proposals into this)."""

    tenant: str
    """Tenant of the run, from the run context (never from model output)."""
    workflow: str
    """Workflow the run belongs to."""
    run_id: str = ""
    """The run, for run-scoped kills and the record."""
    agent: str
    """Specialist that proposed the action."""
    tool: str
    """Tool the agent wants to call."""
    args: Mapping[str, Any] = field(default_factory=dict)
    """Arguments as proposed."""
    confidence: float | None = None
    """The model's stated confidence in this action, if any."""
    zone: str | None = None
    """Risk zone of the tool for these args (`green`, `yellow`, `red`); None if unknown tool."""
    side_effect: str | None = None
    """`none`, `reversible` or `irreversible`; None if the tool is unknown."""
    egress: bool = False
    """The tool sends its arguments outside the system (emails, webhooks): scanned on the way."""
    allowed_tools: frozenset[str] = frozenset()
    """The agent's scoped tool list."""
    write_tools: frozenset[str] = frozenset()
    """The workflow's side-effect budget: tools allowed to change the world."""
    usage: UsageSnapshot = UsageSnapshot()
    """What the run has consumed so far."""
    history: Sequence[str] = ()
    """Fingerprints of the run's earlier proposals (loop detection)."""
    breakers: Mapping[str, BreakerState] = field(default_factory=dict)
    """Circuit breaker state per tool."""
    taint: Sequence[str] = ()
    """Why the run is tainted (untrusted instructions seen in input or tool output)."""
    approved_by: str | None = None
    """Set when re-checking an action a human approved: only denials and halts still apply."""
    now: float = 0.0
    """Unix time of the decision (breaker cool-downs)."""

    @property
    def writes(self) -> bool:
        """The action changes the world (or its effects are unknown)."""
        return self.side_effect != "none"

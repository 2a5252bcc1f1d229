"""Workflows and agents: the task boundary a run must stay inside, and who works in it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from langchain_core.language_models import BaseChatModel

from guards import RunLimits
from nodes.state import RunState

__all__ = [
    "AgentSpec",
    "EntryCondition",
    "EscalationPath",
    "ExitConditions",
    "Workflow",
    "WorkflowConfigError",
]


class WorkflowConfigError(ValueError):
    """A workflow or agent was declared wrongly (names the field and what to fix)."""


@dataclass(frozen=True, kw_only=True)
class AgentSpec:
    """A specialist: its instructions, its model and its scoped tools."""

    name: str
    """Unique name; the graph node is `agent_<name>`."""
    instructions: str
    """System prompt."""
    tools: Sequence[str] = ()
    """Names of the tools it may propose (its scope)."""
    model: BaseChatModel
    """Its chat model (a LangChain chat model, or `ScriptedChatModel` offline)."""
    fallback_model: BaseChatModel | None = None
    """A cheaper model to switch to when the run nears its spend cap (see `SpendPolicy`)."""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise WorkflowConfigError(
                f"agent name {self.name!r} must be a Python identifier (letters, digits, _)"
            )


@dataclass(frozen=True, kw_only=True)
class EntryCondition:
    """What input the workflow accepts; anything else is rejected at intake, before any model."""

    min_chars: int = 1
    """Shortest acceptable request."""
    max_chars: int = 8000
    """Longest acceptable request."""
    check: Callable[[str], str | None] | None = None
    """Workflow-specific check: returns why the request is not acceptable, or None."""

    def rejects(self, text: str) -> str | None:
        """Why `text` is not acceptable, or None if it is."""
        size = len(text.strip())
        if size < self.min_chars:
            return f"request is empty or too short ({size} chars, need at least {self.min_chars})"
        if size > self.max_chars:
            return f"request is too long ({size} chars, limit {self.max_chars}); split it up"
        return self.check(text) if self.check else None


@dataclass(frozen=True, kw_only=True)
class ExitConditions:
    """When a finished run counts as a success, and when as a terminal failure."""

    success: Callable[[RunState], bool] = lambda state: True
    """True when the run achieved its goal."""
    failure: Callable[[RunState], str | None] = lambda state: None
    """A reason when the run failed terminally (checked before `success`)."""


@dataclass(frozen=True, kw_only=True)
class EscalationPath:
    """Who answers an escalation, and what happens without an answer."""

    reviewers: str = "operators"
    """Role or queue that receives approval requests."""
    allowed_decisions: tuple[str, ...] = ("approve", "edit", "reject")
    """Decisions a reviewer may take."""
    deadline_s: float | None = None
    """Response-time target: seconds a request may wait for a reviewer; past it, the console
    (or `bastion approvals sweep`) takes `on_timeout` on record. None: no deadline."""
    on_timeout: Literal["reject", "approve"] = "reject"
    """The default action when the deadline passes (approved actions are still re-checked)."""

    def __post_init__(self) -> None:
        unknown = set(self.allowed_decisions) - {"approve", "edit", "reject"}
        if unknown or not self.allowed_decisions:
            raise WorkflowConfigError(
                f"EscalationPath.allowed_decisions {self.allowed_decisions!r} must be a "
                "non-empty subset of ('approve', 'edit', 'reject')"
            )
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise WorkflowConfigError(
                f"EscalationPath.deadline_s must be a positive number of seconds or None, "
                f"got {self.deadline_s!r}"
            )
        if self.on_timeout not in ("reject", "approve") or (
            self.on_timeout not in self.allowed_decisions
        ):
            raise WorkflowConfigError(
                f"EscalationPath.on_timeout {self.on_timeout!r} must be `reject` or `approve` "
                f"and one of allowed_decisions {self.allowed_decisions!r}"
            )


@dataclass(frozen=True, kw_only=True)
class Workflow:
    """A workflow's task boundary: entry, exits, side-effect budget, limits and escalation."""

    name: str
    """Workflow id (recorded on every run)."""
    entry: EntryCondition = EntryCondition()
    """What input is accepted."""
    exit: ExitConditions = ExitConditions()
    """What success and terminal failure mean."""
    write_tools: frozenset[str] = frozenset()
    """Side-effect budget: the only tools allowed to change the world."""
    limits: RunLimits = RunLimits()
    """Hard caps per run."""
    escalation: EscalationPath = EscalationPath()
    """Where escalations go."""

"""A tool call and its result as values: what nodes hand the gateway and what comes back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ErrorKind", "ToolInvocation", "ToolResult", "failed_result"]

ErrorKind = Literal[
    "unknown_tool",
    "invalid_args",
    "tool_error",
    "crashed",
    "timeout",
    "refused",
    "rate_limited",
    "in_doubt",
    "bad_output",
    "misconfigured",
]


@dataclass(frozen=True, kw_only=True)
class ToolInvocation:
    """An allowed call, ready to run (nodes translate approved proposals into this)."""

    tool: str
    """Tool to run."""
    args: Mapping[str, Any] = field(default_factory=dict)
    """Arguments, not yet validated."""
    call_id: str
    """The model's id for this call; the result answers it."""
    tenant: str
    """Tenant the call runs for."""
    thread_id: str
    """Thread of the run."""
    agent: str
    """Specialist whose proposal this was."""
    run_id: str = ""
    """Run of the call (effects are undone by run)."""
    shadow: bool = False
    """Simulate a side effect instead of acting (shadow mode)."""


@dataclass(frozen=True, kw_only=True)
class ToolResult:
    """What came of one invocation, as the model will read it."""

    call_id: str
    """The invocation's call id."""
    tool: str
    """Tool that was asked for."""
    ok: bool
    """False when the call did not succeed; `content` then says why and what to do."""
    content: str
    """Text for the model: the JSON result, or an actionable error."""
    error_kind: ErrorKind | None = None
    """Why it failed, for metrics and routing."""
    error_code: str | None = None
    """The tool's documented error mode, when it raised one."""
    idempotency_key: str | None = None
    """The key the call ran under (None if it never got that far)."""
    attempts: int = 0
    """Tries made by this execution (0: it never ran: refused, replayed or invalid)."""
    replayed: bool = False
    """The recorded result of an earlier execution was returned; nothing ran again."""
    shadow: bool = False
    """Simulated: nothing was done."""
    ran: bool = False
    """The tool's code ran (successfully or not): what breakers and tool-call counts count."""


def failed_result(
    invocation: ToolInvocation,
    kind: ErrorKind,
    message: str,
    key: str | None = None,
    *,
    code: str | None = None,
    attempts: int = 0,
    ran: bool = False,
) -> ToolResult:
    """A failed result for `invocation`: what went wrong (`kind`) and what to do (`message`)."""
    return ToolResult(
        call_id=invocation.call_id,
        tool=invocation.tool,
        ok=False,
        content=message,
        error_kind=kind,
        error_code=code,
        idempotency_key=key or None,
        attempts=attempts,
        ran=ran,
    )

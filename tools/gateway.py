"""The execution gateway: the only place where tools run and touch the world."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from tools.registry import ToolRegistry
from tools.spec import ToolContext, ToolError

__all__ = ["ExecutionGateway", "ToolInvocation", "ToolResult", "idempotency_key"]

ErrorKind = Literal["unknown_tool", "invalid_args", "tool_error", "crashed", "refused"]


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
    idempotency_key: str | None = None
    """The key the tool ran under (None if it never ran)."""


def idempotency_key(tenant: str, thread_id: str, tool: str, args: Mapping[str, Any]) -> str:
    """A key stable across retries and resumes: tenant, thread, tool and canonical arguments."""
    canonical = json.dumps([tenant, thread_id, tool, args], sort_keys=True, default=str)
    return "idem_" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


def _format_validation_error(tool: str, error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "(arguments)"
        problems.append(f"`{where}`: {item['msg']} (got {item.get('input')!r})")
    return f"invalid arguments for `{tool}`: " + "; ".join(problems) + ". Fix them and call again."


class ExecutionGateway:
    """Runs invocations against a registry. Bad calls become error results, never exceptions."""

    def __init__(self, registry: ToolRegistry) -> None:
        self._registry = registry

    def execute(
        self,
        invocation: ToolInvocation,
        *,
        before_effect: Callable[[ToolInvocation], str | None] | None = None,
    ) -> ToolResult:
        """Validate, run and bound one call.

        Args:
            invocation: the call.
            before_effect: asked immediately before a side-effecting call runs; a returned
                reason refuses it (the kill switch plugs in here, as late as possible).
        """
        spec = self._registry.get(invocation.tool)
        if spec is None:
            return self._failed(
                invocation, "unknown_tool", self._registry.unknown_tool_message(invocation.tool)
            )
        try:
            args = spec.input_model.model_validate(dict(invocation.args))
        except ValidationError as error:
            return self._failed(
                invocation, "invalid_args", _format_validation_error(spec.name, error)
            )
        canonical = args.model_dump(mode="json")
        if spec.idempotency_fields is not None:
            canonical = {name: canonical[name] for name in spec.idempotency_fields}
        key = idempotency_key(invocation.tenant, invocation.thread_id, spec.name, canonical)
        ctx = ToolContext(
            tenant=invocation.tenant,
            thread_id=invocation.thread_id,
            agent=invocation.agent,
            call_id=invocation.call_id,
            idempotency_key=key,
        )
        if before_effect is not None and spec.side_effect != "none":
            refusal = before_effect(invocation)
            if refusal is not None:
                return self._failed(invocation, "refused", f"`{spec.name}` not run: {refusal}", key)
        try:
            output = spec.run(args, ctx)
        except ToolError as error:
            return self._failed(invocation, "tool_error", f"`{spec.name}` failed: {error}", key)
        except Exception as error:  # a crashing tool must not crash the run
            return self._failed(
                invocation,
                "crashed",
                f"`{spec.name}` crashed with {type(error).__name__}: {error}. "
                "This is not caused by your arguments; do not retry the same call.",
                key,
            )
        content = json.dumps(to_jsonable_python(output), ensure_ascii=False)
        if len(content) > spec.max_output_chars:
            content = (
                content[: spec.max_output_chars]
                + f"… [truncated: {len(content)} chars, limit {spec.max_output_chars}]"
            )
        return ToolResult(
            call_id=invocation.call_id,
            tool=spec.name,
            ok=True,
            content=content,
            idempotency_key=key,
        )

    @staticmethod
    def _failed(
        invocation: ToolInvocation, kind: ErrorKind, message: str, key: str | None = None
    ) -> ToolResult:
        return ToolResult(
            call_id=invocation.call_id,
            tool=invocation.tool,
            ok=False,
            content=message,
            error_kind=kind,
            idempotency_key=key,
        )

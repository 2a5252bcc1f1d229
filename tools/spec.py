"""Tool contracts: a typed, declared description of what a tool takes, returns and touches."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, create_model

__all__ = [
    "RiskZone",
    "SideEffect",
    "ToolConfigError",
    "ToolContext",
    "ToolError",
    "ToolSpec",
    "tool_contract",
]

SideEffect = Literal["none", "reversible", "irreversible"]
RiskZone = Literal["green", "yellow", "red"]
ZoneRule = Callable[[Mapping[str, Any]], RiskZone]


class ToolConfigError(ValueError):
    """A tool or registry was declared wrongly (names the tool and what to fix)."""


class ToolError(Exception):
    """Raised by a tool for an expected business failure; its message goes back to the model.

    Write it for the model: what was wrong and what to do next ("order `ORD-9` not found;
    check the number with the customer").
    """


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """What the gateway hands a tool besides its arguments (never shown to the model)."""

    tenant: str
    """Tenant the call runs for."""
    thread_id: str
    """Thread (conversation) of the run."""
    agent: str
    """Specialist whose proposal this is."""
    call_id: str
    """The model's id for this call (not stable across retries: do not dedupe on it)."""
    idempotency_key: str
    """Stable across retries, crashes and resumes: downstream systems dedupe on it."""


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """A tool's contract. Build one with `@tool_contract`."""

    name: str
    """Name the model calls the tool by."""
    description: str
    """What the tool does, for the model."""
    input_model: type[BaseModel]
    """Pydantic model of the arguments; the LLM-facing schema is derived from it."""
    func: Callable[..., Any]
    """The implementation: called with the validated arguments and `ctx=ToolContext`."""
    side_effect: SideEffect = "none"
    """Whether a call changes the world, and whether that can be undone."""
    zone: RiskZone | ZoneRule = "green"
    """Risk zone, or a rule giving the zone for given arguments (e.g. by refund amount)."""
    max_output_chars: int = 4000
    """Outputs longer than this are truncated with a notice before reaching the model."""
    idempotency_fields: tuple[str, ...] | None = None
    """Arguments that identify the effect; the idempotency key is derived from these only.
    None means all arguments. E.g. `("to", "subject")`: one reply per subject per thread, even
    if the model words the body differently on a retry."""
    takes_context: bool = False
    """Whether `func` has a `ctx` parameter for the `ToolContext`."""
    egress: bool = False
    """The call sends its arguments outside the system (email, webhook, ticket reply): the
    guard screens them for secrets and sensitive PII first."""

    def run(self, args: BaseModel, ctx: ToolContext) -> Any:
        """Call the implementation with validated `args`."""
        kwargs = dict(args)
        return self.func(**kwargs, ctx=ctx) if self.takes_context else self.func(**kwargs)

    def zone_for(self, args: Mapping[str, Any]) -> RiskZone:
        """The risk zone of a call with `args` (falls back to `red` if the rule fails)."""
        if not callable(self.zone):
            return self.zone
        try:
            return self.zone(args)
        except Exception:  # a zone rule must never let a call through by crashing
            return "red"

    def llm_schema(self) -> dict[str, Any]:
        """The OpenAI-style function schema that chat models' `bind_tools` accepts."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.input_model.model_json_schema(),
            },
        }


def _input_model(func: Callable[..., Any], name: str) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    try:  # resolves string annotations (`from __future__ import annotations`)
        hints = typing.get_type_hints(func, include_extras=True)
    except NameError as error:
        raise ToolConfigError(f"tool `{name}`: cannot resolve an annotation ({error})") from error
    for param in inspect.signature(func).parameters.values():
        if param.name == "ctx":
            continue
        if param.name not in hints:
            raise ToolConfigError(
                f"tool `{name}`: parameter `{param.name}` has no type annotation; every argument "
                "needs one so the contract can validate it"
            )
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints[param.name], default)
    model_name = "".join(part.title() for part in name.split("_")) + "Args"
    return create_model(  # type: ignore[call-overload,no-any-return]
        model_name, __config__=ConfigDict(extra="forbid"), **fields
    )


def tool_contract(
    *,
    side_effect: SideEffect = "none",
    zone: RiskZone | ZoneRule = "green",
    name: str | None = None,
    description: str | None = None,
    max_output_chars: int = 4000,
    idempotency_fields: tuple[str, ...] | None = None,
    egress: bool = False,
) -> Callable[[Callable[..., Any]], ToolSpec]:
    """Declare a function as a tool with a contract.

    The function's annotated parameters become the validated input model (unknown arguments are
    refused); a keyword-only `ctx` parameter, if present, receives the `ToolContext`.
    Its docstring's first paragraph is the description the model sees.
    """

    def wrap(func: Callable[..., Any]) -> ToolSpec:
        tool_name = name or func.__name__
        doc = description or (inspect.getdoc(func) or "").split("\n\n")[0].strip()
        if not doc:
            raise ToolConfigError(
                f"tool `{tool_name}` has no description; add a docstring or description=..."
            )
        input_model = _input_model(func, tool_name)
        unknown = set(idempotency_fields or ()) - set(input_model.model_fields)
        if unknown:
            raise ToolConfigError(
                f"tool `{tool_name}`: idempotency_fields {sorted(unknown)!r} are not arguments; "
                f"arguments are {sorted(input_model.model_fields)!r}"
            )
        return ToolSpec(
            name=tool_name,
            description=doc,
            input_model=input_model,
            idempotency_fields=idempotency_fields,
            func=func,
            side_effect=side_effect,
            zone=zone,
            max_output_chars=max_output_chars,
            takes_context="ctx" in inspect.signature(func).parameters,
            egress=egress,
        )

    return wrap

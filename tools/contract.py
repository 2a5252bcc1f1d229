"""`@tool_contract`: declares a function as a tool and checks the declaration is coherent."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from tools.spec import (
    RateLimit,
    RiskZone,
    Rollback,
    SideEffect,
    Simulation,
    ToolConfigError,
    ToolRetry,
    ToolSpec,
    ZoneRule,
)

__all__ = ["tool_contract"]

# Arguments arrive as JSON from a model: validate them strictly, as JSON. "12" is not a number,
# `true` is not an amount, NaN and infinities are refused, unknown fields are refused.
ARGS_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _input_model(func: Callable[..., Any], name: str, hints: Mapping[str, Any]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
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
    return create_model(model_name, __config__=ARGS_CONFIG, **fields)  # type: ignore[call-overload,no-any-return]


def _output_model(
    hints: Mapping[str, Any], declared: type[BaseModel] | None
) -> type[BaseModel] | None:
    if declared is not None:
        return declared
    returned = hints.get("return")
    return returned if isinstance(returned, type) and issubclass(returned, BaseModel) else None


def _check(spec: ToolSpec) -> None:
    problems = []
    unknown = set(spec.idempotency_fields or ()) - set(spec.input_model.model_fields)
    if unknown:
        problems.append(
            f"idempotency_fields {sorted(unknown)!r} are not arguments; arguments are "
            f"{sorted(spec.input_model.model_fields)!r}"
        )
    if spec.side_effect == "reversible" and spec.rollback is None:
        problems.append(
            'side_effect="reversible" needs rollback=<fn(args, output, ctx)> that compensates '
            'the effect; if it cannot be undone, declare side_effect="irreversible"'
        )
    if spec.rollback is not None and spec.side_effect != "reversible":
        problems.append(
            f'rollback= is only for side_effect="reversible" (got {spec.side_effect!r})'
        )
    defs = spec.input_model.model_json_schema().get("$defs", {})
    open_types = sorted(
        name
        for name, schema in defs.items()
        if schema.get("type") == "object" and schema.get("additionalProperties") is not False
    )
    if open_types:
        problems.append(
            f"nested argument type(s) {open_types!r} accept unknown fields; give them "
            "model_config = ConfigDict(extra='forbid', strict=True, allow_inf_nan=False)"
        )
    if spec.timeout_s is not None and spec.timeout_s <= 0:
        problems.append(f"timeout_s must be > 0 (got {spec.timeout_s})")
    if spec.max_output_chars < 1:
        problems.append(f"max_output_chars must be >= 1 (got {spec.max_output_chars})")
    if problems:
        raise ToolConfigError(f"tool `{spec.name}`: " + "; ".join(problems))


def tool_contract(
    *,
    side_effect: SideEffect = "none",
    zone: RiskZone | ZoneRule = "green",
    name: str | None = None,
    description: str | None = None,
    output_model: type[BaseModel] | None = None,
    scopes: Iterable[str] = (),
    rate_limit: RateLimit | None = None,
    timeout_s: float | None = None,
    retry: ToolRetry | None = None,
    idempotent: bool | None = None,
    idempotency_fields: tuple[str, ...] | None = None,
    rollback: Rollback | None = None,
    simulate: Simulation | None = None,
    errors: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    max_output_chars: int = 4000,
    egress: bool = False,
) -> Callable[[Callable[..., Any]], ToolSpec]:
    """Declare a function as a tool with a contract (see `ToolSpec` for each field).

    The function's annotated parameters become the strict input model; a `ctx` parameter, if
    present, receives the `ToolContext`. A return annotation that is a pydantic
    model becomes the output model. The docstring's first paragraph is the description the
    model sees. `idempotent` defaults to True for read-only tools and False otherwise: declare
    it for a side-effecting tool that dedupes on `ctx.idempotency_key`.

    Raises:
        ToolConfigError: a missing annotation or description, key fields that are not
            arguments, a reversible tool without rollback, an impossible bound.
    """

    def wrap(func: Callable[..., Any]) -> ToolSpec:
        tool_name = name or func.__name__
        doc = description or (inspect.getdoc(func) or "").split("\n\n")[0].strip()
        if not doc:
            raise ToolConfigError(
                f"tool `{tool_name}` has no description; add a docstring or description=..."
            )
        try:  # resolves string annotations (`from __future__ import annotations`)
            hints = typing.get_type_hints(func, include_extras=True)
        except NameError as error:
            raise ToolConfigError(
                f"tool `{tool_name}`: cannot resolve an annotation ({error})"
            ) from error
        spec = ToolSpec(
            name=tool_name,
            description=doc,
            input_model=_input_model(func, tool_name, hints),
            output_model=_output_model(hints, output_model),
            func=func,
            side_effect=side_effect,
            zone=zone,
            scopes=frozenset(scopes),
            rate_limit=rate_limit,
            timeout_s=timeout_s,
            retry=retry or ToolRetry(),
            idempotent=(side_effect == "none") if idempotent is None else idempotent,
            idempotency_fields=idempotency_fields,
            rollback=rollback,
            simulate=simulate,
            errors=dict(errors or {}),
            secrets=tuple(secrets),
            max_output_chars=max_output_chars,
            takes_context="ctx" in inspect.signature(func).parameters,
            egress=egress,
        )
        _check(spec)
        return spec

    return wrap

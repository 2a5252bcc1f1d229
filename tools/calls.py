"""One tool call run bounded: retries with backoff and jitter for idempotent tools, each
attempt within its latency budget, the output checked against the contract, scrubbed of
secrets and bounded."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from tools.deadline import NoThread, run_attempt
from tools.screen import render_path
from tools.spec import ToolContext, ToolError, ToolSpec

__all__ = ["CallOutcome", "call_tool", "render_output", "scrub", "scrub_json"]

Failure = Literal["tool_error", "crashed", "timeout", "bad_output"]


@dataclass(frozen=True, kw_only=True)
class CallOutcome:
    """What came of calling a tool, after retries."""

    output: Any = None
    """The JSON output (when `failure` is None or `bad_output`)."""
    failure: Failure | None = None
    """Why it did not succeed."""
    message: str = ""
    """The failure, for the model."""
    code: str | None = None
    """The `ToolError` code."""
    attempts: int = 1
    """Tries made."""
    started: bool = True
    """Whether the tool's code began in any attempt. False only when every attempt waited in
    vain for a tool thread: then it cannot have acted."""


def _retryable(spec: ToolSpec, error: BaseException) -> bool:
    if isinstance(error, ToolError):
        return error.retryable
    return isinstance(error, (TimeoutError, *spec.retry.on))


def call_tool(
    spec: ToolSpec,
    args: BaseModel,
    context: Callable[[int], ToolContext],
    *,
    sleep: Callable[[float], None],
    rng: random.Random,
) -> CallOutcome:
    """Call `spec` with `args`, retrying idempotent tools on transient failures.

    Args:
        spec: the contract.
        args: validated arguments.
        context: the `ToolContext` for attempt n (1-based).
        sleep: waits between attempts (injected so tests can observe the backoff).
        rng: jitter source.
    """
    tries, started = (spec.retry.attempts if spec.idempotent else 1), False
    for attempt in range(1, tries + 1):
        try:
            output = run_attempt(spec, args, context(attempt))
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            started = started or not isinstance(error, NoThread)
            if attempt < tries and _retryable(spec, error):
                ceiling = min(spec.retry.max_delay_s, spec.retry.base_delay_s * 2 ** (attempt - 1))
                sleep(rng.uniform(0, ceiling))  # full jitter: retries of many calls spread out
                continue
            return replace(_failure(spec, error, attempt), started=started)
        return _checked(spec, output, attempt)
    raise AssertionError("unreachable: the last attempt always returns")


def _failure(spec: ToolSpec, error: BaseException, attempts: int) -> CallOutcome:
    tried = f" (after {attempts} attempts)" if attempts > 1 else ""
    if isinstance(error, ToolError):
        return CallOutcome(
            failure="tool_error",
            message=f"`{spec.name}` failed{tried}: {error}",
            code=error.code,
            attempts=attempts,
        )
    if isinstance(error, NoThread):
        return CallOutcome(
            failure="timeout",
            message=f"`{spec.name}` did not start{tried}: {error}; nothing was done.",
            attempts=attempts,
        )
    if isinstance(error, TimeoutError):  # over the budget, or a timeout inside the tool
        return CallOutcome(
            failure="timeout",
            message=f"`{spec.name}` timed out{tried}: {error or 'TimeoutError'}.",
            attempts=attempts,
        )
    return CallOutcome(
        failure="crashed",
        message=f"`{spec.name}` crashed{tried} with {type(error).__name__}: {error}.",
        attempts=attempts,
    )


def _checked(spec: ToolSpec, output: Any, attempts: int) -> CallOutcome:
    if spec.output_model is None:
        try:
            return CallOutcome(output=to_jsonable_python(output), attempts=attempts)
        except Exception as error:  # pydantic_core raises its own serialization error types
            return CallOutcome(
                failure="bad_output",
                message=f"`{spec.name}` returned {type(output).__name__}, which is not JSON "
                f"({error}); the tool must be fixed",
                attempts=attempts,
            )
    try:
        model = (
            output
            if isinstance(output, spec.output_model)
            else spec.output_model.model_validate(output)
        )
    except ValidationError as error:
        problems = "; ".join(
            f"`{render_path(e['loc']) if e['loc'] else '(output)'}`: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        return CallOutcome(
            output=to_jsonable_python(output, fallback=repr),
            failure="bad_output",
            message=f"`{spec.name}` broke its output contract ({problems}); the tool must be "
            "fixed. Do not retry the same call.",
            attempts=attempts,
        )
    return CallOutcome(output=model.model_dump(mode="json"), attempts=attempts)


def _forms(value: str) -> list[str]:
    """How `value` can appear in text: as is, JSON-escaped (both ways) and inside a repr."""
    return list(
        dict.fromkeys(
            [
                value,
                json.dumps(value, ensure_ascii=False)[1:-1],
                json.dumps(value)[1:-1],
                repr(value)[1:-1],
            ]
        )
    )


def scrub(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with every secret value replaced by `[secret:<name>]`, in any of its encodings."""
    # Longest first: a secret that contains another must not be left half-revealed.
    for name, value in sorted(secrets.items(), key=lambda item: -len(item[1])):
        if len(value) < 4:  # shorter values would mangle ordinary text and hide nothing
            continue
        for form in _forms(value):
            text = text.replace(form, f"[secret:{name}]")
    return text


def scrub_json(value: Any, secrets: Mapping[str, str]) -> Any:
    """A JSON value with every secret scrubbed from its strings, keys and numbers."""
    if not secrets:
        return value
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, list):
        return [scrub_json(item, secrets) for item in value]
    if isinstance(value, dict):
        return {scrub(str(k), secrets): scrub_json(v, secrets) for k, v in value.items()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
        return value if scrub(text, secrets) == text else scrub(text, secrets)
    return value


def render_output(spec: ToolSpec, output: Any, secrets: Mapping[str, str]) -> str:
    """The output as the model reads it: JSON, secrets scrubbed, bounded by the contract."""
    if secrets:
        content = json.dumps(scrub_json(output, secrets), ensure_ascii=False)
        content = scrub(content, secrets)  # a secret split across JSON tokens, however unlikely
    else:
        content = json.dumps(output, ensure_ascii=False)
    if len(content) > spec.max_output_chars:
        content = (
            content[: spec.max_output_chars]
            + f"… [truncated: {len(content)} chars, limit {spec.max_output_chars}]"
        )
    return content

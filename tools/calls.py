"""One tool call, bounded: a latency budget per attempt, retries with backoff and jitter for
idempotent tools, and the output checked against the contract, scrubbed and bounded."""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from tools.spec import ToolContext, ToolError, ToolSpec

__all__ = ["CallOutcome", "call_tool", "render_output", "scrub"]

Failure = Literal["tool_error", "crashed", "timeout", "bad_output"]

_EXECUTOR_LOCK = threading.Lock()
_executor: ThreadPoolExecutor | None = None
MAX_TOOL_THREADS = 32
"""Calls with a latency budget run on these threads; one that overruns is abandoned (Python
cannot kill a thread) and holds its thread until it returns."""


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _EXECUTOR_LOCK:
        if _executor is None:
            _executor = ThreadPoolExecutor(MAX_TOOL_THREADS, thread_name_prefix="bastion-tool")
        return _executor


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


def _run_once(spec: ToolSpec, args: BaseModel, ctx: ToolContext) -> Any:
    result = spec.run(args, ctx)
    if inspect.isawaitable(result):  # an async tool: give it a loop of its own
        return asyncio.run(_awaited(result))
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _attempt(spec: ToolSpec, args: BaseModel, ctx: ToolContext) -> Any:
    if spec.timeout_s is None and not inspect.iscoroutinefunction(spec.func):
        return _run_once(spec, args, ctx)
    future = _pool().submit(_run_once, spec, args, ctx)
    try:
        return future.result(timeout=spec.timeout_s)
    except FutureTimeout:
        future.cancel()  # only helps if it never started
        raise TimeoutError(f"no answer within the {spec.timeout_s}s latency budget") from None


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
    tries = spec.retry.attempts if spec.idempotent else 1
    for attempt in range(1, tries + 1):
        try:
            output = _attempt(spec, args, context(attempt))
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            if attempt < tries and _retryable(spec, error):
                ceiling = min(spec.retry.max_delay_s, spec.retry.base_delay_s * 2 ** (attempt - 1))
                sleep(rng.uniform(0, ceiling))  # full jitter: retries of many calls spread out
                continue
            return _failure(spec, error, attempt)
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
    if isinstance(error, TimeoutError) and spec.timeout_s is not None:
        return CallOutcome(
            failure="timeout",
            message=f"`{spec.name}` timed out{tried}: {error}.",
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
            f"`{'.'.join(map(str, e['loc'])) or '(output)'}`: {e['msg']}"
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


def scrub(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with every secret value replaced by its name."""
    for name, value in secrets.items():
        if len(value) >= 4:  # shorter values would mangle ordinary text and hide nothing
            text = text.replace(value, f"[secret:{name}]")
    return text


def render_output(spec: ToolSpec, output: Any, secrets: Mapping[str, str]) -> str:
    """The output as the model reads it: JSON, secrets scrubbed, bounded by the contract."""
    content = scrub(json.dumps(output, ensure_ascii=False), secrets)
    if len(content) > spec.max_output_chars:
        content = (
            content[: spec.max_output_chars]
            + f"… [truncated: {len(content)} chars, limit {spec.max_output_chars}]"
        )
    return content

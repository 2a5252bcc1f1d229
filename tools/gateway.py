"""The execution gateway: the only place where tools run and touch the world.

Per call: look up the contract, screen and validate the arguments, resolve secrets, then
- read-only tools run (rate limit, latency budget, retries);
- in shadow mode, side-effecting tools are simulated and the would-be effect recorded;
- otherwise the effect ledger is claimed first (write-ahead). A key already done replays its
  recorded result; a live claim elsewhere is waited for; a claim left by a dead worker is taken
  over, re-running the call only when the tool is idempotent (else it is marked in doubt).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from tools.base import (
    EffectIntent,
    EffectLedger,
    EffectOutcome,
    RateLimiter,
    RateLimiterError,
    SecretSource,
)
from tools.calls import CallOutcome, call_tool, render_output, scrub, scrub_json
from tools.effects import DurabilityError, EffectPath, require_durable
from tools.ledger import InMemoryEffectLedger
from tools.ratelimit import InMemoryRateLimiter
from tools.registry import ToolRegistry
from tools.results import ErrorKind, ToolInvocation, ToolResult, failed_result
from tools.screen import render_path, screen_arguments
from tools.spec import Secrets, ToolContext, ToolRetry, ToolSpec

__all__ = [
    "DurabilityError",
    "ErrorKind",
    "ExecutionGateway",
    "ToolInvocation",
    "ToolResult",
    "idempotency_key",
    "require_durable",
]

BeforeEffect = Callable[[ToolInvocation], str | None]


def idempotency_key(tenant: str, thread_id: str, tool: str, args: Mapping[str, Any]) -> str:
    """A key stable across retries and resumes: tenant, thread, tool and canonical arguments."""
    canonical = json.dumps([tenant, thread_id, tool, args], sort_keys=True, default=str)
    return "idem_" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


def _env_secrets(name: str) -> str | None:
    return os.environ.get(name) or None


MAX_SHOWN_PROBLEMS = 5
"""Validation errors listed per message: a list of 3000 bad items must not become a 170 kB
message the model reads back."""


def _format_validation_error(tool: str, error: ValidationError) -> str:
    problems = []
    items = error.errors(include_url=False)
    for item in items[:MAX_SHOWN_PROBLEMS]:
        problem = f"`{render_path(item['loc'])}`: {item['msg']}"
        if item["type"] != "missing":  # the input of a missing field is the whole object
            shown = repr(item.get("input"))
            problem += f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
        problems.append(problem)
    if len(items) > MAX_SHOWN_PROBLEMS:
        problems.append(f"and {len(items) - MAX_SHOWN_PROBLEMS} more like these")
    return f"invalid arguments for `{tool}`: " + "; ".join(problems) + ". Fix them and call again."


@dataclass(frozen=True, kw_only=True)
class _Call:
    """A validated invocation on its way through the gateway."""

    invocation: ToolInvocation
    """The call as the node handed it over."""
    spec: ToolSpec
    """The tool's contract."""
    args: BaseModel
    """The validated arguments."""
    key: str
    """Idempotency key (empty for read-only tools)."""
    secrets: Secrets
    """The contract's secrets, resolved for this call."""

    def context(self, attempt: int = 1) -> ToolContext:
        """What the tool receives besides its arguments on attempt `attempt`."""
        inv = self.invocation
        return ToolContext(
            tenant=inv.tenant,
            thread_id=inv.thread_id,
            run_id=inv.run_id,
            agent=inv.agent,
            call_id=inv.call_id,
            idempotency_key=self.key,
            attempt=attempt,
            shadow=inv.shadow,
            secrets=self.secrets,
        )

    def intent(self, key: str | None = None) -> EffectIntent:
        """The call as the effect ledger records it (under `key`, default its own)."""
        inv = self.invocation
        return EffectIntent(
            key=key or self.key,
            tool=self.spec.name,
            tenant=inv.tenant,
            thread_id=inv.thread_id,
            run_id=inv.run_id,
            agent=inv.agent,
            args=self.args.model_dump(mode="json"),
            side_effect=self.spec.side_effect,
        )


class ExecutionGateway:
    """Runs invocations against a registry. Bad calls become error results, never exceptions.

    Args:
        registry: every tool contract.
        effects: the effect ledger (idempotency, write-ahead, rollback records).
        rate_limiter: token buckets for contracts that declare a rate limit.
        secrets: resolves the secrets contracts declare (default: environment variables).
        max_args_chars: arguments larger than this (as JSON) are refused before validation.
        clock: wall time (leases, records).
        sleep: waits for rate-limit tokens, backoff and busy claims.
        rng: jitter source for retries.
    """

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        effects: EffectLedger | None = None,
        rate_limiter: RateLimiter | None = None,
        secrets: SecretSource | None = None,
        max_args_chars: int = 16_000,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.registry = registry
        self.effects: EffectLedger = effects if effects is not None else InMemoryEffectLedger()
        self.rate_limiter: RateLimiter = (
            rate_limiter if rate_limiter is not None else InMemoryRateLimiter()
        )
        self._secret_source: SecretSource = secrets if secrets is not None else _env_secrets
        self._max_args_chars = max_args_chars
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._effect_path = EffectPath(self.effects, clock=clock, sleep=sleep)

    def secrets_for(self, spec: ToolSpec) -> Secrets | str:
        """The secrets `spec` declares, or a message naming the first one that is missing."""
        values = {}
        for name in spec.secrets:
            try:
                value = self._secret_source(name)
            except Exception as error:  # a vault outage: the tool cannot run; say which secret
                value, why = None, f"could not be read ({type(error).__name__})"
            else:
                why = "is not configured"
            if not value:
                return (
                    f"`{spec.name}` cannot run: its secret `{name}` {why}. This is not caused "
                    "by your arguments; tell the user the tool is unavailable."
                )
            values[name] = value
        return Secrets(values)

    def execute(
        self, invocation: ToolInvocation, *, before_effect: BeforeEffect | None = None
    ) -> ToolResult:
        """Validate, run and bound one call.

        Args:
            invocation: the call.
            before_effect: asked immediately before a side-effecting call acts; a returned
                reason refuses it (the kill switch plugs in here, as late as possible). If it
                raises, the call is refused too: an unanswerable check must not let it act.

        Raises:
            EffectLedgerError: the ledger failed; no side effect ran after the failure.
        """
        call = self._prepare(invocation)
        if isinstance(call, ToolResult):
            return call
        if call.spec.side_effect == "none":
            return self._run(call)
        if invocation.shadow:
            return self._simulate(call)
        return self._act_once(call, before_effect)

    def _prepare(self, inv: ToolInvocation) -> _Call | ToolResult:
        spec = self.registry.get(inv.tool)
        if spec is None:
            return failed_result(inv, "unknown_tool", self.registry.unknown_tool_message(inv.tool))
        try:
            problem = screen_arguments(inv.args, max_chars=self._max_args_chars)
            if problem is not None:
                raise ValueError(problem)
            # strict=True reaches nested models too, whatever their own config says
            args = spec.input_model.model_validate_json(json.dumps(dict(inv.args)), strict=True)
        except ValidationError as error:
            return failed_result(inv, "invalid_args", _format_validation_error(spec.name, error))
        except (TypeError, ValueError, RecursionError) as error:  # not JSON (a set, too deep)
            return failed_result(
                inv, "invalid_args", f"invalid arguments for `{spec.name}`: {error}"
            )
        secrets = self.secrets_for(spec)
        if isinstance(secrets, str):
            return failed_result(inv, "misconfigured", secrets)
        key = ""  # read-only calls have no effect to dedupe: skip the hashing on the hot path
        if spec.side_effect != "none":
            canonical = args.model_dump(mode="json")
            if spec.idempotency_fields is not None:
                canonical = {name: canonical[name] for name in spec.idempotency_fields}
            key = idempotency_key(inv.tenant, inv.thread_id, spec.name, canonical)
        return _Call(invocation=inv, spec=spec, args=args, key=key, secrets=secrets)

    def _rate_limited(self, call: _Call) -> ToolResult | None:
        limit, name = call.spec.rate_limit, call.spec.name
        if limit is None:
            return None
        bucket = f"{name}:{call.invocation.tenant if limit.per_tenant else '*'}"
        deadline = self._clock() + limit.max_wait_s
        try:
            while (wait := self.rate_limiter.acquire(bucket, limit, now=self._clock())) > 0:
                if self._clock() + wait > deadline:
                    return failed_result(
                        call.invocation,
                        "rate_limited",
                        f"`{name}` is rate limited ({limit.calls} calls per {limit.per_s}s); a "
                        f"slot frees in {wait:.1f}s. Do something else first, or try later.",
                        call.key,
                    )
                self._sleep(wait)
        except RateLimiterError as error:  # refused rather than let through unlimited
            return failed_result(
                call.invocation,
                "rate_limited",
                f"`{name}` not run: its rate limiter is unavailable ({error}). Try later.",
                call.key,
            )
        return None

    def _refused(self, call: _Call, before_effect: BeforeEffect | None) -> ToolResult | None:
        if before_effect is None:
            return None
        try:
            reason = before_effect(call.invocation)
        except Exception as error:
            reason = f"could not check whether it may run ({type(error).__name__}: {error})"
        if reason is None:
            return None
        return failed_result(
            call.invocation, "refused", f"`{call.spec.name}` not run: {reason}", call.key
        )

    def _call(self, call: _Call, first: int = 1) -> CallOutcome:
        """Call the tool; `first` numbers its first attempt (above 1 for a recovered claim)."""

        def context(attempt: int) -> ToolContext:
            return call.context(first + attempt - 1)

        return call_tool(call.spec, call.args, context, sleep=self._sleep, rng=self._rng)

    def _result(self, call: _Call, outcome: CallOutcome, **flags: Any) -> ToolResult:
        if outcome.failure is not None:
            failed = failed_result(
                call.invocation,
                outcome.failure,
                scrub(outcome.message, call.secrets),
                call.key,
                code=scrub(outcome.code, call.secrets) if outcome.code else None,
                attempts=outcome.attempts,
                ran=outcome.started,
            )
            return replace(failed, **flags)  # a failed simulation is still a simulation
        return ToolResult(
            call_id=call.invocation.call_id,
            tool=call.spec.name,
            ok=True,
            content=render_output(call.spec, outcome.output, call.secrets),
            idempotency_key=call.key or None,
            attempts=outcome.attempts,
            ran=True,
            **flags,
        )

    def _run(self, call: _Call) -> ToolResult:
        return self._rate_limited(call) or _with_hint(self._result(call, self._call(call)))

    def _simulate(self, call: _Call) -> ToolResult:
        spec = call.spec
        if spec.simulate is not None:
            outcome = call_tool(
                _simulation_of(spec, call.args),
                call.args,
                call.context,
                sleep=self._sleep,
                rng=self._rng,
            )
        else:
            would = {"shadow": True, "tool": spec.name, "args": call.args.model_dump(mode="json")}
            outcome = CallOutcome(output={**would, "note": "dry run: nothing was done"})
        result = self._result(call, outcome, shadow=True)
        self.effects.record_shadow(
            call.intent(key=f"shadow:{call.key}"),
            EffectOutcome(
                ok=result.ok,
                content=result.content,
                output=scrub_json(outcome.output, call.secrets),
                error_kind=result.error_kind,
            ),
            now=self._clock(),
        )
        return result

    def _act_once(self, call: _Call, before_effect: BeforeEffect | None) -> ToolResult:
        def gate() -> ToolResult | None:
            return self._rate_limited(call) or self._refused(call, before_effect)

        def act(first: int) -> tuple[ToolResult, CallOutcome]:
            outcome = self._call(call, first)
            outcome = replace(outcome, output=scrub_json(outcome.output, call.secrets))
            return _with_hint(self._result(call, outcome)), outcome

        return self._effect_path.act_once(
            call.intent(), call.invocation, call.spec, gate=gate, act=act
        )


def _simulation_of(spec: ToolSpec, args: BaseModel) -> ToolSpec:
    """`spec` with its simulation adapter (given `args`) in place of the implementation, tried
    once; its latency budget and output contract still apply."""
    simulate = spec.simulate
    assert simulate is not None

    def run_simulation(ctx: ToolContext, **_: Any) -> Any:
        return simulate(args, ctx)

    return replace(spec, func=run_simulation, takes_context=True, retry=ToolRetry(attempts=1))


def _with_hint(result: ToolResult) -> ToolResult:
    """A crash or timeout that may be asked again: tell the model what not to do."""
    if result.error_kind not in ("crashed", "timeout"):
        return result
    return replace(
        result,
        content=result.content
        + " This is not caused by your arguments; do not retry the same call now.",
    )

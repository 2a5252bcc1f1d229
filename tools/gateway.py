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
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from tools.base import EffectIntent, EffectLedger, EffectOutcome, RateLimiter, SecretSource
from tools.calls import CallOutcome, call_tool, render_output, scrub
from tools.ledger import InMemoryEffectLedger, new_owner
from tools.ratelimit import InMemoryRateLimiter
from tools.registry import ToolRegistry
from tools.screen import screen_arguments
from tools.spec import Secrets, ToolConfigError, ToolContext, ToolRetry, ToolSpec

__all__ = [
    "DurabilityError",
    "ErrorKind",
    "ExecutionGateway",
    "ToolInvocation",
    "ToolResult",
    "idempotency_key",
    "require_durable",
]

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
BeforeEffect = Callable[["ToolInvocation"], "str | None"]
DURABLE_MODES = ("sync", "async")


class DurabilityError(ToolConfigError):
    """Side-effecting tools were asked to run in a durability mode that cannot keep them to
    one effect per call."""


def require_durable(durability: str, tools: list[str]) -> None:
    """Refuse a durability mode in which a crash could repeat `tools`' effects.

    With `exit`, nothing is checkpointed until the run ends: a crash loses the proposals, and
    a model asked again may propose different arguments (a different idempotency key).

    Raises:
        DurabilityError: naming the mode, the tools and the modes that work.
    """
    if tools and durability not in DURABLE_MODES:
        raise DurabilityError(
            f"durability={durability!r} cannot guarantee one effect per call for side-effecting "
            f"tool(s) {sorted(tools)!r}: a crash would lose the checkpoint of the proposal. "
            "Run with durability='sync' (or 'async')."
        )


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


def idempotency_key(tenant: str, thread_id: str, tool: str, args: Mapping[str, Any]) -> str:
    """A key stable across retries and resumes: tenant, thread, tool and canonical arguments."""
    canonical = json.dumps([tenant, thread_id, tool, args], sort_keys=True, default=str)
    return "idem_" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


def _env_secrets(name: str) -> str | None:
    return os.environ.get(name) or None


def _format_validation_error(tool: str, error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "(arguments)"
        shown = repr(item.get("input"))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        problems.append(f"`{where}`: {item['msg']} (got {shown})")
    return f"invalid arguments for `{tool}`: " + "; ".join(problems) + ". Fix them and call again."


@dataclass(frozen=True, kw_only=True)
class _Call:
    """A validated invocation on its way through the gateway."""

    invocation: ToolInvocation
    spec: ToolSpec
    args: BaseModel
    key: str
    secrets: Secrets

    def context(self, attempt: int = 1) -> ToolContext:
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
        self.rate_limiter: RateLimiter = rate_limiter or InMemoryRateLimiter()
        self._secret_source: SecretSource = secrets or _env_secrets
        self._max_args_chars = max_args_chars
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    def secrets_for(self, spec: ToolSpec) -> Secrets | str:
        """The secrets `spec` declares, or a message naming the first one that is missing."""
        values = {}
        for name in spec.secrets:
            value = self._secret_source(name)
            if value is None:
                return (
                    f"`{spec.name}` cannot run: its secret `{name}` is not configured. This is "
                    "not caused by your arguments; tell the user the tool is unavailable."
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
                reason refuses it (the kill switch plugs in here, as late as possible).
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
            return _failed(inv, "unknown_tool", self.registry.unknown_tool_message(inv.tool))
        problem = screen_arguments(inv.args, max_chars=self._max_args_chars)
        if problem is not None:
            return _failed(inv, "invalid_args", f"invalid arguments for `{spec.name}`: {problem}")
        try:
            args = spec.input_model.model_validate_json(json.dumps(dict(inv.args)))
        except ValidationError as error:
            return _failed(inv, "invalid_args", _format_validation_error(spec.name, error))
        except (TypeError, ValueError) as error:  # not JSON at all (e.g. a set, NaN)
            return _failed(
                inv, "invalid_args", f"invalid arguments for `{spec.name}`: not JSON ({error})"
            )
        secrets = self.secrets_for(spec)
        if isinstance(secrets, str):
            return _failed(inv, "misconfigured", secrets)
        canonical = args.model_dump(mode="json")
        if spec.idempotency_fields is not None:
            canonical = {name: canonical[name] for name in spec.idempotency_fields}
        key = idempotency_key(inv.tenant, inv.thread_id, spec.name, canonical)
        return _Call(invocation=inv, spec=spec, args=args, key=key, secrets=secrets)

    def _rate_limited(self, call: _Call) -> ToolResult | None:
        limit = call.spec.rate_limit
        if limit is None:
            return None
        bucket = f"{call.spec.name}:{call.invocation.tenant if limit.per_tenant else '*'}"
        deadline = self._clock() + limit.max_wait_s
        while (wait := self.rate_limiter.acquire(bucket, limit, now=self._clock())) > 0:
            if self._clock() + wait > deadline:
                return _failed(
                    call.invocation,
                    "rate_limited",
                    f"`{call.spec.name}` is rate limited ({limit.calls} calls per {limit.per_s}s"
                    f"); a slot frees in {wait:.1f}s. Do something else first, or try later.",
                    call.key,
                )
            self._sleep(wait)
        return None

    def _call(self, call: _Call) -> CallOutcome:
        return call_tool(call.spec, call.args, call.context, sleep=self._sleep, rng=self._rng)

    def _result(self, call: _Call, outcome: CallOutcome, **flags: Any) -> ToolResult:
        if outcome.failure is not None:
            return _failed(
                call.invocation,
                outcome.failure,
                scrub(outcome.message, call.secrets),
                call.key,
                code=outcome.code,
                attempts=outcome.attempts,
                ran=True,
            )
        return ToolResult(
            call_id=call.invocation.call_id,
            tool=call.spec.name,
            ok=True,
            content=render_output(call.spec, outcome.output, call.secrets),
            idempotency_key=call.key,
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
                _simulation_of(spec), call.args, call.context, sleep=self._sleep, rng=self._rng
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
                output=outcome.output,
                error_kind=result.error_kind,
            ),
            now=self._clock(),
        )
        return result

    def _act_once(self, call: _Call, before_effect: BeforeEffect | None) -> ToolResult:
        spec, owner = call.spec, new_owner()
        lease_s = _lease_seconds(spec)
        while True:
            claim = self.effects.claim(
                call.intent(), owner=owner, lease_s=lease_s, now=self._clock()
            )
            if claim.kind != "busy":
                break
            self._await_other(call.key, claim.record.lease_until)
        record = claim.record
        if claim.kind == "done" and record.outcome is not None:
            return ToolResult(
                call_id=call.invocation.call_id,
                tool=spec.name,
                ok=record.outcome.ok,
                content=record.outcome.content,
                error_kind=record.outcome.error_kind,  # type: ignore[arg-type]
                idempotency_key=call.key,
                replayed=True,
            )
        if claim.kind == "in_doubt" or (claim.recovered and not spec.idempotent):
            return self._in_doubt(call, owner, claim.kind == "acquired")
        refusal = self._rate_limited(call)
        if refusal is None and before_effect is not None:
            reason = before_effect(call.invocation)
            if reason is not None:
                refusal = _failed(
                    call.invocation, "refused", f"`{spec.name}` not run: {reason}", call.key
                )
        if refusal is not None:
            self.effects.release(call.key, owner=owner)
            return refusal
        outcome = self._call(call)
        result = self._result(call, outcome)
        if outcome.failure in (None, "bad_output"):  # it acted: record, so it never acts again
            self.effects.finish(
                call.key,
                owner=owner,
                outcome=EffectOutcome(
                    ok=result.ok,
                    content=result.content,
                    output=_scrubbed(outcome.output, call.secrets),
                    error_kind=result.error_kind,
                ),
                now=self._clock(),
            )
        elif outcome.failure == "tool_error" or spec.idempotent:
            # A ToolError means it did not act; an idempotent tool may safely be asked again.
            self.effects.release(call.key, owner=owner)
        else:
            self.effects.mark_in_doubt(
                call.key, owner=owner, detail=result.content, now=self._clock()
            )
            return replace(
                result,
                content=result.content
                + " It may or may not have acted, so it will not be run again with these "
                f"arguments; a person must check effect `{call.key}`. Tell the user.",
            )
        return _with_hint(result)

    def _in_doubt(self, call: _Call, owner: str, mark: bool) -> ToolResult:
        message = (
            f"`{call.spec.name}` was interrupted earlier with these arguments and may or may not "
            f"have acted; it is not repeated automatically. A person must check effect "
            f"`{call.key}`. Tell the user it is being checked."
        )
        if mark:
            self.effects.mark_in_doubt(call.key, owner=owner, detail=message, now=self._clock())
        return _failed(call.invocation, "in_doubt", message, call.key)

    def _await_other(self, key: str, lease_until: float) -> None:
        """Wait for another worker's claim on `key` to finish (or its lease to run out)."""
        delay = 0.001
        while True:
            record = self.effects.get(key)
            if record is None or record.status != "pending" or self._clock() >= lease_until:
                return
            if record.lease_until > lease_until:  # re-claimed meanwhile: wait for the new one
                lease_until = record.lease_until
            self._sleep(delay)
            delay = min(delay * 2, 0.05)


def _simulation_of(spec: ToolSpec) -> ToolSpec:
    """`spec` with its simulation adapter in place of the implementation, tried once."""
    simulate = spec.simulate
    assert simulate is not None

    def run_simulation(ctx: ToolContext, **kwargs: Any) -> Any:
        return simulate(spec.input_model.model_construct(**kwargs), ctx)

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


def _lease_seconds(spec: ToolSpec) -> float:
    """How long a claim is held before others may assume its worker died (on another host)."""
    per_attempt = spec.timeout_s or 30.0
    attempts = spec.retry.attempts if spec.idempotent else 1
    return per_attempt * attempts + spec.retry.max_delay_s * attempts + 5.0


def _scrubbed(output: Any, secrets: Secrets) -> Any:
    if not secrets:
        return output
    return json.loads(scrub(json.dumps(output, ensure_ascii=False), secrets))


def _failed(
    invocation: ToolInvocation,
    kind: ErrorKind,
    message: str,
    key: str | None = None,
    *,
    code: str | None = None,
    attempts: int = 0,
    ran: bool = False,
) -> ToolResult:
    return ToolResult(
        call_id=invocation.call_id,
        tool=invocation.tool,
        ok=False,
        content=message,
        error_kind=kind,
        error_code=code,
        idempotency_key=key,
        attempts=attempts,
        ran=ran,
    )

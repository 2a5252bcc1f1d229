"""Tool contracts as values: what a tool takes, returns, touches, costs and how it fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

__all__ = [
    "RateLimit",
    "RiskZone",
    "Secrets",
    "SideEffect",
    "ToolConfigError",
    "ToolContext",
    "ToolError",
    "ToolRetry",
    "ToolSpec",
]

SideEffect = Literal["none", "reversible", "irreversible"]
RiskZone = Literal["green", "yellow", "red"]
ZoneRule = Callable[[Mapping[str, Any]], RiskZone]


class ToolConfigError(ValueError):
    """A tool, registry or gateway was set up wrongly (names the tool and what to fix)."""


class ToolError(Exception):
    """Raised by a tool for an expected business failure; its message goes back to the model.

    Raise it only when the tool has *not* acted (or has rolled its own work back): the gateway
    then forgets the attempt, so a corrected call may run later. Write the message for the
    model: what was wrong and what to do next ("order `ORD-9` not found; check the number").

    Args:
        message: what went wrong, for the model.
        code: one of the contract's documented error modes (`errors=`), for metrics and tests.
        retryable: a transient failure (a busy upstream); idempotent tools are retried on it.
    """

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class Secrets(Mapping[str, str]):
    """Secret values injected into one call. Never printed: `repr` shows names only."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Secrets({', '.join(f'{n}=***' for n in self._values)})"

    __str__ = __repr__


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """What the gateway hands a tool besides its arguments (never shown to the model)."""

    tenant: str
    """Tenant the call runs for."""
    thread_id: str
    """Thread (conversation) of the run."""
    run_id: str = ""
    """Run the call belongs to (what `bastion undo` reverses)."""
    agent: str
    """Specialist whose proposal this is."""
    call_id: str
    """The model's id for this call (not stable across retries: do not dedupe on it)."""
    idempotency_key: str
    """Stable across retries, crashes and resumes: downstream systems dedupe on it (empty for
    read-only tools, which have no effect to dedupe)."""
    attempt: int = 1
    """1 for the first try; higher when the gateway retries or recovers an interrupted call."""
    shadow: bool = False
    """True when the call is simulated (shadow mode): the tool must not act."""
    secrets: Secrets = field(default_factory=Secrets)
    """The secrets the contract declares, resolved at execution time."""


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """At most `calls` calls per `per_s` seconds (a token bucket), per tenant or overall."""

    calls: int
    """Calls allowed per window (also the burst size)."""
    per_s: float = 1.0
    """Window length in seconds."""
    per_tenant: bool = True
    """One bucket per tenant (True) or one for everyone (False, e.g. a shared upstream quota)."""
    max_wait_s: float = 0.0
    """How long a call may wait for a token before it is refused as rate limited."""

    def __post_init__(self) -> None:
        if self.calls < 1 or self.per_s <= 0 or self.max_wait_s < 0:
            raise ToolConfigError(
                f"RateLimit(calls={self.calls}, per_s={self.per_s}, max_wait_s="
                f"{self.max_wait_s}) is impossible; need calls >= 1, per_s > 0, max_wait_s >= 0"
            )


@dataclass(frozen=True, kw_only=True)
class ToolRetry:
    """Retries with exponential backoff and full jitter. Applied to idempotent tools only."""

    attempts: int = 3
    """Tries in all, the first included (1 = never retry)."""
    base_delay_s: float = 0.05
    """Upper bound of the first delay; it doubles each retry."""
    max_delay_s: float = 1.0
    """Cap on any one delay."""
    on: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)
    """Exceptions worth another try (plus timeouts and `ToolError(retryable=True)`)."""

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ToolConfigError(
                f"ToolRetry(attempts={self.attempts}, base_delay_s={self.base_delay_s}, "
                f"max_delay_s={self.max_delay_s}) is impossible; need attempts >= 1 and "
                "0 <= base_delay_s <= max_delay_s"
            )


Rollback = Callable[[BaseModel, Any, ToolContext], Any]
"""Compensates one recorded effect: `(args, output, ctx)`; `output` is what the call returned
(an instance of the output model when the contract has one)."""
Simulation = Callable[[BaseModel, ToolContext], Any]
"""Shadow mode's stand-in for a side-effecting tool: `(args, ctx)` -> a plausible output."""


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """A tool's contract. Build one with `@tool_contract`."""

    name: str
    """Name the model calls the tool by."""
    description: str
    """What the tool does, for the model."""
    input_model: type[BaseModel]
    """Pydantic model of the arguments; the LLM-facing schema is derived from it."""
    output_model: type[BaseModel] | None = None
    """Pydantic model of the result; outputs that do not fit are reported as broken contract."""
    func: Callable[..., Any]
    """The implementation: called with the validated arguments (and `ctx=` if it takes one)."""
    side_effect: SideEffect = "none"
    """Whether a call changes the world, and whether that can be undone."""
    zone: RiskZone | ZoneRule = "green"
    """Risk zone, or a rule giving the zone for given arguments (e.g. by refund amount)."""
    scopes: frozenset[str] = frozenset()
    """Permission scopes a tenant must be granted to see and use the tool."""
    rate_limit: RateLimit | None = None
    """Calls per window; None: unlimited."""
    timeout_s: float | None = None
    """Latency budget of one attempt; None: no bound (the call runs on the caller's thread)."""
    retry: ToolRetry = ToolRetry()
    """How an idempotent tool is retried on transient failures."""
    idempotent: bool = True
    """A second call with the same `ctx.idempotency_key` has no further effect (the tool or
    its downstream dedupes on the key). Only idempotent tools are retried, and only they are
    re-run after a crash left their outcome unknown."""
    idempotency_fields: tuple[str, ...] | None = None
    """Arguments that identify the effect; the idempotency key is derived from these only.
    None means all arguments. E.g. `("to", "subject")`: one reply per subject per thread, even
    if the model words the body differently on a retry."""
    rollback: Rollback | None = None
    """Compensation of a reversible effect (required when `side_effect="reversible"`)."""
    simulate: Simulation | None = None
    """Shadow mode's simulation adapter; None: a dry-run record of what would have run."""
    errors: Mapping[str, str] = field(default_factory=dict)
    """Documented error modes: `ToolError` code -> when it happens."""
    secrets: tuple[str, ...] = ()
    """Names of the secrets the tool needs, injected into `ctx.secrets` at execution only."""
    max_output_chars: int = 4000
    """Outputs longer than this are truncated with a notice before reaching the model."""
    takes_context: bool = False
    """Whether `func` has a `ctx` parameter for the `ToolContext`."""
    egress: bool = False
    """The call sends its arguments outside the system (email, webhook, ticket reply): the
    guard screens them for secrets and sensitive PII first."""

    def run(self, args: BaseModel, ctx: ToolContext) -> Any:
        """Call the implementation with validated `args`."""
        kwargs = args.__dict__.copy()  # the fields (extra="forbid"); dict(model) is ~40x slower
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

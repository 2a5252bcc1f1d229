"""Protocols of the guard plane's pluggable backends, and the values they exchange.

Each protocol has an in-memory reference implementation and a production one (Rego bundles,
Redis), and every implementation passes the same conformance suite in `tests/conformance/`.

The protocols are synchronous on purpose: graph nodes are synchronous functions (LangGraph runs
them in a worker thread under the async server), and each backend call is a sub-millisecond
local computation or one loopback round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from guards.errors import GuardConfigError
from guards.verdict import PolicyRef

__all__ = [
    "BudgetCaps",
    "BudgetKey",
    "BudgetLedger",
    "Charge",
    "DecisionPoint",
    "KillRecord",
    "KillScope",
    "KillSwitch",
    "KillTarget",
    "PolicyDecision",
    "PolicyEngine",
    "PolicyMeta",
    "PolicyRequest",
    "PolicyScope",
    "Reservation",
]

# ---------------------------------------------------------------------------------------------
# Policy-as-code

DecisionPoint = Literal["intake", "tool_call", "egress"]
"""Where in the run a policy is consulted."""


@dataclass(frozen=True, kw_only=True)
class PolicyScope:
    """What a policy applies to. An empty set means "all"."""

    tenants: frozenset[str] = frozenset()
    """Tenants the policy applies to."""
    workflows: frozenset[str] = frozenset()
    """Workflows the policy applies to."""
    tools: frozenset[str] = frozenset()
    """Tools the policy applies to."""

    def covers(self, request: PolicyRequest) -> bool:
        """Whether a request falls inside this scope."""
        return (
            (not self.tenants or request.tenant in self.tenants)
            and (not self.workflows or request.workflow in self.workflows)
            and (not self.tools or request.tool in self.tools)
        )


@dataclass(frozen=True, kw_only=True)
class PolicyMeta:
    """The policy contract: who owns a policy, which version, where it applies, how to fix."""

    id: str
    """Stable id, e.g. `refund-limits`."""
    version: str
    """Version recorded on every decision the policy takes part in."""
    owner: str
    """Team or person accountable for it."""
    scope: PolicyScope = PolicyScope()
    """Tenants, workflows and tools it applies to."""
    decision_points: tuple[DecisionPoint, ...] = ("tool_call",)
    """Where it is consulted."""
    remediation: str = ""
    """What to do when it denies or escalates (shown to agents and reviewers)."""

    def __post_init__(self) -> None:
        for name in ("id", "version", "owner"):
            if not getattr(self, name):
                raise GuardConfigError(f"policy {self.id or '?'!r}: `{name}` is required")

    @property
    def ref(self) -> PolicyRef:
        """`id@version`, as recorded on verdicts."""
        return PolicyRef(id=self.id, version=self.version)


@dataclass(frozen=True, kw_only=True)
class PolicyRequest:
    """The input document of a policy decision (OPA shape: `input.tenant`, `input.args`, ...)."""

    tenant: str
    """Tenant of the run (from the run context)."""
    workflow: str
    """Workflow of the run."""
    agent: str
    """Specialist proposing the action ('' at intake and egress)."""
    tool: str
    """Tool to be called ('' at intake)."""
    args: Mapping[str, Any] = field(default_factory=dict)
    """Arguments as proposed."""
    risk: str = "red"
    """Risk zone of the tool for these arguments."""
    side_effect: str = "none"
    """`none`, `reversible` or `irreversible`."""
    confidence: float | None = None
    """The model's stated confidence, if any."""
    usage: Mapping[str, float] = field(default_factory=dict)
    """What the run used so far: `steps`, `tokens`, `cost_usd`, `seconds`."""
    context: Mapping[str, Any] = field(default_factory=dict)
    """Anything else the caller knows: `run_id`, `tainted`, tenant settings, ..."""
    point: DecisionPoint = "tool_call"
    """Where in the run the decision is taken."""

    def to_input(self) -> dict[str, Any]:
        """The OPA input document."""
        return {
            "tenant": self.tenant,
            "workflow": self.workflow,
            "agent": self.agent,
            "tool": self.tool,
            "args": dict(self.args),
            "risk": self.risk,
            "side_effect": self.side_effect,
            "confidence": self.confidence,
            "usage": dict(self.usage),
            "context": dict(self.context),
            "point": self.point,
        }


@dataclass(frozen=True, kw_only=True)
class PolicyDecision:
    """What the policies in scope said about one request. Engines return it; they never raise
    for a policy that fails at evaluation time (they report it in `errors`)."""

    deny: tuple[str, ...] = ()
    """Reasons to refuse the action (empty: no policy objects)."""
    escalate: tuple[str, ...] = ()
    """Reasons a human must approve first."""
    errors: tuple[str, ...] = ()
    """Policies that failed to evaluate, with why. The guard fails closed on these."""
    policies: tuple[PolicyRef, ...] = ()
    """Every policy that was evaluated (in scope) for this request."""
    remediation: tuple[str, ...] = ()
    """Remediation texts of the policies that denied or escalated."""

    @property
    def allowed(self) -> bool:
        """No denial, no escalation, no error."""
        return not (self.deny or self.escalate or self.errors)


@runtime_checkable
class PolicyEngine(Protocol):
    """Evaluates the loaded policies that are in scope for a request."""

    @property
    def policies(self) -> tuple[PolicyMeta, ...]:
        """The loaded policies (their contracts)."""
        ...

    def evaluate(self, request: PolicyRequest) -> PolicyDecision:
        """Decide one request. Never raises for evaluation failures; see `PolicyDecision`."""
        ...


# ---------------------------------------------------------------------------------------------
# Budgets


@dataclass(frozen=True, kw_only=True)
class BudgetKey:
    """A budget bucket: spending is tracked and capped per tenant, workflow and environment."""

    tenant: str
    """Tenant whose money it is."""
    workflow: str = "*"
    """Workflow, or `*` for the tenant's whole budget."""
    environment: str = "default"
    """e.g. `prod`, `staging`: separate money."""

    def __str__(self) -> str:
        return f"{self.tenant}/{self.workflow}/{self.environment}"


@dataclass(frozen=True, kw_only=True)
class Charge:
    """An amount of consumption."""

    tokens: int = 0
    """Input plus output tokens."""
    steps: int = 0
    """Model turns."""
    usd: float = 0.0
    """Money, in US dollars."""


@dataclass(frozen=True, kw_only=True)
class BudgetCaps:
    """Independent hard caps on a bucket; `None` means no cap on that dimension."""

    tokens: int | None = None
    """Most tokens the bucket may use."""
    steps: int | None = None
    """Most model turns."""
    usd: float | None = None
    """Most money."""

    def __post_init__(self) -> None:
        for name in ("tokens", "steps", "usd"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                raise GuardConfigError(
                    f"BudgetCaps.{name} must be a non-negative number or None, got {value!r}. "
                    "Hint: None means no cap."
                )


@dataclass(frozen=True, kw_only=True)
class Reservation:
    """The answer to a reservation: admitted or not, and how full the bucket is."""

    id: str
    """Reservation id chosen by the caller; stable across retries and resumes."""
    key: BudgetKey
    """Bucket reserved against."""
    amount: Charge
    """Amount reserved (as first requested, when `replayed`)."""
    admitted: bool
    """False: the call must not happen (`reason` says which cap)."""
    reason: str = ""
    """When refused: the cap, its limit and the observed value."""
    used_fraction: float = 0.0
    """Highest fraction of any cap in use after this reservation (0 without caps)."""
    replayed: bool = False
    """The id was seen before: nothing was charged again."""


@runtime_checkable
class BudgetLedger(Protocol):
    """Reserve-then-settle accounting of consumption against capped buckets. Exact under
    concurrency: concurrent reservations never admit more than a cap."""

    def set_caps(self, key: BudgetKey, caps: BudgetCaps) -> None:
        """Set (or replace) a bucket's caps. Spending so far is kept."""
        ...

    def caps(self, key: BudgetKey) -> BudgetCaps | None:
        """A bucket's caps, or None if never set."""
        ...

    def reserve(self, key: BudgetKey, reservation_id: str, amount: Charge) -> Reservation:
        """Hold `amount` if spent + held + amount stays within every cap; idempotent per id."""
        ...

    def settle(self, reservation_id: str, actual: Charge) -> None:
        """Replace the hold by what was really used. Idempotent; unknown ids raise KeyError."""
        ...

    def release(self, reservation_id: str) -> None:
        """Drop a hold whose work did not happen. Idempotent; unknown ids raise KeyError."""
        ...

    def spent(self, key: BudgetKey) -> Charge:
        """Settled consumption of a bucket."""
        ...

    def held(self, key: BudgetKey) -> Charge:
        """Reserved, not yet settled consumption of a bucket."""
        ...


# ---------------------------------------------------------------------------------------------
# Kill switch

KillScopeKind = Literal["global", "tenant", "workflow", "run"]


@dataclass(frozen=True, kw_only=True)
class KillScope:
    """What a kill stops: everything, one tenant, one workflow or one run."""

    kind: KillScopeKind
    """Breadth of the kill."""
    value: str = "*"
    """Tenant, workflow or run id (`*` for global)."""

    def __str__(self) -> str:
        return "global" if self.kind == "global" else f"{self.kind}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> KillScope:
        """`global`, `tenant:<id>`, `workflow:<name>` or `run:<id>`."""
        if text == "global":
            return cls(kind="global")
        kind, _, value = text.partition(":")
        if kind not in ("tenant", "workflow", "run") or not value:
            raise GuardConfigError(
                f"kill scope {text!r} is not valid; expected `global`, `tenant:<id>`, "
                "`workflow:<name>` or `run:<id>`"
            )
        return cls(kind=kind, value=value)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class KillRecord:
    """An active kill: what, who, why, when."""

    scope: KillScope
    """What is stopped."""
    requester: str
    """Who asked."""
    reason: str
    """Why."""
    at: float
    """Unix time it took effect."""


@dataclass(frozen=True, kw_only=True)
class KillTarget:
    """What is about to act: checked against every scope that could cover it."""

    tenant: str
    """Tenant of the run."""
    workflow: str
    """Workflow of the run."""
    run_id: str
    """The run."""

    def scopes(self) -> tuple[KillScope, ...]:
        """The scopes that stop this target, broadest first."""
        return (
            KillScope(kind="global"),
            KillScope(kind="tenant", value=self.tenant),
            KillScope(kind="workflow", value=self.workflow),
            KillScope(kind="run", value=self.run_id),
        )


@runtime_checkable
class KillSwitch(Protocol):
    """Stops work by scope. `kill` returns only once every later `check` sees the kill."""

    def kill(self, scope: KillScope, *, requester: str, reason: str) -> KillRecord:
        """Stop everything in `scope`; requester and reason are required and recorded."""
        ...

    def lift(self, scope: KillScope, *, requester: str, reason: str) -> KillRecord | None:
        """End a kill (stopped runs stay stopped); returns the lifted record, or None."""
        ...

    def check(self, target: KillTarget) -> KillRecord | None:
        """The kill that stops `target` (broadest first), or None."""
        ...

    def active(self) -> list[KillRecord]:
        """Every kill in force."""
        ...

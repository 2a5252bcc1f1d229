"""The action guard: decides allow / deny / escalate / halt for one proposed action."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from guards.errors import GuardConfigError
from guards.limits import LIMITS_POLICY, RunLimits
from guards.request import ActionRequest
from guards.verdict import PolicyRef, Verdict

__all__ = ["ActionGuard"]

ALLOWLIST_POLICY = PolicyRef(id="tool-allowlist", version="1")
SIDE_EFFECT_POLICY = PolicyRef(id="side-effect-budget", version="1")
ZONE_POLICY = PolicyRef(id="risk-zones", version="1")
ZONES = ("green", "yellow", "red")


def _did_you_mean(name: str, candidates: frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.5)
    return f" Did you mean `{close[0]}`?" if close else ""


@dataclass(frozen=True, kw_only=True)
class ActionGuard:
    """Evaluates proposals in a fixed order: limits, tool allow-list, side-effect budget, zone.

    The first check that objects decides; later layers (kill switch, budgets, loops, Rego
    policies) slot into the same order without changing the node that calls `evaluate`.
    """

    limits: RunLimits = RunLimits()
    """Hard caps on steps and tokens."""
    escalate_zones: frozenset[str] = frozenset({"red"})
    """Zones whose actions need a human approval first."""
    flag_zones: frozenset[str] = frozenset({"yellow"})
    """Zones whose actions run but are flagged for later review."""

    def __post_init__(self) -> None:
        unknown = (self.escalate_zones | self.flag_zones) - set(ZONES)
        if unknown:
            raise GuardConfigError(
                f"unknown risk zone(s) {sorted(unknown)!r}; expected some of {list(ZONES)!r}"
            )

    @property
    def policies(self) -> tuple[PolicyRef, ...]:
        """Every policy this guard applies, in evaluation order."""
        return (LIMITS_POLICY, ALLOWLIST_POLICY, SIDE_EFFECT_POLICY, ZONE_POLICY)

    def evaluate(self, request: ActionRequest) -> Verdict:
        """Decide one proposed action. Never raises for bad proposals: they get a verdict."""
        halted = self.limits.check(request.usage)
        if halted is not None:
            return halted
        policies = self.policies
        if request.tool not in request.allowed_tools:
            listed = ", ".join(f"`{t}`" for t in sorted(request.allowed_tools)) or "none"
            return Verdict.deny(
                f"agent `{request.agent}` has no tool `{request.tool}`; its tools are: {listed}."
                + _did_you_mean(request.tool, request.allowed_tools),
                policies=policies[:2],
            )
        if request.side_effect not in (None, "none") and request.tool not in request.write_tools:
            return Verdict.deny(
                f"tool `{request.tool}` has side effects ({request.side_effect}) but workflow "
                f"`{request.workflow}` does not allow it to write; its side-effect budget is: "
                f"{', '.join(sorted(request.write_tools)) or 'no writes'}.",
                policies=policies[:3],
            )
        zone = request.zone or "red"  # a tool without a declared zone is treated as the riskiest
        if zone in self.escalate_zones:
            return Verdict.escalate(
                zone,
                (f"`{request.tool}` is in the {zone} zone for these arguments",),
                policies=policies,
            )
        reasons = (f"{zone} zone: runs, flagged for review",) if zone in self.flag_zones else ()
        return Verdict.allow(policies=policies, zone=zone, reasons=reasons)

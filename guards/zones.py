"""Risk zones x confidence: run, run and flag for review, or ask a human first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from guards.errors import GuardConfigError
from guards.verdict import PolicyRef, Verdict

__all__ = ["RiskThresholds", "ZoneRule"]

ZONES_POLICY = PolicyRef(id="risk-zones", version="2")
ZONES = ("green", "yellow", "red")
ZoneAction = Literal["run", "flag", "approve"]


@dataclass(frozen=True, kw_only=True)
class ZoneRule:
    """What a zone does, and the confidence below which it gets stricter."""

    action: ZoneAction
    """`run`, `flag` (run, then review) or `approve` (a human first), when confidence is fine."""
    approve_below: float = 0.0
    """A stated confidence below this asks a human first."""
    flag_below: float = 0.0
    """A stated confidence below this runs but is flagged for review."""

    def __post_init__(self) -> None:
        if self.action not in ("run", "flag", "approve"):
            raise GuardConfigError(
                f"ZoneRule.action {self.action!r} is not one of 'run', 'flag', 'approve'"
            )
        for name in ("approve_below", "flag_below"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise GuardConfigError(f"ZoneRule.{name} must be within [0, 1], got {value!r}")


@dataclass(frozen=True, kw_only=True)
class RiskThresholds:
    """A tenant's appetite for risk: one rule per zone.

    A proposal without a stated confidence gets its zone's action, unless
    `require_confidence` is set, in which case it counts as confidence 0.
    """

    green: ZoneRule = ZoneRule(action="run", approve_below=0.2, flag_below=0.5)
    """Read-only and harmless actions."""
    yellow: ZoneRule = ZoneRule(action="flag", approve_below=0.5)
    """Reversible or bounded effects."""
    red: ZoneRule = ZoneRule(action="approve")
    """Irreversible or large effects."""
    require_confidence: bool = False
    """Treat an unstated confidence as 0 (strict tenants)."""

    def decide(self, zone: str | None, confidence: float | None, tool: str) -> Verdict:
        """The verdict for a call to `tool` in `zone` (unknown zones count as red)."""
        zone = zone if zone in ZONES else "red"
        rule: ZoneRule = getattr(self, zone)
        stated = (
            confidence if confidence is not None else (0.0 if self.require_confidence else None)
        )
        said = "unstated" if stated is None else f"{stated:.2f}"
        if rule.action == "approve" or (stated is not None and stated < rule.approve_below):
            why = (
                f"`{tool}` is in the {zone} zone"
                if rule.action == "approve"
                else f"confidence {said} is below {rule.approve_below:.2f} for the {zone} zone"
            )
            return Verdict.escalate(zone, (why,), policies=(ZONES_POLICY,))
        if rule.action == "flag" or (stated is not None and stated < rule.flag_below):
            return Verdict.allow(
                policies=(ZONES_POLICY,),
                zone=zone,
                reasons=(f"{zone} zone, confidence {said}: runs, flagged for review",),
            )
        return Verdict.allow(policies=(ZONES_POLICY,), zone=zone)

"""Verdicts: the guard's decision about one proposed action, as a value."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["PolicyRef", "Verdict", "VerdictKind"]

VerdictKind = Literal["allow", "deny", "escalate", "halt"]


@dataclass(frozen=True, kw_only=True)
class PolicyRef:
    """Names the policy (and its version) that took part in a decision."""

    id: str
    """Stable policy id, e.g. `tool-allowlist`."""
    version: str
    """The policy's version at decision time, so old decisions stay explainable."""

    def __str__(self) -> str:
        return f"{self.id}@{self.version}"


# Decision ids need uniqueness, not secrecy: a PRNG seeded once from the OS avoids an
# os.urandom read per verdict (measurably slow on some VMs, and paid on every tool call).
_ids = random.Random(os.urandom(16))


def _new_decision_id() -> str:
    return f"dec_{_ids.getrandbits(64):016x}"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """One decision about one proposed action.

    Build them with the constructors (`Verdict.allow()`, `.deny(reason)`, `.escalate(...)`,
    `.halt(reason)`); a denial or a halt is a value, not an exception.
    """

    kind: VerdictKind
    """allow: run it; deny: tell the agent why; escalate: ask a human; halt: stop the run."""
    reasons: tuple[str, ...] = ()
    """Human-readable reasons, most important first."""
    zone: str | None = None
    """Risk zone of the action when it mattered to the decision."""
    policies: tuple[PolicyRef, ...] = ()
    """Policies that were evaluated to reach this verdict."""
    decided_by: str = "guard"
    """`guard` for automatic decisions, `human:<reviewer>` for approvals."""
    decision_id: str = field(default_factory=_new_decision_id)
    """Unique id; traces, audit records and approvals refer to it."""
    args: Mapping[str, Any] | None = None
    """Arguments to run instead of the proposed ones (e.g. redacted at egress); None: as is."""

    @classmethod
    def allow(
        cls,
        *,
        policies: tuple[PolicyRef, ...] = (),
        zone: str | None = None,
        reasons: tuple[str, ...] = (),
        decided_by: str = "guard",
        args: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """The action may run (with `args` instead of the proposed arguments, if given)."""
        return cls(
            kind="allow",
            policies=policies,
            zone=zone,
            reasons=reasons,
            decided_by=decided_by,
            args=args,
        )

    @classmethod
    def deny(
        cls,
        reason: str,
        *,
        policies: tuple[PolicyRef, ...] = (),
        zone: str | None = None,
        decided_by: str = "guard",
    ) -> Verdict:
        """The action may not run; `reason` goes back to the agent."""
        return cls(
            kind="deny", reasons=(reason,), policies=policies, zone=zone, decided_by=decided_by
        )

    @classmethod
    def escalate(
        cls,
        zone: str,
        reasons: tuple[str, ...],
        *,
        policies: tuple[PolicyRef, ...] = (),
        args: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """A human must approve, edit or reject the action (with `args`, if given) first."""
        return cls(kind="escalate", zone=zone, reasons=reasons, policies=policies, args=args)

    @classmethod
    def halt(cls, reason: str, *, policies: tuple[PolicyRef, ...] = ()) -> Verdict:
        """The whole run stops here and goes to finalize."""
        return cls(kind="halt", reasons=(reason,), policies=policies)

    @property
    def reason(self) -> str:
        """All reasons as one sentence."""
        return "; ".join(self.reasons)

    def to_record(self) -> dict[str, Any]:
        """A JSON-safe dict for graph state (every checkpointer and the server API can hold it)."""
        return {
            "decision_id": self.decision_id,
            "kind": self.kind,
            "reasons": list(self.reasons),
            "zone": self.zone,
            "policies": [str(p) for p in self.policies],
            "decided_by": self.decided_by,
        }

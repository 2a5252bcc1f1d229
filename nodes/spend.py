"""Paying for model calls: run caps and the tenant's budget bucket, before and after each call."""

from __future__ import annotations

from dataclasses import dataclass

from guards import ActionGuard, Charge, KillTarget, Verdict
from guards.spend import BUDGET_POLICY
from nodes.records import ModelCall, usage_snapshot
from nodes.state import RunState
from observability import PriceTable

__all__ = ["Admission", "ModelGate"]


@dataclass(frozen=True, kw_only=True)
class Admission:
    """The answer to "may this model call happen?"."""

    halt: Verdict | None = None
    """Set when the call must not happen (a cap would be crossed)."""
    reservation_id: str | None = None
    """The ledger hold to settle or release, when a ledger is configured."""


@dataclass(frozen=True, kw_only=True)
class ModelGate:
    """Reserves before a model call and settles after: a call that would cross a cap (the run's
    own, or the tenant's shared bucket) does not happen, and a retried or resumed step is never
    charged twice (the reservation id is the run, the node and the step)."""

    guard: ActionGuard
    """Run limits, loop policy and the spend policy (ledger, thresholds)."""
    prices: PriceTable
    """Prices for estimates."""

    def admit(self, state: RunState, *, node: str, model_name: str, tokens: int) -> Admission:
        """Check caps for a call estimated at `tokens` input tokens, and hold its cost."""
        usage = usage_snapshot(state)
        spend = self.guard.spend
        killed = self.guard.killed(
            KillTarget(
                tenant=state.get("tenant", "default"),
                workflow=state.get("workflow", ""),
                run_id=state.get("run_id", ""),
            )
        )
        if killed is not None:
            return Admission(halt=killed)
        usd = self.prices.cost(model_name, tokens, spend.output_allowance)
        halted = self.guard.limits.check(
            usage, next_tokens=tokens, next_steps=1, next_usd=usd
        ) or self.guard.loops.check_progress(usage.steps, state.get("progress_step", 0))
        if halted is not None or spend.ledger is None:
            return Admission(halt=halted)
        reservation_id = f"{state.get('run_id', '')}:{node}:{usage.steps}"
        held = spend.ledger.reserve(
            spend.key(state.get("tenant", "default")),
            reservation_id,
            Charge(tokens=tokens + spend.output_allowance, steps=1, usd=usd),
        )
        if not held.admitted:
            return Admission(
                halt=Verdict.halt(
                    f"tenant budget exhausted: {held.reason}", policies=(BUDGET_POLICY,)
                )
            )
        return Admission(reservation_id=reservation_id)

    def settle(self, admission: Admission, call: ModelCall) -> None:
        """Replace the hold by the call's real usage."""
        if admission.reservation_id and self.guard.spend.ledger is not None:
            self.guard.spend.ledger.settle(
                admission.reservation_id,
                Charge(tokens=call.tokens_in + call.tokens_out, steps=1, usd=call.cost_usd),
            )

    def release(self, admission: Admission) -> None:
        """Drop the hold of a call that failed."""
        if admission.reservation_id and self.guard.spend.ledger is not None:
            self.guard.spend.ledger.release(admission.reservation_id)

"""Spend policy: which budget bucket a run charges, and what happens near its caps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from guards.base import BudgetKey, BudgetLedger
from guards.errors import GuardConfigError
from guards.verdict import PolicyRef

__all__ = ["SpendPolicy", "ThresholdAction"]

BUDGET_POLICY = PolicyRef(id="budget", version="1")

ThresholdAction = Literal["continue", "fallback", "ask"]
"""Near the cap: carry on, switch to the fallback model, or ask a human for more money."""


@dataclass(frozen=True, kw_only=True)
class SpendPolicy:
    """How model calls are paid for.

    Every model call reserves its estimated cost in the tenant's bucket of `ledger` before it
    happens and settles the real usage after; a call whose reservation is refused does not
    happen. Past `threshold` of a run's token or money cap, `on_threshold` applies once.
    """

    ledger: BudgetLedger | None = None
    """Shared buckets across runs (in-memory or Redis); None: only the run's own caps apply."""
    environment: str = "default"
    """Bucket environment, e.g. `prod`."""
    threshold: float = 0.8
    """Fraction of a cap at which `on_threshold` applies."""
    on_threshold: ThresholdAction = "continue"
    """What to do at the threshold."""
    extension_usd: float = 0.01
    """What a human is asked to add ("continue for up to $X more?")."""
    output_allowance: int = 256
    """Output tokens reserved per call on top of the estimated input."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise GuardConfigError(
                f"SpendPolicy.threshold must be in (0, 1], got {self.threshold!r}; e.g. 0.8"
            )
        if self.on_threshold not in ("continue", "fallback", "ask"):
            raise GuardConfigError(
                f"SpendPolicy.on_threshold {self.on_threshold!r} must be 'continue', "
                "'fallback' or 'ask'"
            )
        if self.extension_usd <= 0:
            raise GuardConfigError(
                f"SpendPolicy.extension_usd must be > 0, got {self.extension_usd!r}"
            )

    def key(self, tenant: str) -> BudgetKey:
        """The tenant's bucket (all workflows: tenant budgets are the money that runs out)."""
        return BudgetKey(tenant=tenant, environment=self.environment)

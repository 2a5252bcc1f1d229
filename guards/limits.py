"""Hard run limits: caps on steps and tokens, checked before work is done, not after."""

from __future__ import annotations

from dataclasses import dataclass

from guards.errors import GuardConfigError
from guards.verdict import PolicyRef, Verdict

__all__ = ["RunLimits", "UsageSnapshot"]

LIMITS_POLICY = PolicyRef(id="run-limits", version="1")


@dataclass(frozen=True, kw_only=True)
class UsageSnapshot:
    """What a run has consumed so far: the guard's view of usage."""

    steps: int = 0
    """Model turns taken (specialists and the orchestrator)."""
    tokens: int = 0
    """Input plus output tokens."""


@dataclass(frozen=True, kw_only=True)
class RunLimits:
    """Independent hard caps for one run. A cap of `None` means no cap."""

    max_steps: int | None = 25
    """Most model turns a run may take."""
    max_tokens: int | None = 200_000
    """Most tokens (input + output) a run may use."""

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise GuardConfigError(
                    f"RunLimits.{name} must be a positive integer or None, got {value!r}. "
                    "Hint: use None for no cap."
                )

    def check(
        self, usage: UsageSnapshot, *, next_tokens: int = 0, next_steps: int = 0
    ) -> Verdict | None:
        """Halt if `usage` plus the work about to start would cross a cap, else None.

        Args:
            usage: consumption so far.
            next_tokens: tokens the next call is estimated to use (the reservation).
            next_steps: steps the next call will take.
        """
        if self.max_steps is not None and usage.steps + next_steps > self.max_steps:
            return Verdict.halt(
                f"step cap reached: {usage.steps} of {self.max_steps} steps used and the next "
                f"action needs {next_steps} more",
                policies=(LIMITS_POLICY,),
            )
        if self.max_tokens is not None and usage.tokens + next_tokens > self.max_tokens:
            return Verdict.halt(
                f"token cap reached: {usage.tokens} of {self.max_tokens} tokens used and the next "
                f"call is estimated at {next_tokens}",
                policies=(LIMITS_POLICY,),
            )
        return None

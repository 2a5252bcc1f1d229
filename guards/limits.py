"""Hard run limits: caps on steps, tokens, money and wall-clock time, checked before work starts."""

from __future__ import annotations

from dataclasses import dataclass

from guards.errors import GuardConfigError
from guards.verdict import PolicyRef, Verdict

__all__ = ["RunLimits", "UsageSnapshot"]

LIMITS_POLICY = PolicyRef(id="run-limits", version="2")


@dataclass(frozen=True, kw_only=True)
class UsageSnapshot:
    """What a run has consumed so far: the guard's view of usage."""

    steps: int = 0
    """Model turns taken (specialists and the orchestrator)."""
    tokens: int = 0
    """Input plus output tokens."""
    cost_usd: float = 0.0
    """Model spend so far."""
    seconds: float = 0.0
    """Wall-clock time since the run started."""
    extra_usd: float = 0.0
    """Money a human granted beyond `max_usd` ("continue for up to $X more")."""


@dataclass(frozen=True, kw_only=True)
class RunLimits:
    """Independent hard caps for one run. A cap of `None` means no cap."""

    max_steps: int | None = 25
    """Most model turns a run may take."""
    max_tokens: int | None = 200_000
    """Most tokens (input + output) a run may use."""
    max_usd: float | None = None
    """Most money a run may spend on models (plus what a human grants on the way)."""
    max_seconds: float | None = None
    """Longest wall-clock time a run may take (time spent waiting for a human included)."""

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise GuardConfigError(
                    f"RunLimits.{name} must be a positive integer or None, got {value!r}. "
                    "Hint: use None for no cap."
                )
        for name in ("max_usd", "max_seconds"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise GuardConfigError(
                    f"RunLimits.{name} must be a positive number or None, got {value!r}. "
                    "Hint: use None for no cap."
                )

    def check(
        self,
        usage: UsageSnapshot,
        *,
        next_tokens: int = 0,
        next_steps: int = 0,
        next_usd: float = 0.0,
    ) -> Verdict | None:
        """Halt if `usage` plus the work about to start would cross a cap, else None.

        Args:
            usage: consumption so far.
            next_tokens: tokens the next call is estimated to use (the reservation).
            next_steps: steps the next call will take.
            next_usd: estimated price of the next call.
        """
        if self.max_steps is not None and usage.steps + next_steps > self.max_steps:
            return self._halt(
                f"step cap reached: {usage.steps} of {self.max_steps} steps used and the next "
                f"action needs {next_steps} more"
            )
        if self.max_tokens is not None and usage.tokens + next_tokens > self.max_tokens:
            return self._halt(
                f"token cap reached: {usage.tokens} of {self.max_tokens} tokens used"
                + (f" and the next call is estimated at {next_tokens}" if next_tokens else "")
            )
        cap_usd = self.usd_cap(usage)
        if cap_usd is not None and usage.cost_usd + next_usd > cap_usd:
            return self._halt(
                f"money cap reached: ${usage.cost_usd:.4f} spent of ${cap_usd:.4f} allowed"
                + (f", and the next call is estimated at ${next_usd:.4f}" if next_usd else "")
            )
        if self.max_seconds is not None and usage.seconds > self.max_seconds:
            return self._halt(
                f"time cap reached: the run has taken {usage.seconds:.1f}s of "
                f"{self.max_seconds:g}s allowed"
            )
        return None

    def usd_cap(self, usage: UsageSnapshot) -> float | None:
        """The money cap in force: `max_usd` plus what humans granted."""
        return None if self.max_usd is None else self.max_usd + usage.extra_usd

    def spend_fraction(self, usage: UsageSnapshot) -> float:
        """The highest fraction of the token and money caps in use (0 without them).

        Drives budget thresholds; steps are left out because a cheaper model does not save steps.
        """
        fractions = [0.0]
        if self.max_tokens:
            fractions.append(usage.tokens / self.max_tokens)
        cap_usd = self.usd_cap(usage)
        if cap_usd:
            fractions.append(usage.cost_usd / cap_usd)
        return max(fractions)

    @staticmethod
    def _halt(reason: str) -> Verdict:
        return Verdict.halt(reason, policies=(LIMITS_POLICY,))

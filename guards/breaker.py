"""Per-tool circuit breaker: after K failures in a window a tool rests for a cool-down.

The state is a plain JSON-safe dict so it lives in graph state: it is checkpointed with the run
and survives a crash, a resume or a move to another worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from typing_extensions import TypedDict

from guards.errors import GuardConfigError
from guards.verdict import PolicyRef, Verdict

__all__ = ["BreakerPolicy", "BreakerState"]

BREAKER_POLICY = PolicyRef(id="circuit-breaker", version="1")


class BreakerState(TypedDict):
    """One tool's breaker."""

    failures: list[float]
    """Unix times of recent failures (inside the window)."""
    open_until: float
    """Unix time the cool-down ends; 0 when closed."""


@dataclass(frozen=True, kw_only=True)
class BreakerPolicy:
    """Opens a tool's circuit after `failures` failures within `window_s` seconds."""

    failures: int = 3
    """Failures that open the circuit."""
    window_s: float = 60.0
    """How far back failures count."""
    cooldown_s: float = 30.0
    """How long an open circuit refuses calls."""

    def __post_init__(self) -> None:
        if (
            isinstance(self.failures, bool)
            or not isinstance(self.failures, int)
            or self.failures < 1
        ):
            raise GuardConfigError(
                f"BreakerPolicy.failures must be an integer >= 1, got {self.failures!r}"
            )
        for name in ("window_s", "cooldown_s"):
            if getattr(self, name) <= 0:
                raise GuardConfigError(
                    f"BreakerPolicy.{name} must be > 0 seconds, got {getattr(self, name)!r}"
                )

    def record(self, state: BreakerState | None, *, ok: bool, now: float) -> BreakerState:
        """The breaker after one call's outcome (a success closes it and forgets failures)."""
        if ok:
            return BreakerState(failures=[], open_until=0.0)
        failures = state["failures"] if state else []
        recent = [t for t in failures if now - t <= self.window_s]
        recent.append(now)
        open_until = state["open_until"] if state else 0.0
        if len(recent) >= self.failures:
            open_until, recent = now + self.cooldown_s, []
        return BreakerState(failures=recent, open_until=open_until)

    def check(
        self, breakers: Mapping[str, BreakerState], tool: str, *, now: float
    ) -> Verdict | None:
        """Deny a call to `tool` while its circuit is open."""
        state = breakers.get(tool)
        if state is None or state["open_until"] <= now:
            return None
        return Verdict.deny(
            f"`{tool}` is unavailable: its circuit is open for another "
            f"{state['open_until'] - now:.0f}s after {self.failures} failures within "
            f"{self.window_s:g}s; use another way or tell the user to retry later",
            policies=(BREAKER_POLICY,),
        )

"""Loop and storm detection: repeated proposals, handoff ping-pong, runs that stop progressing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guards.errors import GuardConfigError
from guards.verdict import PolicyRef, Verdict

__all__ = ["LoopPolicy", "proposal_fingerprint"]

LOOPS_POLICY = PolicyRef(id="loops", version="1")


def proposal_fingerprint(tool: str, args: Mapping[str, Any]) -> str:
    """Identity of a proposal: the tool and its canonical arguments (not the model's call id)."""
    canonical = json.dumps([tool, args], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


def _brief(args: Mapping[str, Any]) -> str:
    text = json.dumps(dict(args), sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True, kw_only=True)
class LoopPolicy:
    """When a run is going round in circles. Each check returns a halt verdict or None; a halt
    stops the run and hands it to a human with a summary instead of burning more budget."""

    max_repeats: int = 2
    """How often one identical proposal (tool + arguments) may be made in a run."""
    max_ping_pong: int = 2
    """How many A→B round trips between the same two specialists are tolerated."""
    no_progress_steps: int | None = 8
    """Model turns in a row without a new successful tool result or a new specialist."""

    def __post_init__(self) -> None:
        for name in ("max_repeats", "max_ping_pong", "no_progress_steps"):
            value = getattr(self, name)
            if value is None and name == "no_progress_steps":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GuardConfigError(f"LoopPolicy.{name} must be an integer >= 1, got {value!r}")

    def check_repeat(
        self, earlier: Sequence[str], tool: str, args: Mapping[str, Any]
    ) -> Verdict | None:
        """Halt when `tool(args)` was already proposed `max_repeats` times this run.

        Args:
            earlier: fingerprints of the run's earlier proposals.
            tool: proposed tool.
            args: proposed arguments.
        """
        seen = earlier.count(proposal_fingerprint(tool, args))
        if seen < self.max_repeats:
            return None
        return Verdict.halt(
            f"loop detected: `{tool}` was proposed {seen + 1} times with the same arguments "
            f"{_brief(args)} (at most {self.max_repeats} allowed); a human should look at why "
            "the agent keeps asking",
            policies=(LOOPS_POLICY,),
        )

    def check_routes(self, routes: Sequence[str]) -> Verdict | None:
        """Halt when the last handoffs alternate between two specialists too often (A→B→A→B)."""
        window = 2 * self.max_ping_pong + 1
        if len(routes) < window:
            return None
        tail = routes[-window:]
        a, b = tail[0], tail[1]
        if a == b or any(name != (a if i % 2 == 0 else b) for i, name in enumerate(tail)):
            return None
        return Verdict.halt(
            f"handoff ping-pong: the work went {' → '.join(tail)} without finishing "
            f"(at most {self.max_ping_pong} round trips between `{a}` and `{b}`); a human "
            "should decide who owns this request",
            policies=(LOOPS_POLICY,),
        )

    def check_progress(self, steps: int, last_progress_step: int) -> Verdict | None:
        """Halt when `no_progress_steps` model turns passed since the run last made progress."""
        if self.no_progress_steps is None or steps - last_progress_step < self.no_progress_steps:
            return None
        return Verdict.halt(
            f"no progress: {steps - last_progress_step} model turns without a new successful "
            f"tool result or a new specialist (limit {self.no_progress_steps})",
            policies=(LOOPS_POLICY,),
        )

"""Cost roll-ups: tokens and money from trace events, grouped by tenant, workflow, run, node or
agent."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from observability.events import TraceEvent

__all__ = ["COST_KEYS", "CostLine", "cost_rollup"]

COST_KEYS: tuple[str, ...] = ("tenant", "workflow", "run_id", "node", "agent")
"""Trace event fields a cost roll-up can group by."""


@dataclass(frozen=True, kw_only=True)
class CostLine:
    """What one group of steps consumed."""

    keys: Mapping[str, str]
    """The group: each `by` field and its value (`agent` is empty for steps of no agent)."""
    tokens_in: int
    """Input tokens of the group's model calls."""
    tokens_out: int
    """Output tokens of the group's model calls."""
    usd: float
    """Model spend from the price table."""
    steps: int
    """Node steps in the group."""
    runs: int
    """Distinct runs the steps belong to."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "keys": dict(self.keys),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "usd": self.usd,
            "steps": self.steps,
            "runs": self.runs,
        }


def _check_keys(by: Sequence[str]) -> tuple[str, ...]:
    if isinstance(by, str):  # `by="tenant"` would group by t, e, n, ...
        by = (by,)
    unknown = [key for key in by if key not in COST_KEYS]
    if unknown:
        raise ValueError(
            f"cost_rollup cannot group by {unknown!r}; the keys are {list(COST_KEYS)}. "
            'Hint: by=("tenant", "workflow") gives one line per tenant and workflow.'
        )
    if len(set(by)) != len(by):
        raise ValueError(f"cost_rollup got a key twice in by={list(by)!r}")
    return tuple(by)


def cost_rollup(events: Iterable[TraceEvent], by: Sequence[str]) -> list[CostLine]:
    """Tokens, dollars, steps and runs per group of `events`, most expensive first.

    Args:
        events: trace events (any order; each counted once as given).
        by: fields to group by, any of `COST_KEYS`; empty gives one line for everything.

    Raises:
        ValueError: `by` names a field that is not in `COST_KEYS`, or one twice.
    """
    keys = _check_keys(by)
    groups: dict[tuple[str, ...], tuple[list[int], list[float], set[str]]] = {}
    for event in events:
        group = tuple(str(event.get(key) or "") for key in keys)
        counts, usd, runs = groups.setdefault(group, ([0, 0, 0], [], set()))
        cost = event["cost"]
        counts[0] += cost["tokens_in"]
        counts[1] += cost["tokens_out"]
        counts[2] += 1
        usd.append(cost["usd"])
        if event["run_id"]:
            runs.add(event["run_id"])
    lines = [
        CostLine(
            keys=dict(zip(keys, group, strict=True)),
            tokens_in=counts[0],
            tokens_out=counts[1],
            # fsum and rounding: thousands of tiny per-step prices must not add up to noise.
            usd=round(math.fsum(usd), 10),
            steps=counts[2],
            runs=len(runs),
        )
        for group, (counts, usd, runs) in groups.items()
    ]
    return sorted(lines, key=lambda line: (-line.usd, tuple(line.keys.values())))

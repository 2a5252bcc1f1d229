"""Decision SLOs: targets over KPIs, checked to met / missed / no data (green, red, grey)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from observability.kpis import Kpis

__all__ = ["SLO_METRICS", "SloConfigError", "SloResult", "SloTarget", "check_slos", "default_slos"]


def _p95(quantiles: Any) -> float | None:
    return quantiles.p95 if quantiles is not None else None


SLO_METRICS: Mapping[str, Callable[[Kpis], float | None]] = {
    "autonomy_rate": lambda k: k.autonomy_rate,
    "incident_rate": lambda k: k.incident_rate,
    "trace_completeness": lambda k: k.trace_completeness,
    "cost_per_resolved_run_usd": lambda k: k.cost_per_resolved_run_usd,
    "guard_latency_p95_ms": lambda k: _p95(k.governance_latency_ms.get("guard")),
    "approval_latency_p95_ms": lambda k: _p95(k.governance_latency_ms.get("approval")),
    "human_response_p95_s": lambda k: _p95(k.human_response_s),
    "human_on_time_rate": lambda k: k.human_on_time_rate,
}
"""The KPIs an SLO can target, by name."""


class SloConfigError(ValueError):
    """An SLO target names an unknown metric or comparison."""


@dataclass(frozen=True, kw_only=True)
class SloTarget:
    """A service-level objective over one KPI."""

    name: str
    """Short label (the console's row, the Prometheus `slo` label)."""
    metric: str
    """Which KPI: a key of `SLO_METRICS`."""
    op: Literal[">=", "<="]
    """The KPI must be at least (`>=`) or at most (`<=`) the threshold."""
    threshold: float
    """The bound."""
    description: str = ""
    """Why it matters, for people."""

    def __post_init__(self) -> None:
        if self.metric not in SLO_METRICS:
            raise SloConfigError(
                f"SLO {self.name!r} targets unknown metric {self.metric!r}; the metrics are "
                f"{sorted(SLO_METRICS)}"
            )
        if self.op not in (">=", "<="):
            raise SloConfigError(f"SLO {self.name!r} has op {self.op!r}; use '>=' or '<='")


@dataclass(frozen=True, kw_only=True)
class SloResult:
    """One target checked against the KPIs."""

    target: SloTarget
    """The objective."""
    value: float | None
    """The KPI's value (None: nothing measured yet)."""
    status: Literal["met", "missed", "no data"]
    """Green, red, or grey."""

    @property
    def ok(self) -> bool | None:
        """True when met, False when missed, None without data."""
        return None if self.status == "no data" else self.status == "met"

    @property
    def text(self) -> str:
        """One line for people, e.g. `trace completeness: 0.995 >= 0.99 (met)`."""
        value = "no data" if self.value is None else f"{self.value:.4g}"
        target = self.target
        return f"{target.name}: {value} {target.op} {target.threshold:g} ({self.status})"

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        target = self.target
        return {
            "name": target.name,
            "metric": target.metric,
            "op": target.op,
            "threshold": target.threshold,
            "description": target.description,
            "value": self.value,
            "status": self.status,
            "ok": self.ok,
        }


def default_slos(*, approval_deadline_s: float = 3600.0) -> tuple[SloTarget, ...]:
    """The default decision SLOs.

    Args:
        approval_deadline_s: the response-time target of escalations; 95% of human answers
            must come within it.
    """
    return (
        SloTarget(
            name="trace completeness",
            metric="trace_completeness",
            op=">=",
            threshold=0.99,
            description="every finished run can be explained and replayed from its trace",
        ),
        SloTarget(
            name="guard latency p95",
            metric="guard_latency_p95_ms",
            op="<=",
            threshold=50.0,
            description="governance must not slow the agents down",
        ),
        SloTarget(
            name="approval step latency p95",
            metric="approval_latency_p95_ms",
            op="<=",
            threshold=50.0,
            description="the approval node's own work (the human's wait is not in it)",
        ),
        SloTarget(
            name="human response p95",
            metric="human_response_p95_s",
            op="<=",
            threshold=approval_deadline_s,
            description="escalations are answered before their deadline",
        ),
        SloTarget(
            name="answers on time",
            metric="human_on_time_rate",
            op=">=",
            threshold=0.95,
            description="human answers come by the escalation's own deadline",
        ),
    )


def check_slos(kpis: Kpis, targets: Sequence[SloTarget] | None = None) -> list[SloResult]:
    """Check `targets` (default: `default_slos()`) against `kpis`, in order."""
    results = []
    for target in default_slos() if targets is None else targets:
        value = SLO_METRICS[target.metric](kpis)
        if value is None:
            status: Literal["met", "missed", "no data"] = "no data"
        elif value >= target.threshold if target.op == ">=" else value <= target.threshold:
            status = "met"
        else:
            status = "missed"
        results.append(SloResult(target=target, value=value, status=status))
    return results

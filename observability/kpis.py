"""Key performance indicators of governed runs, computed from their trace events."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from observability.events import RunSummary, TraceEvent
from observability.runs import OUTCOME_STATUSES, fold_run

__all__ = [
    "CONFIDENCE_BUCKETS",
    "INCIDENT_KINDS",
    "Kpis",
    "Quantiles",
    "compute_kpis",
    "incident_kind",
]

CONFIDENCE_BUCKETS: tuple[str, ...] = ("0-0.5", "0.5-0.7", "0.7-0.9", "0.9-1.0", "unknown")
"""Confidence histogram buckets (lower bound included); `unknown`: none stated, or outside 0-1."""

INCIDENT_KINDS: tuple[str, ...] = ("deny", "halt", "budget", "kill")
"""Guard denials; halts (loops, no progress, ...); halts for budgets and caps; kills."""

_KILL = re.compile(r"\bkill", re.IGNORECASE)
_BUDGET = re.compile(r"\b(budget|spend\w*|tokens?|caps?)\b", re.IGNORECASE)
_INCOMPLETE_SHOWN = 20
"""Incomplete run ids listed at most (the ratio counts them all)."""


def incident_kind(reason: str) -> str:
    """Classify a halt by its reason: `kill`, `budget` (caps, spend, tokens) or `halt`."""
    if _KILL.search(reason):
        return "kill"
    return "budget" if _BUDGET.search(reason) else "halt"


@dataclass(frozen=True, kw_only=True)
class Quantiles:
    """A latency distribution (nearest-rank quantiles)."""

    count: int
    """Samples."""
    total: float
    """Their sum (Prometheus summaries export it)."""
    p50: float
    """Median."""
    p95: float
    """95th percentile."""
    max: float
    """Largest sample."""

    @classmethod
    def of(cls, values: Iterable[float]) -> Quantiles | None:
        """The distribution of `values`; None when there are none."""
        ordered = sorted(values)
        if not ordered:
            return None

        def rank(q: float) -> float:
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

        return cls(
            count=len(ordered),
            total=round(math.fsum(ordered), 6),
            p50=rank(0.5),
            p95=rank(0.95),
            max=ordered[-1],
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "count": self.count,
            "total": self.total,
            "p50": self.p50,
            "p95": self.p95,
            "max": self.max,
        }


@dataclass(frozen=True, kw_only=True)
class Kpis:
    """What the runs did and how well they were governed. Rates are None without a
    denominator (no runs, no finished runs, nothing decided in a zone)."""

    runs_total: int
    """Runs seen."""
    runs_by_status: Mapping[str, int]
    """Runs by status: running, waiting, or their outcome."""
    finished_runs: int
    """Runs with an outcome."""
    resolved_runs: int
    """Runs that met their workflow's exit condition."""
    autonomous_runs: int
    """Finished runs no human was involved in (no escalation, no human decision)."""
    autonomy_rate: float | None
    """`autonomous_runs / finished_runs`."""
    human_decisions: int
    """Verdicts decided by a human (approvals, edits, rejections, budget answers)."""
    decisions_by_zone: Mapping[str, int]
    """Decided tool calls by risk zone (`unknown` when no verdict named one)."""
    interventions_by_zone: Mapping[str, int]
    """Of those, the calls a human was asked about or decided."""
    intervention_rate_by_zone: Mapping[str, float]
    """`interventions_by_zone / decisions_by_zone`, per zone."""
    incidents_by_kind: Mapping[str, int]
    """Guard trips by kind (every kind of `INCIDENT_KINDS`, zeros included)."""
    incidents_total: int
    """All guard trips."""
    incident_rate: float | None
    """Guard trips per run."""
    confidence_histogram: Mapping[str, int]
    """Proposals by stated confidence (every bucket of `CONFIDENCE_BUCKETS`)."""
    tokens_in: int
    """Input tokens of all runs."""
    tokens_out: int
    """Output tokens of all runs."""
    total_cost_usd: float
    """Model spend of all runs."""
    cost_per_resolved_run_usd: float | None
    """All spend (failures included) divided by the resolved runs: what one success costs."""
    trace_completeness: float | None
    """Share of finished runs whose trace is whole: intake and finalize traced, every verdict
    with a decision id and a policy list, every failed step with its error."""
    incomplete_runs: tuple[str, ...]
    """Some finished runs whose trace is not whole (the first few, sorted)."""
    governance_latency_ms: Mapping[str, Quantiles | None]
    """Duration of governance steps: `guard` (steps that decided without also running
    tools, whose time is not governance) and `approval`."""
    human_response_s: Quantiles | None
    """Seconds from a step pausing for a human to the same node resuming."""
    human_on_time_rate: float | None
    """Share of human answers given by their escalation's deadline (of those with one)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        latency = {k: q.as_dict() if q else None for k, q in self.governance_latency_ms.items()}
        return {
            **{k: dict(v) if isinstance(v, Mapping) else v for k, v in self.__dict__.items()},
            "incomplete_runs": list(self.incomplete_runs),
            "governance_latency_ms": latency,
            "human_response_s": self.human_response_s.as_dict() if self.human_response_s else None,
        }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _by_run(events: Sequence[TraceEvent]) -> dict[str, list[TraceEvent]]:
    runs: dict[str, list[TraceEvent]] = {}
    for event in events:
        if event["run_id"]:
            runs.setdefault(event["run_id"], []).append(event)
    return runs


def _summaries(
    by_run: Mapping[str, list[TraceEvent]], runs: Sequence[RunSummary] | None
) -> dict[str, RunSummary]:
    if runs is not None:
        return {run["run_id"]: run for run in runs}
    summaries: dict[str, RunSummary] = {}
    for run_id, events in by_run.items():
        summary = None
        for event in events:
            summary = fold_run(summary, event)
        if summary is not None:
            summaries[run_id] = summary
    return summaries


def _verdicts(events: Sequence[TraceEvent]) -> list[tuple[TraceEvent, Mapping[str, Any]]]:
    """Every verdict once (a re-run step may trace the same decision twice)."""
    seen: set[str] = set()
    found: list[tuple[TraceEvent, Mapping[str, Any]]] = []
    for event in events:
        for index, verdict in enumerate(event["verdicts"]):
            key = str(verdict.get("decision_id") or f"{event['event_id']}#{index}")
            if key not in seen:
                seen.add(key)
                found.append((event, verdict))
    return found


def _zones(
    verdicts: Sequence[tuple[TraceEvent, Mapping[str, Any]]],
) -> tuple[Counter[str], Counter[str]]:
    """Decided tool calls and interventions by zone. Verdicts about no call (halts before a
    model call, budget answers) decide the run, not an action in a zone: left out."""
    calls: dict[tuple[str, str], list[Any]] = {}
    for event, verdict in verdicts:
        if not verdict.get("call_id"):
            continue
        call = calls.setdefault((event["run_id"], verdict["call_id"]), [None, False])
        call[0] = call[0] or verdict.get("zone")
        human = str(verdict.get("decided_by", "")).startswith("human:")
        call[1] = call[1] or human or verdict.get("kind") == "escalate"
    decided: Counter[str] = Counter()
    intervened: Counter[str] = Counter()
    for zone, asked in calls.values():
        decided[zone or "unknown"] += 1
        intervened[zone or "unknown"] += asked
    return decided, intervened


def _incidents(
    verdicts: Sequence[tuple[TraceEvent, Mapping[str, Any]]],
    by_run: Mapping[str, list[TraceEvent]],
) -> Counter[str]:
    """Guard trips. A human's rejection is an intervention, not a trip; a run halted without a
    halt verdict (a kill seen at intake) counts by its outcome's reason."""
    kinds: Counter[str] = Counter({kind: 0 for kind in INCIDENT_KINDS})
    halted_runs = set()
    for event, verdict in verdicts:
        if verdict.get("decided_by", "guard") != "guard":
            continue
        if verdict.get("kind") == "deny":
            kinds["deny"] += 1
        elif verdict.get("kind") == "halt":
            kinds[incident_kind("; ".join(verdict.get("reasons") or ()))] += 1
            halted_runs.add(event["run_id"])
    for run_id, events in by_run.items():
        for event in events:
            if event["node"] == "finalize" and event["output"].startswith("halted:"):
                if run_id not in halted_runs:
                    kinds[incident_kind(event["output"].removeprefix("halted:"))] += 1
                break
    return kinds


def _confidence(events: Sequence[TraceEvent]) -> Counter[str]:
    buckets: Counter[str] = Counter({bucket: 0 for bucket in CONFIDENCE_BUCKETS})
    seen: set[tuple[str, str]] = set()
    for event in events:
        for proposal in event["proposals"]:
            key = (event["run_id"], str(proposal.get("call_id")))
            if key in seen:
                continue
            seen.add(key)
            value = proposal.get("confidence")
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                buckets["unknown"] += 1
            else:
                index = sum(value >= bound for bound in (0.5, 0.7, 0.9))
                buckets[CONFIDENCE_BUCKETS[index]] += 1
    return buckets


def _complete(events: Sequence[TraceEvent]) -> bool:
    nodes = {event["node"] for event in events}
    return (
        {"intake", "finalize"} <= nodes
        and all(
            verdict.get("decision_id") and isinstance(verdict.get("policies"), list)
            for event in events
            for verdict in event["verdicts"]
        )
        and not any(event["status"] == "error" and not event["error"] for event in events)
    )


def _ran_tools(event: TraceEvent) -> bool:
    """Whether the step ran tools (a failed gateway call names its `error_kind`; the guard's
    refusals do not)."""
    return any(c["status"] != "error" or c.get("error_kind") for c in event["tool_calls"])


def _human_response(by_run: Mapping[str, list[TraceEvent]]) -> tuple[list[float], list[bool]]:
    """Waits from the first pause of a node to that node's next completed step, per run; and
    for the pauses that had a deadline, whether the answer came by it."""
    waits, on_time = [], []
    for events in by_run.values():
        paused: dict[str, tuple[float, Any]] = {}
        for event in events:
            if event["status"] == "interrupted":
                deadline = (event["escalation"] or {}).get("deadline")
                paused.setdefault(event["node"], (event["ts"], deadline))
            elif event["status"] == "ok" and event["node"] in paused:
                asked, deadline = paused.pop(event["node"])
                waits.append(max(0.0, event["ts"] - asked))
                if isinstance(deadline, int | float):
                    on_time.append(event["ts"] <= deadline)
    return waits, on_time


def compute_kpis(events: Iterable[TraceEvent], *, runs: Sequence[RunSummary] | None = None) -> Kpis:
    """KPIs of the runs in `events`.

    Args:
        events: trace events, in any order; pass every event of the runs to measure (a run
            whose intake or finalize is missing counts as incompletely traced).
        runs: the runs' summaries as a sink keeps them (their status, cost and counts win
            over what `events` show); default: folded from `events`.
    """
    ordered = sorted(events, key=lambda event: event["ts"])
    by_run = _by_run(ordered)
    summaries = _summaries(by_run, runs)
    statuses = Counter(summary["status"] for summary in summaries.values())
    finished = [s for s in summaries.values() if s["status"] in OUTCOME_STATUSES]
    autonomous = sum(not s["interventions"] and not s["escalations"] for s in finished)
    verdicts = _verdicts(ordered)
    decided, intervened = _zones(verdicts)
    incidents = _incidents(verdicts, by_run)
    total_usd = round(math.fsum(s["cost"]["usd"] for s in summaries.values()), 10)
    complete = sorted(s["run_id"] for s in finished if _complete(by_run.get(s["run_id"], [])))
    incomplete = sorted({s["run_id"] for s in finished} - set(complete))
    waits, on_time = _human_response(by_run)
    guard_ms = [e["duration_ms"] for e in ordered if e["node"] == "guard" and not _ran_tools(e)]
    return Kpis(
        runs_total=len(summaries),
        runs_by_status=dict(sorted(statuses.items())),
        finished_runs=len(finished),
        resolved_runs=statuses["resolved"],
        autonomous_runs=autonomous,
        autonomy_rate=_ratio(autonomous, len(finished)),
        human_decisions=sum(str(v.get("decided_by", "")).startswith("human:") for _, v in verdicts),
        decisions_by_zone=dict(sorted(decided.items())),
        interventions_by_zone=dict(sorted(intervened.items())),
        intervention_rate_by_zone={z: intervened[z] / n for z, n in sorted(decided.items())},
        incidents_by_kind=dict(incidents),
        incidents_total=sum(incidents.values()),
        incident_rate=_ratio(sum(incidents.values()), len(summaries)),
        confidence_histogram=dict(_confidence(ordered)),
        tokens_in=sum(s["cost"]["tokens_in"] for s in summaries.values()),
        tokens_out=sum(s["cost"]["tokens_out"] for s in summaries.values()),
        total_cost_usd=total_usd,
        cost_per_resolved_run_usd=_ratio(total_usd, statuses["resolved"]),
        trace_completeness=_ratio(len(complete), len(finished)),
        incomplete_runs=tuple(incomplete[:_INCOMPLETE_SHOWN]),
        governance_latency_ms={
            "guard": Quantiles.of(guard_ms),
            "approval": Quantiles.of(e["duration_ms"] for e in ordered if e["node"] == "approval"),
        },
        human_response_s=Quantiles.of(waits),
        human_on_time_rate=_ratio(sum(on_time), len(on_time)),
    )

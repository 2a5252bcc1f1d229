"""KPIs of traced runs for the terminal: computed from the trace sink, shown as a compact block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graphs import Services
from observability import TraceEvent
from observability.kpis import Kpis, compute_kpis

__all__ = ["MAX_EVENTS", "ZONE_ORDER", "events_of_runs", "kpi_lines", "kpis_of"]

MAX_EVENTS = 100_000
"""Trace events read at most (for KPIs, or to find a decision without its audit record)."""
ZONE_ORDER = ("green", "yellow", "red")
"""Risk zones in the order people read them."""


def events_of_runs(services: Services, run_ids: Sequence[str]) -> list[TraceEvent]:
    """Every trace event of these runs."""
    return [e for run in run_ids for e in services.traces.events(run_id=run, limit=MAX_EVENTS)]


def kpis_of(
    services: Services,
    *,
    tenant: str | None = None,
    run_ids: Sequence[str] | None = None,
    events: Sequence[TraceEvent] | None = None,
) -> Kpis:
    """KPIs of the given runs, or of every traced run (of `tenant`), from the trace sink.

    What this process traced is written first (the tracer writes off the hot path).

    Args:
        services: the trace sink and the tracer.
        tenant: only this tenant's runs (without `run_ids`).
        run_ids: exactly these runs (the demo's).
        events: the tenant's events, when the caller read them already.
    """
    services.tracer.flush()
    if run_ids is not None:
        return compute_kpis(events_of_runs(services, run_ids))
    if events is None:
        events = services.traces.events(tenant=tenant, limit=MAX_EVENTS)
    seen = {event["run_id"] for event in events}
    # The sink's summaries are whole even when the oldest events fall outside the read.
    summaries = services.traces.runs(tenant=tenant, limit=MAX_EVENTS)
    return compute_kpis(events, runs=[r for r in summaries if r["run_id"] in seen])


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _ms(quantiles: Any) -> str:
    return "n/a" if quantiles is None else f"p50 {quantiles.p50:.1f} / p95 {quantiles.p95:.1f} ms"


def kpi_lines(kpis: Kpis) -> list[str]:
    """The KPIs in a compact block of plain lines (the demo's closing lines)."""
    statuses = ", ".join(f"{n} {status}" for status, n in kpis.runs_by_status.items())
    rates = kpis.intervention_rate_by_zone
    ordered = sorted(rates, key=lambda z: (ZONE_ORDER.index(z) if z in ZONE_ORDER else 9, z))
    zones = ", ".join(f"{zone} {rates[zone]:.0%}" for zone in ordered)
    incidents = ", ".join(f"{kind} {n}" for kind, n in kpis.incidents_by_kind.items())
    per_resolved = kpis.cost_per_resolved_run_usd
    cost = "no resolved run" if per_resolved is None else f"${per_resolved:.4f} per resolved run"
    latency = kpis.governance_latency_ms
    return [
        f"runs              {kpis.runs_total}" + (f" ({statuses})" if statuses else ""),
        f"autonomy rate     {_percent(kpis.autonomy_rate)} ({kpis.autonomous_runs} of "
        f"{kpis.finished_runs} finished runs without a human)",
        f"interventions     {kpis.human_decisions} human decisions"
        + (f" · asked by zone: {zones}" if zones else ""),
        f"incidents         {kpis.incidents_total} ({incidents})"
        + (f" · {kpis.incident_rate:.2f} per run" if kpis.incident_rate is not None else ""),
        f"cost              {cost} · ${kpis.total_cost_usd:.4f} in all",
        f"trace complete    {_percent(kpis.trace_completeness)} of finished runs",
        f"governance        guard {_ms(latency.get('guard'))} · approval "
        f"{_ms(latency.get('approval'))}",
    ]  # fmt: skip

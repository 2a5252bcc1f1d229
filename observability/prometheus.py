"""KPIs, costs and tracer counters in the Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from observability.costs import CostLine
from observability.kpis import Kpis, Quantiles
from observability.runs import OUTCOME_STATUSES
from observability.slos import SloResult
from observability.tracer import TracerStats

__all__ = ["CONTENT_TYPE", "prometheus_text"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The HTTP `Content-Type` of `prometheus_text` output."""

Labels = Mapping[str, str]
Sample = tuple[str, Labels, float]  # name suffix ("" or "_sum", ...), labels, value


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool | int):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Exposition:
    """Collects metric families; each family's lines stay together, as the format requires."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Sequence[Sample]) -> None:
        full = f"bastion_{name}"
        self.lines += [f"# HELP {full} {_escape_help(help_text)}", f"# TYPE {full} {kind}"]
        for suffix, labels, value in samples:
            rendered = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
            self.lines.append(
                f"{full}{suffix}{{{rendered}}} {_number(value)}"
                if rendered
                else f"{full}{suffix} {_number(value)}"
            )

    def one(self, name: str, kind: str, help_text: str, value: float | None) -> None:
        """A family of one unlabelled sample (no sample when the value is unknown)."""
        self.family(name, kind, help_text, [] if value is None else [("", {}, value)])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _by(label: str, values: Mapping[str, float]) -> list[Sample]:
    return [("", {label: key}, value) for key, value in values.items()]


def _summary(labels: Labels, quantiles: Quantiles | None) -> list[Sample]:
    if quantiles is None:
        return []
    points = (("0.5", quantiles.p50), ("0.95", quantiles.p95), ("1", quantiles.max))
    return [
        *(("", {**labels, "quantile": q}, value) for q, value in points),
        ("_sum", labels, quantiles.total),
        ("_count", labels, quantiles.count),
    ]


def _runs(out: _Exposition, kpis: Kpis) -> None:
    finished = {s: n for s, n in kpis.runs_by_status.items() if s in OUTCOME_STATUSES}
    active = {s: n for s, n in kpis.runs_by_status.items() if s not in OUTCOME_STATUSES}
    out.family("runs_total", "counter", "Finished runs, by outcome.", _by("status", finished))
    out.family("runs_active", "gauge", "Runs not finished, by status.", _by("status", active))
    out.one(
        "autonomy_ratio",
        "gauge",
        "Finished runs no human was involved in, as a share of finished runs.",
        kpis.autonomy_rate,
    )
    out.one(
        "human_decisions_total", "counter", "Verdicts decided by a human.", kpis.human_decisions
    )
    out.family(
        "decisions_total",
        "counter",
        "Decided tool calls, by risk zone.",
        _by("zone", kpis.decisions_by_zone),
    )
    out.family(
        "interventions_total",
        "counter",
        "Decided tool calls a human was asked about or decided, by risk zone.",
        _by("zone", kpis.interventions_by_zone),
    )
    out.family(
        "intervention_ratio",
        "gauge",
        "Interventions as a share of decided tool calls, by risk zone.",
        _by("zone", kpis.intervention_rate_by_zone),
    )
    out.family(
        "incidents_total",
        "counter",
        "Guard trips: denials, halts, budget stops, kills.",
        _by("kind", kpis.incidents_by_kind),
    )
    out.one("incidents_per_run", "gauge", "Guard trips per run.", kpis.incident_rate)
    out.family(
        "proposals_total",
        "counter",
        "Proposed tool calls, by stated confidence.",
        _by("confidence", kpis.confidence_histogram),
    )


def _costs(out: _Exposition, kpis: Kpis, costs: Sequence[CostLine]) -> None:
    if costs:
        usd = [("", line.keys, line.usd) for line in costs]
        tokens = [
            ("", {"direction": direction, **line.keys}, count)
            for line in costs
            for direction, count in (("in", line.tokens_in), ("out", line.tokens_out))
        ]
    else:
        usd = [("", {}, kpis.total_cost_usd)]
        tokens = [
            ("", {"direction": "in"}, kpis.tokens_in),
            ("", {"direction": "out"}, kpis.tokens_out),
        ]
    out.family("cost_usd_total", "counter", "Model spend in US dollars.", usd)
    out.family("tokens_total", "counter", "Model tokens, by direction.", tokens)
    out.one(
        "cost_per_resolved_run_usd",
        "gauge",
        "All model spend divided by resolved runs.",
        kpis.cost_per_resolved_run_usd,
    )


def _governance(out: _Exposition, kpis: Kpis, slos: Sequence[SloResult]) -> None:
    out.one(
        "trace_completeness_ratio",
        "gauge",
        "Finished runs whose trace is whole, as a share of finished runs.",
        kpis.trace_completeness,
    )
    latency = [
        sample
        for node, quantiles in kpis.governance_latency_ms.items()
        for sample in _summary({"node": node}, quantiles)
    ]
    out.family(
        "governance_latency_ms",
        "summary",
        "Duration of governance steps in milliseconds, by node.",
        latency,
    )
    out.family(
        "human_response_seconds",
        "summary",
        "Seconds from a pause for a human to the answer.",
        _summary({}, kpis.human_response_s),
    )
    out.one(
        "human_on_time_ratio",
        "gauge",
        "Human answers given by their escalation's deadline, as a share of those answers.",
        kpis.human_on_time_rate,
    )
    if slos:
        out.family(
            "slo_met",
            "gauge",
            "1 when the decision SLO is met, 0 when missed (absent without data).",
            [("", {"slo": r.target.name}, float(r.ok)) for r in slos if r.ok is not None],
        )


def _tracer(out: _Exposition, stats: TracerStats) -> None:
    counters = (
        ("events_written", stats.events_written, "Trace events stored."),
        ("audit_written", stats.audit_written, "Audit records sealed."),
        ("dropped", stats.dropped, "Steps lost because the trace queue was full."),
        ("encode_errors", stats.encode_errors, "Steps that could not be encoded."),
        ("sink_errors", stats.sink_errors, "Failed trace or audit writes (each retried)."),
    )
    for name, value, help_text in counters:
        out.one(f"tracer_{name}_total", "counter", help_text, value)
    out.one("tracer_queued", "gauge", "Steps waiting to be written.", stats.queued)


def prometheus_text(
    kpis: Kpis,
    *,
    costs: Sequence[CostLine] = (),
    tracer: TracerStats | None = None,
    slos: Sequence[SloResult] = (),
) -> str:
    """The metrics page (`CONTENT_TYPE`), every name prefixed `bastion_`.

    Args:
        kpis: from `compute_kpis`.
        costs: spend lines (e.g. `cost_rollup(events, by=("tenant", "workflow"))`), exported
            with their keys as labels; without them, the totals from `kpis`, unlabelled.
        tracer: the tracer's counters (`Tracer.stats()`), if one runs in this process.
        slos: checked SLOs (`check_slos`), exported as `bastion_slo_met{slo=...}`.
    """
    out = _Exposition()
    _runs(out, kpis)
    _costs(out, kpis, costs)
    _governance(out, kpis, slos)
    if tracer is not None:
        _tracer(out, tracer)
    return out.text()

"""The metrics page, read back with Prometheus' own parser."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from trace_helpers import desk_traces, event, finished_run, verdict

from observability import InMemoryAuditLog, InMemoryTraceSink, Tracer, TracerStats
from observability.costs import CostLine, cost_rollup
from observability.kpis import compute_kpis
from observability.prometheus import CONTENT_TYPE, prometheus_text
from observability.slos import check_slos


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples called `name` (full sample name), by their sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_the_desk_metrics_parse_and_say_what_the_kpis_say() -> None:
    desk = desk_traces()
    kpis = compute_kpis(desk.events)
    costs = cost_rollup(desk.events, by=("tenant", "workflow"))
    text = prometheus_text(kpis, costs=costs, slos=check_slos(kpis))
    parsed = families(text)
    assert parsed["bastion_runs"].type == "counter"
    assert samples(text, "bastion_runs_total") == {
        (("status", "halted"),): 2,
        (("status", "rejected"),): 1,
        (("status", "resolved"),): 21,
    }
    assert samples(text, "bastion_runs_active") == {}
    assert samples(text, "bastion_autonomy_ratio") == {(): pytest.approx(kpis.autonomy_rate)}
    assert samples(text, "bastion_incidents_total")[(("kind", "kill"),)] == 1
    assert samples(text, "bastion_interventions_total")[(("zone", "red"),)] == 2
    assert samples(text, "bastion_trace_completeness_ratio") == {(): 1.0}
    spend = samples(text, "bastion_cost_usd_total")
    assert set(spend) == {
        (("tenant", "acme"), ("workflow", "support")),
        (("tenant", "demo"), ("workflow", "support")),
    }
    assert sum(spend.values()) == pytest.approx(kpis.total_cost_usd)
    tokens = samples(text, "bastion_tokens_total")
    assert sum(v for k, v in tokens.items() if ("direction", "in") in k) == kpis.tokens_in
    assert parsed["bastion_governance_latency_ms"].type == "summary"
    guard, approval = kpis.governance_latency_ms["guard"], kpis.governance_latency_ms["approval"]
    assert guard is not None and approval is not None
    latency = samples(text, "bastion_governance_latency_ms")
    assert latency[(("node", "guard"), ("quantile", "0.95"))] == guard.p95
    assert latency[(("node", "approval"), ("quantile", "1"))] == approval.max
    counts = samples(text, "bastion_governance_latency_ms_count")
    assert counts == {(("node", "guard"),): guard.count, (("node", "approval"),): approval.count}
    assert samples(text, "bastion_slo_met")[(("slo", "trace completeness"),)] == 1.0
    assert sum(samples(text, "bastion_proposals_total").values()) == sum(
        kpis.confidence_histogram.values()
    )


def test_every_family_has_help_and_type_before_its_samples() -> None:
    kpis = compute_kpis(desk_traces().events)
    lines = prometheus_text(kpis).splitlines()
    declared: set[str] = set()
    for index, line in enumerate(lines):
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert lines[index + 1].startswith(f"# TYPE {name} "), line
            declared.add(name)
        elif not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)  # type: ignore[union-attr]
            assert name.startswith("bastion_")
            assert any(name == d or name.startswith(f"{d}_") for d in declared), line
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_labels_are_escaped() -> None:
    nasty = 'say "hi"\\ then\nleave'
    line = CostLine(
        keys={"tenant": nasty, "workflow": "w"}, tokens_in=1, tokens_out=2, usd=0.5, steps=1, runs=1
    )
    text = prometheus_text(compute_kpis([]), costs=[line])
    assert r'tenant="say \"hi\"\\ then\nleave"' in text
    assert samples(text, "bastion_cost_usd_total") == {(("tenant", nasty), ("workflow", "w")): 0.5}


def test_unknown_values_are_left_out_not_faked() -> None:
    text = prometheus_text(compute_kpis([]))
    parsed = families(text)
    assert parsed["bastion_autonomy_ratio"].samples == []
    assert parsed["bastion_governance_latency_ms"].samples == []
    assert "bastion_slo_met" not in parsed, "no SLOs given"
    assert "NaN" not in text
    assert samples(text, "bastion_cost_usd_total") == {(): 0.0}, "totals, without cost lines"
    assert samples(text, "bastion_tokens_total") == {
        (("direction", "in"),): 0,
        (("direction", "out"),): 0,
    }


def test_open_runs_are_a_gauge_and_slos_without_data_have_no_sample() -> None:
    events = [
        *finished_run("done", [{"node": "guard", "verdicts": [verdict()]}]),
        event("intake", run_id="open", output="accepted"),
    ]
    kpis = compute_kpis(events)
    text = prometheus_text(kpis, slos=check_slos(kpis))
    assert samples(text, "bastion_runs_active") == {(("status", "running"),): 1}
    assert families(text)["bastion_runs_active"].type == "gauge"
    assert samples(text, "bastion_slo_met") == {
        (("slo", "trace completeness"),): 1.0,
        (("slo", "guard latency p95"),): 1.0,  # the hand-built guard step took 1 ms
    }


def test_tracer_counters_come_from_the_tracer() -> None:
    sink = InMemoryTraceSink()
    tracer = Tracer(sink=sink, audit=InMemoryAuditLog(), encode=lambda step: ([step], []))
    try:
        for step in finished_run("r1"):
            tracer.record(step)
        assert tracer.flush(timeout_s=30)
        stats = tracer.stats()
    finally:
        tracer.close()
    text = prometheus_text(compute_kpis(sink.events()), tracer=stats)
    assert samples(text, "bastion_tracer_events_written_total") == {(): 2}
    assert samples(text, "bastion_tracer_dropped_total") == {(): 0}
    assert samples(text, "bastion_tracer_queued") == {(): 0}
    assert families(text)["bastion_tracer_dropped"].type == "counter"
    assert families(text)["bastion_tracer_queued"].type == "gauge"
    troubled = TracerStats(
        queued=3,
        events_written=10,
        audit_written=4,
        dropped=7,
        events_dropped=0,
        encode_errors=1,
        sink_errors=2,
        last_error="ConnectionError: down",
    )
    text = prometheus_text(compute_kpis([]), tracer=troubled)
    assert samples(text, "bastion_tracer_dropped_total") == {(): 7}
    assert samples(text, "bastion_tracer_queued") == {(): 3}
    assert samples(text, "bastion_tracer_sink_errors_total") == {(): 2}
    assert samples(text, "bastion_tracer_audit_written_total") == {(): 4}
    assert samples(text, "bastion_tracer_encode_errors_total") == {(): 1}

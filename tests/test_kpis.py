"""KPIs and decision SLOs computed from trace events."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from trace_helpers import call, desk_traces, event, finished_run, proposal, verdict

from observability import CostRecord, RunSummary, fold_run
from observability.kpis import CONFIDENCE_BUCKETS, Kpis, Quantiles, compute_kpis, incident_kind
from observability.slos import (
    SLO_METRICS,
    SloConfigError,
    SloTarget,
    check_slos,
    default_slos,
)


def test_nothing_traced_gives_zeros_and_no_rates() -> None:
    kpis = compute_kpis([])
    assert (kpis.runs_total, kpis.finished_runs, kpis.incidents_total) == (0, 0, 0)
    assert kpis.autonomy_rate is None
    assert kpis.incident_rate is None
    assert kpis.cost_per_resolved_run_usd is None
    assert kpis.trace_completeness is None
    assert kpis.human_response_s is None and kpis.human_on_time_rate is None
    assert kpis.governance_latency_ms == {"guard": None, "approval": None}
    assert kpis.confidence_histogram == dict.fromkeys(CONFIDENCE_BUCKETS, 0)
    assert kpis.incidents_by_kind == {"deny": 0, "halt": 0, "budget": 0, "kill": 0}
    assert json.loads(json.dumps(kpis.as_dict())) == kpis.as_dict()


def test_runs_that_have_not_finished_give_no_finished_rates() -> None:
    events = [event("intake", run_id="r1", output="accepted"), event("orchestrator", run_id="r1")]
    kpis = compute_kpis(events)
    assert (kpis.runs_total, kpis.runs_by_status, kpis.finished_runs) == (1, {"running": 1}, 0)
    assert kpis.autonomy_rate is None and kpis.trace_completeness is None
    assert kpis.incident_rate == 0.0, "per run: one run, no incident"


def test_autonomy_counts_finished_runs_without_a_human() -> None:
    asked: list[dict[str, Any]] = [
        {"node": "approval", "status": "interrupted", "escalation": {"call_ids": ["c1"]}},
        {"node": "approval", "verdicts": [verdict(decided_by="human:ann")]},
    ]
    events = [
        *finished_run("alone"),
        *finished_run("asked", asked),
        *finished_run("waited", asked[:1], outcome="unresolved: no answer"),
        event("intake", run_id="open", output="accepted"),
    ]
    kpis = compute_kpis(events)
    assert (kpis.finished_runs, kpis.autonomous_runs) == (3, 1)
    assert kpis.autonomy_rate == pytest.approx(1 / 3)
    assert kpis.human_decisions == 1


def test_interventions_by_zone_follow_each_call_to_its_zone() -> None:
    red_escalated = verdict("escalate", call_id="c1", zone="red")
    red_rejected = verdict("deny", call_id="c1", zone=None, decided_by="human:ann")
    middle = [
        {"node": "guard", "verdicts": [red_escalated, verdict(call_id="c2", zone="green")]},
        {"node": "approval", "verdicts": [red_rejected]},
        {"node": "guard", "verdicts": [verdict(call_id="c3", zone="green")]},
        {"node": "guard", "verdicts": [verdict("deny", call_id="c4", zone=None)]},
        {"node": "agent_billing", "verdicts": [verdict("halt", call_id="", zone=None)]},
    ]
    kpis = compute_kpis(finished_run("r1", middle, outcome="halted: money cap reached"))
    assert kpis.decisions_by_zone == {"green": 2, "red": 1, "unknown": 1}
    assert kpis.interventions_by_zone == {"green": 0, "red": 1, "unknown": 0}
    assert kpis.intervention_rate_by_zone == {"green": 0.0, "red": 1.0, "unknown": 0.0}


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("killed (tenant:acme) by cli:ops: incident drill", "kill"),
        ("kill switch unreachable, stopping to be safe: timeout", "kill"),
        ("money cap reached: $0.0085 spent of $0.0060 allowed", "budget"),
        ("token cap reached: 9000 of 8000 tokens used", "budget"),
        ("step cap reached: 30 of 30 steps used", "budget"),
        ("tenant budget exhausted: acme is over $5.00", "budget"),
        ("spend threshold reached ($0.04 of $0.05) and human:ann declined", "budget"),
        ("loop detected: `get_order` was proposed 4 times", "halt"),
        ("handoff ping-pong: the work went a → b → a", "halt"),
        ("the skill `escape_hatch` is missing", "halt"),
    ],
)
def test_halts_are_classified_by_their_reason(reason: str, kind: str) -> None:
    assert incident_kind(reason) == kind


def test_incidents_are_guard_trips_not_human_rejections() -> None:
    events = [
        *finished_run(
            "tripped",
            [
                {"node": "guard", "verdicts": [verdict("deny", call_id="c1")]},
                {"node": "approval", "verdicts": [verdict("deny", decided_by="human:ann")]},
                {
                    "node": "agent_billing",
                    "verdicts": [verdict("halt", call_id="", reasons=["money cap reached"])],
                },
            ],
            outcome="halted: money cap reached",
        ),
        # A kill seen at intake halts the run without a verdict: the outcome says why.
        *finished_run("killed", outcome="halted: killed (tenant:acme) by cli:ops: drill"),
        *finished_run(
            "looped",
            [{"node": "guard", "verdicts": [verdict("halt", reasons=["loop detected"])]}],
            outcome="halted: loop detected",
        ),
    ]
    kpis = compute_kpis(events)
    assert kpis.incidents_by_kind == {"deny": 1, "halt": 1, "budget": 1, "kill": 1}
    assert (kpis.incidents_total, kpis.incident_rate) == (4, pytest.approx(4 / 3))


def test_confidence_histogram_buckets_each_proposal_once() -> None:
    values = [0.0, 0.49, 0.5, 0.69, 0.7, 0.89, 0.9, 1.0, None, 1.2, -0.1]
    proposals = [proposal(f"c{i}", confidence=value) for i, value in enumerate(values)]
    events = [
        event("agent_billing", proposals=proposals[:6]),
        event("agent_billing", proposals=proposals[6:]),
        event("agent_billing", proposals=proposals[:1]),  # the same call traced again
    ]
    assert compute_kpis(events).confidence_histogram == {
        "0-0.5": 2,
        "0.5-0.7": 2,
        "0.7-0.9": 2,
        "0.9-1.0": 2,
        "unknown": 3,
    }


def test_cost_per_resolved_run_carries_the_failures_spend() -> None:
    def spent(usd: float) -> list[dict[str, Any]]:
        return [{"node": "agent_billing", "cost": CostRecord(tokens_in=10, tokens_out=1, usd=usd)}]

    events = [
        *finished_run("ok1", spent(0.25)),
        *finished_run("ok2", spent(0.25)),
        *finished_run("bad", spent(0.5), outcome="failed: tool kept failing"),
    ]
    kpis = compute_kpis(events)
    assert (kpis.total_cost_usd, kpis.tokens_in, kpis.tokens_out) == (1.0, 30, 3)
    assert kpis.cost_per_resolved_run_usd == 0.5


def test_trace_completeness_names_the_runs_with_holes() -> None:
    whole = finished_run("whole", [{"node": "guard", "verdicts": [verdict()]}])
    no_id = finished_run(
        "no_id", [{"node": "guard", "verdicts": [{**verdict(), "decision_id": ""}]}]
    )
    no_policies = finished_run(
        "no_policies", [{"node": "guard", "verdicts": [{**verdict(), "policies": None}]}]
    )
    silent_error = finished_run(
        "silent_error", [{"node": "execute", "status": "error", "error": None}]
    )
    loud_error = finished_run(
        "loud_error", [{"node": "execute", "status": "error", "error": "OSError: disk"}]
    )
    no_intake = finished_run("no_intake")[1:]
    events = [*whole, *no_id, *no_policies, *silent_error, *loud_error, *no_intake]
    kpis = compute_kpis(events)
    assert kpis.finished_runs == 6
    assert kpis.trace_completeness == pytest.approx(2 / 6)
    assert kpis.incomplete_runs == ("no_id", "no_intake", "no_policies", "silent_error")


def test_summaries_passed_in_win_and_a_run_without_events_is_incomplete() -> None:
    events = finished_run("r1")
    summary: RunSummary | None = None
    for item in events:
        summary = fold_run(summary, item)
    assert summary is not None
    lost = RunSummary(**{**summary, "run_id": "lost", "status": "resolved"})  # type: ignore[typeddict-item]
    kpis = compute_kpis(events, runs=[summary, lost])
    assert (kpis.runs_total, kpis.resolved_runs) == (2, 2)
    assert kpis.trace_completeness == 0.5 and kpis.incomplete_runs == ("lost",)


def test_governance_latency_leaves_out_guard_steps_that_ran_tools() -> None:
    refusal = call(status="error", error_kind=None)  # the guard's answer, not a tool run
    events = [
        event("guard", duration_ms=2.0, verdicts=[verdict()], tool_calls=[call()]),
        event("guard", duration_ms=3.0, verdicts=[verdict("deny")], tool_calls=[refusal]),
        event("guard", duration_ms=5.0, verdicts=[verdict("escalate")]),
        event("guard", duration_ms=7.0, tool_calls=[call(status="error", error_kind="timeout")]),
        event("approval", duration_ms=0.5, status="interrupted"),
        event("approval", duration_ms=1.5),
    ]
    latency = compute_kpis(events).governance_latency_ms
    assert latency["guard"] == Quantiles(count=2, total=8.0, p50=3.0, p95=5.0, max=5.0)
    assert latency["approval"] == Quantiles(count=2, total=2.0, p50=0.5, p95=1.5, max=1.5)


def test_quantiles_are_nearest_rank() -> None:
    quantiles = Quantiles.of(float(v) for v in range(100, 0, -1))
    assert quantiles == Quantiles(count=100, total=5050.0, p50=50.0, p95=95.0, max=100.0)
    assert Quantiles.of([]) is None


def test_human_response_runs_from_the_first_pause_to_the_answer() -> None:
    def pause(ts: float, deadline: float | None) -> dict[str, Any]:
        escalation = {"call_ids": ["c1"], "deadline": deadline}
        return {"node": "approval", "status": "interrupted", "ts": ts, "escalation": escalation}

    events = [
        event(run_id="on_time", **pause(10.0, 100.0)),
        event(run_id="on_time", **pause(12.0, 100.0)),  # a bad answer: asked again
        event("approval", run_id="on_time", ts=40.0),
        event(run_id="late", **pause(10.0, 20.0)),
        event("approval", run_id="late", ts=70.0),
        event(run_id="no_deadline", **pause(10.0, None)),
        event("approval", run_id="no_deadline", ts=15.0),
        event(run_id="pending", **pause(10.0, 20.0)),
    ]
    kpis = compute_kpis(events)
    assert kpis.human_response_s == Quantiles(count=3, total=95.0, p50=30.0, p95=60.0, max=60.0)
    assert kpis.human_on_time_rate == 0.5
    assert kpis.runs_by_status == {"running": 3, "waiting": 1}


# -- SLOs --------------------------------------------------------------------------------------


def kpis_with(**changes: Any) -> Kpis:
    return replace(compute_kpis([]), **changes)


def test_slos_are_met_missed_or_without_data() -> None:
    fast = Quantiles(count=10, total=50.0, p50=4.0, p95=9.0, max=12.0)
    slow = Quantiles(count=10, total=900.0, p50=60.0, p95=120.0, max=130.0)
    kpis = kpis_with(
        trace_completeness=0.995,
        governance_latency_ms={"guard": fast, "approval": slow},
        human_on_time_rate=0.5,
    )
    results = {r.target.name: r for r in check_slos(kpis)}
    assert set(results) == {t.name for t in default_slos()}
    assert results["trace completeness"].status == "met" and results["trace completeness"].ok
    assert results["guard latency p95"].value == 9.0 and results["guard latency p95"].ok
    assert results["approval step latency p95"].status == "missed"
    assert results["approval step latency p95"].ok is False
    assert results["human response p95"].status == "no data"
    assert results["human response p95"].ok is None
    assert results["answers on time"].text == "answers on time: 0.5 >= 0.95 (missed)"
    assert json.loads(json.dumps(results["guard latency p95"].as_dict()))["ok"] is True


def test_slo_thresholds_are_inclusive_and_the_deadline_is_configurable() -> None:
    response = Quantiles(count=1, total=600.0, p50=600.0, p95=600.0, max=600.0)
    kpis = kpis_with(trace_completeness=0.99, human_response_s=response)
    results = {r.target.name: r for r in check_slos(kpis)}
    assert results["trace completeness"].ok
    assert results["human response p95"].ok
    tight = {r.target.name: r for r in check_slos(kpis, default_slos(approval_deadline_s=300))}
    assert tight["human response p95"].status == "missed"
    custom = SloTarget(name="autonomy", metric="autonomy_rate", op=">=", threshold=0.8)
    assert [r.status for r in check_slos(kpis_with(autonomy_rate=0.9), [custom])] == ["met"]


def test_an_slo_on_an_unknown_metric_is_refused_with_the_choices() -> None:
    with pytest.raises(SloConfigError, match="'autonomy'") as caught:
        SloTarget(name="x", metric="autonomy", op=">=", threshold=1.0)
    assert all(name in str(caught.value) for name in SLO_METRICS)
    with pytest.raises(SloConfigError, match="'=='"):
        SloTarget(name="x", metric="autonomy_rate", op="==", threshold=1.0)  # type: ignore[arg-type]


# -- real runs ---------------------------------------------------------------------------------


def test_the_support_desk_kpis_agree_with_what_the_runs_did() -> None:
    desk = desk_traces()
    kpis = compute_kpis(desk.events)
    reports = desk.reports.values()
    assert kpis.runs_total == len(desk.reports) == 24
    assert kpis.runs_by_status == {"halted": 2, "rejected": 1, "resolved": 21}
    assert kpis.autonomous_runs == sum(r.approvals == 0 for r in reports)
    approvals = [r for r in desk.records if r["kind"] == "approval"]
    assert kpis.human_decisions == len(approvals) == sum(r.approvals for r in reports)
    assert kpis.incidents_by_kind == {"deny": 0, "halt": 0, "budget": 1, "kill": 1}
    assert kpis.intervention_rate_by_zone["red"] == 1.0, "red-zone actions always ask a human"
    assert kpis.trace_completeness == 1.0 and kpis.incomplete_runs == ()
    assert kpis.human_response_s is not None
    assert kpis.human_response_s.count == sum(r.approvals for r in reports)
    assert kpis.human_on_time_rate == 1.0
    assert sum(kpis.confidence_histogram.values()) == len(
        {(e["run_id"], p["call_id"]) for e in desk.events for p in e["proposals"]}
    )
    assert kpis.total_cost_usd == pytest.approx(sum(r.cost_usd for r in reports))
    assert kpis.cost_per_resolved_run_usd == pytest.approx(kpis.total_cost_usd / 21)
    assert compute_kpis(desk.events, runs=desk.runs) == kpis, "the sink folds runs the same way"
    assert compute_kpis(reversed(desk.events)) == kpis, "order does not matter"
    assert check_slos(kpis)[0].status == "met"

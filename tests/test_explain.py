"""Plain-language explanations of decisions and runs, from real traces and audit records."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from trace_helpers import call, desk_traces, event, finished_run, proposal, verdict

from observability.explain import ExplainError, explain_decision, explain_run


def decision(key: str, test: Callable[[Mapping[str, Any]], bool]) -> Mapping[str, Any]:
    """The first verdict of ticket run `key` that passes `test`."""
    desk = desk_traces()
    run_id = desk.run_of(key)
    return next(
        v
        for e in sorted(desk.events, key=lambda e: e["ts"])
        if e["run_id"] == run_id
        for v in e["verdicts"]
        if test(v)
    )


def explain(key: str, test: Callable[[Mapping[str, Any]], bool]) -> Any:
    desk = desk_traces()
    return explain_decision(decision(key, test)["decision_id"], desk.events, desk.records)


def test_an_escalation_says_who_what_why_and_what_came_of_it() -> None:
    escalated = decision("acme/T03", lambda v: v["kind"] == "escalate")
    explained = explain("acme/T03", lambda v: v["kind"] == "escalate")
    text = explained.text
    assert explained.run_id == desk_traces().run_of("acme/T03")
    assert "Goal: From: carla@example.com Subject: Desk is wobbly" in text, "goal on one line"
    assert "`billing` asked to run `issue_refund`" in text and '"amount": 640.0' in text
    assert "(confidence 0.80)" in text and "Rationale: Refund requested" in text
    assert "Decided by the guard on " in text and ": escalated to a human." in text
    assert "over tenant acme's limit of $100" in text
    assert "Risk zone: yellow." in text
    assert all(policy in text for policy in escalated["policies"]) and "refund-limits@" in text
    assert "The run paused for support-leads on " in text and "answer due by" in text
    assert "reviewer `ops-lead (scripted)` approved `issue_refund`" in text
    assert "Then `issue_refund` ran (success)." in text
    assert text.endswith(")."), "cites its audit record last"
    assert "Outcome: resolved: exit condition met." in text
    facts = explained.facts
    assert facts["verdict"] == "escalate" and facts["zone"] == "yellow"
    assert facts["policies"] == escalated["policies"]
    assert facts["proposal"]["tool"] == "issue_refund" and facts["proposal"]["agent"] == "billing"
    record = next(r for r in desk_traces().records if r["subject"] == escalated["decision_id"])
    assert facts["audit"] == {"seq": record["seq"], "hash": record["hash"], "kind": "decision"}
    assert f"audit #{record['seq']} (decision, {record['hash'][:12]})" in text
    assert json.loads(json.dumps(explained.as_dict()))["facts"] == facts


def test_cost_so_far_is_the_runs_spend_up_to_the_decision() -> None:
    desk = desk_traces()
    explained = explain("acme/T03", lambda v: v["kind"] == "escalate")
    run = sorted((e for e in desk.events if e["run_id"] == explained.run_id), key=lambda e: e["ts"])
    at = next(
        i for i, e in enumerate(run) if e["verdicts"] and e["verdicts"][0]["kind"] == "escalate"
    )
    spent = explained.facts["cost_so_far"]
    assert spent["tokens_in"] == sum(e["cost"]["tokens_in"] for e in run[: at + 1]) > 0
    assert spent["tokens_in"] < sum(e["cost"]["tokens_in"] for e in run), "later steps cost too"
    assert f"Cost so far: ${spent['usd']:.4f} ({spent['tokens_in']} tokens in" in explained.text


def test_a_human_rejection_names_the_reviewer_and_the_reason() -> None:
    explained = explain("acme/T05", lambda v: v["decided_by"].startswith("human:"))
    text = explained.text
    assert "Decided by reviewer `ops-lead (scripted)` on " in text and ": denied." in text
    assert "Reasons: refunds over $1,000 need finance sign-off." in text
    assert "The agent was told why; the tool did not run." in text
    assert explained.facts["audit"]["kind"] == "approval"
    escalation = explain("acme/T05", lambda v: v["kind"] == "escalate").text
    assert "Risk zone: red." in escalation
    assert "Then reviewer `ops-lead (scripted)` rejected `issue_refund`: refunds over" in escalation


def test_an_edit_is_told_as_an_edit_with_the_new_arguments() -> None:
    text = explain("acme/T13", lambda v: v["kind"] == "escalate").text
    assert "edited and approved `issue_refund`" in text
    assert "edited by reviewer: args" in text and "'amount': 150.0" in text
    assert "delay compensation is capped at half the request" in text
    assert "Then `issue_refund` ran (success)." in text


def test_a_decision_names_the_memory_it_rested_on() -> None:
    chosen = decision("acme/T07", lambda v: bool(v.get("memory_reads")))
    [read] = chosen["memory_reads"][:1]
    text = explain_decision(chosen["decision_id"], desk_traces().events).text
    assert f"It rested on memory: customers/{read['namespace'][1]}:{read['key']}" in text
    assert f"v{read['version']} (commit {read['commit_id']})" in text
    assert "On record" not in text, "no audit records given"


def test_a_budget_halt_says_the_run_stopped() -> None:
    text = explain("acme/T16", lambda v: v["kind"] == "halt").text
    assert "Decided by the guard on " in text and ": halted the run." in text
    assert "Reasons: money cap reached: $" in text
    assert "The run stopped." in text and "Outcome: halted: money cap reached" in text


def test_without_its_trace_a_decision_is_explained_from_its_audit_record() -> None:
    desk = desk_traces()
    chosen = decision("acme/T03", lambda v: v["kind"] == "escalate")
    explained = explain_decision(chosen["decision_id"], [], desk.records)
    assert "`billing` asked to run `issue_refund`" in explained.text
    assert "Reasons: refund of $640 is over tenant acme's limit of $100." in explained.text
    assert "from the audit record alone" in explained.text
    assert explained.run_id == desk.run_of("acme/T03")


def test_an_unknown_decision_is_a_lookup_error_with_a_hint() -> None:
    with pytest.raises(ExplainError, match="'dec_nope'") as caught:
        explain_decision("dec_nope", desk_traces().events, desk_traces().records)
    assert isinstance(caught.value, LookupError)
    assert "Hint:" in str(caught.value) and "bastion audit" in str(caught.value)
    assert "bastion runs" in str(caught.value)


def test_a_decision_about_the_run_itself_says_no_tool_was_proposed() -> None:
    halt = verdict("halt", call_id="", zone=None, reasons=["killed (global) by cli:ops: stop"])
    events = finished_run(
        "r1",
        [{"node": "agent_billing", "agent": "billing", "verdicts": [halt]}],
        outcome="halted: killed",
    )
    text = explain_decision(halt["decision_id"], events).text
    assert "No tool call was proposed" in text and "No risk zone applied." in text
    assert "It rested on no memory reads." in text


# -- runs, step by step ------------------------------------------------------------------------


def test_a_run_is_told_one_sentence_per_step() -> None:
    desk = desk_traces()
    run_id = desk.run_of("acme/T03")
    steps = explain_run(run_id, desk.events)
    assert len(steps) == sum(e["run_id"] == run_id for e in desk.events)
    assert all("\n" not in s and s.endswith(".") for s in steps)
    assert steps[0] == (
        "Intake accepted “From: carla@example.com Subject: Desk is wobbly The standing desk "
        "(ORD-1003) is wobbly and unusable. I want a full refund of $640.” for tenant acme, "
        "workflow support."
    )
    assert steps[1] == "The orchestrator handed the work to `triage`."
    assert "approval paused for support-leads to review `issue_refund`." in steps
    assert any(
        s.startswith("The guard escalated `issue_refund` to a human (zone yellow") for s in steps
    )
    assert any(
        s.startswith("Reviewer `ops-lead (scripted)` approved `issue_refund`") for s in steps
    )
    assert steps[-2] == "The orchestrator finished the work."
    assert steps[-1] == "The run ended resolved: exit condition met."


def test_a_killed_run_and_a_halted_run_read_as_such() -> None:
    desk = desk_traces()
    killed = explain_run(desk.run_of("demo/T02"), desk.events)
    assert killed[0].startswith("Intake stopped the request: halted: killed (tenant:demo)")
    assert len(killed) == 2
    halted = explain_run(desk.run_of("acme/T16"), desk.events)
    stop = next(s for s in halted if "halted the run" in s)
    assert stop.startswith("The guard halted the run (money cap reached")
    assert "ran (error)" not in stop, "the halt's refusals are not tool runs"


def test_step_sentences_for_failures_replays_and_flags() -> None:
    events = finished_run(
        "r1",
        [
            {"node": "agent_billing", "agent": "billing", "proposals": [proposal(confidence=None)]},
            {"node": "guard", "verdicts": [verdict()], "tool_calls": [call(replayed=True)],
             "flags": ["taint: input contains injection", "deny: nothing"]},
            {"node": "execute", "status": "error", "error": "OSError: disk full"},
        ],
    )  # fmt: skip
    steps = explain_run("r1", events)
    assert steps[1] == '`billing` proposed `lookup_order` {"order_id": "ORD-1"}.'
    assert steps[2] == (
        "The guard allowed `lookup_order`; `lookup_order` replayed (success) "
        "[taint: input contains injection]."
    )
    assert steps[3] == "execute failed: OSError: disk full."


def test_an_unknown_run_is_a_lookup_error_with_a_hint() -> None:
    with pytest.raises(ExplainError, match=r"'run_nope'.*Hint: `bastion runs`"):
        explain_run("run_nope", [event(run_id="other")])

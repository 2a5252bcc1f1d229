"""Feedback: human corrections kept in the audit log and exported as an evaluation dataset."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from trace_helpers import desk_traces

from observability import AuditConfigError, AuditEntry, AuditRecord, InMemoryAuditLog
from observability.feedback import (
    FeedbackError,
    FeedbackRecord,
    dataset_jsonl,
    evaluation_dataset,
    feedback_entry,
    feedback_from_audit,
)


def annotation(**changes: object) -> FeedbackRecord:
    base = FeedbackRecord(
        context={"question": "Where is ORD-1001?", "answer": "It is lost."},
        correction={"answer": "It shipped on Monday; tracking number attached."},
        rationale="the carrier's notes say it shipped",
        run_id="run_1",
        decision_id="",
        reviewer="ann",
        ts=1_700_000_000.0,
        tenant="acme",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_desks_edits_and_rejections_are_corrections_and_approvals_are_not() -> None:
    desk = desk_traces()
    found = feedback_from_audit(desk.records)
    by_run = {f.run_id: f for f in found}
    assert [f.kind for f in found] == ["reject", "edit", "reject"]
    assert set(by_run) == {desk.run_of(k) for k in ("acme/T05", "acme/T13", "acme/T18")}
    assert desk.run_of("acme/T03") not in by_run, "approved as proposed: not a correction"

    edit = by_run[desk.run_of("acme/T13")]
    assert edit.context["tool"] == "issue_refund" and edit.context["agent"] == "billing"
    assert edit.context["args"]["amount"] == 300.0, "what the agent proposed"
    assert edit.correction == {
        "tool": "issue_refund",
        "args": {**edit.context["args"], "amount": 150.0},
    }
    assert edit.rationale == "delay compensation is capped at half the request"
    assert (edit.reviewer, edit.tenant) == ("ops-lead (scripted)", "acme")
    approval = next(r for r in desk.records if r["seq"] == edit.audit_seq)
    assert (approval["kind"], approval["subject"]) == ("approval", edit.decision_id)
    escalation = next(r for r in desk.records if r["subject"] == edit.context["escalation_id"])
    assert escalation["detail"]["verdict"] == "escalate"
    assert edit.context["escalated_because"] == escalation["detail"]["reasons"]

    reject = by_run[desk.run_of("acme/T05")]
    assert reject.correction == {
        "rejected": True,
        "message": "refunds over $1,000 need finance sign-off",
    }
    assert reject.context["args"]["amount"] == 1450.0 and reject.context["zone"] == "red"


def test_feedback_goes_on_record_and_comes_back_unchanged() -> None:
    log = InMemoryAuditLog()
    given = annotation()
    [record] = log.append([feedback_entry(given)])
    assert (record["kind"], record["actor"], record["tenant"]) == ("feedback", "human:ann", "acme")
    assert record["subject"] == "run_1", "no decision: the run is the subject"
    [back] = feedback_from_audit(log.records())
    assert back == given and back.audit_seq == record["seq"]
    assert log.verify().ok


def test_feedback_keeps_its_place_among_the_corrections_in_log_order() -> None:
    desk = desk_traces()
    log = InMemoryAuditLog()
    fields = ("kind", "ts", "tenant", "actor", "run_id", "subject", "detail")
    log.append([AuditEntry(**{k: r[k] for k in fields}) for r in desk.records])  # type: ignore[literal-required, typeddict-item]
    log.append([feedback_entry(annotation(decision_id="dec_1"))])
    found = feedback_from_audit(reversed(log.records(limit=10_000)))
    assert [f.kind for f in found] == ["reject", "edit", "reject", "annotation"]
    assert found[-1].decision_id == "dec_1"


def test_a_budget_answer_is_not_a_tool_correction() -> None:
    record = AuditRecord(
        kind="approval",
        ts=1.0,
        tenant="acme",
        actor="human:ann",
        run_id="run_1",
        subject="dec_1",
        detail={"verdict": "allow", "reasons": ["budget extended by $0.05"], "tool": None,
                "args": None, "call_id": ""},
        seq=1,
        prev="0" * 64,
        hash="f" * 64,
    )  # fmt: skip
    assert feedback_from_audit([record]) == []


def test_incomplete_feedback_is_refused_with_what_it_needs() -> None:
    with pytest.raises(FeedbackError, match="reviewer"):
        annotation(reviewer="")
    with pytest.raises(FeedbackError, match="has no correction"):
        annotation(correction={})
    with pytest.raises(AuditConfigError, match="JSON"):
        feedback_entry(annotation(context={"when": object()}))


def test_the_dataset_has_langsmiths_example_shape_and_exports_as_jsonl() -> None:
    corrections = [*feedback_from_audit(desk_traces().records), annotation()]
    rows = evaluation_dataset(corrections)
    assert [set(row) for row in rows] == [{"inputs", "outputs", "metadata"}] * 4
    edit = rows[1]
    assert edit["inputs"]["args"]["amount"] == 300.0
    assert edit["outputs"] == {
        "correction": {"tool": "issue_refund", "args": {**edit["inputs"]["args"], "amount": 150.0}},
        "rationale": "delay compensation is capped at half the request",
    }
    assert (
        edit["metadata"]["kind"] == "edit" and edit["metadata"]["reviewer"] == "ops-lead (scripted)"
    )
    assert rows[3]["metadata"] == {
        "kind": "annotation",
        "run_id": "run_1",
        "decision_id": "",
        "reviewer": "ann",
        "tenant": "acme",
        "ts": 1_700_000_000.0,
        "audit_seq": None,
    }
    lines = dataset_jsonl(rows).splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert dataset_jsonl([]) == ""

"""Human feedback as {context, correction, rationale}: kept in the audit log, gathered from it
(annotations, and the edits and rejections reviewers made) and exported as an evaluation
dataset."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from observability.chain import check_entry
from observability.events import AuditEntry, AuditRecord
from observability.phrases import EDITED_MARK

__all__ = [
    "FeedbackError",
    "FeedbackRecord",
    "dataset_jsonl",
    "evaluation_dataset",
    "feedback_entry",
    "feedback_from_audit",
]

FeedbackKind = Literal["annotation", "edit", "reject"]


class FeedbackError(ValueError):
    """A feedback record is incomplete (says which field and what it needs)."""


@dataclass(frozen=True, kw_only=True)
class FeedbackRecord:
    """One human correction of what an agent did or proposed."""

    context: Mapping[str, Any]
    """What the agent saw or proposed (e.g. agent, tool, args, zone, the guard's reasons)."""
    correction: Mapping[str, Any]
    """What it should have been: edited args (`{"tool", "args"}`), a rejection
    (`{"rejected": True, "message"}`), or an annotation's own fields."""
    rationale: str
    """Why, in the reviewer's words (may be empty)."""
    run_id: str
    """Run it concerns (may be empty)."""
    decision_id: str
    """Decision it concerns (may be empty)."""
    reviewer: str
    """Who gave it (the name after `human:`)."""
    ts: float
    """Unix time it was given."""
    tenant: str = "default"
    """Tenant it belongs to (reviewers see only their tenant's feedback)."""
    kind: FeedbackKind = "annotation"
    """annotation (given as feedback), edit or reject (taken from approval decisions)."""
    audit_seq: int | None = field(default=None, compare=False)
    """Audit record it was read from, if any."""

    def __post_init__(self) -> None:
        if not self.reviewer:
            raise FeedbackError("feedback needs a reviewer (who gave it); got an empty one")
        if not self.correction:
            raise FeedbackError(
                f"feedback by {self.reviewer!r} has no correction; give what it should have "
                'been, e.g. {"args": {...}} or {"answer": "..."}'
            )


def feedback_entry(record: FeedbackRecord) -> AuditEntry:
    """The audit entry (kind `feedback`) that keeps `record`.

    Raises:
        AuditConfigError: context or correction is not JSON-safe.
    """
    return check_entry(
        AuditEntry(
            kind="feedback",
            ts=record.ts,
            tenant=record.tenant,
            actor=f"human:{record.reviewer}",
            run_id=record.run_id,
            subject=record.decision_id or record.run_id,
            detail={
                "context": dict(record.context),
                "correction": dict(record.correction),
                "rationale": record.rationale,
                "decision_id": record.decision_id,
                "feedback_kind": record.kind,
            },
        )
    )


def _reviewer(actor: str) -> str:
    return actor.removeprefix("human:")


def _from_feedback(record: AuditRecord) -> FeedbackRecord:
    detail = record["detail"]
    kind = detail.get("feedback_kind")
    return FeedbackRecord(
        context=dict(detail.get("context") or {}),
        correction=dict(detail.get("correction") or {}),
        rationale=str(detail.get("rationale") or ""),
        run_id=record["run_id"],
        decision_id=str(detail.get("decision_id") or ""),
        reviewer=_reviewer(record["actor"]),
        ts=record["ts"],
        tenant=record["tenant"],
        kind=kind if kind in ("annotation", "edit", "reject") else "annotation",
        audit_seq=record["seq"],
    )


def _correction(
    record: AuditRecord, proposed: Mapping[tuple[str, str], Mapping[str, Any]]
) -> FeedbackRecord | None:
    """An approval record as feedback, when the reviewer edited or rejected the action."""
    detail = record["detail"]
    reasons = [str(r) for r in detail.get("reasons") or ()]
    original = proposed.get((record["run_id"], str(detail.get("call_id"))))
    context = {
        "agent": detail.get("agent") or (original or {}).get("agent"),
        "tool": detail.get("tool") or (original or {}).get("tool"),
        "args": (original or {}).get("args"),
        "zone": (original or {}).get("zone") or detail.get("zone"),
        "escalated_because": list((original or {}).get("reasons") or ()),
        "escalation_id": (original or {}).get("decision_id"),
    }
    if detail.get("verdict") == "deny":
        kind: FeedbackKind = "reject"
        correction: dict[str, Any] = {"rejected": True, "message": reasons[0] if reasons else ""}
        rationale = "; ".join(reasons[1:])
    else:
        marks = [i for i, r in enumerate(reasons) if r.startswith(EDITED_MARK)]
        edited = bool(marks) or (original is not None and original["args"] != detail.get("args"))
        if not edited:
            return None  # approved as proposed: agreement, not a correction
        kind, correction = "edit", {"tool": context["tool"], "args": detail.get("args")}
        rationale = "; ".join(reasons[marks[0] + 1 :]) if marks else ""
    return FeedbackRecord(
        context=context,
        correction=correction,
        rationale=rationale,
        run_id=record["run_id"],
        decision_id=record["subject"],
        reviewer=_reviewer(record["actor"]),
        ts=record["ts"],
        tenant=record["tenant"],
        kind=kind,
        audit_seq=record["seq"],
    )


def feedback_from_audit(records: Iterable[AuditRecord]) -> list[FeedbackRecord]:
    """Every correction on record, in log order: feedback entries, and human approvals that
    edited or rejected an action (the proposal they corrected is the guard's escalated
    decision on the same call, when it is among `records`)."""
    ordered = sorted(records, key=lambda r: r["seq"])
    proposed = {
        (r["run_id"], str(r["detail"].get("call_id"))): {**r["detail"], "decision_id": r["subject"]}
        for r in ordered
        if r["kind"] == "decision" and r["detail"].get("verdict") == "escalate"
    }
    found = []
    for record in ordered:
        if record["kind"] == "feedback":
            found.append(_from_feedback(record))
        elif record["kind"] == "approval" and record["actor"].startswith("human:"):
            if record["detail"].get("tool") is None:
                continue  # a budget answer, not a tool call
            correction = _correction(record, proposed)
            if correction is not None:
                found.append(correction)
    return found


def evaluation_dataset(feedback: Iterable[FeedbackRecord]) -> list[dict[str, Any]]:
    """Rows of an evaluation dataset, in the shape LangSmith examples take:
    `{"inputs": context, "outputs": {"correction", "rationale"}, "metadata": {...}}`."""
    return [
        {
            "inputs": dict(record.context),
            "outputs": {"correction": dict(record.correction), "rationale": record.rationale},
            "metadata": {
                "kind": record.kind,
                "run_id": record.run_id,
                "decision_id": record.decision_id,
                "reviewer": record.reviewer,
                "tenant": record.tenant,
                "ts": record.ts,
                "audit_seq": record.audit_seq,
            },
        }
        for record in feedback
    ]


def dataset_jsonl(rows: Sequence[Mapping[str, Any]]) -> str:
    """Dataset rows as JSON Lines (one example per line, keys sorted)."""
    return "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows)

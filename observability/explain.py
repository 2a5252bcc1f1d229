"""Plain-language explanations of decisions and runs, from their traces alone (no model)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from observability.events import AuditRecord, TraceEvent
from observability.phrases import (
    args_text,
    call_phrase,
    oneline,
    step_sentence,
    tools_by_call,
    verdict_phrase,
    when,
    who,
)

__all__ = ["ExplainError", "Explanation", "explain_decision", "explain_run"]

_VERBS = {
    "allow": "allowed",
    "deny": "denied",
    "escalate": "escalated to a human",
    "halt": "halted the run",
}


class ExplainError(LookupError):
    """The decision or run is not in the traces and records given."""


@dataclass(frozen=True, kw_only=True)
class Explanation:
    """Why a decision was made, for people."""

    decision_id: str
    """The decision explained."""
    run_id: str
    """Its run."""
    text: str
    """The explanation, one statement per line."""
    facts: Mapping[str, Any]
    """What the text says, as JSON-safe data (for the console and `--json`)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "decision_id": self.decision_id,
            "run_id": self.run_id,
            "text": self.text,
            "facts": dict(self.facts),
        }


def _asks(event: TraceEvent, call_id: str) -> bool:
    """Whether `event` paused for a human about `call_id`."""
    return event["status"] == "interrupted" and call_id in (
        (event["escalation"] or {}).get("call_ids") or ()
    )


def _next(run: Sequence[TraceEvent], at: int, verdict: Mapping[str, Any], tool: str) -> list[str]:
    """What happened to the decided call after step `at` (the step that decided it)."""
    call_id, kind = str(verdict.get("call_id") or ""), verdict.get("kind")
    if kind == "halt":
        return ["The run stopped."]
    if not call_id:
        return []
    if kind == "allow":
        for event in run[at:]:
            for call in event["tool_calls"]:
                if call["call_id"] == call_id:
                    return [f"Then {call_phrase(call)}."]
        return [f"`{tool}` has not run."]
    if kind == "deny":
        return ["The agent was told why; the tool did not run."]
    said, start = [], at
    pause = next((i for i in range(at + 1, len(run)) if _asks(run[i], call_id)), None)
    if pause is not None:
        escalation = run[pause]["escalation"] or {}
        deadline = escalation.get("deadline")
        by = f" (answer due by {when(deadline)})" if isinstance(deadline, int | float) else ""
        reviewers = escalation.get("reviewers") or "a reviewer"
        said.append(f"The run paused for {reviewers} on {when(run[pause]['ts'])}{by}.")
        start = pause
    for index in range(start + 1, len(run)):
        for answer in run[index]["verdicts"]:
            if answer.get("call_id") == call_id:
                then = f"Then {verdict_phrase(answer, tool)} on {when(run[index]['ts'])}."
                return [
                    *said,
                    then,
                    *_next(run, index, answer, tool),
                ]
    return [*said, "No one has answered yet."]


def _memory(reads: Sequence[Mapping[str, Any]]) -> str:
    if not reads:
        return "It rested on no memory reads."
    listed = ", ".join(
        f"{'/'.join(r.get('namespace') or ())}:{r.get('key')} v{r.get('version')} "
        f"(commit {r.get('commit_id')})"
        for r in reads
    )
    return f"It rested on memory: {listed}."


@dataclass(frozen=True, kw_only=True)
class _Subject:
    """A decision located in a run's trace (or, without one, in its audit record)."""

    verdict: Mapping[str, Any]
    """The decision."""
    run: Sequence[TraceEvent]
    """Its run's events in time order (empty when only the audit record is known)."""
    at: int
    """Index in `run` of the step that decided."""
    run_id: str
    """Its run."""
    ts: float
    """When it was decided (the deciding step's start)."""
    tenant: str
    """Tenant of the run."""
    workflow: str
    """Workflow of the run (`?` when unknown)."""
    goal: str
    """The run's request (empty when unknown)."""
    proposal: Mapping[str, Any]
    """What was proposed: agent, tool, args, confidence, rationale (what is known of them)."""


def _audit_record(decision_id: str, records: Iterable[AuditRecord]) -> AuditRecord | None:
    for record in records:
        if record["subject"] == decision_id and record["kind"] in ("decision", "approval"):
            return record
    return None


def _proposed(record: AuditRecord | None) -> dict[str, Any]:
    return {k: record["detail"].get(k) for k in ("agent", "tool", "args")} if record else {}


def _from_trace(
    decision_id: str, events: Sequence[TraceEvent], audit: AuditRecord | None
) -> _Subject | None:
    for event in events:
        for verdict in event["verdicts"]:
            if verdict.get("decision_id") != decision_id:
                continue
            run = [e for e in events if e["run_id"] == event["run_id"]]
            at = run.index(event)
            call_id = str(verdict.get("call_id") or "")
            proposal = next(
                (
                    {"agent": e["agent"], **p}
                    for e in reversed(run[: at + 1])
                    for p in e["proposals"]
                    if call_id and p.get("call_id") == call_id
                ),
                None,
            )
            return _Subject(
                verdict=verdict,
                run=run,
                at=at,
                run_id=event["run_id"],
                ts=event["ts"],
                tenant=event["tenant"],
                workflow=event["workflow"],
                goal=next((e["goal"] for e in run if e["goal"]), ""),
                proposal=proposal or _proposed(audit),
            )
    return None


def _from_audit(record: AuditRecord) -> _Subject:
    detail = record["detail"]
    verdict = {
        "decision_id": record["subject"],
        "kind": detail.get("verdict"),
        "call_id": detail.get("call_id"),
        "reasons": detail.get("reasons") or [],
        "zone": detail.get("zone"),
        "policies": detail.get("policies") or [],
        "decided_by": record["actor"],
        "memory_reads": detail.get("memory_reads") or [],
    }
    return _Subject(
        verdict=verdict,
        run=[],
        at=0,
        run_id=record["run_id"],
        ts=record["ts"],
        tenant=record["tenant"],
        workflow="?",
        goal="",
        proposal=_proposed(record),
    )


def explain_decision(
    decision_id: str, events: Iterable[TraceEvent], records: Iterable[AuditRecord] = ()
) -> Explanation:
    """Explain one decision: who decided and when, what was proposed, the verdict and why, the
    risk zone, the policies, the memory it rested on, the cost so far and what happened next.

    Args:
        decision_id: the verdict's id.
        events: trace events (those of its run suffice).
        records: audit records; used to cite the decision's record, and to explain it from
            the record alone when its trace is missing.

    Raises:
        ExplainError: neither the events nor the records hold the decision.
    """
    ordered, kept = sorted(events, key=lambda e: e["ts"]), list(records)
    audit = _audit_record(decision_id, kept)
    subject = _from_trace(decision_id, ordered, audit)
    if subject is None and audit is not None:
        subject = _from_audit(audit)
    if subject is None:
        raise ExplainError(
            f"no decision {decision_id!r} in the {len(ordered)} trace event(s) and {len(kept)} "
            "audit record(s) given. Hint: `bastion audit export` lists decision ids (the "
            "`subject` of decision and approval records); `bastion runs` lists runs, and "
            "`bastion replay <run>` their steps."
        )
    return _compose(decision_id, subject, audit)


def _describe(subject: _Subject, tool: str) -> list[str]:
    """The proposal, the verdict, its reasons, zone, policies and memory, as sentences."""
    verdict, proposal = subject.verdict, subject.proposal
    lines = [
        f"Goal: {oneline(subject.goal)}" if subject.goal else "The run's goal is not in the trace."
    ]
    if tool:
        confidence = proposal.get("confidence")
        stated = f"confidence {confidence:.2f}" if confidence is not None else "no confidence"
        lines.append(
            f"Proposed: `{proposal.get('agent') or '?'}` asked to run `{tool}` with "
            f"{args_text(proposal.get('args'))} ({stated})."
        )
        if proposal.get("rationale"):
            lines.append(f"Rationale: {proposal['rationale']}")
    else:
        lines.append("No tool call was proposed: the decision concerned the run itself.")
    kind = str(verdict.get("kind"))
    decider = who(str(verdict.get("decided_by") or "guard"))
    lines.append(f"Decided by {decider} on {when(subject.ts)}: {_VERBS.get(kind, kind)}.")
    reasons = "; ".join(str(r) for r in verdict.get("reasons") or ())
    lines.append(f"Reasons: {reasons}." if reasons else "No reasons were recorded.")
    zone = verdict.get("zone")
    lines.append(f"Risk zone: {zone}." if zone else "No risk zone applied.")
    policies = ", ".join(str(p) for p in verdict.get("policies") or ())
    lines.append(f"Policies: {policies}." if policies else "No policies were recorded.")
    lines.append(_memory(verdict.get("memory_reads") or ()))
    return lines


def _compose(decision_id: str, subject: _Subject, audit: AuditRecord | None) -> Explanation:
    verdict, run = subject.verdict, subject.run
    tool = str(subject.proposal.get("tool") or "")
    so_far = run[: subject.at + 1]
    cost = {
        "tokens_in": sum(e["cost"]["tokens_in"] for e in so_far),
        "tokens_out": sum(e["cost"]["tokens_out"] for e in so_far),
        "usd": round(math.fsum(e["cost"]["usd"] for e in so_far), 10),
    }
    then = _next(run, subject.at, verdict, tool) if run else []
    outcome = next((e["output"] for e in run if e["node"] == "finalize"), None)
    lines = [
        f"Decision {decision_id} in run {subject.run_id} "
        f"(tenant {subject.tenant}, workflow {subject.workflow}).",
        *_describe(subject, tool),
    ]
    if run:
        lines.append(
            f"Cost so far: ${cost['usd']:.4f} "
            f"({cost['tokens_in']} tokens in, {cost['tokens_out']} out)."
        )
    lines += then
    if run:
        lines.append(f"Outcome: {outcome}." if outcome else "The run has not finished.")
    else:
        lines.append("Its trace is missing: this comes from the audit record alone.")
    if audit is not None:
        lines.append(f"On record: audit #{audit['seq']} ({audit['kind']}, {audit['hash'][:12]}).")
    facts = {
        "decision_id": decision_id,
        "run_id": subject.run_id,
        "tenant": subject.tenant,
        "workflow": subject.workflow,
        "goal": subject.goal,
        "decided_by": verdict.get("decided_by"),
        "decided_at": subject.ts,
        "verdict": verdict.get("kind"),
        "reasons": [str(r) for r in verdict.get("reasons") or ()],
        "zone": verdict.get("zone"),
        "policies": [str(p) for p in verdict.get("policies") or ()],
        "proposal": {
            k: subject.proposal.get(k) for k in ("agent", "tool", "args", "confidence", "rationale")
        },
        "memory_reads": list(verdict.get("memory_reads") or ()),
        "cost_so_far": cost if run else None,
        "next": then,
        "outcome": outcome,
        "audit": {k: audit[k] for k in ("seq", "hash", "kind")} if audit else None,
    }
    return Explanation(
        decision_id=decision_id, run_id=subject.run_id, text="\n".join(lines), facts=facts
    )


def explain_run(run_id: str, events: Iterable[TraceEvent]) -> list[str]:
    """One plain sentence per traced step of `run_id`, in order (what `bastion replay` prints).

    Raises:
        ExplainError: no event of the run is in `events`.
    """
    run = sorted((e for e in events if e["run_id"] == run_id), key=lambda e: e["ts"])
    if not run:
        raise ExplainError(
            f"no trace events for run {run_id!r}. Hint: `bastion runs` lists runs with their "
            "ids; the run may be older than the trace sink keeps."
        )
    tools = tools_by_call(run)
    return [step_sentence(event, tools) for event in run]

"""Approval node: a human approves, edits or rejects escalated actions (LangChain v1 HITL shape).

The interrupt payload is `{"action_requests": [...], "review_configs": [...]}`; the run resumes
with `Command(resume={"decisions": [{"type": "approve"} | {"type": "edit", "edited_action":
{"name", "args"}} | {"type": "reject", "message": ...}]})`, one decision per action request, in
order. A decision may also carry `reviewer` and `note`, which go on record.

An invalid resume value must not be raised from inside the node: LangGraph stores the resume
value before the node runs, so an exception would leave it in place and poison every later
resume. Instead the node interrupts again with the same requests plus an `error` that says what
was wrong; nothing in the state changes until a valid answer arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal

from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guards import Verdict
from nodes.guard import ProposalJudge, halted_update, refusal_message
from nodes.records import agent_node_name, latest_verdicts, pending_with, verdict_record
from nodes.state import ProposalRecord, RunState
from nodes.workflow import EscalationPath

__all__ = [
    "InvalidResumeError",
    "ReviewResponse",
    "ask_reviewer",
    "make_approval_node",
    "parse_review",
    "route_after_approval",
]


class InvalidResumeError(ValueError):
    """A resume value does not answer the pending approval (says what is expected)."""


class _Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reviewer: str | None = None
    """Who decided (recorded as `human:<reviewer>`)."""
    note: str | None = None
    """Why, in the reviewer's words."""


class ApproveDecision(_Decision):
    """Run the action as proposed."""

    type: Literal["approve"]


class EditedAction(BaseModel):
    """The action a reviewer wants instead: same tool, changed arguments."""

    model_config = ConfigDict(extra="forbid")
    name: str
    args: dict[str, Any]


class EditDecision(_Decision):
    """Run the action with the reviewer's arguments."""

    type: Literal["edit"]
    edited_action: EditedAction


class RejectDecision(_Decision):
    """Do not run the action; `message` goes back to the agent."""

    type: Literal["reject"]
    message: str | None = None


Decision = Annotated[ApproveDecision | EditDecision | RejectDecision, Field(discriminator="type")]


class ReviewResponse(BaseModel):
    """The resume value: one decision per action request, in order."""

    model_config = ConfigDict(extra="forbid")
    decisions: list[Decision]


def parse_review(
    value: Any, requests: Sequence[ProposalRecord], allowed: Sequence[str]
) -> list[Decision]:
    """Validate a resume value against the pending requests.

    Raises:
        InvalidResumeError: naming what was wrong and the expected shape.
    """
    expected = (
        'expected {"decisions": [{"type": "approve"} | {"type": "edit", "edited_action": '
        '{"name": ..., "args": {...}}} | {"type": "reject", "message": "..."}]}'
    )
    try:
        response = ReviewResponse.model_validate(value)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        raise InvalidResumeError(
            f"invalid resume value {value!r}: {problems}; {expected}"
        ) from None
    if len(response.decisions) != len(requests):
        raise InvalidResumeError(
            f"got {len(response.decisions)} decision(s) for {len(requests)} pending action(s) "
            f"({', '.join(r['tool'] for r in requests)}); send exactly one per action, in order"
        )
    for index, (decision, request) in enumerate(zip(response.decisions, requests, strict=True)):
        if decision.type not in allowed:
            raise InvalidResumeError(
                f"decision {index} is {decision.type!r} but only {list(allowed)} are allowed here"
            )
        if isinstance(decision, EditDecision) and decision.edited_action.name != request["tool"]:
            raise InvalidResumeError(
                f"decision {index} edits `{decision.edited_action.name}` but the action is "
                f"`{request['tool']}`; an edit may change arguments, not the tool"
            )
    return list(response.decisions)


def ask_reviewer(
    payload: dict[str, Any], requests: Sequence[ProposalRecord], allowed: Sequence[str]
) -> list[Decision]:
    """Interrupt with `payload` until the resume value validly answers `requests`.

    An invalid answer re-interrupts with the same requests plus an `error` (never raises: see
    the module docstring).
    """
    while True:
        answer = interrupt(payload)
        try:
            return parse_review(answer, requests, allowed)
        except InvalidResumeError as error:
            payload = {**payload, "error": str(error)}


def _payload(
    requests: Sequence[ProposalRecord], state: RunState, escalation: EscalationPath
) -> dict[str, Any]:
    latest = latest_verdicts(state)
    return {
        "action_requests": [
            {
                "name": r["tool"],
                "args": r["args"],
                "description": f"`{r['agent']}` proposes `{r['tool']}`: "
                f"{'; '.join(latest[r['call_id']]['reasons'])}. {r['rationale']}".strip(),
                "call_id": r["call_id"],
                "agent": r["agent"],
                "zone": latest[r["call_id"]]["zone"],
                "decision_id": latest[r["call_id"]]["decision_id"],
            }
            for r in requests
        ],
        "review_configs": [
            {"action_name": r["tool"], "allowed_decisions": list(escalation.allowed_decisions)}
            for r in requests
        ],
        "reviewers": escalation.reviewers,
        "deadline": time.time() + escalation.deadline_s if escalation.deadline_s else None,
        "on_timeout": escalation.on_timeout if escalation.deadline_s else None,
    }


def make_approval_node(
    escalation: EscalationPath, judge: ProposalJudge
) -> Callable[[RunState], dict[str, Any]]:
    """Build the approval node for an escalation path.

    A human approval is not the last word: each approved (or edited) action is re-checked by
    the guard when the run resumes, so a kill, a revoked permission or a new policy that arrived
    while the run waited still stops it.
    """

    def approval(state: RunState) -> dict[str, Any]:
        requests = pending_with(state, "escalate")
        payload = _payload(requests, state, escalation)
        decisions = ask_reviewer(payload, requests, escalation.allowed_decisions)
        proposals = {p["call_id"]: p for p in state.get("proposals") or []}
        records = list(state.get("verdicts") or [])
        reads = state.get("memory_reads") or ()  # what the agent knew when it proposed
        messages = []
        for request, decision in zip(requests, decisions, strict=True):
            named = decision.reviewer or "anonymous"
            # `system:deadline` answers when nobody did: on record as the system, not a human.
            who = named if named.startswith("system:") else f"human:{named}"
            if isinstance(decision, RejectDecision):
                reason = decision.message or decision.note or "rejected by a reviewer"
                # The note is the reviewer's why: keep it beside the message the agent gets.
                notes = (reason, decision.note) if decision.message and decision.note else (reason,)
                verdict = replace(Verdict.deny(reason, decided_by=who), reasons=notes)
                records.append(verdict_record(verdict, request["call_id"], reads))
                messages.append(refusal_message(request, f"rejected by reviewer: {reason}"))
                continue
            if isinstance(decision, EditDecision):
                request = {**request, "args": decision.edited_action.args}
            verdict = judge.judge(state, request, approved_by=who)
            notes = (
                *verdict.reasons,
                *(
                    (f"edited by reviewer: args {request['args']}",)
                    if isinstance(decision, EditDecision)
                    else ()
                ),
                *((decision.note,) if decision.note else ()),
            )
            verdict = replace(verdict, reasons=notes)
            records.append(verdict_record(verdict, request["call_id"], reads))
            if verdict.kind == "halt":  # answer the calls not answered yet (denials were)
                unanswered = [*pending_with(state, "allow"), *requests]
                return halted_update(unanswered, verdict, records)
            if verdict.args is not None:
                request = {**request, "args": dict(verdict.args)}
            proposals[request["call_id"]] = request
            if verdict.kind == "deny":
                messages.append(
                    refusal_message(request, f"denied on re-check after approval: {verdict.reason}")
                )
        return {"proposals": list(proposals.values()), "verdicts": records, "messages": messages}

    return approval


def route_after_approval(state: RunState) -> str:
    """Approved calls go to execute; if none, back to the agent with the rejections."""
    if state.get("outcome"):
        return "finalize"
    kinds = {record["kind"] for record in latest_verdicts(state).values()}
    return "execute" if "allow" in kinds else agent_node_name(state.get("active_agent") or "")

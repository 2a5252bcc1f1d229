"""Tracing node steps: a wrapper that records each step cheaply, and the encoder that turns a
recorded step into the reasoning trace event and audit entries, later, off the hot path.

The wrapper keeps only references and counts (no copying, no hashing, no JSON): the run's
scalars, the small per-run lists the node judged (proposals, verdicts, usage) and the node's own
update. `encode_step` runs on the tracer's writer thread.
"""

from __future__ import annotations

import hashlib
import inspect
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp, GraphInterrupt
from langgraph.types import Command

from observability import AuditEntry, CostRecord, TraceEvent, Tracer

__all__ = ["NodeStep", "encode_step", "traced"]

_TEXT = 500
"""Characters kept of free text (goal, output, rationale) in a trace event."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStep:
    """One node step as the hot path records it (references, not copies)."""

    node: str
    started: float
    duration_ms: float
    status: str
    error: str | None
    thread_id: str
    run_id: str
    tenant: str
    workflow: str
    agent: str | None
    proposals: Sequence[Mapping[str, Any]]
    verdicts_before: int
    verdicts: Sequence[Mapping[str, Any]]
    usage: Mapping[str, Any] | None
    messages: int
    last_message_id: str | None
    findings_before: int
    taint_before: int
    goal: str
    update: Any
    interrupt: Any
    side_effects: Mapping[str, str]
    """Each tool's declared side effect (`none`, `reversible`, `irreversible`), by name: a
    successful call of a tool with side effects is audited as an `effect`."""


def _invoker(node: Callable[..., Any]) -> Callable[[Any, Any, Any], Any]:
    """`node` called with exactly the injected arguments it declares, decided once here rather
    than on every step."""
    wants = frozenset(inspect.signature(node).parameters) & {"config", "runtime"}
    if wants == {"config", "runtime"}:
        return lambda state, config, runtime: node(state, config=config, runtime=runtime)
    if wants == {"config"}:
        return lambda state, config, runtime: node(state, config=config)
    if wants == {"runtime"}:
        return lambda state, config, runtime: node(state, runtime=runtime)
    return lambda state, config, runtime: node(state)


def traced(
    name: str, node: Callable[..., Any], tracer: Tracer, side_effects: Mapping[str, str]
) -> Callable[..., Any]:
    """`node` wrapped so that each of its steps is recorded by `tracer` (also when it pauses
    for a human or raises); the node itself is unchanged. The tracer's `encode` must be
    `encode_step`; `side_effects` maps tool names to their declared side effect."""
    invoke = _invoker(node)

    def step(state: Any, config: RunnableConfig, runtime: Any) -> Any:
        started, clock = time.time(), time.perf_counter()
        status, error, update, paused = "ok", None, None, None
        try:
            update = invoke(state, config, runtime)
            return update
        except GraphInterrupt as interrupt:
            status, paused = "interrupted", interrupt.args[0] if interrupt.args else None
            raise
        except GraphBubbleUp:
            status = "interrupted"
            raise
        except Exception as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            tracer.record(
                _capture(
                    name,
                    state,
                    config,
                    (started, clock),
                    (status, error, update, paused),
                    side_effects,
                )
            )

    step.__name__ = getattr(node, "__name__", name)
    return step


def _capture(
    name: str,
    state: Mapping[str, Any],
    config: RunnableConfig,
    times: tuple[float, float],
    result: tuple[str, str | None, Any, Any],
    side_effects: Mapping[str, str],
) -> NodeStep:
    started, clock = times
    status, error, update, paused = result
    messages = state.get("messages") or ()
    verdicts = state.get("verdicts") or ()
    return NodeStep(
        node=name,
        started=started,
        duration_ms=(time.perf_counter() - clock) * 1000,
        status=status,
        error=error,
        thread_id=str((config.get("configurable") or {}).get("thread_id", "")),
        run_id=state.get("run_id", ""),
        tenant=state.get("tenant", ""),
        workflow=state.get("workflow", ""),
        agent=state.get("active_agent"),
        proposals=state.get("proposals") or (),
        verdicts_before=len(verdicts),
        verdicts=verdicts,
        usage=state.get("usage"),
        messages=len(messages),
        last_message_id=messages[-1].id if messages else None,
        findings_before=len(state.get("findings") or ()),
        taint_before=len(state.get("taint") or ()),
        goal=messages[-1].content if name == "intake" and messages else "",
        update=update,
        interrupt=paused,
        side_effects=side_effects,
    )


def _short(text: Any) -> str:
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= _TEXT else text[: _TEXT - 1] + "…"


def _cost(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> CostRecord:
    if not after:
        return CostRecord(tokens_in=0, tokens_out=0, usd=0.0)
    if not before or after.get("started_at") != before.get("started_at"):
        before = {}  # intake opened a new usage record: the step's cost is all of it
    return CostRecord(
        tokens_in=after["tokens_in"] - before.get("tokens_in", 0),
        tokens_out=after["tokens_out"] - before.get("tokens_out", 0),
        usd=round(after["cost_usd"] - before.get("cost_usd", 0.0), 10),
    )


def encode_step(step: NodeStep) -> tuple[list[TraceEvent], list[AuditEntry]]:
    """A recorded step's trace event and audit entries (the `Tracer`'s `encode`)."""
    update = step.update.update if isinstance(step.update, Command) else step.update
    update = update if isinstance(update, Mapping) else {}
    run_id = update.get("run_id") or step.run_id
    tenant = update.get("tenant") or step.tenant
    workflow = update.get("workflow") or step.workflow
    agent = update.get("active_agent", step.agent) if step.node != "finalize" else step.agent
    proposals = [_proposal(p) for p in update.get("proposals") or ()]
    if not step.node.startswith("agent_"):
        proposals = []  # guard and approval hand back the pending calls; agents propose
    verdicts = list((update.get("verdicts") or ())[step.verdicts_before :])
    calls = _tool_calls(update.get("messages") or (), step.side_effects)
    by_call = {p["call_id"]: p for p in (*step.proposals, *(update.get("proposals") or ()))}
    confidences = [p["confidence"] for p in proposals if p["confidence"] is not None]
    event = TraceEvent(
        event_id=uuid.uuid4().hex,
        ts=step.started,
        duration_ms=round(step.duration_ms, 3),
        run_id=run_id,
        thread_id=step.thread_id,
        tenant=tenant,
        workflow=workflow,
        node=step.node,
        agent=agent,
        goal=_short(step.goal),
        context_hash=hashlib.blake2b(
            f"{step.thread_id}|{step.messages}|{step.last_message_id}".encode(),
            digest_size=12,
        ).hexdigest(),
        proposals=proposals,
        verdicts=[dict(v) for v in verdicts],
        tool_calls=calls,
        output=_short(_output(step, update, verdicts, by_call)),
        confidence=min(confidences) if confidences else None,
        flags=_flags(step, update, verdicts),
        escalation=_escalation(step),
        memory_reads=list(update.get("memory_reads") or ()),
        cost=_cost(step.usage, update.get("usage")),
        status=step.status,  # type: ignore[typeddict-item]
        error=step.error,
    )
    entries = [_decision(event, v, by_call) for v in verdicts]
    entries += [
        _effect(event, call, by_call)
        for call in calls
        if call["side_effect"] != "none" and call["status"] == "success" and not call["shadow"]
    ]
    return [event], entries


def _proposal(proposal: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "call_id": proposal["call_id"],
        "tool": proposal["tool"],
        "args": proposal["args"],
        "confidence": proposal.get("confidence"),
        "rationale": _short(proposal.get("rationale") or ""),
        "error": proposal.get("error"),
    }


def _tool_calls(messages: Sequence[Any], side_effects: Mapping[str, str]) -> list[dict[str, Any]]:
    calls = []
    for message in messages:
        # Only the gateway's results carry an artifact; a guard's refusal is in the verdicts.
        if isinstance(message, ToolMessage) and isinstance(message.artifact, Mapping):
            artifact = message.artifact
            calls.append(
                {
                    "call_id": message.tool_call_id,
                    "tool": message.name or "",
                    "status": message.status,
                    "replayed": bool(artifact.get("replayed")),
                    "shadow": bool(artifact.get("shadow")),
                    "side_effect": side_effects.get(message.name or "", "none"),
                    "error_kind": artifact.get("error_kind"),
                }
            )
    return calls


def _output(
    step: NodeStep,
    update: Mapping[str, Any],
    verdicts: Sequence[Mapping[str, Any]],
    by_call: Mapping[str, Mapping[str, Any]],
) -> str:
    if step.status == "error":
        return step.error or ""
    if verdicts and not update.get("outcome"):
        return "; ".join(
            f"{v['kind']} {(by_call.get(v['call_id']) or {}).get('tool', '?')}" for v in verdicts
        )
    outcome = update.get("outcome")
    if outcome:
        return f"{outcome['status']}: {outcome['reason']}"
    if step.node == "orchestrator":
        agent = update.get("active_agent")
        return f"route to {agent}" if agent else "finish"
    if step.node == "intake":
        return "accepted"
    for message in reversed(update.get("messages") or ()):
        if isinstance(message, AIMessage) and message.content:
            return str(message.content)
    return ""


def _flags(
    step: NodeStep, update: Mapping[str, Any], verdicts: Sequence[Mapping[str, Any]]
) -> list[str]:
    flags = [f"taint: {t}" for t in (update.get("taint") or ())[step.taint_before :]]
    flags += [
        f"finding: {f['category']}/{f['type']} in {f['where']}"
        for f in (update.get("findings") or ())[step.findings_before :]
    ]
    flags += [f"{v['kind']}: {'; '.join(v['reasons'])}" for v in verdicts if v["kind"] != "allow"]
    if (update.get("budget") or {}).get("fallback"):
        flags.append("budget: fallback model")
    return flags


def _escalation(step: NodeStep) -> dict[str, Any] | None:
    if step.status != "interrupted" or not step.interrupt:
        return None
    payload = getattr(step.interrupt[0], "value", None)
    if not isinstance(payload, Mapping):
        return None
    requests = payload.get("action_requests") or ()
    return {
        "call_ids": [r.get("call_id") for r in requests],
        "tools": [r.get("name") for r in requests],
        "zones": [r.get("zone") for r in requests],
        "decision_ids": [r.get("decision_id") for r in requests],
        "reviewers": payload.get("reviewers"),
        "deadline": payload.get("deadline"),
        "error": payload.get("error"),
    }


def _decision(
    event: TraceEvent, verdict: Mapping[str, Any], by_call: Mapping[str, Mapping[str, Any]]
) -> AuditEntry:
    proposal = by_call.get(verdict["call_id"]) or {}
    # The approval node's answers (a human's, or `system:deadline`'s) are approvals.
    answered = str(verdict["decided_by"]).startswith(("human:", "system:"))
    return AuditEntry(
        kind="approval" if answered else "decision",
        ts=event["ts"],
        tenant=event["tenant"],
        actor=verdict["decided_by"],
        run_id=event["run_id"],
        subject=verdict["decision_id"],
        detail={
            "verdict": verdict["kind"],
            "reasons": list(verdict["reasons"]),
            "zone": verdict.get("zone"),
            "policies": list(verdict.get("policies") or ()),
            "call_id": verdict["call_id"],
            "tool": proposal.get("tool"),
            "args": proposal.get("args"),
            "agent": proposal.get("agent"),
            "memory_reads": list(verdict.get("memory_reads") or ()),
            "thread_id": event["thread_id"],
        },
    )


def _effect(
    event: TraceEvent, call: Mapping[str, Any], by_call: Mapping[str, Mapping[str, Any]]
) -> AuditEntry:
    proposal = by_call.get(call["call_id"]) or {}
    return AuditEntry(
        kind="effect",
        ts=event["ts"],
        tenant=event["tenant"],
        actor=f"agent:{proposal.get('agent') or event['agent'] or '?'}",
        run_id=event["run_id"],
        subject=call["call_id"],
        detail={
            "tool": call["tool"],
            "args": proposal.get("args"),
            "side_effect": call["side_effect"],
            "replayed": call["replayed"],
            "thread_id": event["thread_id"],
        },
    )

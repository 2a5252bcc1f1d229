"""Agent node: a specialist's model turn. Its tool calls become proposals; it never runs a tool."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, SystemMessage
from langchain_core.runnables import Runnable

from guards import Verdict
from memory import VersionedMemory
from nodes.approval import ask_reviewer
from nodes.memory import MemoryBinding, TurnMemory, recall_for_turn
from nodes.models import estimate_tokens
from nodes.records import (
    ModelCall,
    agent_node_name,
    charge_model_call,
    model_name_of,
    scan_findings,
    usage_of,
    usage_snapshot,
    verdict_record,
)
from nodes.run_metadata import model_call_config
from nodes.spend import ModelGate
from nodes.state import BudgetState, Outcome, ProposalRecord, RunState
from nodes.toolview import ToolViews
from nodes.workflow import AgentSpec, EscalationPath
from tools import ToolRegistry

__all__ = ["make_agent_node", "route_after_agent"]


def _confidence(reply: AIMessage, call_id: str) -> float | None:
    # Models that state confidence put it in additional_kwargs: one number, or one per call id.
    stated = reply.additional_kwargs.get("confidence")
    if isinstance(stated, dict):
        stated = stated.get(call_id)
    return float(stated) if isinstance(stated, int | float) else None


def proposals_from(agent: str, reply: AIMessage) -> list[ProposalRecord]:
    """The reply's tool calls (well-formed and malformed) as proposals."""
    rationale = reply.content if isinstance(reply.content, str) else ""
    proposals = [
        ProposalRecord(
            call_id=call["id"] or "",
            agent=agent,
            tool=call["name"],
            args=dict(call["args"]),
            confidence=_confidence(reply, call["id"] or ""),
            rationale=rationale,
            error=None,
        )
        for call in reply.tool_calls
    ]
    proposals += [
        ProposalRecord(
            call_id=bad.get("id") or "",
            agent=agent,
            tool=bad.get("name") or "",
            args={},
            confidence=None,
            rationale=rationale,
            error=f"arguments were not valid JSON ({bad.get('error') or 'unparsable'}):"
            f" {bad.get('args')!r}. Call the tool again with a JSON object.",
        )
        for bad in reply.invalid_tool_calls
    ]
    return proposals


def _halted(state: RunState, verdict: Verdict, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        **extra,
        "proposals": [],
        "verdicts": [*state.get("verdicts", []), verdict_record(verdict, "")],
        "outcome": Outcome(status="halted", reason=verdict.reason, summary=""),
    }


def _ask_for_more(
    state: RunState, spec: AgentSpec, gate: ModelGate, escalation: EscalationPath
) -> tuple[BudgetState, Verdict]:
    """Ask a human "continue for up to $X more?"; returns the new budget state and the answer."""
    spend = gate.guard.spend
    usage = usage_snapshot(state)
    budget = state["budget"]
    call_id = f"budget:{usage.steps}"
    cap = gate.guard.limits.usd_cap(usage)
    request = ProposalRecord(
        call_id=call_id,
        agent=spec.name,
        tool="extend_budget",
        args={"extra_usd": spend.extension_usd},
        confidence=None,
        rationale="",
        error=None,
    )
    spent = f"${usage.cost_usd:.4f}" + (f" of ${cap:.4f}" if cap is not None else "")
    payload = {
        "action_requests": [
            {
                "name": "extend_budget",
                "args": request["args"],
                "description": f"The run has spent {spent} ({spend.threshold:.0%} threshold "
                f"reached). Continue for up to ${spend.extension_usd:.4f} more?",
                "call_id": call_id,
                "agent": spec.name,
                "zone": "yellow",
                "decision_id": "",
            }
        ],
        "review_configs": [
            {"action_name": "extend_budget", "allowed_decisions": ["approve", "reject"]}
        ],
        "reviewers": escalation.reviewers,
    }
    decision = ask_reviewer(payload, [request], ("approve", "reject"))[0]
    who = f"human:{decision.reviewer or 'anonymous'}"
    if decision.type == "approve":
        granted = BudgetState(
            extra_usd=budget["extra_usd"] + spend.extension_usd,
            threshold_hit=False,  # crossing the threshold again asks again
            fallback=budget["fallback"],
        )
        return granted, Verdict.allow(
            decided_by=who, reasons=(f"budget extended by ${spend.extension_usd:.4f}",)
        )
    return BudgetState(**{**budget, "threshold_hit": True}), Verdict.halt(
        f"spend threshold reached ({spent}) and {who} declined to extend the budget"
    )


@dataclass(frozen=True, kw_only=True)
class _Bound:
    """A specialist's models bound to one tool view."""

    primary: tuple[Runnable[Any, Any], str]
    """The specialist's model with the tools bound, and its price-table name."""
    cheaper: tuple[Runnable[Any, Any], str]
    """The fallback model, bound the same way (the primary when there is none)."""
    schema_chars: int
    """Size of the tool schemas as JSON, for the token estimate of each call."""


def _binder(spec: AgentSpec) -> Callable[[ToolRegistry], _Bound]:
    """Binds the specialist's models to a tool view, once per distinct view (thread-safe:
    graphs run nodes of concurrent runs on worker threads)."""
    bound: dict[frozenset[str], _Bound] = {}
    lock = threading.Lock()

    def bind_view(tools: ToolRegistry) -> _Bound:
        with lock:
            found = bound.get(tools.names)
        if found is not None:
            return found
        schemas = [tool.llm_schema() for tool in tools]

        def bind(model: BaseChatModel) -> tuple[Runnable[Any, Any], str]:
            return (model.bind_tools(schemas) if schemas else model), model_name_of(model)

        primary = bind(spec.model)
        found = _Bound(
            primary=primary,
            cheaper=bind(spec.fallback_model) if spec.fallback_model is not None else primary,
            schema_chars=len(json.dumps(schemas)) if schemas else 0,  # once, not per call
        )
        with lock:  # a race binds twice, harmlessly; every caller gets the first binding
            return bound.setdefault(tools.names, found)

    return bind_view


def _memory_update(state: RunState, gate: ModelGate, recalled: TurnMemory | None) -> dict[str, Any]:
    """State changes of a turn's memory: its reads (replacing the last turn's), and taint when
    the recalled text carries injected instructions (memory holds third parties' words)."""
    if recalled is None:  # an agent without memory: clear what another agent's turn read
        return {"memory_reads": []} if state.get("memory_reads") else {}
    update: dict[str, Any] = {"memory_reads": recalled.reads}
    scanner = gate.guard.scanner
    if recalled.message is None or scanner is None:
        return update
    found, tainted = scan_findings(
        scanner, str(recalled.message.content), where="memory", kinds=frozenset({"injection"})
    )
    taint = state.get("taint") or []
    if any(reason not in taint for reason in tainted):
        update["taint"] = [*taint, *(r for r in tainted if r not in taint)]
        update["findings"] = [*(state.get("findings") or []), *found]
    return update


def make_agent_node(
    spec: AgentSpec,
    tools: ToolViews,
    gate: ModelGate,
    escalation: EscalationPath,
    *,
    memory: VersionedMemory | None = None,
    binding: MemoryBinding | None = None,
) -> Callable[[RunState], dict[str, Any]]:
    """Build the node for specialist `spec`, whose model sees only its tools, as scoped for
    the run's tenant by `tools`.

    Before each model call the node applies the spend threshold once (switch to the
    specialist's fallback model, or ask a human for more money), then reserves the call's
    estimated cost with `gate`; after the call it settles the real usage.

    With `memory` and a `binding`, each turn first recalls what the binding's context function
    selects, in the run's memory scope: the lines go to the model as a system message (model
    input only, not the thread), and the reads go to `state["memory_reads"]`, from where the
    guard copies them into the verdicts on this turn's proposals.
    """
    bind_view = _binder(spec)
    recall = (
        partial(recall_for_turn, memory, binding)
        if memory is not None and binding is not None
        else None
    )
    system = SystemMessage(spec.instructions)
    spend = gate.guard.spend

    def threshold(state: RunState) -> tuple[BudgetState | None, Verdict | None]:
        budget = state.get("budget")
        if (
            budget is None
            or budget["threshold_hit"]
            or spend.on_threshold == "continue"
            or gate.guard.limits.spend_fraction(usage_snapshot(state)) < spend.threshold
        ):
            return None, None
        if spend.on_threshold == "fallback":
            return BudgetState(**{**budget, "threshold_hit": True, "fallback": True}), None
        return _ask_for_more(state, spec, gate, escalation)

    def agent(state: RunState) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        budget, answer = threshold(state)
        if budget is not None:
            extra["budget"] = budget
            state = {**state, "budget": budget}
        if answer is not None:
            extra["verdicts"] = [*state.get("verdicts", []), verdict_record(answer, "")]
            if answer.kind == "halt":
                return _halted(state, answer, extra)
            state = {**state, "verdicts": extra["verdicts"]}
        bound = bind_view(tools.for_agent(spec.name, state.get("tenant", "default")))
        fallback = state.get("budget", {}).get("fallback")
        model, model_name = bound.cheaper if fallback else bound.primary
        recalled = recall(state, spec.name) if recall is not None else None
        extra.update(_memory_update(state, gate, recalled))
        recalled_message = [recalled.message] if recalled and recalled.message else []
        messages = [system, *recalled_message, *(state.get("messages") or [])]
        reserve = estimate_tokens(messages, tools_chars=bound.schema_chars)
        admission = gate.admit(
            state, node=agent_node_name(spec.name), model_name=model_name, tokens=reserve
        )
        if admission.halt is not None:
            return _halted(state, admission.halt, extra)
        try:
            reply = model.invoke(
                messages,
                config=model_call_config(state, node=agent_node_name(spec.name), agent=spec.name),
            )
        except BaseException:
            gate.release(admission)
            raise
        reply.name = spec.name
        tokens_in, tokens_out = usage_of(reply, lambda: reserve)
        call = ModelCall(
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=gate.prices.cost(model_name, tokens_in, tokens_out),
        )
        gate.settle(admission, call)
        return {
            **extra,
            "messages": [reply],
            "active_agent": spec.name,
            "proposals": proposals_from(spec.name, reply),
            "usage": charge_model_call(state, call),
        }

    return agent


def route_after_agent(state: RunState) -> str:
    """Proposals go to the guard; a finished turn goes back to the orchestrator."""
    if state.get("outcome"):
        return "finalize"
    return "guard" if state.get("proposals") else "orchestrator"

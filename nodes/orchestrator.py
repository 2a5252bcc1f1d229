"""Orchestrator node: the hub that picks the next specialist or finishes. It never calls tools."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import SystemMessage
from langchain_core.runnables import Runnable

from guards import Verdict
from nodes.models import estimate_tokens
from nodes.records import (
    ModelCall,
    agent_node_name,
    charge_model_call,
    model_name_of,
    new_usage,
    usage_of,
    verdict_record,
)
from nodes.run_metadata import model_call_config
from nodes.spend import Admission, ModelGate
from nodes.state import Outcome, RunState

__all__ = [
    "ModelRouter",
    "RouteDecision",
    "Router",
    "SequentialRouter",
    "make_orchestrator_node",
    "route_from_orchestrator",
]

FINISH = "finish"


@dataclass(frozen=True, kw_only=True)
class RouteDecision:
    """The orchestrator's choice."""

    next_agent: str | None
    """Specialist to hand to, or None to finish."""
    reason: str = ""
    """Why, for the record."""
    model_call: ModelCall | None = None
    """Usage, when a model made the choice (the orchestrator node prices it)."""


class Router(Protocol):
    """Chooses the next specialist from the run state."""

    def choose(self, state: RunState, agents: Sequence[str]) -> RouteDecision:
        """The next specialist among `agents`, or finish."""
        ...

    def estimated_tokens(self, state: RunState) -> int:
        """Tokens the next choice will cost (0 for rule-based routers)."""
        ...


@dataclass(frozen=True, kw_only=True)
class SequentialRouter:
    """Rule-based: hands to each specialist once, in the order given, then finishes."""

    def choose(self, state: RunState, agents: Sequence[str]) -> RouteDecision:
        done = set(state.get("routes") or [])
        for agent in agents:
            if agent not in done:
                return RouteDecision(next_agent=agent, reason="next in sequence")
        return RouteDecision(next_agent=None, reason="every specialist has worked")

    def estimated_tokens(self, state: RunState) -> int:
        return 0


def _handoff_tool(agents: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": "handoff",
            "description": "Hand the request to a specialist, or `finish` when it is done.",
            "parameters": {
                "type": "object",
                "properties": {
                    "to": {"type": "string", "enum": [*agents, FINISH]},
                    "reason": {"type": "string"},
                },
                "required": ["to"],
            },
        },
    }


@dataclass(frozen=True, kw_only=True)
class ModelRouter:
    """Model-based: a chat model picks the next specialist by calling a `handoff` tool."""

    model: BaseChatModel
    """Model that routes."""
    instructions: str = (
        "You are the orchestrator. Read the request and the work done so far, "
        "then hand off to the one specialist who should act next, or finish."
    )
    """System prompt for routing."""
    _bindings: dict[tuple[str, ...], Runnable[Any, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _messages(self, state: RunState, agents: Sequence[str]) -> list[Any]:
        consulted = ", ".join(state.get("routes") or []) or "none"
        prompt = (
            f"{self.instructions}\nSpecialists: {', '.join(agents)}.\n"
            f"Already consulted: {consulted}."
        )
        return [SystemMessage(prompt), *(state.get("messages") or [])]

    def estimated_tokens(self, state: RunState) -> int:
        return estimate_tokens(self._messages(state, ()))

    def _bound(self, agents: tuple[str, ...]) -> Runnable[Any, Any]:
        # Bound once per set of specialists, not on every routing step.
        if agents not in self._bindings:
            self._bindings[agents] = self.model.bind_tools(
                [_handoff_tool(agents)], tool_choice="handoff"
            )
        return self._bindings[agents]

    def choose(self, state: RunState, agents: Sequence[str]) -> RouteDecision:
        messages = self._messages(state, agents)
        reply = self._bound(tuple(agents)).invoke(
            messages, config=model_call_config(state, node="orchestrator", agent="orchestrator")
        )
        tokens_in, tokens_out = usage_of(reply, lambda: estimate_tokens(messages))
        # Priced by the orchestrator node with the graph's price table (as reserved).
        call = ModelCall(tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=0.0)
        choice = reply.tool_calls[0]["args"] if reply.tool_calls else {"to": FINISH}
        target = choice.get("to", FINISH)
        return RouteDecision(
            next_agent=None if target == FINISH else str(target),
            reason=str(choice.get("reason", "")),
            model_call=call,
        )


def make_orchestrator_node(
    router: Router, agents: Sequence[str], gate: ModelGate
) -> Callable[[RunState], dict[str, Any]]:
    """Build the hub node over `agents` with `router` deciding, paid for through `gate`."""
    model = getattr(router, "model", None)
    model_name = model_name_of(model) if model is not None else "rules"

    def halt(state: RunState, verdict: Verdict) -> dict[str, Any]:
        return {
            "active_agent": None,
            "verdicts": [*state.get("verdicts", []), verdict_record(verdict, "")],
            "outcome": Outcome(status="halted", reason=verdict.reason, summary=""),
        }

    def orchestrator(state: RunState) -> dict[str, Any]:
        reserve = router.estimated_tokens(state)
        admission = (
            gate.admit(state, node="orchestrator", model_name=model_name, tokens=reserve)
            if reserve
            else Admission()
        )
        if admission.halt is not None:
            return halt(state, admission.halt)
        try:
            decision = router.choose(state, agents)
        except BaseException:
            gate.release(admission)
            raise
        update: dict[str, Any] = {"active_agent": decision.next_agent}
        if decision.model_call is not None:
            # Priced here with the graph's table, the one the reservation used.
            call = replace(
                decision.model_call,
                cost_usd=gate.prices.cost(
                    model_name, decision.model_call.tokens_in, decision.model_call.tokens_out
                ),
            )
            gate.settle(admission, call)
            update["usage"] = charge_model_call(state, call)
        if decision.next_agent is None:
            return update
        if decision.next_agent not in agents:
            update["active_agent"] = None
            update["outcome"] = Outcome(
                status="failed",
                summary="",
                reason=f"orchestrator chose unknown specialist `{decision.next_agent}`; "
                f"specialists are {list(agents)}",
            )
            return update
        routes = [*state.get("routes", []), decision.next_agent]
        looping = gate.guard.loops.check_routes(routes)
        if looping is not None:
            return {**update, **halt(state, looping), "routes": routes}
        update["routes"] = routes
        if decision.next_agent not in state.get("routes", []):
            update["progress_step"] = (state.get("usage") or new_usage())["steps"]
        return update

    return orchestrator


def route_from_orchestrator(state: RunState) -> str:
    """To the chosen specialist's node, or to finalize."""
    agent = state.get("active_agent")
    return agent_node_name(agent) if agent and not state.get("outcome") else "finalize"

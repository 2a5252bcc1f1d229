"""The orchestrator graph: routing, guard verdicts, approvals, caps, and clear build errors."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graphs import build_orchestrator
from guards import RunLimits
from nodes import (
    AgentSpec,
    EscalationPath,
    ModelRouter,
    RunContext,
    ScriptedChatModel,
    Workflow,
    WorkflowConfigError,
)
from tools import ToolConfigError, tool_contract

LEDGER: list[dict[str, Any]] = []


@tool_contract(side_effect="irreversible", zone=lambda a: "red" if a["amount"] > 100 else "green")
def transfer(amount: int, to: str) -> dict[str, Any]:
    """Transfer money."""
    LEDGER.append({"amount": amount, "to": to})
    return {"sent": amount, "to": to}


@tool_contract(zone="green")
def balance() -> int:
    """Read the balance."""
    return 1000


def call(name: str, call_id: str = "c1", **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}])


def make_graph(*replies: AIMessage, workflow: Workflow | None = None, router: Any = None):
    LEDGER.clear()
    agent = AgentSpec(
        name="payer",
        instructions="Pay.",
        tools=["transfer", "balance"],
        model=ScriptedChatModel(responses=list(replies)),
    )
    builder = build_orchestrator(
        [agent], tools=[transfer, balance], workflow=workflow, router=router
    )
    return builder.compile(checkpointer=InMemorySaver())


CONFIG: Any = {"configurable": {"thread_id": "t"}}


def run(graph, text: str = "pay bob 50", tenant: str = "acme") -> dict[str, Any]:
    return graph.invoke({"messages": [("user", text)]}, CONFIG, context=RunContext(tenant=tenant))


def resume(graph, value: Any) -> dict[str, Any]:
    return graph.invoke(Command(resume=value), CONFIG, context=RunContext(tenant="acme"))


def tool_messages(state: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in state["messages"] if isinstance(m, ToolMessage)]


def test_allowed_call_runs_and_the_path_is_the_designed_one() -> None:
    graph = make_graph(call("transfer", amount=50, to="bob"), AIMessage("sent"))
    nodes = [
        next(iter(u))
        for u in graph.stream(
            {"messages": [("user", "pay bob 50")]},
            CONFIG,
            context=RunContext(tenant="acme"),
            stream_mode="updates",
        )
    ]
    assert nodes == [
        "intake",
        "orchestrator",
        "agent_payer",
        "guard",  # nothing needs a human: the allowed call runs in the guard step
        "agent_payer",
        "orchestrator",
        "finalize",
    ]
    state = graph.get_state(CONFIG).values
    assert state["outcome"]["status"] == "resolved" and state["tenant"] == "acme"
    assert LEDGER == [{"amount": 50, "to": "bob"}]
    assert state["usage"]["steps"] == 2 and state["usage"]["tool_calls"] == 1
    assert state["usage"]["cost_usd"] > 0


def test_invalid_tenant_is_rejected_before_any_model_call() -> None:
    state = run(make_graph(), tenant="bad tenant!")
    assert state["outcome"]["status"] == "rejected" and "tenant" in state["outcome"]["reason"]
    assert state["usage"]["steps"] == 0


def test_hallucinated_tool_is_denied_and_the_agent_can_recover() -> None:
    state = run(make_graph(call("transfr", amount=5, to="bob"), AIMessage("gave up")))
    [denied] = tool_messages(state)
    assert denied.status == "error" and "Did you mean `transfer`" in str(denied.content)
    assert state["outcome"]["status"] == "resolved" and LEDGER == []


def test_invalid_args_come_back_as_a_tool_error_naming_the_field() -> None:
    state = run(make_graph(call("balance", account="x"), AIMessage("oops")))
    [error] = tool_messages(state)
    assert error.status == "error" and "`account`" in str(error.content)


def test_args_a_zone_rule_cannot_read_fail_closed_to_approval() -> None:
    state = run(make_graph(call("transfer", amount="lots", to="bob")))
    assert state["__interrupt__"] and LEDGER == []


def test_malformed_tool_call_is_answered_not_crashed() -> None:
    broken = AIMessage(
        "",
        invalid_tool_calls=[
            {"name": "transfer", "args": "{amount: 5", "id": "bad1", "error": "bad json"}
        ],
    )
    state = run(make_graph(broken, AIMessage("retrying later")))
    [answer] = tool_messages(state)
    assert answer.tool_call_id == "bad1" and "not valid JSON" in str(answer.content)


def test_writes_outside_the_side_effect_budget_are_denied() -> None:
    workflow = Workflow(name="read-only")
    state = run(
        make_graph(call("transfer", amount=5, to="bob"), AIMessage("ok"), workflow=workflow)
    )
    assert "side-effect budget" in str(tool_messages(state)[0].content) and LEDGER == []


def escalated_graph():
    graph = make_graph(call("transfer", amount=500, to="eve"), AIMessage("done"))
    first = run(graph, "pay eve 500")
    [pending] = first["__interrupt__"]
    return graph, pending.value


def test_red_zone_waits_for_approval_with_the_hitl_payload() -> None:
    graph, payload = escalated_graph()
    [action] = payload["action_requests"]
    assert action["name"] == "transfer" and action["args"] == {"amount": 500, "to": "eve"}
    assert payload["review_configs"][0]["allowed_decisions"] == ["approve", "edit", "reject"]
    assert graph.get_state(CONFIG).next == ("approval",) and LEDGER == []
    state = resume(graph, {"decisions": [{"type": "approve", "reviewer": "ann"}]})
    assert LEDGER == [{"amount": 500, "to": "eve"}]
    assert state["verdicts"][-1]["decided_by"] == "human:ann"
    assert state["outcome"]["status"] == "resolved"


def test_edit_runs_the_reviewers_arguments() -> None:
    graph, _ = escalated_graph()
    resume(
        graph,
        {
            "decisions": [
                {
                    "type": "edit",
                    "edited_action": {"name": "transfer", "args": {"amount": 90, "to": "eve"}},
                    "note": "cap",
                }
            ]
        },
    )
    assert LEDGER == [{"amount": 90, "to": "eve"}]


def test_reject_sends_the_reason_back_and_runs_nothing() -> None:
    graph, _ = escalated_graph()
    state = resume(graph, {"decisions": [{"type": "reject", "message": "not eve"}]})
    assert LEDGER == []
    [rejection] = tool_messages(state)
    assert rejection.status == "error" and "not eve" in str(rejection.content)
    assert state["verdicts"][-1]["kind"] == "deny"


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("yes", "invalid resume value"),
        ({"decisions": [{"type": "maybe"}]}, "invalid resume value"),
        ({"decisions": []}, "got 0 decision(s) for 1 pending action(s)"),
        (
            {"decisions": [{"type": "edit", "edited_action": {"name": "balance", "args": {}}}]},
            "may change arguments, not the tool",
        ),
    ],
)
def test_invalid_resume_is_explained_and_changes_nothing(bad: Any, expected: str) -> None:
    graph, _ = escalated_graph()
    before = graph.get_state(CONFIG).values
    again = resume(graph, bad)
    [pending] = again["__interrupt__"]
    assert expected in pending.value["error"]
    after = graph.get_state(CONFIG).values
    assert after["verdicts"] == before["verdicts"] and after["messages"] == before["messages"]
    assert LEDGER == []
    resume(graph, {"decisions": [{"type": "approve"}]})
    assert LEDGER == [{"amount": 500, "to": "eve"}], "a valid answer still works afterwards"


def test_step_cap_halts_a_runaway_agent_and_answers_its_calls() -> None:
    # Distinct arguments each time, so the loop detector does not stop it first.
    loop = [call("transfer", call_id=f"c{i}", amount=i + 1, to="bob") for i in range(20)]
    state = run(make_graph(*loop, workflow=Workflow(name="w", limits=RunLimits(max_steps=4))))
    assert state["outcome"]["status"] == "halted" and "step cap" in state["outcome"]["reason"]
    assert state["usage"]["steps"] == 4
    calls = {c["id"] for m in state["messages"] if isinstance(m, AIMessage) for c in m.tool_calls}
    assert calls == {m.tool_call_id for m in tool_messages(state)}, "every call is answered"


def test_token_cap_stops_the_call_before_it_happens() -> None:
    workflow = Workflow(name="w", limits=RunLimits(max_tokens=10))
    state = run(make_graph(AIMessage("never said"), workflow=workflow))
    assert state["outcome"]["status"] == "halted" and "token cap" in state["outcome"]["reason"]
    assert state["usage"]["steps"] == 0


def test_router_choosing_an_unknown_agent_fails_the_run_clearly() -> None:
    router = ModelRouter(model=ScriptedChatModel(responses=[call("handoff", to="ghost")]))
    state = run(make_graph(router=router))
    assert state["outcome"]["status"] == "failed" and "`ghost`" in state["outcome"]["reason"]


def test_build_errors_name_the_problem() -> None:
    model = ScriptedChatModel(responses=[])
    with pytest.raises(WorkflowConfigError, match="at least one AgentSpec"):
        build_orchestrator([])
    twin = AgentSpec(name="a", instructions="", model=model)
    with pytest.raises(WorkflowConfigError, match="unique"):
        build_orchestrator([twin, twin])
    with pytest.raises(ToolConfigError, match="unknown tool"):
        build_orchestrator([AgentSpec(name="a", instructions="", tools=["nope"], model=model)])
    with pytest.raises(WorkflowConfigError, match="unknown tool"):
        build_orchestrator([twin], workflow=Workflow(name="w", write_tools=frozenset({"x"})))
    with pytest.raises(WorkflowConfigError, match="identifier"):
        AgentSpec(name="my agent", instructions="", model=model)


@pytest.mark.parametrize("decisions", [(), ("approve", "aprove")])
def test_escalation_path_refuses_unknown_decisions(decisions: tuple[str, ...]) -> None:
    with pytest.raises(WorkflowConfigError, match="allowed_decisions"):
        EscalationPath(allowed_decisions=decisions)


def test_model_router_binds_its_handoff_tool_once() -> None:
    model = ScriptedChatModel(responses=[call("handoff", to="payer"), call("handoff", to="finish")])
    router = ModelRouter(model=model)
    state = run(make_graph(AIMessage("paid"), router=router))
    assert state["routes"] == ["payer"] and state["outcome"]["status"] == "resolved"
    assert list(router._bindings) == [("payer",)]

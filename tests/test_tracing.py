"""Every node step of a real support run leaves a trace event; decisions, approvals and effects
leave audit records; the trace adds up to what the run's state says it did."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from console import run_to_end
from graphs.services import Services
from graphs.support import (
    SUPPORT_WORKFLOW,
    SupportDB,
    build_support_graph,
    format_ticket,
    scripted_review,
)
from observability import TraceEvent

TICKETS = {
    t["id"]: t
    for t in json.loads(
        (Path(__file__).parents[1] / "graphs/support/data/tickets.json").read_text()
    )
}


@pytest.fixture
def services() -> Iterator[Services]:
    with Services.in_process() as opened:
        yield opened


@pytest.fixture
def graph(services: Services, tmp_path: Path) -> Any:
    db = SupportDB(tmp_path / "support.sqlite")
    return build_support_graph(db, services=services).compile(checkpointer=InMemorySaver())


def handle(graph: Any, ticket_id: str, tenant: str = "acme") -> tuple[Any, dict[str, Any]]:
    ticket = TICKETS[ticket_id]
    report = run_to_end(
        graph,
        format_ticket(ticket["from"], ticket["subject"], ticket["body"]),
        thread_id=ticket_id,
        tenant=tenant,
        reviewer=scripted_review,
        write_tools=SUPPORT_WORKFLOW.write_tools,
    )
    state = graph.get_state({"configurable": {"thread_id": ticket_id}}).values
    return report, state


def events_of(services: Services, run_id: str) -> list[TraceEvent]:
    assert services.tracer.flush(timeout_s=10)
    return services.traces.events(run_id=run_id)


def test_a_run_is_traced_from_intake_to_finalize_and_adds_up(
    services: Services, graph: Any
) -> None:
    report, state = handle(graph, "T01")
    events = events_of(services, report.run_id)
    assert events[0]["node"] == "intake" and events[-1]["node"] == "finalize"
    assert "Where is my order" in events[0]["goal"] or "ORD-1001" in events[0]["goal"]
    assert {e["tenant"] for e in events} == {"acme"}
    assert {e["thread_id"] for e in events} == {"T01"}
    assert events[-1]["output"] == f"resolved: {state['outcome']['reason']}"
    model_steps = [e for e in events if e["cost"]["tokens_in"] > 0]
    assert len(model_steps) == state["usage"]["steps"]
    assert sum(e["cost"]["usd"] for e in events) == pytest.approx(state["usage"]["cost_usd"])
    assert sum(e["cost"]["tokens_in"] for e in events) == state["usage"]["tokens_in"]
    # Every decision in state is in the trace once, with its policies.
    traced = [v for e in events for v in e["verdicts"]]
    assert [v["decision_id"] for v in traced] == [v["decision_id"] for v in state["verdicts"]]
    assert all(v["policies"] for v in traced)
    # Every proposal in the trace names the agent node that made it.
    for event in events:
        for proposal in event["proposals"]:
            assert event["node"] == f"agent_{event['agent']}" and proposal["tool"]
    [summary] = [r for r in services.traces.runs() if r["run_id"] == report.run_id]
    assert summary["status"] == "resolved" and summary["steps"] == len(events)


def test_an_escalation_and_the_human_decision_are_traced_and_audited(
    services: Services, graph: Any
) -> None:
    report, state = handle(graph, "T03")  # a $640 refund: a human approves
    events = events_of(services, report.run_id)
    paused = [e for e in events if e["status"] == "interrupted"]
    assert [e["node"] for e in paused] == ["approval"]
    assert paused[0]["escalation"]["tools"] == ["issue_refund"]
    assert paused[0]["escalation"]["deadline"] is not None  # the support path has a deadline
    [human] = [v for e in events for v in e["verdicts"] if v["decided_by"].startswith("human:")]
    assert human["kind"] == "allow"

    records = services.audit.records(run_id=report.run_id)
    kinds = Counter(r["kind"] for r in records)
    assert kinds["decision"] + kinds["approval"] == len(state["verdicts"])
    [approval] = [r for r in records if r["kind"] == "approval"]
    assert approval["actor"] == human["decided_by"]
    assert approval["detail"]["tool"] == "issue_refund"
    assert approval["detail"]["args"]["amount"] == 640
    effects = [
        m
        for m in state["messages"]
        if isinstance(m, ToolMessage)
        and m.name in SUPPORT_WORKFLOW.write_tools
        and m.status == "success"
    ]
    assert kinds["effect"] == len(effects) >= 2  # the refund and the email
    assert {r["detail"]["tool"] for r in records if r["kind"] == "effect"} >= {"issue_refund"}
    assert services.audit.verify().ok


def test_a_rejection_is_an_intervention_and_flagged(services: Services, graph: Any) -> None:
    report, _ = handle(graph, "T05")  # over the finance limit: the reviewer rejects it
    events = events_of(services, report.run_id)
    verdicts = [v for e in events for v in e["verdicts"]]
    rejections = [v for v in verdicts if v["kind"] == "deny" and v["decided_by"] != "guard"]
    trips = [v for v in verdicts if v["kind"] in ("deny", "halt") and v["decided_by"] == "guard"]
    assert rejections
    assert any(flag.startswith("deny: ") for e in events for flag in e["flags"])
    [summary] = [r for r in services.traces.runs() if r["run_id"] == report.run_id]
    assert summary["incidents"] == len(trips)
    assert summary["interventions"] >= len(rejections)


def test_memory_a_decision_rested_on_is_in_its_trace(services: Services, graph: Any) -> None:
    handle(graph, "T01")  # "call me Ally" is remembered
    report, _ = handle(graph, "T07")
    events = events_of(services, report.run_id)
    reads = [read for e in events for read in e["memory_reads"]]
    assert reads and all(read["commit_id"] for read in reads)
    decided = [v for e in events for v in e["verdicts"] if v.get("memory_reads")]
    assert decided, "a verdict on a proposal made with memory names what it read"


def test_each_tenant_sees_only_its_runs(services: Services, graph: Any) -> None:
    acme, _ = handle(graph, "T01", tenant="acme")
    globex, _ = handle(graph, "T02", tenant="globex")
    assert services.tracer.flush(timeout_s=10)
    assert [r["run_id"] for r in services.traces.runs(tenant="globex")] == [globex.run_id]
    assert {e["run_id"] for e in services.traces.events(tenant="acme")} == {acme.run_id}


class _BrokenModel(BaseChatModel):
    """A chat model whose provider is down."""

    @property
    def _llm_type(self) -> str:
        return "broken"

    def _generate(self, messages: Any, stop: Any = None, **kwargs: Any) -> Any:
        raise RuntimeError("provider unreachable")

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def test_a_failing_step_is_traced_with_its_error(services: Services, tmp_path: Path) -> None:
    db = SupportDB(tmp_path / "support.sqlite")
    graph = build_support_graph(db, model=_BrokenModel(), services=services).compile(
        checkpointer=InMemorySaver()
    )
    with pytest.raises(RuntimeError, match="provider unreachable"):
        handle(graph, "T01")
    assert services.tracer.flush(timeout_s=10)
    [failed] = [e for e in services.traces.events() if e["status"] == "error"]
    assert failed["node"] == "orchestrator"
    assert failed["error"] == "RuntimeError: provider unreachable"
    assert failed["output"] == failed["error"]

"""Runs and model calls carry Bastion's ids as LangChain metadata and tags: what LangSmith
records when its tracing is on. No LangSmith here (no network): a real callback handler sees
exactly what LangSmith's tracer, another callback handler, would receive."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.schemas import Run
from langgraph.checkpoint.memory import InMemorySaver

from console import run_to_end
from graphs.support import (
    SUPPORT_WORKFLOW,
    SupportDB,
    build_support_graph,
    format_ticket,
    scripted_review,
)
from nodes import RunContext
from nodes.run_metadata import model_call_config, run_config

TICKETS = {
    t["id"]: t
    for t in json.loads(
        (Path(__file__).parents[1] / "graphs/support/data/tickets.json").read_text()
    )
}


@pytest.fixture(autouse=True)
def _langsmith_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """LangSmith tracing stays off: nothing may leave the machine."""
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY"):
        monkeypatch.delenv(name, raising=False)


class Recorder(BaseCallbackHandler):
    """Keeps the metadata and tags of every chain and chat-model run it is told about."""

    def __init__(self) -> None:
        self.chains: list[dict[str, Any]] = []
        self.model_calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _keep(self, into: list[dict[str, Any]], **seen: Any) -> None:
        with self._lock:
            into.append(seen)

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._keep(
            self.chains, root=parent_run_id is None, tags=tags or [], metadata=metadata or {}
        )

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._keep(self.model_calls, tags=tags or [], metadata=metadata or {})


def _ticket(ticket_id: str) -> str:
    ticket = TICKETS[ticket_id]
    return format_ticket(ticket["from"], ticket["subject"], ticket["body"])


def _graph(tmp_path: Path) -> Any:
    return build_support_graph(SupportDB(tmp_path / "support.sqlite")).compile(
        checkpointer=InMemorySaver()
    )


def test_a_support_runs_model_calls_carry_its_run_id_and_tenant(tmp_path: Path) -> None:
    recorder = Recorder()
    config: Any = {
        "configurable": {"thread_id": "t-1"},
        "callbacks": [recorder],
        **run_config(tenant="acme", workflow="support", thread_id="t-1"),
    }
    result = _graph(tmp_path).invoke(
        {"messages": [("user", _ticket("T01"))]}, config, context=RunContext(tenant="acme")
    )

    assert result["outcome"]["status"] == "resolved" and result["run_id"].startswith("run_")
    [root] = [c for c in recorder.chains if c["root"]]
    assert {"bastion", "tenant:acme", "workflow:support"} <= set(root["tags"])
    assert root["metadata"]["bastion_tenant"] == "acme"
    assert root["metadata"]["bastion_workflow"] == "support"
    assert root["metadata"]["bastion_thread"] == "t-1"
    calls = recorder.model_calls
    # The router and each specialist consulted (triage, orders, communications) called a model.
    assert {c["metadata"]["bastion_agent"] for c in calls} == {
        "orchestrator",
        "triage",
        "orders",
        "communications",
    }
    for call in calls:
        metadata = call["metadata"]
        assert metadata["bastion_run_id"] == result["run_id"]
        assert metadata["bastion_tenant"] == "acme"
        assert metadata["bastion_workflow"] == "support"
        # The node the call names is the node LangGraph ran it in.
        assert metadata["bastion_node"] == metadata["langgraph_node"]
        # Inherited from the run: LangChain merged the call's labels into the parent's.
        assert metadata["bastion_thread"] == "t-1"
        assert {"bastion", "tenant:acme", f"agent:{metadata['bastion_agent']}"} <= set(call["tags"])


def _roots_and_models(runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """Root runs (one per `invoke`) and every chat-model run below or among them."""
    roots, models, todo = [], [], list(runs)
    while todo:
        run = todo.pop()
        if run.parent_run_id is None and run.run_type == "chain":
            roots.append(run)
        if run.run_type == "llm":
            models.append(run)
        todo.extend(run.child_runs)
    return roots, models


def test_the_runner_labels_every_invocation_including_resumes(tmp_path: Path) -> None:
    graph = _graph(tmp_path)

    class WalkedAway(Exception):
        """The reviewer left: the thread waits for an approval."""

    def walk_away(payload: Any) -> Any:
        raise WalkedAway

    # `collect_runs` hooks its handler in exactly as LangSmith's tracer is hooked in.
    with collect_runs() as first, pytest.raises(WalkedAway):
        run_to_end(
            graph,
            _ticket("T03"),
            thread_id="t-2",
            tenant="acme",
            reviewer=walk_away,
            write_tools=SUPPORT_WORKFLOW.write_tools,
            workflow=SUPPORT_WORKFLOW.name,
        )
    with collect_runs() as resumed:
        # No workflow given: the runner reads it from the waiting thread.
        report = run_to_end(
            graph,
            _ticket("T03"),
            thread_id="t-2",
            tenant="acme",
            reviewer=scripted_review,
            write_tools=SUPPORT_WORKFLOW.write_tools,
        )

    assert report.status == "resolved" and report.approvals == 1
    for collected in (first, resumed):
        roots, models = _roots_and_models(collected.traced_runs)
        assert roots and models
        for root in roots:
            assert root.extra["metadata"]["bastion_tenant"] == "acme"
            assert root.extra["metadata"]["bastion_workflow"] == "support"
            assert root.extra["metadata"]["bastion_thread"] == "t-2"
            assert {"bastion", "tenant:acme", "workflow:support"} <= set(root.tags or [])
        for model in models:
            assert model.extra["metadata"]["bastion_run_id"] == report.run_id
            assert "tenant:acme" in (model.tags or [])


def test_run_config_leaves_an_unknown_workflow_out() -> None:
    config = run_config(tenant="acme", workflow=None, thread_id="t")
    assert config["metadata"] == {"bastion_tenant": "acme", "bastion_thread": "t"}
    assert config["tags"] == ["bastion", "tenant:acme"]


def test_model_call_config_reads_the_run_state() -> None:
    state = {"run_id": "run_1", "tenant": "globex", "workflow": "support"}
    config = model_call_config(state, node="agent_billing", agent="billing")
    assert config["metadata"] == {
        "bastion_run_id": "run_1",
        "bastion_agent": "billing",
        "bastion_tenant": "globex",
        "bastion_workflow": "support",
        "bastion_node": "agent_billing",
    }
    assert config["tags"] == ["bastion", "tenant:globex", "agent:billing"]

"""B1 orchestration tax: one scripted 3-tool-call workload, bare LangGraph ReAct vs Bastion."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from bench.timing import interleaved
from graphs.orchestrator import build_orchestrator
from guards import (
    ActionGuard,
    ContentScanner,
    EgressPolicy,
    InMemoryBudgetLedger,
    InMemoryKillSwitch,
    PolicyRequest,
    PythonRulesEngine,
    RuleResult,
    SpendPolicy,
    TenantDirectory,
    rule,
)
from guards.policy import deny
from nodes import AgentSpec, RunContext, encode_step
from nodes.models import ScriptedChatModel
from observability import InMemoryAuditLog, InMemoryTraceSink, Tracer
from tools import tool_contract

__all__ = ["run"]

TABLE = {"a": 1, "b": 2, "c": 4}
KEYS = ("a", "b", "c")
EXPECTED_ANSWER = f"total={sum(TABLE.values())}"
INSTRUCTIONS = "Look up a, b and c one at a time, then answer with their total."
REQUEST = "What is the total of a, b and c?"


def _lookup(key: str) -> int:
    return TABLE[key]


@tool
def lookup(key: str) -> int:
    """Look up the number stored under `key`."""
    return _lookup(key)


@tool_contract(zone="green", name="lookup")
def lookup_contract(key: str) -> int:
    """Look up the number stored under `key`."""
    return _lookup(key)


def _policy(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> AIMessage:
    """Call `lookup` for the next key until 3 results follow the last request, then answer."""
    last_human = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    results = [m for m in messages[last_human:] if isinstance(m, ToolMessage)]
    if len(results) < len(KEYS):
        key = KEYS[len(results)]
        call = {"name": "lookup", "args": {"key": key}, "id": None, "type": "tool_call"}
        return AIMessage(content="", tool_calls=[call])
    return AIMessage(content=f"total={sum(int(str(m.content)) for m in results)}")


def _model(latency_s: float) -> ScriptedChatModel:
    return ScriptedChatModel(policy=_policy, latency_s=latency_s)


def build_bare(latency_s: float = 0.0) -> Any:
    """The baseline: `MessagesState` graph, model node + `ToolNode`, routed by `tools_condition`."""
    model = _model(latency_s).bind_tools([lookup])
    system = SystemMessage(INSTRUCTIONS)

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke([system, *state["messages"]])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([lookup]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=InMemorySaver())


@rule(id="lookup-keys", version="1", owner="bench", tools="lookup", reads=("tool", "args"))
def _known_keys(request: PolicyRequest) -> RuleResult | None:
    return None if request.args.get("key") in TABLE else deny("unknown key")


def full_guard() -> ActionGuard:
    """Every guard layer on: tenants, kill switch, ledger, policies, scanners, egress."""
    scanner = ContentScanner()
    tenants = TenantDirectory.from_mapping({"bench": {"budget": {"usd": 1_000_000.0}}})
    return ActionGuard(
        tenants=tenants,
        policy=PythonRulesEngine([_known_keys]),
        kill_switch=InMemoryKillSwitch(),
        scanner=scanner,
        egress=EgressPolicy(scanner=scanner),
        spend=SpendPolicy(ledger=InMemoryBudgetLedger(), on_threshold="fallback"),
    )


def build_bastion(latency_s: float = 0.0, tracer: Tracer | None = None) -> Any:
    """The subject: `build_orchestrator` with every guard on (sequential router), traced and
    audited by `tracer` (default: in-memory trace sink and audit log)."""
    agent = AgentSpec(
        name="worker", instructions=INSTRUCTIONS, tools=["lookup"], model=_model(latency_s)
    )
    tracer = tracer or Tracer(
        sink=InMemoryTraceSink(), audit=InMemoryAuditLog(), encode=encode_step
    )
    builder = build_orchestrator(
        agents=[agent], tools=[lookup_contract], guard=full_guard(), tracer=tracer
    )
    return builder.compile(checkpointer=InMemorySaver())


def _runner(graph: Any, **kwargs: Any) -> Callable[[], dict[str, Any]]:
    """A zero-argument callable doing one run of `graph` on a new thread."""

    def run_once() -> dict[str, Any]:
        config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        return graph.invoke({"messages": [HumanMessage(REQUEST)]}, config, **kwargs)  # type: ignore[no-any-return]

    return run_once


def _check(result: dict[str, Any], label: str) -> None:
    """Assert a run made exactly 3 successful lookups and gave the right final answer."""
    messages = result["messages"]
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.content for m in results] == [str(TABLE[k]) for k in KEYS], (label, results)
    assert all(m.status == "success" for m in results), (label, results)
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls, (label, final)
    assert final.content == EXPECTED_ANSWER, (label, final.content)


def _pair(latency_s: float) -> dict[str, Callable[[], dict[str, Any]]]:
    """Checked runners for the baseline and the subject at a simulated model latency."""
    bare = _runner(build_bare(latency_s))
    bastion = _runner(build_bastion(latency_s), context=RunContext(tenant="bench"))
    _check(bare(), "bare")
    outcome = bastion()
    _check(outcome, "bastion")
    assert outcome["outcome"]["status"] == "resolved", outcome["outcome"]
    assert outcome["outcome"]["summary"] == EXPECTED_ANSWER, outcome["outcome"]
    assert outcome["usage"]["tool_calls"] == len(KEYS), outcome["usage"]
    return {"bare": bare, "bastion": bastion}


def run() -> dict[str, Any]:
    """Measure B1 and return its result object (medians in ms, ratios bastion / bare)."""
    fast = interleaved(_pair(0.0), repeats=1000, warmup=20, budget_s=20)
    slow = interleaved(_pair(0.1), repeats=9, warmup=1)
    value, baseline = fast["bastion"].median_ms, fast["bare"].median_ms
    slow_value, slow_baseline = slow["bastion"].median_ms, slow["bare"].median_ms
    return {
        "id": "B1",
        "name": "orchestration tax (3 tool calls + answer)",
        "value": round(value, 3),
        "unit": "ms",
        "baseline": round(baseline, 3),
        "ratio": round(value / baseline, 3),
        "p99": round(fast["bastion"].p99_ms, 3),
        "baseline_p99": round(fast["bare"].p99_ms, 3),
        "samples": len(fast["bastion"].samples_ms),
        "value_with_100ms_model": round(slow_value, 3),
        "baseline_with_100ms_model": round(slow_baseline, 3),
        "ratio_with_100ms_model": round(slow_value / slow_baseline, 4),
        "samples_with_100ms_model": len(slow["bastion"].samples_ms),
        "guards": "tenants, kill switch, ledger, Python policy, scanners, egress, loops, "
        "trace + audit (in-memory sinks; B8 measures the SQLite ones)",
        "goal": "ratio <= 1.25; ratio_with_100ms_model <= 1.01",
    }

"""`build_orchestrator`: wires the flat hub-and-spoke graph from agents, tools and a workflow."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from langgraph.graph import END, START, StateGraph

from guards import ActionGuard
from memory import VersionedMemory
from nodes import (
    AgentSpec,
    MemoryBinding,
    ModelGate,
    ProposalJudge,
    Router,
    RunContext,
    RunState,
    SequentialRouter,
    ToolViews,
    Workflow,
    WorkflowConfigError,
    agent_node_name,
    make_agent_node,
    make_approval_node,
    make_execute_node,
    make_finalize_node,
    make_guard_node,
    make_intake_node,
    make_orchestrator_node,
    route_after_agent,
    route_after_approval,
    route_after_execute,
    route_after_guard,
    route_after_intake,
    route_from_orchestrator,
    traced,
)
from observability import PriceTable, Tracer
from tools import (
    EffectLedger,
    ExecutionGateway,
    RateLimiter,
    SecretSource,
    ShadowMode,
    ToolRegistry,
    ToolSpec,
)

__all__ = ["OrchestratorBuilder", "build_orchestrator"]

OrchestratorBuilder = StateGraph[RunState, RunContext, RunState, RunState]
"""The uncompiled graph `build_orchestrator` returns."""


def _open_tenant_budgets(guard: ActionGuard) -> None:
    """Give each configured tenant's shared bucket its caps in the ledger."""
    ledger = guard.spend.ledger
    if ledger is None or guard.tenants is None:
        return
    for name in guard.tenants.names:
        caps = guard.tenants.get(name).budget
        if caps is not None:
            ledger.set_caps(guard.spend.key(name), caps)


def _checked_bindings(
    names: Sequence[str],
    memory: VersionedMemory | None,
    bindings: Mapping[str, MemoryBinding] | None,
) -> Mapping[str, MemoryBinding]:
    bindings = bindings or {}
    unknown = sorted(set(bindings) - set(names))
    if unknown:
        raise WorkflowConfigError(
            f"memory_bindings name unknown agent(s) {unknown!r}; the agents are {list(names)!r}"
        )
    if bindings and memory is None:
        raise WorkflowConfigError(
            f"memory_bindings for {sorted(bindings)!r} need memory=; pass the VersionedMemory "
            "they read (e.g. `services.memory`)"
        )
    return bindings


def build_orchestrator(
    agents: Sequence[AgentSpec],
    *,
    tools: Iterable[ToolSpec] | ToolRegistry = (),
    workflow: Workflow | None = None,
    router: Router | None = None,
    guard: ActionGuard | None = None,
    prices: PriceTable | None = None,
    effects: EffectLedger | None = None,
    rate_limiter: RateLimiter | None = None,
    secrets: SecretSource | None = None,
    shadow: ShadowMode | None = None,
    memory: VersionedMemory | None = None,
    memory_bindings: Mapping[str, MemoryBinding] | None = None,
    tracer: Tracer | None = None,
) -> OrchestratorBuilder:
    """Build (but do not compile) a governed orchestrator graph.

    intake → orchestrator ⇄ agent_<name> → guard → approval → execute → back to the agent;
    orchestrator → finalize → END. A batch that needs no human runs inside the guard step.

    Args:
        agents: the specialists; each sees only the tools it names.
        tools: every tool contract the agents may use.
        workflow: the task boundary. Default: workflow `default` whose side-effect budget is
            every registered tool that has side effects.
        router: picks the next specialist. Default: each specialist once, in order.
        guard: the guard plane (policies, kill switch, budgets, scanners). Default: an
            `ActionGuard` with built-in checks only. The workflow's limits replace its own.
        prices: model price table for cost accounting.
        effects: the effect ledger (exactly-once side effects, undo). Default: in-process,
            which a crash loses; with a durable checkpointer pass a durable ledger too
            (`SqliteEffectLedger`, `RedisEffectLedger`, as `Services.from_settings` does).
        rate_limiter: token buckets for tool rate limits. Default: in-process.
        secrets: where tools' declared secrets come from. Default: environment variables.
        shadow: simulate these side effects instead of acting (runs can add more with
            `configurable={"shadow": ...}`).
        memory: the memory agents read (and memory tools, built over the same memory, write).
        memory_bindings: by agent name, what the agent may read and recalls before each
            turn; agents without one read no memory.
        tracer: records every node step as a reasoning trace event and audits decisions,
            approvals and effects (`Services.tracer`); its encoder must be
            `nodes.encode_step`. None: nothing is traced.

    Raises:
        WorkflowConfigError: no agents, duplicate names, a workflow naming unknown tools, or
            memory bindings for unknown agents or without a memory.
        ToolConfigError: an agent names a tool that is not registered.
    """
    if not agents:
        raise WorkflowConfigError("build_orchestrator needs at least one AgentSpec")
    names = [agent.name for agent in agents]
    if len(set(names)) != len(names):
        raise WorkflowConfigError(f"agent names must be unique, got {names!r}")
    bindings = _checked_bindings(names, memory, memory_bindings)
    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
    if workflow is None:
        writers = frozenset(t.name for t in registry if t.side_effect != "none")
        workflow = Workflow(name="default", write_tools=writers)
    unknown = workflow.write_tools - registry.names
    if unknown:
        raise WorkflowConfigError(
            f"workflow `{workflow.name}` allows writes by unknown tool(s) {sorted(unknown)!r}; "
            f"registered tools are {sorted(registry.names)!r}"
        )
    # The workflow's limits are the run's limits, whatever the guard was built with.
    guard = replace(guard or ActionGuard(), limits=workflow.limits)
    prices = prices or PriceTable()
    _open_tenant_budgets(guard)
    views = ToolViews({agent.name: registry.scoped(agent.tools) for agent in agents}, guard.tenants)
    agent_nodes = [agent_node_name(name) for name in names]
    gate = ModelGate(guard=guard, prices=prices)
    judge = ProposalJudge(guard=guard, registry=registry, workflow=workflow, tools=views)

    # Typed as Any while wiring: LangGraph's add_node overloads infer a `total=False` TypedDict
    # node input as Never, rejecting correctly typed node functions.
    graph: Any = StateGraph(RunState, context_schema=RunContext)
    side_effects = {spec.name: spec.side_effect for spec in registry}

    def add_node(name: str, node: Any) -> None:
        graph.add_node(name, traced(name, node, tracer, side_effects) if tracer else node)

    add_node("intake", make_intake_node(workflow, guard))
    add_node("orchestrator", make_orchestrator_node(router or SequentialRouter(), names, gate))
    for agent in agents:
        add_node(
            agent_node_name(agent.name),
            make_agent_node(
                agent,
                views,
                gate,
                workflow.escalation,
                memory=memory,
                binding=bindings.get(agent.name),
            ),
        )
    gateway = ExecutionGateway(
        registry, effects=effects, rate_limiter=rate_limiter, secrets=secrets
    )
    execute = make_execute_node(gateway, guard, shadow or ShadowMode())
    add_node("guard", make_guard_node(judge, execute))
    add_node("approval", make_approval_node(workflow.escalation, judge))
    add_node("execute", execute)
    add_node("finalize", make_finalize_node(workflow, guard))
    _add_edges(graph, agent_nodes)
    built: OrchestratorBuilder = graph
    return built


def _add_edges(builder: Any, agent_nodes: Sequence[str]) -> None:
    """The flat hub-and-spoke edges (see `build_orchestrator`)."""
    builder.add_edge(START, "intake")
    builder.add_conditional_edges("intake", route_after_intake, ["orchestrator", "finalize"])
    builder.add_conditional_edges(
        "orchestrator", route_from_orchestrator, [*agent_nodes, "finalize"]
    )
    for node in agent_nodes:
        builder.add_conditional_edges(
            node, route_after_agent, ["guard", "orchestrator", "finalize"]
        )
    builder.add_conditional_edges(
        "guard", route_after_guard, ["approval", "execute", "finalize", *agent_nodes]
    )
    builder.add_conditional_edges(
        "approval", route_after_approval, ["execute", "finalize", *agent_nodes]
    )
    builder.add_conditional_edges("execute", route_after_execute, agent_nodes)
    builder.add_edge("finalize", END)

"""Bastion's ids on LangChain runs: the metadata and tags LangSmith (or any callback) receives.

LangChain passes a run's `metadata` and `tags` to every callback handler, and children inherit
their parents' (a model call inside a node carries the graph run's too). When LangSmith
tracing is on (`LANGSMITH_TRACING=true`), its tracer is one such handler, so a LangSmith trace
can be found from a Bastion run id, tenant or workflow, and back. Nothing here talks to
LangSmith: it only labels runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig

__all__ = ["model_call_config", "run_config"]

TAG = "bastion"
"""Tag on every run Bastion starts or makes."""


def run_config(*, tenant: str, workflow: str | None, thread_id: str) -> RunnableConfig:
    """`metadata` and `tags` of a graph run started for `tenant` on `thread_id`.

    Args:
        tenant: the run's tenant.
        workflow: the graph's workflow, or None when the caller does not know it (then neither
            its metadata key nor its tag is set, rather than a made-up name).
        thread_id: the LangGraph thread.

    Returns:
        a partial config to merge into the one passed to `invoke`, e.g.
        `{"configurable": {...}, **run_config(...)}`.
    """
    metadata: dict[str, Any] = {"bastion_tenant": tenant, "bastion_thread": thread_id}
    tags = [TAG, f"tenant:{tenant}"]
    if workflow:
        metadata["bastion_workflow"] = workflow
        tags.append(f"workflow:{workflow}")
    return RunnableConfig(metadata=metadata, tags=tags)


def model_call_config(state: Mapping[str, Any], *, node: str, agent: str) -> RunnableConfig:
    """`metadata` and `tags` of one model call made by `agent` in graph node `node`.

    Pass it as the model's `invoke(..., config=...)`: LangChain keeps the parent run's
    callbacks, metadata and tags and adds these.

    Args:
        state: the run state (its `run_id`, `tenant` and `workflow` label the call).
        node: the graph node making the call (`agent_<name>`, `orchestrator`).
        agent: the specialist calling (or `orchestrator`).
    """
    tenant = str(state.get("tenant") or "")
    metadata = {
        "bastion_run_id": str(state.get("run_id") or ""),
        "bastion_agent": agent,
        "bastion_tenant": tenant,
        "bastion_workflow": str(state.get("workflow") or ""),
        "bastion_node": node,
    }
    return RunnableConfig(metadata=metadata, tags=[TAG, f"tenant:{tenant}", f"agent:{agent}"])

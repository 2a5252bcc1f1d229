"""Runs one request through a compiled graph to its end, answering approvals with a reviewer."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from nodes import RunContext, this_run
from nodes.run_metadata import run_config

__all__ = ["Reviewer", "RunReport", "run_to_end"]

Reviewer = Callable[[Mapping[str, Any]], Any]
"""Answers an approval payload with a resume value (`{"decisions": [...]}`)."""


@dataclass(frozen=True, kw_only=True)
class RunReport:
    """What one run did, for tables and `--json`."""

    thread_id: str
    """Thread the run used."""
    run_id: str = ""
    """Id of the run (what `bastion undo` takes)."""
    status: str
    """Outcome status."""
    reason: str
    """Outcome reason."""
    summary: str
    """Final answer."""
    steps: int
    """Model turns."""
    tokens: int
    """Input + output tokens."""
    cost_usd: float
    """Model spend."""
    verdicts: Mapping[str, int] = field(default_factory=dict)
    """Count of verdicts by kind."""
    approvals: int = 0
    """Approval interrupts answered."""
    effects: int = 0
    """Side-effecting tool calls that succeeded this run."""
    replayed: int = 0
    """Of those, how many returned an earlier result instead of acting again."""
    simulated: int = 0
    """Side-effecting calls simulated in shadow mode (nothing was done)."""
    routes: tuple[str, ...] = ()
    """Specialists the orchestrator handed to, in order."""
    guard_notes: tuple[str, ...] = ()
    """What the guard plane did worth knowing: escalations, taint, redactions, fallbacks."""
    flagged: int = 0
    """Actions that ran but are flagged for review (yellow zone, low confidence)."""
    memory_commits: tuple[str, ...] = ()
    """Memory commits the run's tools made (`bastion memory show <commit>`), oldest first."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            **self.__dict__,
            "verdicts": dict(self.verdicts),
            "routes": list(self.routes),
            "guard_notes": list(self.guard_notes),
            "memory_commits": list(self.memory_commits),
        }


def _guard_notes(values: Mapping[str, Any]) -> tuple[tuple[str, ...], int]:
    """Notable guard events of a finished run, and how many actions were flagged."""
    notes: list[str] = [f"tainted: {reason}" for reason in (values.get("taint") or [])[:1]]
    flagged = 0
    for verdict in values.get("verdicts") or []:
        reasons = verdict["reasons"]
        if verdict["kind"] == "escalate":
            notes.append(f"escalated: {reasons[0]}")
        flagged += any("flagged for review" in r for r in reasons)
        notes += [r for r in reasons if r.startswith("egress: redacted")]
    if (values.get("budget") or {}).get("fallback"):
        notes.append("switched to the fallback model at the spend threshold")
    return tuple(dict.fromkeys(notes)), flagged


def _effects(values: Mapping[str, Any], write_tools: frozenset[str]) -> Counter[str]:
    """Successful side-effecting calls this run: `effects` (acted or replayed), `replayed`
    (the gateway returned an earlier execution's recorded result instead of acting) and
    `simulated` (shadow mode: nothing was done)."""
    counts: Counter[str] = Counter()
    for message in this_run(values.get("messages") or [])[1]:
        if (
            isinstance(message, ToolMessage)
            and message.name in write_tools
            and message.status != "error"
        ):
            artifact = message.artifact or {}
            if artifact.get("shadow"):
                counts["simulated"] += 1
            else:
                counts["effects"] += 1
                counts["replayed"] += bool(artifact.get("replayed"))
    return counts


def _memory_commits(values: Mapping[str, Any]) -> tuple[str, ...]:
    """Commits this run's tool calls made (a tool that writes memory returns `memory_commit`;
    replays and simulations made none)."""
    commits: list[str] = []
    for message in this_run(values.get("messages") or [])[1]:
        if (
            not isinstance(message, ToolMessage)
            or message.status == "error"
            or '"memory_commit"' not in str(message.content)
        ):
            continue
        artifact = message.artifact or {}
        if artifact.get("shadow") or artifact.get("replayed"):
            continue
        try:
            commit = json.loads(str(message.content)).get("memory_commit")
        except (ValueError, AttributeError):
            continue
        if isinstance(commit, str) and commit:
            commits.append(commit)
    return tuple(commits)


def run_to_end(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    text: str,
    *,
    thread_id: str,
    tenant: str,
    reviewer: Reviewer,
    write_tools: frozenset[str] = frozenset(),
    workflow: str | None = None,
) -> RunReport:
    """Run `text` on `thread_id` until the graph ends, resolving each approval with `reviewer`.

    A thread left waiting for an approval (say, an interrupted interactive session), or cut
    short by a crash, is resumed rather than started again, so no request is processed twice.
    Every invocation carries Bastion's ids as LangChain metadata and tags (`run_config`), which
    LangSmith records when its tracing is on.

    Args:
        graph: the compiled graph.
        text: the request.
        thread_id: the thread to run on (or resume).
        tenant: the tenant the run works for.
        reviewer: answers each approval.
        write_tools: the workflow's side-effecting tools (to count effects).
        workflow: the graph's workflow name, for the metadata; default: the one the thread
            recorded, if any.
    """
    config: Any = {"configurable": {"thread_id": thread_id}}
    context = RunContext(tenant=tenant)
    pending = graph.get_state(config)
    workflow = workflow or (pending.values or {}).get("workflow")
    config.update(run_config(tenant=tenant, workflow=workflow, thread_id=thread_id))
    if pending.interrupts:
        result = graph.invoke(
            Command(resume=reviewer(pending.interrupts[0].value)),
            config,
            context=context,
            durability="sync",
        )
        approvals = 1
    elif pending.next:  # a run cut short (a crash, Ctrl-C): finish it rather than start over
        result = graph.invoke(None, config, context=context, durability="sync")
        approvals = 0
    else:
        result = graph.invoke(
            {"messages": [("user", text)]}, config, context=context, durability="sync"
        )
        approvals = 0
    while result.get("__interrupt__"):
        approvals += 1
        result = graph.invoke(
            Command(resume=reviewer(result["__interrupt__"][0].value)),
            config,
            context=context,
            durability="sync",
        )
    outcome = result.get("outcome") or {}
    usage = result.get("usage") or {}
    effects = _effects(result, write_tools)
    notes, flagged = _guard_notes(result)
    return RunReport(
        thread_id=thread_id,
        run_id=result.get("run_id", ""),
        status=outcome.get("status", "unknown"),
        reason=outcome.get("reason", ""),
        summary=outcome.get("summary", ""),
        steps=usage.get("steps", 0),
        tokens=usage.get("tokens_in", 0) + usage.get("tokens_out", 0),
        cost_usd=usage.get("cost_usd", 0.0),
        verdicts=Counter(v["kind"] for v in result.get("verdicts") or []),
        approvals=approvals,
        effects=effects["effects"],
        replayed=effects["replayed"],
        simulated=effects["simulated"],
        routes=tuple(result.get("routes") or ()),
        guard_notes=notes,
        flagged=flagged,
        memory_commits=_memory_commits(result),
    )
